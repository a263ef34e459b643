"""Writes of the analysis app: report files (from the database or from files, through
one service), and report requests (cached by a fingerprint of the data) computed by a
Celery task.

This module never imports :mod:`analysis.tasks` (which imports it): it sends the compute
task by its registered name (:func:`readerstudy.tasks.task_named`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from analysis.models import AnalysisReport
from readerstudy.storage import folder_upload, local_path
from readerstudy.tasks import send_on_commit, send_pending, task_named

if TYPE_CHECKING:
    from analysis.loaders import StudyData
    from analysis.report import ReportFiles

logger = logging.getLogger(__name__)

# Bump when the report's content changes for the same data, so cached reports are redone.
# 3: which readers count (finished by default), macro averages over the classes with a
# positive case, counts as integers, no kappa test where ASE0 is 0.
# 4: a study of several reading conditions: every table per condition and the
# conditions compared (analysis.stats.conditions).
REPORT_VERSION = 4
REPORT_COMPUTE_TASK = "analysis.tasks.report_compute_task"


def report_write(
    *,
    data: StudyData,
    out_dir: Path,
    seed: int = 0,
    n_bootstrap: int = 2000,
    adjust: str = "holm",
    subgroup: str | None = None,
    readers: str = "finished",
    progress: bool = False,
    on_step=None,
    power_effect: float | None = None,
) -> ReportFiles:
    """Analyse ``data`` (from :func:`analysis.loaders.study_data` or ``file_data``) and
    write its report into ``out_dir``: the one way from tables to files. ``readers`` is
    ``finished`` (only the readers who had finished count, as in the reference study)
    or ``all`` (:func:`analysis.stats.inputs.select_readers`). ``power_effect``: the
    stated difference of top-1 accuracy that the power table of a study of several
    reading conditions plans for (default
    :data:`analysis.stats.conditions.POWER_EFFECT`).

    Raises :class:`analysis.stats.InputError` when the data cannot be analysed (no
    answers and no predictions, labels outside the choices, ...).
    """
    # The statistics and the figures load here, in the process that computes a report:
    # the pages that request one (the staff console) stay light.
    from analysis.report import write_report
    from analysis.stats import analyze_tables

    tables = analyze_tables(
        data.answers,
        data.predictions,
        data.choices,
        seed=seed,
        n_bootstrap=n_bootstrap,
        adjust=adjust,
        subgroup=subgroup,
        readers=readers,
        progress=progress,
        power_effect=power_effect,
    )
    if on_step is not None:
        on_step("statistics computed", 0, 0)
    return write_report(tables, out_dir, data.meta, progress=progress, on_step=on_step)


def study_report_write(
    *,
    study,
    out_dir: Path,
    seed: int = 0,
    n_bootstrap: int = 2000,
    adjust: str = "holm",
    subgroup: str | None = None,
    readers: str = "finished",
    choices: list[str] | None = None,
    title: str | None = None,
    progress: bool = False,
    on_step=None,
) -> ReportFiles:
    """Analyse ``study`` from the database and write its report into ``out_dir``
    (:func:`report_write`); ``choices`` and ``title`` default to the study's."""
    from analysis.loaders import study_data

    return report_write(
        data=study_data(study, choices=choices, title=title),
        out_dir=out_dir,
        seed=seed,
        n_bootstrap=n_bootstrap,
        adjust=adjust,
        subgroup=subgroup,
        readers=readers,
        progress=progress,
        on_step=on_step,
    )


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _sha256(rows) -> str:
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


def report_fingerprint(
    *,
    study,
    seed: int,
    n_bootstrap: int,
    adjust: str = "holm",
    subgroup: str | None = None,
    readers: str = "finished",
) -> tuple[str, dict]:
    """(sha256 hex, the inputs it hashes): answers count and latest answer / change time;
    the profile attributes and the finishing time of every reader who answered (the
    columns of readers.csv, of subgroups, and which readers count); every prediction's
    status, answer, Grad-CAM file and whether it has an embedding, with the count and
    latest time; the cases' reference diagnoses, the choices, the models' training
    flags, the parameters (``readers`` among them) and :data:`REPORT_VERSION`."""
    from cases.selectors import answers_state
    from inference.selectors import predictions_state

    answers = answers_state(study=study)
    predictions = predictions_state(study=study)
    inputs = {
        "version": REPORT_VERSION,
        "answers": answers.n_answers,
        "answers_latest": _iso(answers.latest_answered_at),
        "answers_changed": _iso(answers.latest_changed_at),
        "readers": len(answers.readers),
        "readers_sha256": _sha256(answers.readers),
        "predictions": predictions.n_predictions,
        "predictions_latest": _iso(predictions.latest_created_at),
        "predictions_embeddings": predictions.n_embeddings,
        "predictions_sha256": _sha256(predictions.rows),
        "cases": len(answers.cases),
        "cases_sha256": _sha256(answers.cases),
        "choices": study.choice_codes(),
        "models": [[name, trained] for name, trained in predictions.models],
        "synthetic": study.is_synthetic,
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "adjust": adjust,
        "subgroup": subgroup or None,
        "readers_rule": readers,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return digest, inputs


def report_is_stale(*, report: AnalysisReport) -> bool:
    """Whether the study's data changed since ``report`` was computed: its fingerprint
    differs from the one its parameters give now."""
    fingerprint, _ = report_fingerprint(study=report.study, **report_parameters(report))
    return fingerprint != report.fingerprint


def report_parameters(report: AnalysisReport) -> dict:
    """seed, n_bootstrap, adjust, subgroup and readers of ``report`` (the last three are
    kept in its ``inputs``; reports made before they existed used Holm, no subgroup and
    every reader)."""
    return {
        "seed": report.seed,
        "n_bootstrap": report.n_bootstrap,
        "adjust": report.inputs.get("adjust") or "holm",
        "subgroup": report.inputs.get("subgroup") or None,
        "readers": report.inputs.get("readers_rule") or "all",
    }


def report_request(
    *,
    study,
    seed: int = 0,
    n_bootstrap: int = 2000,
    adjust: str = "holm",
    subgroup: str | None = None,
    readers: str = "finished",
    requested_by=None,
    force: bool = False,
) -> AnalysisReport:
    """The report of ``study`` for its current data and these parameters.

    Returns the newest done, queued or running report with the same fingerprint (so
    asking twice computes once); otherwise, or with ``force``, creates a queued report and
    enqueues :func:`analysis.tasks.report_compute_task` once the transaction commits.
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    if adjust not in ("holm", "bonferroni"):
        raise ValueError(f"adjust must be holm or bonferroni, got {adjust!r}")
    if readers not in ("finished", "all"):
        raise ValueError(f"readers must be finished or all, got {readers!r}")
    with transaction.atomic():
        fingerprint, inputs = report_fingerprint(
            study=study,
            seed=seed,
            n_bootstrap=n_bootstrap,
            adjust=adjust,
            subgroup=subgroup,
            readers=readers,
        )
        if not force:
            cached = (
                AnalysisReport.objects.filter(study=study, fingerprint=fingerprint)
                .exclude(status=AnalysisReport.Status.FAILED)
                .order_by("-created_at", "-pk")
                .first()
            )
            if cached is not None:
                return cached
        report = AnalysisReport.objects.create(
            study=study,
            fingerprint=fingerprint,
            inputs=inputs,
            seed=seed,
            n_bootstrap=n_bootstrap,
            requested_by=requested_by,
        )
        send_on_commit(
            task_named(REPORT_COMPUTE_TASK),
            kwargs={"report_id": report.pk},
            row_model=AnalysisReport,
            pk=report.pk,
        )
    return report


def reports_send_pending() -> list[AnalysisReport]:
    """Send every queued report whose task the broker never took (it was down); returns
    the reports sent now. Called periodically by Celery beat and at a worker's start."""
    return send_pending(
        task_named(REPORT_COMPUTE_TASK), row_model=AnalysisReport, kwarg="report_id"
    )


def _report_files_store(*, report: AnalysisReport, **options) -> list[str]:
    """Write the report's files into its folder of the default storage; returns their
    names. Into the media folder directly; for object storage, into a temporary folder
    first and then uploaded in one step (complete or absent, see
    :func:`readerstudy.storage.folder_upload`), before the report is marked done."""
    folder = local_path(report.folder)
    if folder is not None:
        return study_report_write(study=report.study, out_dir=folder, **options).names()
    with tempfile.TemporaryDirectory(prefix="readerstudy-report-") as tmp:
        files = study_report_write(study=report.study, out_dir=Path(tmp), **options)
        folder_upload(folder=report.folder, paths=files.paths())
    return files.names()


def report_compute(*, report_id: int) -> AnalysisReport:
    """Compute report ``report_id`` into its folder; a done report is returned as it is.

    The fingerprint is taken again before the data are read, so a report never claims
    older data than it contains. Any failure marks the report failed with the error
    (it is not retried: a new request makes a new report; only a database that goes
    away while the report is marked makes the task try again, by the project's rules).
    """
    report = AnalysisReport.objects.select_related("study").get(pk=report_id)
    if report.status == AnalysisReport.Status.DONE:
        return report
    report.status = AnalysisReport.Status.RUNNING
    report.started_at = timezone.now()
    report.error = ""
    report.progress = {"step": "computing the statistics", "done": 0, "total": 0}
    report.save(update_fields=["status", "started_at", "error", "progress"])

    def on_step(what: str, done: int, total: int) -> None:
        # what the console's Report page shows while it waits (live-progress.js)
        AnalysisReport.objects.filter(pk=report.pk).update(
            progress={"step": what, "done": done, "total": total}
        )

    try:
        parameters = report_parameters(report)
        fingerprint, inputs = report_fingerprint(study=report.study, **parameters)
        names = _report_files_store(report=report, on_step=on_step, **parameters)
    except Exception as exc:
        from analysis.stats import InputError

        if not isinstance(exc, InputError):
            logger.exception("report %s of study %s failed", report.pk, report.study.slug)
        report.status = AnalysisReport.Status.FAILED
        report.error = f"{type(exc).__name__}: {exc}"
        report.finished_at = timezone.now()
        report.save(update_fields=["status", "error", "finished_at"])
        return report
    report.fingerprint = fingerprint
    report.inputs = inputs
    report.files = names
    report.status = AnalysisReport.Status.DONE
    report.finished_at = timezone.now()
    report.save(update_fields=["fingerprint", "inputs", "files", "status", "finished_at"])
    return report
