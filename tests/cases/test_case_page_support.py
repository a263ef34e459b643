"""The reader's case page in each reading condition (#14): the CNN's support panel only
on a read whose condition shows it (in a sequential study: the case's second read, after
its unaided answer), the case's metadata only where shown, only the images a condition
shows, where the read lies in the reader's plan, and the page between a crossover's
sessions."""

# The Chinese pages' punctuation is full-width.
# ruff: noqa: RUF001

from __future__ import annotations

import datetime as dt
import json
import re
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from cases.models import Answer, Case, Enrolment, ReadingCondition, Study
from cases.services import study_open
from tests.factories import build_study, ready_enrolment, supported_study

pytestmark = pytest.mark.django_db


def page(client, study) -> str:
    response = client.get(reverse("cases:case", args=[study.slug]))
    assert response.status_code == 200, response
    return response.content.decode()


def markup(body: str) -> str:
    """The page without its scripts' data (the labels the script writes are there)."""
    return re.sub(r"<script.*?</script>", "", body, flags=re.S)


def shown(body: str, name: str) -> str | None:
    """The value of the page's hidden input ``name``."""
    found = re.search(rf'name="{name}" value="([^"]*)"', body)
    return found.group(1) if found else None


def answer(client, study, body: str, diagnosis: str):
    """The plain form's answer to the read on ``body``, as the page posts it."""
    response = client.post(
        reverse("cases:case", args=[study.slug]),
        {"case": shown(body, "case"), "condition": shown(body, "condition"), "answer": diagnosis},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return response


def support_panel(body: str) -> str:
    found = re.search(r'<section class="support".*?</section>', body, re.S)
    assert found, "no support panel"
    return found.group(0)


def text(html_text: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html_text)).split())


def test_the_cnn_s_support_appears_only_on_the_aided_read_of_a_sequential_study(client, reader):
    study = supported_study(3, top_k=2)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    first = Case.objects.get(pk=enrolment.case_order[0])
    expected = {
        "MN": "Melanocytic nevus",
        "SK": "Seborrheic keratosis",
        "BCC": "Basal cell carcinoma",
    }
    codes = ["MN", "SK", "BCC"]
    top = [first.diagnosis.code, codes[(codes.index(first.diagnosis.code) + 1) % 3]]
    last = codes[(codes.index(first.diagnosis.code) + 2) % 3]
    gradcam = reverse("cases:support_gradcam", args=[study.slug, first.public_id, "aided"])

    unaided = page(client, study)
    assert (shown(unaided, "case"), shown(unaided, "condition")) == (first.public_id, "unaided")
    assert 'data-testid="support"' not in unaided and "The CNN suggests" not in markup(unaided)
    assert not {"60%", "30%", "10%"} & set(text(markup(unaided)).split())
    assert "/gradcam" not in unaided and "support/" not in unaided
    assert json.loads(re.search(r'id="case-read"[^>]*>(.*?)</script>', unaided).group(1)) == {
        "condition": {"code": "unaided", "label": "Unaided", "session": 1, "shows_cnn": False},
        "support": None,
        "metadata": None,
        "earlier_answer": None,
    }
    assert "1 / 3" in unaided and "Step 1 of 2: Unaided" in unaided
    assert "First answer, without the CNN" in unaided
    assert "Your answer without the CNN" not in markup(unaided)

    answer(client, study, unaided, "SK")
    aided = page(client, study)
    assert (shown(aided, "case"), shown(aided, "condition")) == (first.public_id, "aided")
    panel = text(support_panel(aided))
    assert f"The CNN suggests: {expected[top[0]]}" in panel
    # its top 2, most probable first, with their percentages as text; not the third
    assert re.search(rf"{expected[top[0]]} 60% {expected[top[1]]} 30%", panel), panel
    assert expected[last] not in panel and "10%" not in panel
    assert "not a diagnosis" in panel
    assert f'src="{gradcam}"' in aided and 'data-testid="gradcam-toggle"' in aided
    assert "1 / 3" in aided and "Step 2 of 2: With the CNN" in aided
    assert "Final answer for the same case, with the CNN's support" in aided
    assert "Your answer without the CNN: Seborrheic keratosis" in aided
    # the earlier answer is shown, never chosen for the reader
    assert not re.search(r'<input type="radio" name="answer"[^>]*checked', aided)
    # the same images as the unaided read
    images = set(re.findall(r'src="(/images/[^"]+)"', unaided))
    assert set(re.findall(r'src="(/images/[^"]+)"', aided)) == images and len(images) == 2

    answer(client, study, aided, top[0])
    following = page(client, study)
    second = Case.objects.get(pk=enrolment.case_order[1])
    assert (shown(following, "case"), shown(following, "condition")) == (
        second.public_id,
        "unaided",
    )
    assert 'data-testid="support"' not in following and "2 / 3" in following
    assert list(
        Answer.objects.filter(enrolment=enrolment)
        .order_by("answered_at")
        .values_list("case_id", "condition__code", "diagnosis__code")
    ) == [(first.pk, "unaided", "SK"), (first.pk, "aided", top[0])]


def test_the_aided_read_in_chinese(client, reader):
    study = supported_study(2, top_k=3, gradcam=False)
    ready_enrolment(study, reader)
    client.force_login(reader)
    client.cookies["django_language"] = "zh-hans"
    answer(client, study, page(client, study), "MN")
    aided = page(client, study)
    assert '<html lang="zh-hans">' in aided
    panel = text(support_panel(aided))
    assert "CNN 的建议：色素痣" in panel and "60%" in panel and "30%" in panel and "10%" in panel
    assert "您不看 CNN 时的答案：色素痣" in aided
    assert "有CNN辅助" in aided  # the condition's Chinese label
    assert 'data-testid="gradcam-toggle"' not in aided and "/gradcam" not in aided


def test_a_probability_under_half_a_percent_reads_as_under_one_percent(client, reader):
    from inference.models import ConditionSupport, InferenceRun, Prediction, RegisteredModel

    study = supported_study(1, top_k=3, gradcam=False, open_it=False)
    model = RegisteredModel.objects.create(
        name="sure-cnn", arch="efficientnet_b4_aux", classes=["MN", "SK", "BCC"],
        preprocessing={"input_size": 64}, weights_source="random",
    )  # fmt: skip
    run = InferenceRun.objects.create(model=model, study=study, status="done", total=1)
    probabilities = {"MN": 0.896, "SK": 0.1, "BCC": 0.004}
    Prediction.objects.create(
        model=model, case=study.cases.get(), run=run, choice=study.cases.get().diagnosis,
        probabilities=probabilities, choice_probabilities=probabilities,
    )  # fmt: skip
    ConditionSupport.objects.filter(condition__study=study).update(model=model)
    study_open(study=study, actor=None)
    ready_enrolment(study, reader)
    client.force_login(reader)
    answer(client, study, page(client, study), "MN")
    body = page(client, study)
    panel = text(support_panel(body))
    assert "Melanocytic nevus 90% Seborrheic keratosis 10% Basal cell carcinoma <1%" in panel
    assert re.findall(r'<span style="width: (\d+)%">', body) == ["90", "10", "0"]


def test_the_case_s_metadata_shows_only_where_its_condition_shows_it(client, reader):
    study = supported_study(2, open_it=False)
    ReadingCondition.objects.filter(study=study, code="aided").update(shows_metadata=True)
    Case.objects.filter(study=study).update(age=54, sex="F", site="back")
    study_open(study=study, actor=None)
    ready_enrolment(study, reader)
    client.force_login(reader)
    unaided = page(client, study)
    # the age nowhere as a number of its own (an opaque image id may hold the digits)
    assert 'data-testid="metadata"' not in unaided and not re.search(r"\b54\b", text(unaided))
    answer(client, study, unaided, "MN")
    aided = page(client, study)
    meta = re.search(r'<dl class="case-meta".*?</dl>', aided, re.S)
    assert meta and text(meta.group(0)) == "Age 54 years Sex Female Site back"


def clinical_only_crossover() -> Study:
    """A crossover of the default condition (both images) and ``clinical`` (the
    clinical photo only), with a washout of 7 days."""
    study = build_study(2, status=Study.Status.DRAFT, design=Study.Design.CROSSOVER, washout_days=7)
    ReadingCondition.objects.create(
        study=study,
        code="clinical",
        position=2,
        label="Clinical photo only",
        label_zh="仅临床照片",
        shows_dermoscopic=False,
    )
    study_open(study=study, actor=None)
    return study


def test_a_clinical_only_condition_shows_no_dermoscopic_image(client, reader):
    study = clinical_only_crossover()
    enrolment = ready_enrolment(study, reader)
    Enrolment.objects.filter(pk=enrolment.pk).update(arm=1)  # its session 1: clinical only
    client.force_login(reader)
    body = page(client, study)
    assert shown(body, "condition") == "clinical"
    case = Case.objects.get(public_id=shown(body, "case"))
    dermoscopic = reverse(
        "cases:image", args=[case.images.get(kind="dermoscopic").public_id, "web"]
    )
    clinical = reverse("cases:image", args=[case.images.get(kind="clinical").public_id, "web"])
    assert f'src="{clinical}"' in body and dermoscopic not in body
    figure = re.search(r'<figure class="dermoscopic"[^>]*>.*?</figure>', body, re.S).group(0)
    assert figure.startswith('<figure class="dermoscopic" id="dermoscopic-figure" hidden>')
    assert "src=" not in figure  # no dermoscopic <img> to load
    assert 'class="images single"' in body  # one image: no hole beside it
    assert "Session 1 of 2: Clinical photo only" in body and "1 / 2" in body


def test_between_sessions_the_reader_is_told_when_the_next_opens_and_nothing_else(client, reader):
    study = clinical_only_crossover()
    Study.objects.filter(pk=study.pk).update(show_feedback=True)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    for _ in range(2):
        answer(client, study, page(client, study), "MN")
    last = Answer.objects.filter(enrolment=enrolment).latest("answered_at").answered_at
    opens = last + dt.timedelta(days=7)

    response = client.get(reverse("cases:case", args=[study.slug]))
    assert response.status_code == 302 and response["Location"].endswith("/done/")
    body = client.get(reverse("cases:done", args=[study.slug])).content.decode()
    assert "You have finished session 1 of 2." in body
    assert "Session 2 opens on" in body and "you can close this page and come back then" in body
    iso = re.search(r'<time datetime="([^"]+)" data-local>', body).group(1)
    assert dt.datetime.fromisoformat(iso) == opens.replace(microsecond=0) or (
        abs(dt.datetime.fromisoformat(iso) - opens) < dt.timedelta(seconds=1)
    )
    assert "(UTC)" in body and str(timezone.localtime(opens).year) in body
    assert "You have given 2 of 4 answers." in body
    assert 'data-testid="feedback"' not in body and "Accuracy" not in body

    client.cookies["django_language"] = "zh-hans"
    body = client.get(reverse("cases:done", args=[study.slug])).content.decode()
    assert "您已完成第 1 阶段（共 2 阶段）。" in body and "第 2 阶段将于" in body
