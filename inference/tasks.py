"""Celery tasks of the inference app (thin: load by primary key, call a service)."""

from __future__ import annotations

from readerstudy.tasks import study_task

# A 200-case study with Grad-CAM takes minutes on a GPU and up to hours on a CPU.
INFERENCE_SOFT_LIMIT = 6 * 3600


@study_task(soft_time_limit=INFERENCE_SOFT_LIMIT, time_limit=INFERENCE_SOFT_LIMIT + 300)
def run_inference(*, run_id: int, batch_size: int | None = None) -> str:
    """Run (or resume) an inference run; returns its status. A done or deleted run is
    left alone, so a redelivered or repeated message does no work twice."""
    from inference.models import InferenceRun
    from inference.services import DEFAULT_BATCH_SIZE, inference_run_execute

    run = InferenceRun.objects.filter(pk=run_id).only("status").first()
    if run is None or run.status == InferenceRun.Status.DONE:
        return run.status if run else "missing"
    return inference_run_execute(run_id=run_id, batch_size=batch_size or DEFAULT_BATCH_SIZE).status
