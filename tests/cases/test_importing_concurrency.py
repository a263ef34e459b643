"""Two imports at once on PostgreSQL: the report, never an IntegrityError.

Both imports validate before either writes (a barrier holds them there), so each passes
validation; the study row lock and the checks repeated under it decide. SQLite runs one
writing transaction at a time, so the SQLite pass skips these with that reason.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

import cases.importing.storing as storing
from cases.importing import ImportRejected, ImportResult, cases_import
from cases.models import Case, CaseImage, Study
from tests.factories import good_rows, make_study, write_bundle

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.postgres_only,
    pytest.mark.usefixtures("reference_diagnoses"),
]


def import_twice_at_once(monkeypatch, calls: list[dict]) -> list:
    """Run ``cases_import(**call)`` for each call in its own thread, all validated before
    any of them writes. Returns each result or the exception it raised."""
    barrier = threading.Barrier(len(calls), timeout=30)
    real_validate = storing.validate_rows

    def validate_then_wait(*args, **kwargs):
        parsed = real_validate(*args, **kwargs)
        barrier.wait()
        return parsed

    monkeypatch.setattr(storing, "validate_rows", validate_then_wait)
    results: list = [None] * len(calls)

    def worker(index: int) -> None:
        try:
            results[index] = cases_import(**calls[index])
        except Exception as exc:  # collected and asserted on by the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def media_files(media_root) -> int:
    return sum(1 for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else 0


def test_same_cases_into_one_study_twice(tmp_path, media_root, monkeypatch):
    study = make_study()
    write_bundle(tmp_path / "b", good_rows(3))
    call = {"slug": "study", "source": tmp_path / "b"}

    results = import_twice_at_once(monkeypatch, [call, call])

    refused = [r for r in results if isinstance(r, ImportRejected)]
    assert len(refused) == 1, results
    assert len([r for r in results if isinstance(r, ImportResult)]) == 1, results
    assert "row 2, case 'c000': case_id already exists in this study (added while this " in (
        refused[0].report()
    )
    assert study.cases.count() == 3
    assert media_files(media_root) == 3 * CaseImage.objects.count() == 18


def test_different_cases_into_one_study_at_once_get_distinct_positions(
    tmp_path, media_root, monkeypatch
):
    study = make_study()
    rows = good_rows(6)
    write_bundle(tmp_path / "a", rows[:3])
    write_bundle(tmp_path / "b", rows[3:])

    results = import_twice_at_once(
        monkeypatch,
        [
            {"slug": "study", "source": tmp_path / "a"},
            {"slug": "study", "source": tmp_path / "b"},
        ],
    )

    assert all(isinstance(r, ImportResult) for r in results), results
    assert sorted(study.cases.values_list("position", flat=True)) == [1, 2, 3, 4, 5, 6]


def test_two_imports_creating_the_same_study(tmp_path, media_root, monkeypatch):
    write_bundle(tmp_path / "b", good_rows(2))
    call = {"slug": "fresh", "source": tmp_path / "b", "title": "Fresh", "choices": ["MN", "SK"]}

    results = import_twice_at_once(monkeypatch, [call, call])

    refused = [r for r in results if isinstance(r, ImportRejected)]
    assert len(refused) == 1, results
    assert (
        "study 'fresh' was created by another import while this one ran; run this import "
        "again to add its cases to that study"
    ) in refused[0].report()
    assert Study.objects.filter(slug="fresh").count() == 1
    assert Case.objects.count() == 2
    assert media_files(media_root) == 3 * CaseImage.objects.count() == 12
