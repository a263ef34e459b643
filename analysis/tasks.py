"""Celery tasks of the analysis app (thin: load by primary key, call a service)."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=3600, time_limit=3900)
def report_compute_task(*, report_id: int) -> str:
    """Compute an analysis report; returns its status. A done report is left alone, so
    a redelivered message does no work twice."""
    from analysis.services import report_compute

    return report_compute(report_id=report_id).status
