"""axe-core on every page a reader sees, in English and in Chinese: no serious or
critical violation (issue 11, item 7).

One browser context per language walks the reader's whole flow once (invitation,
consent, profile, the cases, review, results, home, password, log out) and checks each
page as it goes, with the pages a reader meets by mistake (form errors, an invalid
invitation, the lockout, 404, 500, 503). Every page is checked before the test fails,
so one run lists all the violations."""

from __future__ import annotations

import os
import re

import pytest
from django.template import loader

from cases.models import Diagnosis
from cases.services import invitations_create
from inference.models import Prediction
from inference.services import model_register
from tests.browser.axe import blocking_violations, describe
from tests.factories import build_study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "a-Long-pass-phrase-9"
NEW_PASSWORD = "another-Long-pass-phrase-7"
N_CASES = 2
# READERSTUDY_SCREENSHOTS=<folder>: also save each checked page at a laptop's and a
# phone's size, to look at.
SCREENSHOTS = os.environ.get("READERSTUDY_SCREENSHOTS")


@pytest.fixture(params=["en", "zh-hans"])
def language(request) -> str:
    return request.param


def test_no_serious_or_critical_violation_on_any_reader_page(
    browser, live_server, language, settings
):
    settings.AXES_FAILURE_LIMIT = 2  # the second failed login shows the lockout page
    study = build_study(
        N_CASES,
        is_synthetic=True,
        ask_confidence=True,
        allow_answer_changes=True,
        show_feedback=True,
        show_model_feedback=True,
    )
    # The CNN has predicted one case of two: its table and the "still computing" note.
    model = model_register(name="cnn", arch="efficientnet_b4_aux", classes="MN,SK,BCC")
    first = study.cases.order_by("position").first()
    Prediction.objects.create(
        model=model, case=first, choice=Diagnosis.objects.get(code="MN"), probabilities={"MN": 1}
    )
    token = invitations_create(study=study, count=1)[0].token

    context = browser.new_context(
        locale="zh-CN" if language == "zh-hans" else "en-US",
        viewport={"width": 1280, "height": 900},
    )
    context.add_cookies(
        [{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": live_server.url}]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    found: dict[str, str] = {}

    def check(name: str, *, lang: str = language) -> None:
        assert page.locator("html").get_attribute("lang") == lang, name
        violations = blocking_violations(page)
        if violations:
            found[name] = describe(violations)
        if SCREENSHOTS:
            for width, height in ((1366, 768), (390, 844)):
                page.set_viewport_size({"width": width, "height": height})
                slug = re.sub(r"[^a-z0-9]+", "-", f"{name} {lang} {width}".lower())
                page.screenshot(path=os.path.join(SCREENSHOTS, f"a11y-{slug}.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})

    def visit(path: str, name: str, *, status: int = 200) -> None:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == status, (name, response.status)
        check(name)

    def submit(selector: str = "main form button[type=submit]") -> int:
        """Click the form's button; the status of the page it leads to."""
        with page.expect_navigation() as navigation:
            page.locator(selector).click()
        return navigation.value.status

    def has_errors() -> bool:
        return page.locator("main .errorlist").count() > 0

    try:
        visit("/", "home, logged out")
        visit("/accounts/login/", "login")
        for name, status in (("login with an error", 200), ("locked out", 429)):
            page.fill("input[name=username]", "nobody")
            page.fill("input[name=password]", "wrong-password")
            assert submit() == status, name
            assert has_errors() == (status == 200), name
            check(name)
        visit("/join/no-such-token/", "invitation, invalid", status=410)
        visit(f"/join/{token}/", "invitation, registration form")
        assert submit() == 400  # empty: the form is novalidate, so the server's errors show
        assert has_errors()
        check("invitation, registration form with errors")
        page.fill("input[name=username]", f"dr_axe_{language}")
        page.fill("input[name=email]", "dr_axe@example.org")
        page.fill("input[name=password1]", PASSWORD)
        page.fill("input[name=password2]", PASSWORD)
        submit()
        page.wait_for_url(re.compile(r"/consent/$"))
        check("consent")
        page.check("input[name=agree]")
        submit()
        page.wait_for_url(re.compile(r"/profile/$"))
        check("profile")
        # Past the browser's own checks of required fields, to the server's errors.
        page.locator("main form").evaluate("form => { form.noValidate = true; }")
        submit()
        assert has_errors()
        check("profile with errors")
        page.select_option("select[name=level]", "attending")
        page.fill("input[name=years_in_dermatology]", "7")
        submit()
        page.get_by_test_id("progress").wait_for()
        page.wait_for_selector("#case-root[data-ready]", state="attached")  # the script
        check("case")
        page.get_by_test_id("dermoscopic").click()
        page.locator("#zoom").wait_for(state="visible")
        check("case, zoom open")
        page.keyboard.press("Escape")
        page.locator("#zoom").wait_for(state="hidden")
        for number in range(1, N_CASES + 1):
            page.wait_for_function(
                "text => document.querySelector('[data-testid=progress]')?.innerText === text",
                arg=f"{number} / {N_CASES}",
            )
            page.keyboard.press("1")
            page.keyboard.press("3")
            page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/done/"))
        page.get_by_test_id("review").wait_for()
        check("review")
        with page.expect_navigation():
            page.get_by_test_id("review").locator("a").first.click()
        check("case, revising an answer")
        page.goto(f"{live_server.url}/studies/{study.slug}/done/")  # back to the review
        submit("#finish")
        page.get_by_test_id("model-feedback").wait_for()
        check("done, with the reader's and the CNN's results")
        visit("/", "home, with a study")
        visit("/accounts/password_change/", "change password")
        page.fill("input[name=old_password]", PASSWORD)
        page.fill("input[name=new_password1]", NEW_PASSWORD)
        page.fill("input[name=new_password2]", NEW_PASSWORD)
        submit()
        page.wait_for_url(re.compile(r"/password_change/done/$"))
        check("password changed")
        visit("/no-such-page/", "404", status=404)
        if language == "en":
            # Static, bilingual pages (lang="en" with a Chinese paragraph), rendered
            # without a request or a database: the same page in either language.
            for status in (500, 503):
                page.set_content(loader.render_to_string(f"{status}.html"))
                check(f"{status}", lang="en")
        page.goto(f"{live_server.url}/")
        submit("header form button[type=submit]")  # Log out
        page.wait_for_url(re.compile(r"/accounts/logout/$"))
        check("logged out")
    finally:
        context.close()

    assert not found, f"axe-core, serious or critical, in {language}:\n\n" + "\n\n".join(
        f"{name}:\n{text}" for name, text in found.items()
    )


def test_the_check_reports_a_serious_violation_with_its_selector(page):
    page.set_content(
        '<!doctype html><html lang="en"><head><title>t</title></head><body><main>'
        '<img src="data:," id="no-alt"><p style="color:#999;background:#fff">pale</p>'
        "</main></body></html>"
    )
    violations = blocking_violations(page)
    assert {v["id"] for v in violations} == {"image-alt", "color-contrast"}
    text = describe(violations)
    assert "image-alt (critical)" in text and "#no-alt" in text
