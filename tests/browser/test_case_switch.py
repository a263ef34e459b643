"""The case page in a real browser: the next case without a reload, keys that act only
where they should, a stale second tab, failed requests, and the page without JavaScript."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from cases.models import Answer, Case, Diagnosis, Enrolment, Study
from tests.factories import CaseFactory, build_study, make_study, ready_enrolment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "a-Long-pass-phrase-9"


def reader_on_case_page(browser, live_server, django_user_model, study, username, **context):
    user = django_user_model.objects.create_user(username, password=PASSWORD)
    ready_enrolment(study, user)
    ctx = browser.new_context(viewport={"width": 1366, "height": 768}, **context)
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    log_in(page, live_server, username, study)
    if context.get("java_script_enabled", True):
        script_ready(page)
    return ctx, page, Enrolment.objects.get(reader=user)


def log_in(page, live_server, username: str, study) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next=/studies/{study.slug}/case/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/case/" in page.url


def script_ready(page) -> None:
    """Until the page's script listens to the keys (it loads after the page)."""
    page.wait_for_selector("#case-root[data-ready]", state="attached")


def number_shown(page) -> str:
    return page.get_by_test_id("progress").inner_text()


def wait_confirmed(page) -> None:
    """Until the server has confirmed the last answer (the case id of the case shown)."""
    page.wait_for_function(
        "document.querySelector('#answer-form input[name=case]').value && "
        "!document.querySelector('#submit-answer[aria-busy=true]')"
    )


def image_path(page, test_id: str) -> str:
    src = page.get_by_test_id(test_id).get_attribute("src")
    return re.sub(r"^https?://[^/]+", "", src)


def case_images(case: Case) -> dict[str, str]:
    return {
        image.kind: reverse("cases:image", args=[image.public_id, "web"])
        for image in case.images.all()
    }


def test_the_next_case_appears_without_a_reload(browser, live_server, django_user_model):
    study = build_study(3, ask_confidence=True)
    ctx, page, enrolment = reader_on_case_page(
        browser, live_server, django_user_model, study, "dr_switch"
    )
    try:
        page.evaluate("window.stillTheSamePage = true")
        history_before = page.evaluate("history.length")
        for number in (1, 2):
            case = Case.objects.get(pk=enrolment.case_order[number - 1])
            assert number_shown(page) == f"{number} / 3"
            assert image_path(page, "dermoscopic") == case_images(case)["dermoscopic"]
            page.keyboard.press("2")
            page.keyboard.press("4")
            page.keyboard.press("Enter")
            page.wait_for_function(
                f"document.querySelector('[data-testid=progress]').innerText === '{number + 1} / 3'"
            )
            wait_confirmed(page)
            following = Case.objects.get(pk=enrolment.case_order[number])
            for kind, url in case_images(following).items():
                assert image_path(page, kind) == url
            assert page.locator("input[name=case]").input_value() == following.public_id
            assert page.locator("input:checked").count() == 0  # a fresh choice per case
            assert page.url.endswith(f"/case/#{number + 1}")
            assert page.title().startswith(f"Case {number + 1} of 3")
        assert page.evaluate("window.stillTheSamePage") is True
        assert page.evaluate("history.length") == history_before + 2
        stored = list(
            Answer.objects.filter(enrolment=enrolment)
            .order_by("answered_at")
            .values_list("case_id", "diagnosis__code", "confidence")
        )
        assert stored == [(pk, "SK", 4) for pk in enrolment.case_order[:2]]
        # the last answer goes on to the done page
        page.keyboard.press("1")
        page.keyboard.press("5")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/done/$"))
        assert Answer.objects.filter(enrolment=enrolment).count() == 3
    finally:
        ctx.close()


def test_keys_act_only_on_the_page_and_the_answer_controls(browser, live_server, django_user_model):
    codes = list(Diagnosis.objects.order_by("pk").values_list("code", flat=True))[:14]
    study = make_study(
        slug="many",
        choices=codes,
        status="open",
        consent_text="I agree.",
        consent_version="1",
        ask_confidence=True,
    )
    for i in range(2):
        CaseFactory(study=study, source_id=f"m{i}", position=i + 1)
    ctx, page, enrolment = reader_on_case_page(
        browser, live_server, django_user_model, study, "dr_keys"
    )
    try:
        checked = "document.querySelector('input[name=answer]:checked')?.value ?? null"
        # letters pick the 10th choice onwards: A is the 10th, E the 14th
        page.keyboard.press("c")
        assert page.evaluate(checked) == codes[11]
        page.keyboard.press("Backspace")  # back to the diagnosis after its change
        page.keyboard.press("E")
        assert page.evaluate(checked) == codes[13]
        page.keyboard.press("9")  # the confidence group is active: 9 is no confidence
        assert page.evaluate(checked) == codes[13]
        assert page.locator("input[name=confidence]:checked").count() == 0
        page.keyboard.press("Backspace")
        page.keyboard.press("9")
        assert page.evaluate(checked) == codes[8]
        # the chosen one is highlighted
        label = page.locator("label.choice", has=page.locator("input:checked"))
        assert label.evaluate("l => getComputedStyle(l).backgroundColor") != "rgb(255, 255, 255)"
        # on the language menu and on a link, digits do nothing to the answer
        page.focus("select[name=language]")
        page.keyboard.press("Backspace")
        page.keyboard.press("3")
        assert page.evaluate(checked) == codes[8]
        page.focus("header a.brand")
        page.keyboard.press("5")
        assert page.evaluate(checked) == codes[8]
        page.keyboard.press("Escape")
        page.locator("#case-root").focus()
        page.keyboard.press("4")  # now the confidence
        assert page.locator("input[name=confidence]:checked").input_value() == "4"
        # ? lists the keys, Escape closes the list
        page.keyboard.press("?")
        assert page.locator("#keys-help").is_visible()
        assert "A" in page.locator("#keys-help").inner_text()
        page.keyboard.press("Escape")
        assert page.locator("#keys-help").is_hidden()
        # Enter on Log out logs out: it does not submit the answer
        page.focus("header form[action$='/logout/'] button")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "/logout/" in page.url
        assert not Answer.objects.filter(enrolment=enrolment).exists()
    finally:
        ctx.close()


def test_a_stale_second_tab_says_what_happened(browser, live_server, django_user_model):
    study = build_study(4)
    ctx, tab_a, enrolment = reader_on_case_page(
        browser, live_server, django_user_model, study, "dr_tabs"
    )
    try:
        tab_b = ctx.new_page()
        tab_b.set_default_timeout(15_000)
        tab_b.goto(f"{live_server.url}/studies/{study.slug}/case/")
        script_ready(tab_b)
        first = Case.objects.get(pk=enrolment.case_order[0])
        # tab A answers case 1
        tab_a.keyboard.press("2")
        tab_a.keyboard.press("Enter")
        tab_a.wait_for_function(
            "document.querySelector('[data-testid=progress]').innerText === '2 / 4'"
        )
        wait_confirmed(tab_a)
        # tab B, still on case 1, gives another diagnosis: refused, and B says so
        tab_b.keyboard.press("3")
        tab_b.keyboard.press("Enter")
        wait_confirmed(tab_b)
        notice = tab_b.get_by_test_id("status").inner_text()
        assert "answered in another tab or on another device" in notice
        assert number_shown(tab_b) == "2 / 4"
        assert Answer.objects.get(enrolment=enrolment, case=first).diagnosis.code == "SK"
        # both on case 2 now; A answers, then B sends the same diagnosis: stored once
        tab_a.keyboard.press("1")
        tab_a.keyboard.press("Enter")
        tab_a.wait_for_function(
            "document.querySelector('[data-testid=progress]').innerText === '3 / 4'"
        )
        wait_confirmed(tab_a)
        tab_b.keyboard.press("1")
        tab_b.keyboard.press("Enter")
        tab_b.wait_for_function(
            "document.querySelector('[data-testid=progress]').innerText === '3 / 4'"
        )
        wait_confirmed(tab_b)
        assert "same diagnosis" in tab_b.get_by_test_id("status").inner_text()
        assert Answer.objects.filter(enrolment=enrolment).count() == 2
    finally:
        ctx.close()


def test_failed_requests_keep_the_choice_and_store_the_answer_once(
    browser, live_server, django_user_model
):
    study = build_study(3, ask_confidence=True)
    ctx, page, enrolment = reader_on_case_page(
        browser, live_server, django_user_model, study, "dr_offline"
    )
    answers = re.compile(r"/api/reader/studies/[^/]+/answers/$")
    try:
        page.keyboard.press("2")
        page.keyboard.press("3")
        # the network fails: the case and the choice stay, nothing is stored
        page.route(answers, lambda route: route.abort("internetdisconnected"))
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid=error]")
        assert "could not be reached" in page.get_by_test_id("error").inner_text()
        assert number_shown(page) == "1 / 3"
        assert page.locator("input[name=answer]:checked").input_value() == "SK"
        assert page.locator("input[name=confidence]:checked").input_value() == "3"
        assert not Answer.objects.filter(enrolment=enrolment).exists()
        page.unroute(answers)
        # the server is busy (503)
        page.route(
            answers,
            lambda route: route.fulfill(
                status=503, content_type="application/json", body='{"detail": "busy"}'
            ),
        )
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('[data-testid=error]')?.innerText.includes('503')"
        )
        assert number_shown(page) == "1 / 3"
        assert page.locator("input[name=answer]:checked").input_value() == "SK"
        page.unroute(answers)

        # the answer reaches the server but its reply is lost: the retry stores nothing
        # more and does not claim another tab answered it
        def lose_the_reply(route):
            route.fetch()
            route.abort("connectionreset")

        page.route(answers, lose_the_reply)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('[data-testid=error]')?.innerText.includes('reached')"
        )
        assert Answer.objects.filter(enrolment=enrolment).count() == 1
        page.unroute(answers)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('[data-testid=progress]').innerText === '2 / 3'"
        )
        wait_confirmed(page)
        assert page.get_by_test_id("status").inner_text().strip() == ""
        assert Answer.objects.filter(enrolment=enrolment).count() == 1

        # the study closes while the reader is on a case: said, with the way to results
        Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
        page.keyboard.press("1")
        page.keyboard.press("5")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid=error] a")
        assert "closed" in page.get_by_test_id("error").inner_text()
        assert page.locator("[data-testid=error] a").get_attribute("href").endswith("/done/")
        assert number_shown(page) == "2 / 3"
        assert page.locator("input[name=answer]:checked").input_value() == "MN"
        assert Answer.objects.filter(enrolment=enrolment).count() == 1
    finally:
        ctx.close()


def test_the_page_works_as_a_plain_form_without_javascript(browser, live_server, django_user_model):
    study = build_study(2, ask_confidence=True)
    ctx, page, enrolment = reader_on_case_page(
        browser, live_server, django_user_model, study, "dr_nojs", java_script_enabled=False
    )
    try:
        for number in (1, 2):
            assert number_shown(page) == f"{number} / 2"
            page.locator("label.choice", has_text="Seborrheic keratosis").click()
            page.locator(".confidence label.choice", has_text="2").click()
            with page.expect_navigation():
                page.locator("#submit-answer").click()
        assert page.url.endswith("/done/")
        assert Answer.objects.filter(enrolment=enrolment, diagnosis__code="SK").count() == 2
    finally:
        ctx.close()


def progress_is(page, text: str) -> None:
    page.wait_for_function(
        "text => document.querySelector('[data-testid=progress]').innerText === text", arg=text
    )


def test_a_press_made_while_an_answer_travels_never_answers_by_itself(
    browser, live_server, django_user_model
):
    """Enter on the case shown ahead waits for the server; after a failure it is dropped,
    so a later reply never submits a choice the reader did not confirm."""
    study = build_study(3)
    ctx, page, enrolment = reader_on_case_page(
        browser, live_server, django_user_model, study, "dr_queue"
    )
    answers = re.compile(r"/api/reader/studies/[^/]+/answers/$")
    held = []
    try:
        page.route(
            answers, lambda route: held.append(route)
        )  # the request waits until the test lets it go
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        progress_is(page, "2 / 3")  # the next case at once, while the answer travels
        page.wait_for_function("document.querySelector('#submit-answer[aria-busy=true]')")
        page.keyboard.press("3")
        page.keyboard.press("Enter")  # waits for the first answer's reply
        page.wait_for_timeout(100)
        assert len(held) == 1
        held.pop().abort("internetdisconnected")
        page.wait_for_selector("[data-testid=error]")
        progress_is(page, "1 / 3")  # the answered case is back, with its choice
        assert page.locator("input[name=answer]:checked").input_value() == "SK"
        # the retry travels; meanwhile the reader picks on the next case without Enter
        page.keyboard.press("Enter")
        progress_is(page, "2 / 3")
        page.wait_for_function("window.document.querySelector('#submit-answer[aria-busy=true]')")
        page.keyboard.press("1")
        page.wait_for_timeout(100)
        assert len(held) == 1
        held.pop().continue_()
        page.unroute(answers)
        wait_confirmed(page)
        page.wait_for_timeout(300)  # time for any queued submit to have gone out
        assert list(
            Answer.objects.filter(enrolment=enrolment).values_list("diagnosis__code", flat=True)
        ) == ["SK"]
        assert page.locator("input[name=answer]:checked").input_value() == "MN"  # kept
        # a double Enter stores one answer and moves one case on
        page.keyboard.press("Enter")
        page.keyboard.press("Enter")
        progress_is(page, "3 / 3")
        wait_confirmed(page)
        page.wait_for_timeout(300)
        assert Answer.objects.filter(enrolment=enrolment).count() == 2
        assert number_shown(page) == "3 / 3"
    finally:
        ctx.close()


def test_a_tab_behind_shows_the_case_the_server_serves_and_says_why(
    browser, live_server, django_user_model
):
    from cases.services import answer_submit, case_serve

    study = build_study(4)
    ctx, page, enrolment = reader_on_case_page(
        browser, live_server, django_user_model, study, "dr_behind"
    )
    try:
        order = [Case.objects.get(pk=pk) for pk in enrolment.case_order]
        # another device answers cases 1 and 2 meanwhile
        for case in order[:2]:
            enrolment.refresh_from_db()
            case_serve(enrolment=enrolment, case=case)
            answer_submit(enrolment=enrolment, case_public_id=case.public_id, diagnosis_code="SK")
        page.keyboard.press("2")  # the same diagnosis as stored: 200, nothing new
        page.keyboard.press("Enter")
        progress_is(page, "3 / 4")  # not the case 2 shown ahead: the server's next
        wait_confirmed(page)
        assert page.locator("input[name=case]").input_value() == order[2].public_id
        for kind, url in case_images(order[2]).items():
            assert image_path(page, kind) == url
        assert "same diagnosis" in page.get_by_test_id("status").inner_text()
        assert Answer.objects.filter(enrolment=enrolment).count() == 2
    finally:
        ctx.close()


def test_a_stale_tab_on_the_last_case_says_so_on_the_results_page(
    browser, live_server, django_user_model
):
    from cases.services import answer_submit, case_serve

    study = build_study(2, show_feedback=True)
    ctx, page, enrolment = reader_on_case_page(
        browser, live_server, django_user_model, study, "dr_last"
    )
    try:
        order = [Case.objects.get(pk=pk) for pk in enrolment.case_order]
        answer_submit(enrolment=enrolment, case_public_id=order[0].public_id, diagnosis_code="SK")
        page.reload()
        script_ready(page)
        assert number_shown(page) == "2 / 2"
        # another tab answers the last case; this one sends another diagnosis
        enrolment.refresh_from_db()
        case_serve(enrolment=enrolment, case=order[1])
        answer_submit(enrolment=enrolment, case_public_id=order[1].public_id, diagnosis_code="MN")
        page.keyboard.press("3")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/done/$"))
        notice = page.get_by_test_id("carried-notice")
        assert "answered in another tab or on another device" in notice.inner_text()
        assert Answer.objects.get(enrolment=enrolment, case=order[1]).diagnosis.code == "MN"
        page.reload()  # said once
        assert page.get_by_test_id("carried-notice").count() == 0
    finally:
        ctx.close()
