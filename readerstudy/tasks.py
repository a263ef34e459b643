"""The project-wide Celery task decorator.

Every task of the project is declared with :func:`study_task`, so they all share the
delivery rules that make a worker crash harmless:

- ``acks_late`` + ``reject_on_worker_lost``: a message is acknowledged only when the
  task returns, and is given back to the broker when the worker process dies (the
  broker decides when to redeliver it: Redis after its visibility timeout; the
  filesystem transport deletes a message when a worker takes it, so there the
  ``reconcile_inference`` command re-queues what a dead worker left);
- time limits, so a hung task ends (the soft one raises ``SoftTimeLimitExceeded`` inside
  the task, which marks its row failed);
- automatic retries with back-off for errors that pass (database or broker connection
  lost), never for errors in the data.

Tasks must therefore be idempotent: they load rows by primary key, return early when
the work is done, and never write a result twice (database constraints).

Sending is an outbox: a row that waits for a task (an inference run, an analysis
report) is written first, with ``sent_at`` empty; the message goes to the broker when
the transaction commits (:func:`send_on_commit`) and ``sent_at`` records that the broker
took it. When the broker is down the request still succeeds, the row stays queued
with a note, and the apps' periodic ``send pending`` tasks (Celery beat) and the worker's
start-up send it again, so the work goes through once the broker is back.
"""

from __future__ import annotations

import logging
from functools import partial

from celery import shared_task
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)

# Errors worth trying again: the database or a connection went away for a while.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)

study_task = partial(
    shared_task,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=3600,
    time_limit=3900,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
"""``@study_task`` or ``@study_task(soft_time_limit=..., time_limit=...)``: a shared
task with the project's delivery, time-limit and retry rules; keyword arguments
override them."""


# A request waits at most about a second and a half for a broker that is down.
SEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5,
                     "interval_max": 1.0}  # fmt: skip
BROKER_DOWN_PREFIX = "waiting for the task broker"
BROKER_DOWN_NOTE = BROKER_DOWN_PREFIX + " (unreachable at {time:%Y-%m-%d %H:%M:%S} UTC)"


def task_send(task, *, kwargs: dict) -> bool:
    """Hand ``task`` to the broker; False, with a warning in the log, when the broker
    cannot be reached (the caller keeps its row unsent, to be sent again)."""
    try:
        task.apply_async(kwargs=kwargs, retry=True, retry_policy=SEND_RETRY_POLICY)
    except (BrokerError, OSError) as exc:
        logger.warning("task %s not sent, the broker is unreachable: %s", task.name, exc)
        return False
    return True


def send_row_task(task, *, kwargs: dict, row_model, pk: int) -> str:
    """Send ``task`` for the row ``row_model(pk)`` unless it was sent already; returns
    ``"sent"``, ``"taken"`` (already sent, e.g. by a concurrent call) or ``"waiting"``
    (the broker is down: the row keeps an empty ``sent_at`` and a note in ``error``).

    The row is claimed first (``sent_at`` set where empty, one UPDATE), so two callers
    never send it twice; a failed send gives the claim back. Row models have ``status``
    ("queued" while waiting), ``sent_at``, ``error`` and ``created_at``.
    """
    claimed_at = timezone.now()
    rows = row_model.objects.filter(pk=pk)
    if not rows.filter(sent_at__isnull=True).update(sent_at=claimed_at):
        return "taken"
    if task_send(task, kwargs=kwargs):
        rows.filter(error__startswith=BROKER_DOWN_PREFIX).update(error="")
        return "sent"
    rows.filter(sent_at=claimed_at).update(sent_at=None)
    rows.filter(status="queued").update(error=BROKER_DOWN_NOTE.format(time=claimed_at))
    return "waiting"


def send_pending(task, *, row_model, kwarg: str) -> list:
    """Send ``task`` (with ``{kwarg: row.pk}``) for every queued row of ``row_model``
    whose task the broker never took, oldest first; returns the rows sent now. Stops at
    the first failure: the broker is still down and the next call tries again."""
    sent = []
    pending = row_model.objects.filter(status="queued", sent_at__isnull=True)
    for row in pending.order_by("created_at", "pk"):
        outcome = send_row_task(task, kwargs={kwarg: row.pk}, row_model=row_model, pk=row.pk)
        if outcome == "waiting":
            break
        if outcome == "sent":
            sent.append(row)
    return sent


def send_on_commit(task, *, kwargs: dict, row_model, pk: int) -> None:
    """Send the row's task once the current transaction commits (so the worker finds
    the row), through :func:`send_row_task`."""
    transaction.on_commit(lambda: send_row_task(task, kwargs=kwargs, row_model=row_model, pk=pk))


def task_named(name: str):
    """The registered task ``name`` (``"app.tasks.function"``), for a service that sends
    it: services name the task they enqueue, and only the tasks modules import the
    services, so there is no import circle. A worker imports every app's tasks module at
    its start; any other process (a web worker, a command) does so at its first send."""
    from readerstudy.celery import app

    if name not in app.tasks:
        app.loader.import_default_modules()  # runs autodiscover_tasks
    return app.tasks[name]
