"""The rules behind the admin's study-choice and case edits (cases.services,
cases.selectors) and the lockout it shows on a reader's account page, called directly."""

from __future__ import annotations

import datetime as dt

import pytest
from axes.models import AccessAttempt
from django.utils import timezone

from cases.models import Answer, AnswerChange, Diagnosis, Study, StudyChoice
from cases.selectors import (
    case_reference_fixed,
    lockout_state,
    studies_open_to_cases,
    study_choice_uses,
)
from cases.services import (
    case_diagnosis_refusal,
    study_choice_in_use_refusal,
    study_choice_refusal,
)
from tests.factories import CaseFactory, enrol, make_study

pytestmark = pytest.mark.django_db

FIXED = (
    "the choices of a study that is {} are fixed: its readers answer with these buttons, "
    "in this order."
)


def dx(code: str) -> Diagnosis:
    return Diagnosis.objects.get(code=code)


def choice(study: Study, code: str) -> StudyChoice:
    return study.study_choices.get(diagnosis__code=code)


# --- the choices of a study that is not a draft are fixed ---------------------------------


@pytest.mark.parametrize("status", [Study.Status.OPEN, Study.Status.CLOSED])
@pytest.mark.parametrize(
    "edit",
    [
        {"choice": None, "deleting": False, "changed": ["diagnosis", "position"]},  # add
        {"choice": "SK", "deleting": True, "changed": []},
        {"choice": "SK", "deleting": False, "changed": ["position"]},
    ],
    ids=["add", "delete", "reorder"],
)
def test_no_choice_of_a_study_past_its_draft_is_added_changed_or_removed(status, edit):
    study = make_study(choices=("MN", "SK"), status=status)
    original = choice(study, edit["choice"]) if edit["choice"] else None
    problem = study_choice_refusal(
        study=study, choice=original, deleting=edit["deleting"], changed=edit["changed"]
    )
    assert problem == FIXED.format(status)


def test_an_unchanged_choice_of_an_open_study_passes():
    study = make_study(choices=("MN", "SK"), status=Study.Status.OPEN)
    assert not study_choice_refusal(
        study=study, choice=choice(study, "SK"), deleting=False, changed=[]
    )


def test_the_stored_status_counts_not_the_one_being_submitted():
    study = make_study(choices=("MN", "SK"))
    study.status = Study.Status.OPEN  # submitted in the same form, not saved yet
    assert (
        study_choice_refusal(study=study, choice=None, deleting=False, changed=["diagnosis"]) == ""
    )
    opened = make_study(slug="opened", choices=("MN", "SK"), status=Study.Status.OPEN)
    opened.status = Study.Status.DRAFT
    assert study_choice_refusal(
        study=opened, choice=None, deleting=False, changed=["diagnosis"]
    ) == FIXED.format("open")


def test_a_new_study_may_get_any_choice():
    assert (
        study_choice_refusal(study=Study(), choice=None, deleting=False, changed=["diagnosis"])
        == ""
    )


# --- a used choice is kept -----------------------------------------------------------------


def test_a_used_choice_of_a_draft_is_not_removed_or_replaced_but_may_move():
    study = make_study(choices=("MN", "SK", "BCC"))
    CaseFactory(study=study, diagnosis=dx("SK"), with_images=False)
    used = choice(study, "SK")
    message = (
        "SK is used by 1 case(s) and 0 answer(s) of this study: it cannot be removed or replaced."
    )
    assert study_choice_refusal(study=study, choice=used, deleting=True, changed=[]) == message
    for field in ("diagnosis", "study"):
        assert study_choice_refusal(study=study, choice=used, deleting=False, changed=[field]) == (
            message
        )
    assert (
        study_choice_refusal(study=study, choice=used, deleting=False, changed=["position"]) == ""
    )
    unused = choice(study, "BCC")
    assert study_choice_refusal(study=study, choice=unused, deleting=True, changed=[]) == ""


def test_answers_that_gave_a_choice_before_a_change_count_once(reader, other_reader):
    study = make_study(choices=("MN", "SK", "BCC"))
    case = CaseFactory(study=study, diagnosis=dx("MN"), with_images=False)
    # reader: answered BCC, changed to SK, then back to BCC (two changes, one answer);
    # other_reader: answered SK. Another study's BCC answer does not count.
    answer = Answer.objects.create(
        enrolment=enrol(study=study, user=reader), case=case, diagnosis=dx("BCC"), seconds=2
    )
    AnswerChange.objects.create(answer=answer, previous_diagnosis=dx("BCC"), new_diagnosis=dx("SK"))
    AnswerChange.objects.create(answer=answer, previous_diagnosis=dx("SK"), new_diagnosis=dx("BCC"))
    Answer.objects.create(
        enrolment=enrol(study=study, user=other_reader), case=case, diagnosis=dx("SK"), seconds=2
    )
    other = make_study(slug="other", choices=("MN", "BCC"))
    Answer.objects.create(
        enrolment=enrol(study=other, user=reader),
        case=CaseFactory(study=other, diagnosis=dx("BCC"), with_images=False),
        diagnosis=dx("BCC"),
        seconds=2,
    )
    uses = {
        code: study_choice_uses(study_id=study.pk, diagnosis_id=dx(code).pk)
        for code in ("MN", "SK", "BCC")
    }
    assert uses == {"MN": (1, 0), "SK": (0, 2), "BCC": (0, 1)}
    assert study_choice_in_use_refusal(study_id=study.pk, diagnosis_id=dx("SK").pk) == (
        "SK is used by 0 case(s) and 2 answer(s) of this study: it cannot be removed or replaced."
    )
    assert study_choice_in_use_refusal(study_id=study.pk, diagnosis_id=dx("DF").pk) == ""


# --- the lockout a reader's account page shows -------------------------------------------------


def attempt(username: str, ip: str, failures: int, *, hours_ago: float = 0) -> None:
    row = AccessAttempt.objects.create(
        username=username, ip_address=ip, user_agent="test", failures_since_start=failures
    )
    # attempt_time is set on creation; move it back by hand.
    AccessAttempt.objects.filter(pk=row.pk).update(
        attempt_time=timezone.now() - dt.timedelta(hours=hours_ago)
    )


def test_no_failed_login_is_no_lockout():
    assert lockout_state(username="reader") == {"failures": 0, "addresses": 0, "locked": False}


def test_failures_add_up_over_addresses_and_one_address_at_the_limit_is_locked(settings):
    settings.AXES_FAILURE_LIMIT = 3
    attempt("reader", "10.0.0.1", 2)
    attempt("reader", "10.0.0.2", 2)
    attempt("someone-else", "10.0.0.1", 9)
    assert lockout_state(username="reader") == {"failures": 4, "addresses": 2, "locked": False}
    attempt("reader", "10.0.0.3", 3)
    assert lockout_state(username="reader") == {"failures": 7, "addresses": 3, "locked": True}


def test_a_lockout_older_than_the_cool_off_is_over(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = 1  # hour
    attempt("reader", "10.0.0.1", 5, hours_ago=2)
    assert lockout_state(username="reader") == {"failures": 5, "addresses": 1, "locked": False}


def test_a_case_diagnosis_must_be_one_of_the_study_choices():
    study = make_study(slug="rules-dx", choices=("MN", "SK"))
    assert case_diagnosis_refusal(study=study, diagnosis=dx("SK")) == ""
    assert case_diagnosis_refusal(study=study, diagnosis=dx("BCC")) == (
        "BCC is not one of the choices of 'Rules-Dx' (MN, SK)."
    )


def test_a_case_reference_is_fixed_once_the_study_opens_or_the_case_is_answered(reader):
    study = make_study(slug="rules-fixed")
    case = CaseFactory(study=study)
    assert not case_reference_fixed(case=case)
    assert list(studies_open_to_cases()) == [study]
    enrolment = enrol(study=study, user=reader)
    Answer.objects.create(enrolment=enrolment, case=case, diagnosis=dx("MN"), seconds=1)
    assert case_reference_fixed(case=case)
    other = CaseFactory(study=study)
    study.status = Study.Status.OPEN
    study.save()
    other.refresh_from_db()
    assert case_reference_fixed(case=other)
    assert list(studies_open_to_cases()) == []
