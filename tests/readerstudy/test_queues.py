"""Two Celery queues: "inference" (the workers that run a model, a GPU host) and
"default" (reports and the beat's light tasks), so that a long inference run never
holds up a report. Every task is routed; real workers on one queue each take only their
own tasks; the demo's only worker and `bin/production` consume the queues they should.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from readerstudy.celery import app
from tests.processes import instance_env, wait_for

ROOT = Path(__file__).resolve().parents[2]

# Every task of the project and the queue it must go to.
ROUTES = [
    ("inference.tasks.run_inference", "inference"),
    ("inference.tasks.send_pending_runs", "default"),
    ("analysis.tasks.report_compute_task", "default"),
    ("analysis.tasks.send_pending_reports", "default"),
    ("cases.tasks.close_due_studies", "default"),
]


@pytest.fixture(scope="module")
def registered() -> set[str]:
    app.loader.import_default_modules()  # what a worker imports at its start
    return {name for name in app.tasks if not name.startswith("celery.")}


@pytest.mark.parametrize("task, queue", ROUTES)
def test_each_task_is_routed_to_its_queue(registered, task, queue):
    assert task in registered
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_every_registered_task_has_a_route(registered):
    assert registered == {task for task, _ in ROUTES} == set(settings.CELERY_TASK_ROUTES)


def test_the_beats_tasks_go_to_the_default_queue(registered):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks and tasks <= registered
    assert {app.amqp.router.route({}, task)["queue"].name for task in tasks} == {"default"}


def test_the_queues_are_inference_and_default():
    assert settings.READERSTUDY_QUEUES == ("default", "inference")
    assert settings.CELERY_TASK_DEFAULT_QUEUE == "default"


def test_bin_production_knows_the_settings_queues():
    script = (ROOT / "bin" / "production").read_text()
    line = re.search(r"^ALL_QUEUES=(\S+)$", script, flags=re.MULTILINE)
    assert line and line.group(1).split(",") == list(settings.READERSTUDY_QUEUES)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--queues", "gpu"], "unknown queue 'gpu'"),
        (["worker", "--queues", "default,"], "usage: bin/production"),
        (["--queues"], "usage: bin/production"),
        (["web"], "usage: bin/production"),
    ],
)
def test_bin_production_refuses_an_unknown_queue_or_mode(args, message):
    # Refused before it needs any setting or starts anything.
    result = subprocess.run(
        [str(ROOT / "bin" / "production"), *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and message in result.stderr


def test_the_demos_worker_consumes_every_queue():
    from demo.management.commands.demo import worker_command

    command = worker_command()
    queues = command[command.index("--queues") + 1]
    assert sorted(queues.split(",")) == sorted(settings.READERSTUDY_QUEUES)


# --- real workers --------------------------------------------------------------------------


@pytest.fixture
def shared_media(settings):
    """The workers write under DATA_DIR/media (the test settings' MEDIA_ROOT)."""
    settings.MEDIA_ROOT = settings.READERSTUDY_WORKER_MEDIA_ROOT
    return settings.MEDIA_ROOT


def tiny_model():
    from inference.services import model_register

    return model_register(
        name=f"tiny-{uuid.uuid4().hex[:6]}",
        arch="efficientnet_b4_aux",
        classes="MN,SK,BCC,SD",
        img_size=64,
    )


def received(worker) -> set[str]:
    """The names of the tasks a worker's log says it received."""
    return set(re.findall(r"Task ([\w.]+)\[[0-9a-f-]+\] received", worker.log.read_text()))


def status(row) -> str:
    row.refresh_from_db()
    return row.status


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("reference_diagnoses", "empty_filesystem_queue", "shared_media")
def test_a_report_is_computed_while_a_long_inference_run_holds_the_inference_worker(
    workers, tmp_path
):
    """The issue's case: the inference worker is busy with a run (held between two
    batches until the test lets it go); the light worker computes a report meanwhile.
    Each worker takes only its own queue's tasks."""
    from analysis.services import report_request
    from inference.services import inference_run_start
    from tests.analysis.factories import build_db_study
    from tests.inference.factories import make_inference_study

    gate = tmp_path / "go-on"
    gpu = workers(queue="inference", store_delay=0.01, env={"TEST_STORE_GATE": str(gate)})
    light = workers(queue="default")
    run = inference_run_start(
        model=tiny_model(), study=make_inference_study(slug="busy", n=3), batch_size=1
    )
    wait_for(lambda: run.predictions.exists(), gpu, "the run's first batch")
    report = report_request(
        study=build_db_study(slug="light", n_readers=2, per_class=3, embeddings=False),
        seed=0,
        n_bootstrap=20,
    )
    wait_for(lambda: status(report) in ("done", "failed"), light, "the report")
    assert report.status == "done", report.error
    assert status(run) == "running" and run.predictions.count() == 1  # still held

    gate.touch()
    wait_for(lambda: status(run) == "done", gpu, "the run to finish")
    assert received(gpu) == {"inference.tasks.run_inference"}
    assert received(light) == {"analysis.tasks.report_compute_task"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("reference_diagnoses", "empty_filesystem_queue", "shared_media")
def test_the_demos_only_worker_takes_inference_runs_and_reports(workers, tmp_path):
    from analysis.services import report_request
    from demo.management.commands.demo import worker_command
    from inference.services import inference_run_start
    from tests.analysis.factories import build_db_study
    from tests.inference.factories import make_inference_study

    command = worker_command()
    # The test's own beat schedule file, beside the log.
    command += ["--schedule", str(tmp_path / "demo.beat")]
    worker = workers(command=command)
    run = inference_run_start(model=tiny_model(), study=make_inference_study(slug="d", n=2))
    report = report_request(
        study=build_db_study(slug="demo-like", n_readers=2, per_class=3, embeddings=False),
        seed=0,
        n_bootstrap=20,
    )
    wait_for(lambda: status(run) == "done" and status(report) == "done", worker, "both")


@pytest.mark.slow
def test_bin_production_worker_starts_workers_only_on_the_queue_given(tmp_path):
    """The GPU host's command: no web server, no beat, no migrations; one worker per
    CELERY_WORKERS on the inference queue, named after it; SIGTERM stops it cleanly."""
    env = instance_env(
        DJANGO_SECRET_KEY="p9Xv2Lq8Zt4Wm7Rc1Ns5Hb3Ky6Jd0Fg2Ue8Io4Pa7Sl1Qw5Er9Ty3Ui6Op0As2D",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        READERSTUDY_DATA_DIR=str(tmp_path),
        PYTHON=sys.executable,
    )
    # The web host migrated the shared database before.
    migrate = [sys.executable, "manage.py", "migrate", "-v0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, timeout=300)
    log = tmp_path / "out.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(ROOT / "bin" / "production"), "worker", "--queues", "inference"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240  # the worker imports torch on a loaded machine
        while time.monotonic() < deadline and process.poll() is None:
            if " ready." in log.read_text():
                break
            time.sleep(0.5)
        group = subprocess.run(
            ["pgrep", "-a", "-g", str(process.pid)], capture_output=True, text=True
        ).stdout
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    output = log.read_text()
    assert " ready." in output, output[-6000:]
    assert "1 worker(s) on inference (no web server, no beat)" in output
    assert re.search(r"\.> inference\s+exchange=inference", output)
    assert ".> default" not in output
    assert "inference1@" in output
    assert "celery" in group and "gunicorn" not in group and " beat" not in group
    assert process.returncode == 0, output[-6000:]
