"""Inference through a real Celery worker process: the filesystem transport, Redis, and a
worker killed with SIGKILL half-way.

The worker runs as a subprocess on the same database (the test database is a file under
DATA_DIR on SQLite, see readerstudy/settings_test.py; the test database on PostgreSQL)
and the same DATA_DIR (broker folders and media). The tests are transactional, so the
worker sees what they write.

After a SIGKILL the run resumes through the reconcile path (`reconcile_inference`), not
through redelivery: the filesystem transport deletes a message when a worker takes it,
and Redis gives an unacknowledged message back only after its visibility timeout (an
hour by default). A redelivered message later finds the run done and does nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from inference.models import InferenceRun, Prediction
from inference.services import inference_run_start, inference_runs_reconcile, model_register
from tests.inference.conftest import make_inference_study

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("reference_diagnoses"),
]

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240  # seconds; the worker imports torch and timm on a loaded machine

# A worker like `celery -A readerstudy worker`, with a pause after each stored batch so
# that a test can kill it between two batches.
SLOW_WORKER = """
import os, sys, time
import django
django.setup()
import inference.services as services
store, delay = services._store, float(os.environ["TEST_STORE_DELAY"])
def slow_store(**kwargs):
    created = store(**kwargs)
    time.sleep(delay)
    return created
services._store = slow_store
from readerstudy.celery import app
app.worker_main(sys.argv[1:])
"""


@pytest.fixture(autouse=True)
def _media_root(settings):
    """The worker writes under DATA_DIR/media (the test settings' MEDIA_ROOT), so the
    test reads and writes there too."""
    settings.MEDIA_ROOT = Path(settings.DATA_DIR) / "media"
    return settings.MEDIA_ROOT


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """A Celery worker subprocess; its log goes to a file shown when a test fails."""

    def __init__(self, log: Path, *, broker: str | None = None, queue: str = "celery",
                 store_delay: float = 0.0):  # fmt: skip
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "readerstudy.settings_test",
            "READERSTUDY_DATA_DIR": str(settings.DATA_DIR),
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "TEST_STORE_DELAY": str(store_delay),
        }
        if broker:
            env["CELERY_BROKER_URL"] = broker
        args = ["worker", "--pool", "solo", "-c", "1", "--loglevel", "INFO", "-Q", queue,
                "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h",
                "--without-mingle", "--without-gossip", "--without-heartbeat"]  # fmt: skip
        if store_delay:
            command = [sys.executable, "-c", SLOW_WORKER, *args]
        else:
            command = [sys.executable, "-m", "celery", "-A", "readerstudy", *args]
        self.log = log
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(**kwargs) -> Worker:
        worker = Worker(tmp_path / f"worker-{len(started)}.log", **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(condition, worker: Worker, what: str, timeout: float = TIMEOUT, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.process.poll() is not None:
            pytest.fail(
                f"the worker exited ({worker.process.returncode}) before {what}:\n{worker.tail()}"
            )
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}:\n{worker.tail()}")


@pytest.fixture
def empty_filesystem_queue():
    """Earlier tests of this process may have left messages in the broker folder."""
    folder = Path(settings.DATA_DIR) / "celery-broker" / "queue"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


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
    worker = workers()
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
        if os.environ.get("READERSTUDY_REQUIRE_SERVICES") == "1" or os.environ.get("CI"):
            pytest.fail(f"Redis at {url} is required here but not reachable: {exc}")
        pytest.skip(f"Redis at {url} is not reachable: {exc}")
    return url


@pytest.mark.redis
@pytest.mark.postgres
def test_a_worker_runs_inference_through_redis(workers):
    from inference.tasks import run_inference
    from readerstudy.celery import app

    url = redis_url()
    queue = f"test-inference-{uuid.uuid4().hex[:8]}"
    study, model = tiny_setup()
    worker = workers(broker=url, queue=queue)
    run = inference_run_start(model=model, study=study, enqueue=False)
    with app.connection_for_write(url) as conn:
        run_inference.apply_async(
            kwargs={"run_id": run.pk, "batch_size": 2}, queue=queue, connection=conn
        )
    try:
        wait_for(lambda: run_status(run) == "done", worker, "the run to finish")
    finally:
        import redis

        redis.Redis.from_url(url).delete(queue)
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
