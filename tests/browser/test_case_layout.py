"""One case on one screen: at every laptop and tablet size both images, every choice,
the confidence buttons and Submit lie inside the viewport without scrolling; on a phone
the images stack and the answer sits in a bar fixed at the bottom. In English and in
Chinese, for 8 and 14 choices, with and without confidence and the clinical photo."""

from __future__ import annotations

import os
import re

import pytest

from cases.models import Diagnosis
from tests.factories import CaseFactory, make_study, ready_enrolment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "a-Long-pass-phrase-9"
SCREENS = [(1366, 768), (1440, 900), (1920, 1080), (768, 1024), (1024, 768)]
PHONE = (390, 844)
# READERSTUDY_SCREENSHOTS=<folder>: also save a screenshot at every size, to look at.
SCREENSHOTS = os.environ.get("READERSTUDY_SCREENSHOTS")
STUDIES = {
    "8 choices, confidence, clinical photo": {"choices": 8, "ask_confidence": True},
    "14 choices, confidence, clinical photo": {"choices": 14, "ask_confidence": True},
    "8 choices, no confidence, no clinical photo": {
        "choices": 8,
        "ask_confidence": False,
        "show_clinical_image": False,
    },
    "14 choices, no confidence, no clinical photo": {
        "choices": 14,
        "ask_confidence": False,
        "show_clinical_image": False,
    },
}

# Every box the reader needs, with the viewport: read in the page at once.
BOXES = """() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {x: r.left, y: r.top, right: r.right, bottom: r.bottom, w: r.width, h: r.height}; };
  const shown = (el) => !el.closest('[hidden]') && el.getClientRects().length > 0;
  const q = (s) => Array.from(document.querySelectorAll(s)).filter(shown);
  return {
    width: innerWidth, height: innerHeight,
    scrollHeight: document.scrollingElement.scrollHeight,
    figures: q('.images figure').map(box),
    images: q('.images img').map((img) => ({...box(img), fit: getComputedStyle(img).objectFit,
      natural: img.naturalWidth / img.naturalHeight})),
    choices: q('input[name=answer]').map((i) => box(i.closest('label'))),
    confidence: q('input[name=confidence]').map((i) => box(i.closest('label'))),
    submit: box(document.getElementById('submit-answer')),
    room: parseFloat(getComputedStyle(document.querySelector('main')).paddingBottom),
    panel: {...box(document.getElementById('answer-form')),
      position: getComputedStyle(document.getElementById('answer-form')).position},
  };
}"""


def _inside(box: dict, width: int, height: int) -> bool:
    return box["x"] >= 0 and box["y"] >= 0 and box["right"] <= width and box["bottom"] <= height


def build(name: str, options: dict):
    codes = list(Diagnosis.objects.order_by("pk").values_list("code", flat=True))
    assert len(codes) >= 14
    options = dict(options)
    choices = codes[: options.pop("choices")]
    slug = name.replace(",", "").replace(" ", "-")[:40]
    study = make_study(
        slug=slug,
        choices=choices,
        status="open",
        consent_text="I agree.",
        consent_version="1",
        **options,
    )
    for i in range(2):
        CaseFactory(study=study, source_id=f"{slug}{i}", position=i + 1)
    return study


def check_screen(page, study_name: str, language: str, options: dict) -> list[str]:
    """What is wrong at each size, as readable lines (empty: nothing)."""
    problems = []
    for width, height in [*SCREENS, PHONE]:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(50)  # the resize observer's frame sets the room for the bar
        b = page.evaluate(BOXES)
        where = f"{study_name}, {language}, {width}x{height}"
        if SCREENSHOTS:
            name = re.sub(r"[^a-z0-9]+", "-", f"{study_name} {language} {width}x{height}")
            page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"))
        n_figures = 2 if options.get("show_clinical_image", True) else 1
        if len(b["figures"]) != n_figures:
            problems.append(f"{where}: {len(b['figures'])} images shown, not {n_figures}")
        if len(b["choices"]) != options["choices"]:
            problems.append(f"{where}: {len(b['choices'])} choices shown")
        if len(b["confidence"]) != (5 if options["ask_confidence"] else 0):
            problems.append(f"{where}: {len(b['confidence'])} confidence buttons")
        controls = [*b["choices"], *b["confidence"], b["submit"]]
        outside = [c for c in controls if not _inside(c, width, height)]
        if outside:
            problems.append(f"{where}: {len(outside)} answer controls outside the viewport")
        for img in b["images"]:
            if img["fit"] != "contain":
                problems.append(f"{where}: an image is not fitted whole ({img['fit']})")
        if (width, height) == PHONE:
            if b["panel"]["position"] != "fixed" or abs(b["panel"]["bottom"] - height) > 1:
                problems.append(f"{where}: the answer bar is not fixed at the bottom")
            # the page leaves room below the images for the bar: none stays under it
            if b["room"] < b["panel"]["h"]:
                problems.append(f"{where}: the bar covers the images ({b['room']} px of room)")
            if n_figures == 2 and not (
                b["figures"][0]["x"] == b["figures"][1]["x"]
                and b["figures"][1]["y"] >= b["figures"][0]["bottom"]
            ):
                problems.append(f"{where}: the images do not stack")
            continue
        if b["scrollHeight"] > height:
            problems.append(f"{where}: the page scrolls ({b['scrollHeight']} > {height})")
        for fig in b["figures"]:
            if not _inside(fig, width, height):
                problems.append(f"{where}: an image lies outside the viewport: {fig}")
            # the images take the height that is left: at least 40% of the screen's
            if fig["h"] < 0.4 * height:
                problems.append(f"{where}: an image is only {fig['h']:.0f} px high")
        if n_figures == 2 and b["figures"][0]["y"] != b["figures"][1]["y"]:
            problems.append(f"{where}: the images are not side by side")
    return problems


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_one_case_fits_one_screen(browser, live_server, django_user_model, language):
    problems = []
    for index, (name, options) in enumerate(STUDIES.items()):
        study = build(name, options)
        username = f"dr_layout_{index}"
        user = django_user_model.objects.create_user(username, password=PASSWORD)
        ready_enrolment(study, user)
        context = browser.new_context(
            locale="zh-CN" if language == "zh-hans" else "en-US",
            viewport={"width": 1366, "height": 768},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{live_server.url}/accounts/login/?next=/studies/{study.slug}/case/")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", PASSWORD)
            with page.expect_navigation():
                page.keyboard.press("Enter")
            assert page.locator("html").get_attribute("lang") == language
            page.wait_for_function(
                "Array.from(document.querySelectorAll('.images figure:not([hidden]) img'))"
                ".every((img) => img.complete && img.naturalWidth > 0)"
            )
            problems += check_screen(page, name, language, options)
        finally:
            context.close()
    assert not problems, "\n".join(problems)
