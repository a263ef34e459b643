"""Reads of analysis reports, for the staff console (the study's dashboard and its
Report page)."""

from __future__ import annotations

from analysis.models import AnalysisReport
from cases.models import Study


def study_reports(*, study: Study, limit: int = 10) -> list[AnalysisReport]:
    """The newest report requests of ``study``, newest first."""
    return list(study.analysis_reports.order_by("-created_at", "-pk")[:limit])


def latest_done_report(
    *, study: Study, newest: list[AnalysisReport] | None = None
) -> AnalysisReport | None:
    """The newest report of ``study`` that finished; looked for first among ``newest``
    (``study_reports``, already read), then in the database."""
    done = next((r for r in newest or [] if r.status == AnalysisReport.Status.DONE), None)
    if done is not None:
        return done
    return (
        study.analysis_reports.filter(status=AnalysisReport.Status.DONE)
        .order_by("-created_at", "-pk")
        .first()
    )
