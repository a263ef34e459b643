"""Celery tasks of the analysis app (thin: load by primary key, call a service)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from readerstudy.tasks import study_task

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=3600, time_limit=3900)
def report_compute_task(*, report_id: int) -> str:
    """Compute an analysis report; returns its status. A done report is left alone, so
    a redelivered message does no work twice."""
    from analysis.services import report_compute

    return report_compute(report_id=report_id).status


@study_task(soft_time_limit=120, time_limit=180)
def send_pending_reports() -> int:
    """Send the queued reports whose task the broker never took; run by Celery beat."""
    from analysis.services import reports_send_pending

    return len(reports_send_pending())


@worker_ready.connect
def send_pending_on_worker_start(sender=None, **kwargs) -> None:
    """At a worker's start, send the reports that waited for the broker."""
    from analysis.services import reports_send_pending

    try:
        reports_send_pending()
    except Exception:
        logger.exception("could not send the pending analysis reports")
