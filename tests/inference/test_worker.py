"""Inference through a real Celery worker process: the filesystem transport, Redis, and a
worker killed with SIGKILL half-way.

The worker runs as a subprocess (tests.processes.Worker) on the same database and the
same DATA_DIR (broker folders and media).

After a SIGKILL the run resumes when the same worker node starts again (it re-queues
what it was running) or through `reconcile_inference`, not through redelivery: the
filesystem transport deletes a message when a worker takes it, and Redis gives an
unacknowledged message back only after its visibility timeout (7 hours). A redelivered
message later finds the run done and does nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from datetime import timedelta

import pytest
from django.conf import settings

from inference.models import InferenceRun, Prediction
from inference.services import inference_run_start, inference_runs_reconcile, model_register
from tests.inference.factories import make_inference_study
from tests.processes import service_missing, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("reference_diagnoses"),
]


@pytest.fixture(autouse=True)
def _media_root(settings):
    """The worker writes under the test settings' MEDIA_ROOT (this test process's), so
    the test reads and writes there too."""
    settings.MEDIA_ROOT = settings.READERSTUDY_WORKER_MEDIA_ROOT
    return settings.MEDIA_ROOT


def tiny_setup(n: int = 5):
    study = make_inference_study(slug=f"w{uuid.uuid4().hex[:6]}", n=n)
    model = model_register(
        name=f"tiny-{uuid.uuid4().hex[:6]}",
        arch="efficientnet_b4_aux",
        classes="MN,SK,BCC,SD",
        img_size=64,
    )
    return study, model


def run_status(run: InferenceRun) -> str:
    run.refresh_from_db()
    return run.status


def assert_one_ok_prediction_per_case(run: InferenceRun, study) -> None:
    rows = list(Prediction.objects.filter(model=run.model).values_list("case_id", "status"))
    assert sorted(case for case, _ in rows) == sorted(study.cases.values_list("pk", flat=True))
    assert {status for _, status in rows} == {"ok"}
    assert not InferenceRun.objects.filter(status="running").exists()
    assert (run.status, run.done, run.failed) == ("done", study.cases.count(), 0)


def test_a_worker_runs_inference_through_the_filesystem_transport(workers, empty_filesystem_queue):
    study, model = tiny_setup()
    # It consumes the inference queue only, as on a GPU host: the run is routed there.
    worker = workers(queue=settings.READERSTUDY_INFERENCE_QUEUE)
    run = inference_run_start(model=model, study=study, batch_size=2)  # sent on commit
    wait_for(lambda: run_status(run) == "done", worker, "the run to finish")
    assert_one_ok_prediction_per_case(run, study)
    assert Prediction.objects.exclude(gradcam="").count() == 5


def redis_url() -> str:
    """The Redis to test against; skipped when it is down, except where services are
    required (CI, `make test-postgres`): there it fails."""
    import redis

    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis"):
        url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        service_missing(f"Redis at {url} is not reachable: {exc}")
    return url


@pytest.fixture
def redis_broker():
    """The test Redis, the project's queues emptied before and after: messages an
    earlier test left, and what a worker sends itself (a resumed run), go there."""
    import redis

    url = redis_url()
    client = redis.Redis.from_url(url)
    client.delete(*settings.READERSTUDY_QUEUES)
    yield url
    client.delete(*settings.READERSTUDY_QUEUES)


def send_through(url: str, run: InferenceRun, *, batch_size: int) -> None:
    """Send the run's task through the Redis at ``url`` (this process's own broker is
    the filesystem transport of the test settings)."""
    from inference.tasks import run_inference
    from readerstudy.celery import app

    with app.connection_for_write(url) as conn:
        run_inference.apply_async(
            kwargs={"run_id": run.pk, "batch_size": batch_size}, connection=conn
        )


@pytest.mark.redis
@pytest.mark.postgres
def test_a_worker_runs_inference_through_redis(workers, redis_broker):
    study, model = tiny_setup()
    worker = workers(broker=redis_broker)
    run = inference_run_start(model=model, study=study, enqueue=False)
    send_through(redis_broker, run, batch_size=2)
    wait_for(lambda: run_status(run) == "done", worker, "the run to finish")
    assert_one_ok_prediction_per_case(run, study)


def test_a_killed_worker_is_resumed_by_reconcile_without_duplicates(
    workers, empty_filesystem_queue
):
    study, model = tiny_setup()
    slow = workers(store_delay=3.0)
    run = inference_run_start(model=model, study=study, batch_size=1)
    wait_for(lambda: Prediction.objects.filter(model=model).exists(), slow, "a first prediction",
             every=0.05)  # fmt: skip
    slow.kill()
    before = dict(Prediction.objects.filter(model=model).values_list("case_id", "pk"))
    assert 1 <= len(before) < 5
    assert run_status(run) == "running"  # what a dead worker leaves

    worker = workers()
    report = inference_runs_reconcile(older_than=timedelta(0))  # re-queued on commit
    assert [r.pk for r in report.stale_runs] == [run.pk]
    wait_for(lambda: run_status(run) == "done", worker, "the resumed run to finish")
    assert_one_ok_prediction_per_case(run, study)
    after = dict(Prediction.objects.filter(model=model).values_list("case_id", "pk"))
    assert all(after[case] == pk for case, pk in before.items())  # kept, not redone


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.postgres_only
def test_a_worker_killed_half_way_through_200_cases_resumes_when_it_restarts(workers, redis_broker):
    """The issue's fault, on PostgreSQL and Redis: SIGKILL in the middle of a 200-case
    run; the same worker node starting again resumes the run by itself (no reconcile),
    and the run completes with exactly one prediction per case."""
    url = redis_broker
    study, model = tiny_setup(n=200)
    hostname = f"kill-{uuid.uuid4().hex[:8]}@localhost"
    slow = workers(broker=url, hostname=hostname, store_delay=0.2)
    run = inference_run_start(model=model, study=study, enqueue=False)
    send_through(url, run, batch_size=8)
    n_predictions = Prediction.objects.filter(model=model).count
    wait_for(lambda: n_predictions() >= 60, slow, "60 predictions")
    slow.kill()
    before = dict(Prediction.objects.filter(model=model).values_list("case_id", "pk"))
    assert 60 <= len(before) < 200
    assert run_status(run) == "running"  # what a dead worker leaves

    restarted = workers(broker=url, hostname=hostname)
    wait_for(lambda: run_status(run) == "done", restarted, "the resumed run to finish")
    assert_one_ok_prediction_per_case(run, study)
    after = dict(Prediction.objects.filter(model=model).values_list("case_id", "pk"))
    assert all(after[case] == pk for case, pk in before.items())  # kept, not redone


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.postgres_only
def test_a_killed_prefork_child_gives_its_task_back_and_a_new_child_finishes(workers, redis_broker):
    """SIGKILL of the pool process running the task (not of the worker): the worker
    sees it lost (reject_on_worker_lost), Redis gets the message back at once, and a new
    child of the same node resumes the run."""
    url = redis_broker
    study, model = tiny_setup(n=40)
    worker = workers(broker=url, pool="prefork", store_delay=0.3)
    run = inference_run_start(model=model, study=study, enqueue=False)
    send_through(url, run, batch_size=4)
    n_predictions = Prediction.objects.filter(model=model).count
    wait_for(lambda: n_predictions() >= 8, worker, "8 predictions")
    children = subprocess.run(["pgrep", "-P", str(worker.process.pid)], capture_output=True,
                              text=True, check=True).stdout.split()  # fmt: skip
    assert len(children) == 1
    os.kill(int(children[0]), signal.SIGKILL)
    before = dict(Prediction.objects.filter(model=model).values_list("case_id", "pk"))
    assert len(before) < 40
    wait_for(lambda: run_status(run) == "done", worker, "a new child to finish the run")
    assert "WorkerLostError" in worker.tail() or "Worker exited prematurely" in worker.tail()
    assert_one_ok_prediction_per_case(run, study)
    after = dict(Prediction.objects.filter(model=model).values_list("case_id", "pk"))
    assert all(after[case] == pk for case, pk in before.items())
