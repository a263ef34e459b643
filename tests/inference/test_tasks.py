"""The inference task: thin, idempotent, with the project-wide delivery rules."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry
from django.db import OperationalError

from inference.models import Prediction
from inference.services import execution, inference_run_start, model_register
from inference.tasks import run_inference
from readerstudy.tasks import TRANSIENT_ERRORS
from tests.inference.factories import make_inference_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    study = make_inference_study(n=3)
    model = model_register(
        name="tiny", arch="efficientnet_b4_aux", classes="MN,SK,BCC", img_size=64
    )
    return inference_run_start(model=model, study=study, enqueue=False)


def test_the_task_runs_the_service_and_returns_the_status(run):
    assert run_inference.apply(kwargs={"run_id": run.pk, "batch_size": 2}).get() == "done"
    assert Prediction.objects.filter(run=run, status="ok").count() == 3


def test_a_done_run_is_left_alone(run, monkeypatch):
    run_inference.apply(kwargs={"run_id": run.pk}).get()

    def boom(**kwargs):
        raise AssertionError("the service must not run again")

    monkeypatch.setattr(execution, "inference_run_execute", boom)
    assert run_inference.apply(kwargs={"run_id": run.pk}).get() == "done"
    assert run_inference.apply(kwargs={"run_id": 10**9}).get() == "missing"


def test_a_transient_database_error_is_retried(run, monkeypatch):
    def flaky(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(execution, "inference_run_execute", flaky)
    result = run_inference.apply(kwargs={"run_id": run.pk})
    assert isinstance(result.result, Retry | OperationalError)
    assert result.state in ("RETRY", "FAILURE")


def test_the_task_uses_the_project_delivery_rules():
    assert run_inference.acks_late and run_inference.reject_on_worker_lost
    assert run_inference.soft_time_limit < run_inference.time_limit
    assert run_inference.autoretry_for == TRANSIENT_ERRORS
    assert run_inference.max_retries == 5
    assert run_inference.name == "inference.tasks.run_inference"
