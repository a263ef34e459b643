"""The whole reader flow in a real browser, with the keyboard alone."""

from __future__ import annotations

import re

import pytest

from cases.models import Answer, Enrolment, Invitation
from cases.services import invitations_create
from tests.factories import build_study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

# The case page's address carries the case number as its fragment (history entries).
CASE_URL = re.compile(r"/case/(#\d+)?$")


def script_ready(page) -> None:
    """Until the case page's script listens to the keys (it loads after the page)."""
    page.wait_for_selector("#case-root[data-ready]", state="attached")


def register(page, live_server, token: str, username: str) -> None:
    page.goto(f"{live_server.url}/join/{token}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.org")
    page.fill("input[name=password1]", "a-Long-pass-phrase-9")
    page.fill("input[name=password2]", "a-Long-pass-phrase-9")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/consent/$"))


def consent_and_profile(page) -> None:
    page.check("input[name=agree]")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/profile/$"))
    page.select_option("select[name=level]", "attending")
    page.fill("input[name=years_in_dermatology]", "7")
    page.keyboard.press("Enter")
    page.wait_for_url(CASE_URL)


def answer_with_keys(
    page, number: int, total: int, *, diagnosis_key: str, confidence_key: str | None
) -> None:
    script_ready(page)
    assert page.get_by_test_id("progress").inner_text() == f"{number} / {total}"
    # both images are loaded through the permission-checked view
    for test_id in ("clinical", "dermoscopic"):
        assert page.get_by_test_id(test_id).evaluate("img => img.naturalWidth") > 0
    page.keyboard.press(diagnosis_key)
    if confidence_key:
        page.keyboard.press(confidence_key)
    page.keyboard.press("Enter")


def test_invited_reader_answers_every_case_with_the_keyboard_and_sees_feedback(page, live_server):
    study = build_study(4, show_feedback=True, ask_confidence=True)
    token = invitations_create(study=study, count=1)[0].token
    register(page, live_server, token, "dr_wang")
    consent_and_profile(page)
    for number in range(1, 5):
        answer_with_keys(page, number, 4, diagnosis_key=str(number % 3 + 1), confidence_key="4")
        if number < 4:
            page.wait_for_function(
                f"document.querySelector('[data-testid=progress]')?.innerText === "
                f"'{number + 1} / 4'"
            )
    page.wait_for_url(re.compile(r"/done/$"))
    assert "You have answered all 4 cases" in page.get_by_test_id("finished").inner_text()
    assert "Your results" in page.get_by_test_id("feedback").inner_text()
    enrolment = Enrolment.objects.get(reader__username="dr_wang")
    answers = Answer.objects.filter(enrolment=enrolment)
    assert answers.count() == 4 and set(answers.values_list("confidence", flat=True)) == {4}
    assert enrolment.finished_at is not None
    assert Invitation.objects.get(token=token).uses == 1


def test_resume_after_logging_out_half_way(page, live_server):
    study = build_study(4)
    token = invitations_create(study=study, count=1)[0].token
    register(page, live_server, token, "dr_zhao")
    consent_and_profile(page)
    for number in (1, 2):
        answer_with_keys(page, number, 4, diagnosis_key="2", confidence_key=None)
        page.wait_for_function(
            f"document.querySelector('[data-testid=progress]')?.innerText === '{number + 1} / 4'"
        )
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/accounts/logout/$"))

    page.goto(f"{live_server.url}/accounts/login/?next=/studies/{study.slug}/")
    page.fill("input[name=username]", "dr_zhao")
    page.fill("input[name=password]", "a-Long-pass-phrase-9")
    page.keyboard.press("Enter")
    page.wait_for_url(CASE_URL)
    assert page.get_by_test_id("progress").inner_text() == "3 / 4"
    enrolment = Enrolment.objects.get(reader__username="dr_zhao")
    assert Answer.objects.filter(enrolment=enrolment).count() == 2


def test_chinese_from_the_browser_and_switchable_to_english(browser, live_server):
    study = build_study(2)
    token = invitations_create(study=study, count=1)[0].token
    context = browser.new_context(locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/join/{token}/")
        assert page.get_by_role("button", name="注册并加入").is_visible()
        assert page.locator("html").get_attribute("lang") == "zh-hans"
        with page.expect_navigation():
            page.select_option("select[name=language]", "en")
        assert page.get_by_role("button", name="Register and join").is_visible()
    finally:
        context.close()


@pytest.mark.slow
def test_all_200_cases_with_the_keyboard_in_chinese(browser, live_server):
    """The reference study's size and settings (as `manage.py demo`): 200 cases, 8
    choices, confidence asked, keyboard only, Chinese UI, without one page reload, and
    without scrolling once on a laptop (1366x768) and then a tablet (768x1024)."""
    from cases.models import Diagnosis
    from tests.factories import CaseFactory, make_study

    codes = ["MN", "SK", "BCC", "EAD", "SD", "Pso", "VW", "Rosa"]
    study = make_study(
        slug="full",
        choices=codes,
        status="open",
        consent_text="同意",
        consent_version="1",
        show_feedback=True,
        ask_confidence=True,
    )
    diagnoses = {d.code: d for d in Diagnosis.objects.filter(code__in=codes)}
    for i in range(200):
        CaseFactory(
            study=study, source_id=f"f{i}", position=i + 1, diagnosis=diagnoses[codes[i % 8]]
        )
    token = invitations_create(study=study, count=1)[0].token
    # a laptop's window for the first 100 cases, a tablet's for the rest
    context = browser.new_context(locale="zh-CN", viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(15_000)
    scrolled = []
    try:
        register(page, live_server, token, "dr_chen")
        consent_and_profile(page)
        assert page.get_by_text("最可能的诊断").is_visible()
        script_ready(page)
        page.evaluate("window.stillTheSamePage = true")
        for number in range(1, 201):
            assert page.get_by_test_id("progress").inner_text() == f"{number} / 200"
            if number == 101:
                page.set_viewport_size({"width": 768, "height": 1024})
            if page.evaluate("document.scrollingElement.scrollHeight > innerHeight"):
                scrolled.append(number)
            page.keyboard.press(str(number % 8 + 1))
            page.keyboard.press(str(number % 5 + 1))  # the confidence
            if number == 200:
                with page.expect_navigation():
                    page.keyboard.press("Enter")
                break
            page.keyboard.press("Enter")
            # the next case, without a reload, once the server has confirmed the answer
            page.wait_for_function(
                "document.querySelector('[data-testid=progress]').innerText === "
                f"'{number + 1} / 200' && "
                "document.querySelector('#answer-form input[name=case]').value && "
                "!document.querySelector('#submit-answer[aria-busy=true]')"
            )
            if number == 199:
                assert page.evaluate("window.stillTheSamePage") is True
        assert not scrolled, f"the case page scrolled on cases {scrolled}"
        assert "200" in page.get_by_test_id("finished").inner_text()
        assert "您的结果" in page.get_by_test_id("feedback").inner_text()
    finally:
        context.close()
    enrolment = Enrolment.objects.get(reader__username="dr_chen")
    assert enrolment.answers.count() == 200 and enrolment.finished_at is not None
    confidences = sorted(enrolment.answers.values_list("confidence", flat=True))
    assert confidences == sorted(n % 5 + 1 for n in range(1, 201))
