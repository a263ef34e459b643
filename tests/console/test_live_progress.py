"""The small JSON that the inference runs' list polls for their progress, scoped to the
user's studies (the page itself: tests/browser/test_console_progress.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cases.services import study_admin_add
from inference.models import InferenceRun, RegisteredModel
from tests.factories import build_study, make_study

PASSWORD = "pw-admin-123"


def a_run(study, *, status="running", done=3, total=10) -> InferenceRun:
    model, _ = RegisteredModel.objects.get_or_create(
        name="cnn",
        defaults={
            "arch": "efficientnet_b4",
            "classes": ["MN", "SK", "BCC"],
            "preprocessing": {"input_size": 64},
            "weights_source": "random",
        },
    )
    return InferenceRun.objects.create(
        model=model, study=study, status=status, done=done, total=total
    )


@pytest.mark.django_db
def test_the_progress_json_answers_only_for_the_users_studies(client, study_admin):
    mine = build_study(1, slug="mine")
    study_admin_add(study=mine, user=study_admin)
    other = make_study(slug="other")
    run, hidden = a_run(mine), a_run(other, status="queued", done=0)
    client.force_login(study_admin)
    url = reverse("admin:inference_inferencerun_progress")
    data = client.get(f"{url}?ids={run.pk},{hidden.pk},x").json()
    assert data == {
        "runs": [
            {"id": run.pk, "status": "running", "processed": 3, "failed": 0, "total": 10,
             "active": True, "error": ""}
        ]
    }  # fmt: skip
    client.logout()
    assert client.get(f"{url}?ids={run.pk}").status_code == 302  # the admin's login


@pytest.mark.django_db
def test_a_report_records_each_step_and_the_json_follows_it(
    client, admin_user, enqueued_reports, django_capture_on_commit_callbacks, settings, tmp_path
):
    from analysis.services import report_compute, report_request
    from tests.analysis.factories import build_db_study

    settings.MEDIA_ROOT = tmp_path
    study = build_db_study(slug="live", n_readers=2, per_class=3, embeddings=False)
    with django_capture_on_commit_callbacks(execute=True):
        report = report_request(study=study, seed=0, n_bootstrap=20)
    client.force_login(admin_user)
    url = reverse("admin:analysis_analysisreport_progress")
    (row,) = client.get(f"{url}?ids={report.pk}").json()["runs"]
    assert row["status"] == "queued" and row["active"] and row["step"] == "waiting for a worker"
    report_compute(report_id=report.pk)
    report.refresh_from_db()
    assert report.status == "done"
    last = report.progress
    assert last["step"] == "report.html written" and last["done"] == last["total"] > 3
    (row,) = client.get(f"{url}?ids={report.pk}").json()["runs"]
    assert row["step"] == "done" and not row["active"]
    assert row["html"] == reverse("analysis:report_file", args=[report.pk, "report.html"])


def test_the_writer_tells_every_step(tmp_path):
    from analysis.report import write_report
    from analysis.report.writer import ReportMeta
    from analysis.stats import analyze_tables
    from tests.analysis.factories import CHOICES, synthetic_tables

    answers, predictions = synthetic_tables(n_readers=3, n_cases=12, n_models=1)
    tables = analyze_tables(answers, predictions, list(CHOICES), seed=0, n_bootstrap=10)
    told = []
    write_report(tables, tmp_path, ReportMeta(title="t"), on_step=lambda *a: told.append(a))
    assert [what for what, _, _ in told[:2]] == ["tables written", "workbook written"]
    assert told[-1][0] == "report.html written"
    assert [done for _, done, _ in told] == list(range(1, len(told) + 1))
    assert {total for _, _, total in told} == {len(told)}
    assert any(what.startswith("figure: ") for what, _, _ in told)
