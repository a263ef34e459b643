"""Celery tasks of the analysis app (thin: load by primary key, call a service).

Imports go one way, tasks -> services: the services send ``report_compute_task`` by its
registered name (``readerstudy.tasks.task_named``).
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from analysis.services import report_compute, reports_send_pending
from readerstudy.tasks import study_task

logger = logging.getLogger(__name__)


@study_task
def report_compute_task(*, report_id: int) -> str:
    """Compute an analysis report; returns its status. A done report is left alone, so
    a redelivered message does no work twice."""
    return report_compute(report_id=report_id).status


@study_task(soft_time_limit=120, time_limit=180)
def send_pending_reports() -> int:
    """Send the queued reports whose task the broker never took; run by Celery beat."""
    return len(reports_send_pending())


@worker_ready.connect
def send_pending_on_worker_start(sender=None, **kwargs) -> None:
    """At a worker's start, send the reports that waited for the broker."""
    try:
        reports_send_pending()
    except Exception:
        logger.exception("could not send the pending analysis reports")
