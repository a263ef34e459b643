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
    page.wait_for_url(lambda url: "/accounts/" not in url and url.endswith("/case/"))


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
def test_the_images_stack_on_a_narrow_screen(page, live_server, django_user_model):
    study = build_study(1)
    user = django_user_model.objects.create_user("dr_narrow", password=PASSWORD)
    ready_enrolment(study, user)
    log_in(page, live_server, "dr_narrow", f"/studies/{study.slug}/case/")
    # side by side on a wide screen, stacked at 600 pixels
    wide = [f.bounding_box() for f in page.locator(".images figure").all()]
    assert wide[0]["y"] == wide[1]["y"] and wide[1]["x"] > wide[0]["x"]
    page.set_viewport_size({"width": 600, "height": 900})
    page.reload()
    narrow = [f.bounding_box() for f in page.locator(".images figure").all()]
    assert len(narrow) == 2
    assert narrow[0]["x"] == narrow[1]["x"]
    assert narrow[1]["y"] >= narrow[0]["y"] + narrow[0]["height"]
