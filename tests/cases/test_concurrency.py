"""Concurrent submissions on PostgreSQL: one answer, no skipped case.

These run in `make test-postgres` (real row locks); SQLite serialises all writers, so
the SQLite pass skips them with that reason.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from cases.models import Answer, Case, Enrolment
from cases.services import AnswerRejected, answer_submit
from tests.factories import build_study, ready_enrolment

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.postgres_only,
    pytest.mark.usefixtures("reference_diagnoses"),
]


def _run_concurrently(n: int, work) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # collected and asserted on by the test
            results[i] = exc
        finally:
            connection.close()  # each thread has its own connection: release it

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_twenty_identical_submissions_give_exactly_one_answer(reader):
    study = build_study(3)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0]).public_id

    results = _run_concurrently(
        20, lambda i: answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="MN")
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.created for r in results) == 1
    assert Answer.objects.filter(enrolment=enrolment).count() == 1


def test_two_tabs_answering_different_cases_cannot_skip_one(reader):
    study = build_study(4)
    enrolment = ready_enrolment(study, reader)
    order = [Case.objects.get(pk=pk).public_id for pk in enrolment.case_order]

    # Tab A answers case 1 while tab B tries case 2 (only valid after case 1) at once,
    # many times over: case 2 may only be stored after case 1.
    results = _run_concurrently(
        10,
        lambda i: answer_submit(
            enrolment=enrolment, case_public_id=order[i % 2], diagnosis_code="SK"
        ),
    )

    stored = list(
        Answer.objects.filter(enrolment=enrolment)
        .order_by("answered_at")
        .values_list("case__public_id", flat=True)
    )
    assert stored[:1] == [order[0]] and set(stored) <= {order[0], order[1]}
    assert len(stored) == len(set(stored))
    for result in results:
        assert not isinstance(result, Exception) or (
            isinstance(result, AnswerRejected)
            and result.code in {"not_next_case", "case_not_served"}
        ), result
    enrolment = Enrolment.objects.get(pk=enrolment.pk)
    assert enrolment.finished_at is None


def test_readers_enrolling_at_once_in_a_crossover_keep_its_arms_balanced():
    """The study's row lock serialises the arm draws: twelve readers enrolling at once
    take the twelve places of the permuted blocks, six per arm."""
    from cases.models import Study
    from cases.services import crossover_arm, enrolment_create
    from tests.factories import UserFactory, supported_study

    study = supported_study(2, design=Study.Design.CROSSOVER)
    readers = [UserFactory(username=f"crossover-{i}") for i in range(12)]
    results = _run_concurrently(
        12, lambda i: enrolment_create(study=study, reader=readers[i], seed=i)
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    arms = list(
        Enrolment.objects.filter(study=study)
        .order_by("enrolled_at", "pk")
        .values_list("arm", flat=True)
    )
    assert sorted(arms) == [0] * 6 + [1] * 6
    assert sorted(arms) == sorted(
        crossover_arm(arm_seed=study.arm_seed, index=i) for i in range(12)
    )
