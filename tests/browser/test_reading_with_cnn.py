"""Reading with the CNN in a real browser (#14): a sequential study taken with the keyboard
alone (the unaided answer, then the CNN's support on the same page without a reload, the
final answer, the next case), the aided screen checked by axe and fitted at a laptop's,
a tablet's and a phone's size in English and in Chinese, and a crossover's first session
ending on the page that says when the second opens."""

# The Chinese pages' punctuation is full-width.
# ruff: noqa: RUF001

from __future__ import annotations

import datetime as dt
import io
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image

from cases.models import Answer, Case, Diagnosis, Enrolment, ReadingCondition, Study, StudyChoice
from cases.services import study_open
from tests.browser.axe import blocking_violations, describe
from tests.factories import build_study, ready_enrolment, supported_study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "a-Long-pass-phrase-9"
SCREENS = [(1366, 768), (1024, 768), (768, 1024)]
PHONE = (390, 844)
# READERSTUDY_SCREENSHOTS=<folder>: also save the screens at every size, to look at.
SCREENSHOTS = os.environ.get("READERSTUDY_SCREENSHOTS")
NAMES = {"MN": "Melanocytic nevus", "SK": "Seborrheic keratosis", "BCC": "Basal cell carcinoma"}


def heat_map_png(size: int = 96) -> bytes:
    """A Grad-CAM-like overlay: a warm spot fading to blue, as a PNG the browser shows."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    heat = np.exp(-((x - 0.55) ** 2 + (y - 0.45) ** 2) / 0.05)
    rgb = np.stack([heat, 0.6 * heat * (1 - heat) * 4, 1 - heat], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def aided_study(*, slug: str = "aided", n_cases: int = 3, worst_case: bool = False) -> Study:
    """``supported_study`` (sequential, its CNN's top 3 and Grad-CAM on the second read),
    synthetic, asking confidence; ``worst_case``: with all 14 diagnoses to choose from
    and the case's metadata beside the CNN's support (the most a screen has to hold)."""
    study = supported_study(
        n_cases, slug=slug, top_k=3, ask_confidence=True, is_synthetic=True, open_it=False
    )
    if worst_case:
        others = Diagnosis.objects.exclude(code__in=NAMES).order_by("pk")
        for position, diagnosis in enumerate(others, start=4):
            StudyChoice.objects.create(study=study, diagnosis=diagnosis, position=position)
        ReadingCondition.objects.filter(study=study, code="aided").update(shows_metadata=True)
        Case.objects.filter(study=study).update(age=47, sex="F", site="upper back")
    study_open(study=study, actor=None)
    study.refresh_from_db()
    # A heat map the browser can draw, in place of the factory's stand-in bytes.
    from inference.models import Prediction

    for prediction in Prediction.objects.filter(case__study=study):
        Path(prediction.gradcam.path).write_bytes(heat_map_png())
    return study


def reader_page(
    browser, live_server, django_user_model, study, username, *, language="en", arm=None,
    **context,
):  # fmt: skip
    """A reader's browser on their first case; ``arm``: a crossover reader's, set."""
    user = django_user_model.objects.create_user(username, password=PASSWORD)
    enrolment = ready_enrolment(study, user)
    if arm is not None:  # the case page serves the first read of that arm's plan
        Enrolment.objects.filter(pk=enrolment.pk).update(arm=arm)
    context = browser.new_context(
        locale="zh-CN" if language == "zh-hans" else "en-US",
        viewport={"width": 1366, "height": 768},
        **context,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/accounts/login/?next=/studies/{study.slug}/case/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("html").get_attribute("lang") == language
    page.wait_for_selector("#case-root[data-ready]", state="attached")
    return context, page, enrolment


def images_loaded(page) -> None:
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.images figure:not([hidden]) img:not([hidden])'))"
        ".every((img) => img.complete && img.naturalWidth > 0)"
    )


def image_paths(page) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries(Array.from(
          document.querySelectorAll('.images figure:not([hidden]) img[data-kind]'))
          .map((img) => [img.dataset.kind, new URL(img.src).pathname]))"""
    )


def test_a_sequential_study_with_the_keyboard_alone(browser, live_server, django_user_model):
    study = aided_study()
    context, page, enrolment = reader_page(
        browser, live_server, django_user_model, study, "dr_aided"
    )
    try:
        page.evaluate("window.stillTheSamePage = true")
        support = page.get_by_test_id("support")
        for number in (1, 2, 3):
            case = Case.objects.get(pk=enrolment.case_order[number - 1])
            codes = ["MN", "SK", "BCC"]
            k = codes.index(case.diagnosis.code)
            ranked = [codes[k], codes[(k + 1) % 3], codes[(k + 2) % 3]]
            # the unaided read: the images, and nothing of the CNN
            page.wait_for_function(
                "document.querySelector('[data-testid=read-step]').innerText"
                " === 'Step 1 of 2: Unaided'"
            )
            assert page.get_by_test_id("progress").inner_text() == f"{number} / 3"
            assert support.count() == 0 and page.get_by_test_id("earlier-answer").is_hidden()
            assert page.get_by_test_id("read-heading").inner_text() == (
                "First answer, without the CNN"
            )
            assert page.locator("input[name=condition]").input_value() == "unaided"
            images_loaded(page)
            unaided_images = image_paths(page)
            assert set(unaided_images) == {"clinical", "dermoscopic"}

            page.keyboard.press("2")  # Seborrheic keratosis
            page.keyboard.press("3")
            page.keyboard.press("Enter")
            # the CNN's support on the same page, for the same case
            support.wait_for()
            page.wait_for_function("document.querySelector('input[name=case]').value !== ''")
            assert page.evaluate("window.stillTheSamePage") is True
            assert page.get_by_test_id("progress").inner_text() == f"{number} / 3"
            assert page.get_by_test_id("read-step").inner_text() == "Step 2 of 2: With the CNN"
            assert page.get_by_test_id("read-heading").inner_text() == (
                "Final answer for the same case, with the CNN's support"
            )
            assert page.get_by_test_id("earlier-answer").inner_text() == (
                "Your answer without the CNN: Seborrheic keratosis"
            )
            assert page.locator("input[name=condition]").input_value() == "aided"
            assert page.locator("input[name=case]").input_value() == case.public_id
            assert page.locator("input:checked").count() == 0  # nothing chosen for the reader
            assert image_paths(page) == unaided_images
            assert page.get_by_test_id("support-predicted").inner_text() == (
                f"The CNN suggests: {NAMES[ranked[0]]}"
            )
            rows = page.get_by_test_id("support-top").locator("li").all_inner_texts()
            assert [" ".join(r.split()) for r in rows] == [
                f"{NAMES[ranked[0]]} 60%",
                f"{NAMES[ranked[1]]} 30%",
                f"{NAMES[ranked[2]]} 10%",
            ]
            # the Grad-CAM over the dermoscopic image, and back
            toggle = page.get_by_test_id("gradcam-toggle")
            toggle.click()
            assert toggle.get_attribute("aria-pressed") == "true"
            page.wait_for_function(
                "(() => { const cam = document.querySelector('img.gradcam');"
                " return !cam.hidden && cam.complete && cam.naturalWidth > 0; })()"
            )
            assert page.get_by_test_id("dermoscopic").is_hidden()
            toggle.click()
            assert page.get_by_test_id("dermoscopic").is_visible()
            # a click leaves the keys to the answer
            page.keyboard.press("1")  # Melanocytic nevus
            page.keyboard.press("5")
            if number < 3:
                page.keyboard.press("Enter")
                page.wait_for_function(
                    "document.querySelector('[data-testid=progress]').innerText"
                    f" === '{number + 1} / 3'"
                )
                page.wait_for_function("document.querySelector('input[name=case]').value !== ''")
                assert support.count() == 0
            else:
                with page.expect_navigation():
                    page.keyboard.press("Enter")
                page.wait_for_url(re.compile(r"/done/$"))
        stored = list(
            Answer.objects.filter(enrolment=enrolment)
            .order_by("answered_at", "pk")
            .values_list("case_id", "condition__code", "diagnosis__code", "confidence")
        )
        assert stored == [
            row
            for pk in enrolment.case_order
            for row in ((pk, "unaided", "SK", 3), (pk, "aided", "MN", 5))
        ]
    finally:
        context.close()


BOXES = """() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {x: r.left, y: r.top, right: r.right, bottom: r.bottom, h: r.height}; };
  const shown = (el) => !el.closest('[hidden]') && el.getClientRects().length > 0;
  const q = (s) => Array.from(document.querySelectorAll(s)).filter(shown).map(box);
  const panel = document.getElementById('answer-form');
  return {
    scrollHeight: document.scrollingElement.scrollHeight,
    scrollWidth: document.scrollingElement.scrollWidth,
    figures: q('.images figure'),
    controls: [...Array.from(document.querySelectorAll('input[name=answer], input[name=confidence]'))
      .map((i) => box(i.closest('label'))), box(document.getElementById('submit-answer'))],
    support: q('[data-testid=support]'),
    metadata: q('[data-testid=metadata]'),
    earlier: q('[data-testid=earlier-answer]'),
    room: parseFloat(getComputedStyle(document.querySelector('main')).paddingBottom),
    panel: {...box(panel), position: getComputedStyle(panel).position},
  };
}"""


def _inside(box: dict, width: int, height: int) -> bool:
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["right"] <= width + 0.5
        and (box["bottom"] <= height + 0.5)
    )


def fit_problems(page, where: str, *, aided: bool, n_figures: int = 2) -> list[str]:
    """What keeps the screen from fitting at each size (empty: nothing)."""
    problems = []
    for width, height in [*SCREENS, PHONE]:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(80)  # the resize observer's frame sets the room for the bar
        b = page.evaluate(BOXES)
        at = f"{where}, {width}x{height}"
        if SCREENSHOTS:
            name = re.sub(r"[^a-z0-9]+", "-", at.lower())
            page.screenshot(path=os.path.join(SCREENSHOTS, f"cnn-{name}.png"))
        if b["scrollWidth"] > width:
            problems.append(f"{at}: the page scrolls sideways ({b['scrollWidth']} > {width})")
        if len(b["figures"]) != n_figures:
            problems.append(f"{at}: {len(b['figures'])} images shown")
        if aided and not (b["support"] and b["metadata"] and b["earlier"]):
            problems.append(f"{at}: the support, the metadata or the earlier answer is missing")
        if (width, height) == PHONE:
            if b["panel"]["position"] != "fixed" or abs(b["panel"]["bottom"] - height) > 1:
                problems.append(f"{at}: the answer bar is not fixed at the bottom")
            if b["room"] < b["panel"]["h"]:
                problems.append(f"{at}: the bar covers the page ({b['room']} px of room)")
            outside = [c for c in b["controls"] if not _inside(c, width, height)]
            if outside:
                problems.append(f"{at}: {len(outside)} answer controls outside the bar")
            continue
        if b["scrollHeight"] > height:
            problems.append(f"{at}: the page scrolls ({b['scrollHeight']} > {height})")
        for name in ("controls", "support", "metadata", "earlier", "figures"):
            outside = [c for c in b[name] if not _inside(c, width, height)]
            if outside:
                problems.append(f"{at}: {len(outside)} of {name} outside the viewport")
        # Everything a screen can hold (14 choices, confidence, the metadata, the CNN's
        # support, the demo's badge) leaves the images a third of a portrait tablet's
        # height: each is still as wide as half the screen, so a 4:3 photo is no smaller.
        for figure in b["figures"]:
            if figure["h"] < height / 3 or (n_figures == 1 and figure["h"] < 0.4 * height):
                problems.append(f"{at}: an image is only {figure['h']:.0f} px high")
    return problems


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_aided_screen_passes_axe_and_fits_every_size(
    browser, live_server, django_user_model, language
):
    study = aided_study(slug=f"fit-{language}", n_cases=2, worst_case=True)
    context, page, _ = reader_page(
        browser, live_server, django_user_model, study, f"dr_fit_{language}", language=language
    )
    problems, found = [], {}
    try:
        images_loaded(page)
        if violations := blocking_violations(page):
            found["unaided"] = describe(violations)
        problems += fit_problems(page, f"unaided {language}", aided=False)
        page.set_viewport_size({"width": 1366, "height": 768})
        page.keyboard.press("4")
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        page.get_by_test_id("support").wait_for()
        images_loaded(page)
        if violations := blocking_violations(page):
            found["aided"] = describe(violations)
        problems += fit_problems(page, f"aided {language}", aided=True)
        page.set_viewport_size({"width": 1366, "height": 768})
        page.get_by_test_id("gradcam-toggle").click()
        images_loaded(page)
        if violations := blocking_violations(page):
            found["aided, Grad-CAM"] = describe(violations)
        if SCREENSHOTS:
            page.screenshot(path=os.path.join(SCREENSHOTS, f"cnn-gradcam-{language}-1366x768.png"))
        if language == "zh-hans":
            text = page.locator("main").inner_text()
            for expected in ("CNN 的建议", "您不看 CNN 时的答案", "第 2 步，共 2 步", "年龄"):
                if expected not in text:
                    problems.append(f"not in Chinese: {expected}")
    finally:
        context.close()
    assert not found, "\n".join(f"{name}:\n{text}" for name, text in found.items())
    assert not problems, "\n".join(problems)


def read_session_by_keyboard(page, *, n_cases: int, key: str) -> None:
    """Answer each of a session's ``n_cases`` reads with the choice ``key`` and Enter,
    the last one leading to the done page."""
    for number in range(1, n_cases + 1):
        page.wait_for_function(
            f"document.querySelector('[data-testid=progress]').innerText === '{number} / {n_cases}'"
        )
        page.wait_for_function("document.querySelector('input[name=case]').value !== ''")
        page.keyboard.press(key)
        if number < n_cases:
            page.keyboard.press("Enter")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/done/$"))


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_crossover_s_first_session_ends_on_the_page_that_says_when_the_next_opens(
    browser, live_server, django_user_model, language, monkeypatch
):
    """Session 1 in the clinical-only condition, the washout page in the reader's
    language and time zone, then (the clock moved past the washout: the live server
    runs in this process) session 2 in the default condition, to the end."""
    study = build_study(
        2, slug=f"cross-{language}", status=Study.Status.DRAFT, design=Study.Design.CROSSOVER,
        washout_days=14, is_synthetic=True,
    )  # fmt: skip
    # Its arm 1 reads the clinical photo with the case's metadata first (no dermoscopy).
    ReadingCondition.objects.create(
        study=study, code="clinical", position=2, label="Clinical photo only",
        label_zh="仅临床照片", shows_dermoscopic=False, shows_metadata=True,
    )  # fmt: skip
    Case.objects.filter(study=study).update(age=62, sex="M", site="cheek")
    study_open(study=study, actor=None)
    # A reader in Beijing (a Chinese one) or in UTC: the date is the browser's.
    zone = "Asia/Shanghai" if language == "zh-hans" else "UTC"
    context, page, enrolment = reader_page(
        browser, live_server, django_user_model, study, f"dr_cross_{language}",
        language=language, timezone_id=zone, arm=1,
    )  # fmt: skip
    try:
        assert page.get_by_test_id("read-step").inner_text() == (
            "Session 1 of 2: Clinical photo only"
            if language == "en"
            else "第 1 阶段，共 2 阶段：仅临床照片"
        )
        assert page.get_by_test_id("dermoscopic").get_attribute("src") is None
        assert page.locator(".images").get_attribute("class") == "images single"
        images_loaded(page)
        problems = fit_problems(page, f"clinical only {language}", aided=False, n_figures=1)
        assert not problems, "\n".join(problems)
        page.set_viewport_size({"width": 1366, "height": 768})
        read_session_by_keyboard(page, n_cases=2, key="1")
        washout = page.get_by_test_id("washout")
        heading = washout.locator("h1").inner_text()
        assert heading == (
            "You have finished session 1 of 2."
            if language == "en"
            else "您已完成第 1 阶段（共 2 阶段）。"
        )
        # the script wrote the date in the reader's language and time zone
        when = page.locator("time[data-local]").inner_text()
        assert "(UTC)" not in when and "（UTC）" not in when, when
        opens = Enrolment.objects.get(pk=enrolment.pk).answers.latest("answered_at").answered_at
        opens += dt.timedelta(days=14)
        if language == "zh-hans":
            local = opens.astimezone(ZoneInfo("Asia/Shanghai"))
            assert f"{local.year}年{local.month}月{local.day}日" in when and "GMT+8" in when, when
        else:
            assert f"{opens:%B} {opens.day}, {opens.year}" in when and "UTC" in when, when
        assert str(Enrolment.objects.get(pk=enrolment.pk).answers.count()) == "2"
        assert page.get_by_test_id("feedback").count() == 0
        if SCREENSHOTS:
            for width, height in [*SCREENS, PHONE]:
                page.set_viewport_size({"width": width, "height": height})
                page.screenshot(
                    path=os.path.join(SCREENSHOTS, f"cnn-washout-{language}-{width}x{height}.png")
                )
        if violations := blocking_violations(page):
            pytest.fail(describe(violations))
        # Past the washout: session 2 shows the dermoscopic image again, every case anew.
        from django.utils import timezone

        real_now = timezone.now
        monkeypatch.setattr(timezone, "now", lambda: real_now() + dt.timedelta(days=15))
        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(f"{live_server.url}/studies/{study.slug}/case/")
        page.wait_for_selector("#case-root[data-ready]", state="attached")
        assert page.get_by_test_id("read-step").inner_text() == (
            "Session 2 of 2: Unaided" if language == "en" else "第 2 阶段，共 2 阶段：独立阅片"
        )
        assert page.get_by_test_id("dermoscopic").get_attribute("src")
        read_session_by_keyboard(page, n_cases=2, key="2")
        assert page.get_by_test_id("finished").count() == 1
        answers = Answer.objects.filter(enrolment=enrolment).order_by("answered_at")
        assert [a.condition.code for a in answers] == ["clinical", "clinical", "unaided", "unaided"]
        assert Enrolment.objects.get(pk=enrolment.pk).finished_at is not None
    finally:
        context.close()
