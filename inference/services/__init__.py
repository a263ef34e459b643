"""Every write of the inference app, split by job:

- :mod:`.registration`: checking and storing a model (``model_register``); it imports
  torch only to read a checkpoint or fetch pretrained weights, so registering a
  randomly initialised model stays light;
- :mod:`.runs`: starting runs, the outbox that sends them, recovery after a worker's
  death and reconciliation; no torch;
- :mod:`.execution`: running a model over a study (torch, Grad-CAM, embeddings);
  imported only by the worker's task and the model commands, never from here.

This package re-exports the torch-free names, so the web tier, the admin and the
commands write ``from inference.services import inference_run_start``.
"""

from inference.services.errors import InferenceError
from inference.services.registration import model_register
from inference.services.runs import (
    DEFAULT_BATCH_SIZE,
    Reconciliation,
    inference_run_start,
    inference_runs_reconcile,
    inference_runs_recover,
    inference_runs_send_pending,
    stale_after,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "InferenceError",
    "Reconciliation",
    "inference_run_start",
    "inference_runs_reconcile",
    "inference_runs_recover",
    "inference_runs_send_pending",
    "model_register",
    "stale_after",
]
