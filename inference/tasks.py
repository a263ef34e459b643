"""Celery tasks of the inference app (thin: load by primary key, call a service).

This module imports the torch-free run services; the execution module (torch) is
imported inside :func:`run_inference`, so only a worker that runs a model loads it.
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from inference.models import InferenceRun
from inference.services.runs import (
    DEFAULT_BATCH_SIZE,
    inference_runs_recover,
    inference_runs_send_pending,
)
from readerstudy.tasks import study_task

logger = logging.getLogger(__name__)

# A 200-case study with Grad-CAM takes minutes on a GPU and up to hours on a CPU.
INFERENCE_SOFT_LIMIT = 6 * 3600


@study_task(bind=True, soft_time_limit=INFERENCE_SOFT_LIMIT, time_limit=INFERENCE_SOFT_LIMIT + 300)
def run_inference(self, *, run_id: int, batch_size: int | None = None) -> str:
    """Run (or resume) an inference run; returns its status. A done or deleted run is
    left alone, so a redelivered or repeated message does no work twice."""
    run = InferenceRun.objects.filter(pk=run_id).only("status").first()
    if run is None or run.status == InferenceRun.Status.DONE:
        return run.status if run else "missing"
    from inference.services import execution

    return execution.inference_run_execute(
        run_id=run_id,
        batch_size=batch_size or DEFAULT_BATCH_SIZE,
        worker=self.request.hostname or "",
    ).status


@study_task(soft_time_limit=120, time_limit=180)
def send_pending_runs() -> int:
    """Send the queued runs whose task the broker never took; run by Celery beat."""
    return len(inference_runs_send_pending())


@worker_ready.connect
def resume_on_worker_start(sender=None, **kwargs) -> None:
    """At a worker's start: resume the runs this node was running when it died, and send
    what waited for the broker. Failures are logged; the worker starts anyway."""
    hostname = getattr(sender, "hostname", None)
    try:
        if hostname:
            inference_runs_recover(worker=hostname)
        inference_runs_send_pending()
    except Exception:
        logger.exception("could not resume inference runs at the start of %s", hostname)
