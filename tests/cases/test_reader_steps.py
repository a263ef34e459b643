"""The reader's flow as one state machine: the step, the answer form, the case screen
and the API's answer to a service's refusal."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from cases import selectors
from cases.forms import AnswerForm
from cases.models import Case, Enrolment, Study
from cases.selectors import Step, case_screen, reader_step
from cases.services import (
    AnswerRejected,
    answer_submit,
    consent_give,
    enrolment_create,
    enrolment_finish,
)
from readerstudy.api import exception_handler
from readerstudy.errors import ServiceError
from tests.factories import build_study, ready_enrolment

pytestmark = pytest.mark.django_db


def _first(enrolment) -> Case:
    return Case.objects.get(pk=enrolment.case_order[0])


def _answer_all(enrolment) -> None:
    from cases.services import case_serve

    for pk in enrolment.case_order:
        case = Case.objects.get(pk=pk)
        case_serve(enrolment=enrolment, case=case)
        answer_submit(enrolment=enrolment, case_public_id=case.public_id, diagnosis_code="MN")
        enrolment.refresh_from_db()


# --- the step ---------------------------------------------------------------------------


def _not_consented(study, reader):
    return enrolment_create(study=study, reader=reader)


def _no_profile(study, reader):
    enrolment = enrolment_create(study=study, reader=reader)
    return consent_give(enrolment=enrolment)


def _ready(study, reader):
    return ready_enrolment(study, reader)


def _closed(study, reader):
    enrolment = ready_enrolment(study, reader)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    return Enrolment.objects.get(pk=enrolment.pk)


def _all_answered(study, reader):
    enrolment = ready_enrolment(study, reader)
    _answer_all(enrolment)
    return Enrolment.objects.get(pk=enrolment.pk)


def _finished(study, reader):
    enrolment = _all_answered(study, reader)
    return enrolment_finish(enrolment=enrolment)


@pytest.mark.parametrize(
    "state, step",
    [
        (_not_consented, Step.CONSENT),
        (_no_profile, Step.PROFILE),
        (_ready, Step.CASE),
        (_closed, Step.CLOSED),
        (_all_answered, Step.REVIEW),
        (_finished, Step.DONE),
    ],
)
def test_the_reader_step_follows_the_readers_state(reader, state, step):
    study = build_study(2, allow_answer_changes=True, required_profile_fields=["level"])
    enrolment = state(study, reader)
    assert reader_step(enrolment=enrolment) is step
    assert reader_step(enrolment=enrolment) == step.value  # a plain string to templates/JSON


@pytest.mark.parametrize(
    "state, code",
    [
        (_not_consented, "consent_required"),
        (_no_profile, "profile_required"),
        (_closed, "study_closed"),
    ],
)
def test_answer_submit_refuses_at_the_steps_that_take_no_answer(client, reader, state, code):
    study = build_study(2, required_profile_fields=["level"])
    enrolment = state(study, reader)
    with pytest.raises(AnswerRejected) as rejected:
        answer_submit(
            enrolment=enrolment, case_public_id=_first(enrolment).public_id, diagnosis_code="MN"
        )
    assert (rejected.value.code, rejected.value.status) == (code, 409)
    # The API reports the step that the refusal comes from.
    client.force_login(reader)
    next_ = client.get(reverse("api-reader-next", args=[study.slug])).json()
    assert next_["step"] == reader_step(enrolment=enrolment) and next_["case"] is None


def test_the_case_page_opens_at_step_case_or_by_number_while_reviewing():
    assert selectors.may_open_case(step=Step.CASE)
    assert selectors.may_open_case(step=Step.REVIEW, number=2)
    assert not selectors.may_open_case(step=Step.REVIEW)
    for step in (Step.CONSENT, Step.PROFILE, Step.CLOSED, Step.DONE):
        assert not selectors.may_open_case(step=step, number=1), step


# --- the answer form --------------------------------------------------------------------


@pytest.fixture
def asking_study():
    return build_study(1, ask_confidence=True)


@pytest.mark.parametrize("confidence", ["9", "0", "-1", "three", "2.5", "3.0", "3.", "  "])
def test_the_answer_form_refuses_a_bad_confidence_on_its_field(asking_study, confidence):
    form = AnswerForm({"case": "x", "answer": "MN", "confidence": confidence}, study=asking_study)
    assert not form.is_valid()
    assert form.errors == {"confidence": ["Confidence must be between 1 and 5."]}
    assert form.first_error() == "Confidence must be between 1 and 5."


def test_the_answer_form_asks_for_a_confidence_where_the_study_does(asking_study):
    form = AnswerForm({"case": "x", "answer": "MN"}, study=asking_study)
    assert form.errors == {"confidence": ["Please give your confidence (1 to 5)."]}
    assert form.errors.as_data()["confidence"][0].code == "confidence_required"


def test_the_answer_form_refuses_a_choice_outside_the_study(asking_study):
    form = AnswerForm({"case": "x", "answer": "Pso", "confidence": "x"}, study=asking_study)
    assert form.errors["answer"] == ["Pso is not one of this study's choices."]
    # The choice is named first, as answer_submit checks it first.
    assert form.first_error() == "Pso is not one of this study's choices."


def test_the_answer_form_refuses_a_forged_field_as_a_whole(asking_study):
    form = AnswerForm(
        {"case": "x", "answer": "Pso", "confidence": "3", "reader": "7"}, study=asking_study
    )
    assert not form.is_valid()
    assert form.non_field_errors() == [
        "Unexpected field(s): reader. An answer is always recorded for the logged-in reader."
    ]
    assert form.first_error() == form.non_field_errors()[0]


def test_a_valid_answer_form_gives_the_values_for_answer_submit(asking_study):
    form = AnswerForm(
        {"csrfmiddlewaretoken": "t", "case": "abc", "answer": "SK", "confidence": "4"},
        study=asking_study,
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {"case": "abc", "answer": "SK", "confidence": 4, "condition": None}
    assert form.first_error() == ""


# --- the case screen --------------------------------------------------------------------


def test_the_page_and_the_api_show_the_same_case_screen(client, reader):
    study = build_study(3, show_clinical_image=False)
    enrolment = ready_enrolment(study, reader, serve=False)
    screen = case_screen(enrolment=enrolment)
    assert screen.step is Step.CASE and screen.case.pk == enrolment.case_order[0]
    assert (screen.number, screen.revising, screen.previous_answer) == (1, False, None)
    assert [c.code for c in screen.choices] == ["MN", "SK", "BCC"]
    assert [c.key for c in screen.choices] == ["1", "2", "3"]
    assert list(screen.images) == ["dermoscopic"] and len(screen.prefetch) == 1
    assert screen.progress == {
        "answered": 0,
        "total": 3,
        "finished": False,
        "session": 1,
        "sessions": 1,
    }
    # Reading the screen does not serve the case: its clock starts when a page shows it.
    assert Enrolment.objects.get(pk=enrolment.pk).served_at is None

    client.force_login(reader)
    page = client.get(reverse("cases:case", args=[study.slug]))
    assert page.context["case"] == screen.case and page.context["choices"] == screen.choices
    assert page.context["images"] == screen.images
    data = client.get(reverse("api-reader-next", args=[study.slug])).json()
    assert data["case"]["id"] == screen.case.public_id and data["case"]["number"] == 1
    assert data["choices"] == [
        {"code": c.code, "name": c.name, "key": c.key} for c in screen.choices
    ]
    assert data["case"]["images"] == {
        kind: f"http://testserver{url}" for kind, url in screen.images.items()
    }
    assert Enrolment.objects.get(pk=enrolment.pk).served_case_id == screen.case.pk


def test_the_case_screen_has_no_case_where_the_step_opens_none(reader):
    study = build_study(2)
    enrolment = _not_consented(study, reader)
    screen = case_screen(enrolment=enrolment)
    assert screen.step is Step.CONSENT
    assert (screen.case, screen.number, screen.images, screen.prefetch) == (None, None, {}, {})
    assert [c.code for c in screen.choices] == ["MN", "SK", "BCC"]


def test_the_case_screen_of_a_revised_case_shows_the_previous_answer(reader):
    study = build_study(2, allow_answer_changes=True, ask_confidence=True)
    enrolment = ready_enrolment(study, reader)
    answer_submit(
        enrolment=enrolment,
        case_public_id=_first(enrolment).public_id,
        diagnosis_code="SK",
        confidence=2,
    )
    screen = case_screen(enrolment=enrolment, number=1)
    assert screen.revising and screen.number == 1 and screen.case == _first(enrolment)
    assert screen.previous_answer == ("SK", 2)
    assert case_screen(enrolment=enrolment, number=2).case is None  # not answered yet


# --- a service's refusal in the API ------------------------------------------------------


class _Refusing(APIView):
    permission_classes = []
    authentication_classes = []

    def get(self, request):
        raise ServiceError("Not now.", code="not_now", status=423)


def test_the_api_answers_a_service_refusal_with_detail_code_and_its_status():
    response = _Refusing.as_view()(APIRequestFactory().get("/"))
    response.render()
    assert response.status_code == 423
    assert json.loads(response.content) == {"detail": "Not now.", "code": "not_now", "field": None}


def test_an_answer_refusal_is_a_service_error_with_a_409_by_default():
    rejected = AnswerRejected("Already.", code="already_answered")
    assert isinstance(rejected, ServiceError) and rejected.status == 409
    response = exception_handler(rejected, {})
    assert (response.status_code, response.data) == (
        409,
        {"detail": "Already.", "code": "already_answered", "field": None},
    )


def test_drfs_own_errors_get_the_same_shape_and_others_stay_a_500():
    from rest_framework.exceptions import NotFound

    response = exception_handler(NotFound(), {})
    assert response.status_code == 404
    assert response.data == {"detail": "Not found.", "code": "not_found", "field": None}
    assert exception_handler(ValueError("a bug"), {}) is None  # a 500, as before
