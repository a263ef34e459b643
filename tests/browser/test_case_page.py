"""The case page in a real browser: zoom and pan, the next case's prefetch, and the
images stacking on a narrow screen. (The prefetch links are also checked without a
browser, below.)"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from cases.models import Case
from tests.factories import build_study, ready_enrolment

PASSWORD = "a-Long-pass-phrase-9"


def next_case_images(enrolment, index: int) -> set[str]:
    """The web-size image URLs of the case at ``index + 1`` of the reader's order."""
    following = Case.objects.get(pk=enrolment.case_order[index + 1])
    return {
        reverse("cases:image", args=[image.public_id, "web"]) for image in following.images.all()
    }


@pytest.mark.django_db
def test_the_case_page_prefetches_the_next_cases_images(client, django_user_model):
    study = build_study(3)
    user = django_user_model.objects.create_user("dr_prefetch", password=PASSWORD)
    enrolment = ready_enrolment(study, user)
    client.force_login(user)
    for index in range(2):
        body = client.get(reverse("cases:case", args=[study.slug])).content.decode()
        prefetched = set(re.findall(r'<link rel="prefetch" as="image" href="([^"]+)">', body))
        assert prefetched == next_case_images(enrolment, index)
        current = re.search(r'name="case" value="([0-9a-f]+)"', body).group(1)
        assert current == Case.objects.get(pk=enrolment.case_order[index]).public_id
        client.post(reverse("cases:case", args=[study.slug]), {"case": current, "answer": "MN"})
    # the last case has nothing after it
    body = client.get(reverse("cases:case", args=[study.slug])).content.decode()
    assert 'rel="prefetch"' not in body


def log_in(page, live_server, username: str, next_url: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next={next_url}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/" not in url and re.search(r"/case/(#\d+)?$", url))
    page.wait_for_selector("#case-root[data-ready]", state="attached")  # the script's keys


def transform(page) -> tuple[float, float, float]:
    """(x, y, scale) of the zoomed image, from its inline style."""
    style = page.locator("#zoom img").evaluate("img => img.style.transform")
    match = re.fullmatch(r"translate\((-?[\d.e-]+)px, (-?[\d.e-]+)px\) scale\(([\d.e-]+)\)", style)
    assert match, style
    return tuple(float(v) for v in match.groups())


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_zoom_and_pan_and_the_prefetched_images(page, live_server, django_user_model):
    study = build_study(2)
    user = django_user_model.objects.create_user("dr_zoom", password=PASSWORD)
    enrolment = ready_enrolment(study, user)
    log_in(page, live_server, "dr_zoom", f"/studies/{study.slug}/case/")

    prefetched = page.locator("link[rel=prefetch][as=image]").evaluate_all(
        "links => links.map(l => l.getAttribute('href'))"
    )
    assert set(prefetched) == next_case_images(enrolment, 0)

    overlay = page.locator("#zoom")
    for test_id in ("clinical", "dermoscopic"):
        assert overlay.is_hidden()
        page.get_by_test_id(test_id).click()
        assert overlay.is_visible()
        src = page.get_by_test_id(test_id).get_attribute("src")
        assert page.locator("#zoom img").get_attribute("src").endswith(src)
        page.wait_for_function("document.querySelector('#zoom img').style.transform !== ''")
        _, _, fit = transform(page)
        page.mouse.move(640, 450)
        page.mouse.wheel(0, -300)
        page.wait_for_function(
            f"!document.querySelector('#zoom img').style.transform.endsWith('scale({fit})')"
        )
        page.wait_for_timeout(200)  # let every wheel event of the gesture land
        assert transform(page)[2] > fit
        # a double click (or double tap) goes back to the fit, and another zooms in
        page.mouse.dblclick(640, 450)
        assert transform(page)[2] == pytest.approx(fit)
        page.mouse.dblclick(640, 450)
        x1, y1, zoomed = transform(page)
        assert zoomed == pytest.approx(2.5 * fit)
        page.mouse.down()
        page.mouse.move(740, 500, steps=5)
        page.mouse.up()
        x2, y2, after_drag = transform(page)
        # the image follows the whole drag (a native image drag must not cancel it)
        assert (x2 - x1, y2 - y1) == pytest.approx((100, 50)) and after_drag == zoomed
        page.keyboard.press("1")  # keys do not answer while the overlay is open
        assert page.locator("input[name=answer]:checked").count() == 0
        page.keyboard.press("Escape")
        assert overlay.is_hidden()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_zoom_on_a_touch_screen(browser, live_server, django_user_model):
    """A tablet: tap to enlarge, pinch and double-tap to zoom, the level shown, a reset
    and a close button; the backdrop is dark."""
    study = build_study(1)
    user = django_user_model.objects.create_user("dr_touch", password=PASSWORD)
    ready_enrolment(study, user)
    context = browser.new_context(viewport={"width": 768, "height": 1024}, has_touch=True)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, live_server, "dr_touch", f"/studies/{study.slug}/case/")
        box = page.get_by_test_id("dermoscopic").bounding_box()
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        overlay = page.locator("#zoom")
        assert overlay.is_visible()
        page.wait_for_function("document.querySelector('#zoom img').style.transform !== ''")
        assert overlay.evaluate("o => getComputedStyle(o).backgroundColor") == "rgb(0, 0, 0)"
        level = page.get_by_test_id("zoom-level")
        assert level.inner_text() == "100%"
        cx, cy = 384, 512
        # a pinch: two fingers moving apart
        cdp = context.new_cdp_session(page)

        def touch(kind: str, spread: float) -> None:
            points = [] if kind == "touchEnd" else [
                {"x": cx - spread, "y": cy, "id": 0},
                {"x": cx + spread, "y": cy, "id": 1},
            ]  # fmt: skip
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", 40)
        for spread in range(50, 170, 10):
            touch("touchMove", spread)
        touch("touchEnd", 0)
        pinched = int(level.inner_text().rstrip("%"))
        assert pinched > 250, pinched
        page.get_by_role("button", name="Reset").click()
        assert level.inner_text() == "100%"
        # a double tap zooms in, another goes back to the fit
        for expected in ("250%", "100%"):
            page.touchscreen.tap(cx, cy)
            page.wait_for_timeout(30)
            page.touchscreen.tap(cx, cy)
            page.wait_for_function(
                f"document.querySelector('[data-testid=zoom-level]').innerText === '{expected}'"
            )
        page.get_by_role("button", name="Zoom in").click()
        assert level.inner_text() == "150%"
        page.locator(".zoom-close").click()
        assert overlay.is_hidden()
    finally:
        context.close()
