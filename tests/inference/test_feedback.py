"""The CNN's results on a finished reader's feedback page, while its run goes on and
once it is complete (inference.selectors.model_feedback_rows)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cases.models import Case, Diagnosis
from cases.services import answer_submit, case_serve
from inference.models import Prediction
from inference.services import model_register
from tests.factories import build_study, ready_enrolment

pytestmark = pytest.mark.django_db

IN_PROGRESS = "Computed for {} of 3 cases so far; the rest are being computed."


@pytest.fixture
def finished(client, reader):
    study = build_study(3, show_feedback=True, show_model_feedback=True)
    enrolment = ready_enrolment(study, reader, serve=False)
    for pk in enrolment.case_order:
        case = Case.objects.get(pk=pk)
        case_serve(enrolment=enrolment, case=case)
        answer_submit(enrolment=enrolment, case_public_id=case.public_id, diagnosis_code="MN")
    client.force_login(reader)
    model = model_register(name="cnn", arch="efficientnet_b4_aux", classes="MN,SK,BCC")
    return study, model


def _predict(study, model, cases) -> None:
    mn = Diagnosis.objects.get(code="MN")
    for case in cases:
        Prediction.objects.create(model=model, case=case, choice=mn, probabilities={"MN": 1.0})


def test_the_feedback_page_says_the_cnn_results_are_still_being_computed(client, finished):
    study, model = finished
    _predict(study, model, study.cases.order_by("position")[:1])
    page = client.get(reverse("cases:done", args=[study.slug])).content.decode()
    assert 'data-testid="model-feedback"' in page
    assert IN_PROGRESS.format(1) in page


def test_the_note_goes_once_every_case_is_predicted(client, finished):
    study, model = finished
    _predict(study, model, study.cases.all())
    page = client.get(reverse("cases:done", args=[study.slug])).content.decode()
    assert 'data-testid="model-feedback"' in page
    assert "so far" not in page


def test_the_note_in_chinese(client, finished):
    study, model = finished
    _predict(study, model, study.cases.order_by("position")[:2])
    page = client.get(
        reverse("cases:done", args=[study.slug]), HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()
    assert "目前已完成 3 个病例中 2 个的预测" in page
