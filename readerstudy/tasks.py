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
"""

from __future__ import annotations

from functools import partial

from celery import shared_task
from django.db import InterfaceError, OperationalError

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
