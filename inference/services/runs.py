"""Inference runs without running them: start, send (the outbox), recover, reconcile.

No torch here: the web tier starts runs and the worker's start-up recovers them. A run's
task is sent by name (:func:`readerstudy.tasks.task_named`), so this module never
imports :mod:`inference.tasks`; the tasks module imports the services, one way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_log
from cases.models import Case, Study
from inference.models import InferenceRun, RegisteredModel
from inference.services.errors import InferenceError
from readerstudy.tasks import send_on_commit, send_pending, task_named

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
RUN_TASK = "inference.tasks.run_inference"


def stale_after() -> timedelta:
    """How long a running run may go without a heartbeat before it counts as dead."""
    return timedelta(seconds=settings.READERSTUDY_INFERENCE_STALE_SECONDS)


def study_choices_check(model: RegisteredModel, study: Study) -> list[str]:
    choices = study.choice_codes()
    missing = [c for c in choices if c not in model.classes]
    if not choices:
        raise InferenceError(f"study {study.slug!r} has no diagnosis choices")
    if missing:
        raise InferenceError(
            f"model {model.name!r} has no output for the study's choice(s) "
            f"{', '.join(missing)} (its classes: {', '.join(model.classes)})"
        )
    return choices


def run_is_fresh(run: InferenceRun, now) -> bool:
    last = run.heartbeat_at or run.created_at
    return last >= now - stale_after()


def _enqueue(run: InferenceRun, batch_size: int | None) -> None:
    """Send the run's task when the transaction commits (an outbox: see
    :mod:`readerstudy.tasks`); while the broker is down the run waits as queued."""
    kwargs = {"run_id": run.pk}
    if batch_size:
        kwargs["batch_size"] = batch_size
    if run.sent_at is not None:
        run.sent_at = None
        InferenceRun.objects.filter(pk=run.pk).update(sent_at=None)
    send_on_commit(task_named(RUN_TASK), kwargs=kwargs, row_model=InferenceRun, pk=run.pk)


def inference_runs_send_pending() -> list[InferenceRun]:
    """Send every queued run whose task the broker never took (it was down); returns
    the runs sent now. Called periodically by Celery beat and at each worker's start."""
    return send_pending(task_named(RUN_TASK), row_model=InferenceRun, kwarg="run_id")


def inference_runs_resend(*, study: Study) -> int:
    """Mark the queued runs of ``study`` as not yet sent, so that the next
    :func:`inference_runs_send_pending` (a worker's start) sends them again; returns how
    many. For a restart after the only worker stopped: a worker that took a run's
    message and was stopped before it marked the run running took the message with it
    (the filesystem transport deletes a message when a worker takes it). A message still
    waiting in the queue then runs the task twice, which is harmless: the task is
    idempotent (a done run is left alone, stored predictions are kept)."""
    return InferenceRun.objects.filter(
        study=study, status=InferenceRun.Status.QUEUED, sent_at__isnull=False
    ).update(sent_at=None)


def inference_runs_recover(*, worker: str) -> list[InferenceRun]:
    """Re-queue the runs that worker node ``worker`` was running when it died.

    Called when a worker starts: a node name runs one process at a time, so a run still
    marked running by the same name was cut off by a crash (SIGKILL, power loss) and
    resumes now, without waiting for the heartbeat to go stale.
    """
    with transaction.atomic():
        runs = list(
            InferenceRun.objects.select_for_update().filter(
                status=InferenceRun.Status.RUNNING, worker=worker
            )
        )
        for run in runs:
            run.status = InferenceRun.Status.QUEUED
            run.sent_at = None  # sent below, with whatever else waits
            run.error = f"re-queued at {timezone.now():%Y-%m-%d %H:%M:%S}: {worker} restarted"
            run.save(update_fields=["status", "sent_at", "error"])
            logger.warning("inference run %s was cut off on %s; re-queued", run.pk, worker)
    if runs:
        inference_runs_send_pending()
    return runs


def inference_run_start(
    *,
    model: RegisteredModel,
    study: Study,
    batch_size: int | None = None,
    enqueue: bool = True,
    actor=None,
    actor_name: str | None = None,
) -> InferenceRun:
    """Queue a run of ``model`` over ``study`` (the task is sent when the transaction
    commits). An active run of the same pair (queued or running, heard from within
    :func:`stale_after`) is returned instead of a second one; older ones that went
    silent are marked failed. ``enqueue=False`` only creates the row (for ``--sync``).
    Raises :class:`InferenceError` when the model lacks one of the study's choices.
    """
    study_choices_check(model, study)
    now = timezone.now()
    with transaction.atomic():
        RegisteredModel.objects.select_for_update().filter(pk=model.pk).first()
        active = InferenceRun.objects.filter(
            model=model,
            study=study,
            status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING],
        ).order_by("-created_at", "-pk")
        for run in active:
            if run_is_fresh(run, now):
                return run
        # Without a task (``--sync``) the caller runs it: nothing waits to be sent.
        run = InferenceRun.objects.create(
            model=model, study=study, total=study.cases.count(), sent_at=None if enqueue else now
        )
        audit_log(
            action=AuditEvent.Action.INFERENCE_RUN,
            actor=actor,
            actor_name=actor_name,
            study=study.slug,
            obj=run,
            after={"model": model.name, "trained": model.trained, "cases": run.total},
        )
        active.exclude(pk=run.pk).update(
            status=InferenceRun.Status.FAILED,
            error=f"no heartbeat for {stale_after()}; superseded by run {run.pk}",
            finished_at=now,
        )
        if enqueue:
            _enqueue(run, batch_size)
    return run


# --- reconciling -------------------------------------------------------------


@dataclass
class Reconciliation:
    """What :func:`inference_runs_reconcile` found (and re-queued unless ``dry_run``)."""

    stale_runs: list[InferenceRun] = field(default_factory=list)
    missing: list[tuple[RegisteredModel, Study, int]] = field(default_factory=list)
    started: list[InferenceRun] = field(default_factory=list)


def inference_runs_reconcile(
    *, dry_run: bool = False, start_missing: bool = False, older_than: timedelta | None = None
) -> Reconciliation:
    """Find runs a dead worker left behind and send them again.

    Stale: queued or running with no heartbeat (or, if queued, no start) for
    ``older_than`` (default :func:`stale_after`). Each is set back to queued and
    enqueued; the task resumes where the predictions stop. Also lists each
    (model, study) pair that has had a run and still has cases without a prediction;
    ``start_missing`` starts a run for those with no active run.
    """
    older_than = stale_after() if older_than is None else older_than
    report = Reconciliation()
    now = timezone.now()
    cutoff = now - older_than
    with transaction.atomic():
        candidates = InferenceRun.objects.select_for_update().filter(
            status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING]
        )
        for run in candidates.select_related("model", "study"):
            last = run.heartbeat_at or run.created_at
            if last > cutoff:
                continue
            report.stale_runs.append(run)
            if not dry_run:
                run.status = InferenceRun.Status.QUEUED
                run.heartbeat_at = now  # time of re-queueing: not stale again at once
                run.error = (
                    f"re-queued at {now:%Y-%m-%d %H:%M:%S} (no heartbeat since {last:%H:%M:%S})"
                )
                run.save(update_fields=["status", "heartbeat_at", "error"])
                _enqueue(run, None)
    pairs = InferenceRun.objects.values_list("model_id", "study_id").distinct()
    for model_id, study_id in sorted(set(pairs)):
        model = RegisteredModel.objects.get(pk=model_id)
        study = Study.objects.get(pk=study_id)
        n = Case.objects.filter(study=study).exclude(predictions__model=model).count()
        if not n:
            continue
        report.missing.append((model, study, n))
        if start_missing and not dry_run:
            busy = InferenceRun.objects.filter(
                model=model,
                study=study,
                status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING],
            ).exists()
            if not busy:
                try:
                    report.started.append(inference_run_start(model=model, study=study))
                except InferenceError as exc:
                    logger.warning("not starting %s on %s: %s", model.name, study.slug, exc)
    return report
