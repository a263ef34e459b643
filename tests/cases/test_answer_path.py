"""The reader's answer path beyond its statement counts: an answer stored first by a
writer that bypassed the service, and the study's choices kept by a process."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from cases import selectors
from cases.models import Answer, Case, Diagnosis, Study
from cases.services import AnswerRejected, answer_submit
from tests.factories import build_study, make_study, ready_enrolment

pytestmark = pytest.mark.django_db


@pytest.fixture
def raced(reader, monkeypatch):
    """An enrolment whose first case (served) was answered MN by a writer that bypassed
    ``answer_submit``, after the service had read the answered cases: its first read
    misses that answer, as it would have in that race."""
    study = build_study(3)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0])
    stored = Answer.objects.create(
        enrolment=enrolment, case=first, diagnosis=Diagnosis.objects.get(code="MN"), seconds=2
    )
    reads = []
    real = selectors.answered_reads

    def first_read_misses_it(*, enrolment):
        reads.append(1)
        return frozenset() if len(reads) == 1 else real(enrolment=enrolment)

    monkeypatch.setattr(selectors, "answered_reads", first_read_misses_it)
    return enrolment, first, stored, reads


def test_an_answer_stored_first_by_another_writer_stands(raced):
    enrolment, first, stored, reads = raced
    result = answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN")
    assert len(reads) == 2  # the insert failed on the constraint, the second try found it
    assert (result.created, result.answer.pk) == (False, stored.pk)
    assert Answer.objects.filter(enrolment=enrolment).count() == 1
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.ANSWER_SUBMIT).exists()


def test_another_answer_to_a_case_stored_first_is_refused(raced):
    enrolment, first, _, _ = raced
    with pytest.raises(AnswerRejected) as refused:
        answer_submit(
            enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="SK", revise=False
        )
    assert refused.value.code == "answered_elsewhere"
    assert Answer.objects.get(enrolment=enrolment).diagnosis.code == "MN"


def test_a_drafts_choices_are_read_each_time(django_assert_num_queries):
    study = make_study(slug="draft", choices=("MN", "SK"))
    assert study.status == Study.Status.DRAFT
    for _ in range(2):
        with django_assert_num_queries(1):
            assert [d.code for d in selectors.study_diagnoses(study=study)] == ["MN", "SK"]


def test_an_open_studys_choices_are_read_once_a_minute(django_assert_num_queries, monkeypatch):
    study = build_study(1)
    with django_assert_num_queries(1):
        selectors.answer_choices(study=study)
    with django_assert_num_queries(0):
        assert [c.code for c in selectors.answer_choices(study=study)] == ["MN", "SK", "BCC"]
    clock = selectors.time.monotonic() + selectors._CHOICES_SECONDS
    monkeypatch.setattr(selectors.time, "monotonic", lambda: clock)
    with django_assert_num_queries(1):
        selectors.answer_choices(study=study)
