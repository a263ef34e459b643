"""The faults a weeks-long study meets, against the real services (issue 6):

- the broker (Redis) down: readers keep answering (2xx, persisted), an inference run
  started meanwhile waits as queued and goes through once Redis is back;
- the database (PostgreSQL) stopped and started again while readers answer: clear 503
  errors during the outage, every acknowledged answer stored, no partial writes.

Each test runs the platform as it runs in production: gunicorn with two processes and a
Celery worker as subprocesses on the test database, driven over HTTP. The worker killed
with SIGKILL half-way through a 200-case run is in tests/inference/test_worker.py.

They run in the PostgreSQL pass (`make test-postgres`, CI), where a missing Redis or a
PostgreSQL that cannot be restarted fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from audit.models import AuditEvent
from cases.models import Answer, Enrolment
from inference.models import InferenceRun, Prediction
from inference.services import model_register
from tests.factories import build_study, ready_enrolment
from tests.processes import database_url, service_missing, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.postgres_only,
    pytest.mark.slow,
    pytest.mark.usefixtures("reference_diagnoses"),
]

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "a-Long-pass-phrase-9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, what: str, timeout: float = 60, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(autouse=True)
def _media_root(settings):
    """The subprocesses read and write under DATA_DIR/media: so does the test."""
    settings.MEDIA_ROOT = settings.READERSTUDY_WORKER_MEDIA_ROOT
    return settings.MEDIA_ROOT


class RedisServer:
    """A private redis-server on its own port, to stop and start without touching the
    shared one."""

    def __init__(self, folder: Path):
        if not shutil.which("redis-server"):
            service_missing("redis-server (Debian's redis-server package) is not installed")
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(self.is_up, "redis-server to start", timeout=20)

    def is_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.kill()


class WebServer:
    """gunicorn with two processes on the test database, like `bin/production`."""

    def __init__(self, log: Path, *, broker: str | None = None):
        self.port, self.log = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "readerstudy.settings_test",
            "READERSTUDY_DATA_DIR": str(settings.DATA_DIR),
            "DATABASE_URL": database_url(),
            "DJANGO_DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
        }
        if broker:
            env["CELERY_BROKER_URL"] = broker
        command = [sys.executable, "-m", "gunicorn", "readerstudy.wsgi", "--workers", "2",
                   "--bind", f"127.0.0.1:{self.port}", "--timeout", "60"]  # fmt: skip
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(self._healthy, f"gunicorn to serve:\n{self.tail()}", timeout=90, every=0.5)

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"gunicorn exited ({self.process.returncode}):\n{self.tail()}")
        try:
            return requests.get(f"{self.url}/health/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def web_servers(tmp_path):
    started: list[WebServer] = []

    def start(**kwargs) -> WebServer:
        server = WebServer(tmp_path / f"gunicorn-{len(started)}.log", **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Browser:
    """A reader's or an admin's browser: a session with cookies, CSRF and no redirects
    followed, so each response is seen as the server sent it."""

    def __init__(self, base: str):
        self.base, self.session = base, requests.Session()

    def csrf(self) -> str:
        return self.session.cookies.get("csrftoken", "")

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, allow_redirects=False, timeout=30)

    def post(self, path: str, data: dict) -> requests.Response:
        data = {"csrfmiddlewaretoken": self.csrf(), **data}
        headers = {"Referer": self.base + path}
        return self.session.post(
            self.base + path, data=data, headers=headers, allow_redirects=False, timeout=30
        )

    def login(self, username: str) -> None:
        self.get("/accounts/login/")
        response = self.post("/accounts/login/", {"username": username, "password": PASSWORD})
        assert response.status_code == 302, f"login {response.status_code}: {response.text[:1000]}"


def next_case(browser: Browser, slug: str) -> str | None:
    """The public id of the reader's next case, or None when they are done."""
    response = browser.get(f"/studies/{slug}/case/")
    if response.status_code == 302:
        return None
    if response.status_code != 200:
        raise AssertionError(f"case page: {response.status_code}")
    return re.search(r'name="case" value="([0-9a-f]+)"', response.text).group(1)


def make_reader(study, name: str, seed: int):
    user = get_user_model().objects.create_user(name, password=PASSWORD)
    enrolment = ready_enrolment(study, user)
    Enrolment.objects.filter(pk=enrolment.pk).update(order_seed=seed)
    return user


def assert_no_partial_writes(study) -> None:
    """Every stored answer has its audit event; finished enrolments have every answer."""
    answers = Answer.objects.filter(enrolment__study=study)
    audited = Counter(
        AuditEvent.objects.filter(
            action=AuditEvent.Action.ANSWER_SUBMIT, object_id__in=[str(a.pk) for a in answers]
        ).values_list("object_id", flat=True)
    )
    assert all(audited[str(a.pk)] == 1 for a in answers), "an answer without its audit event"
    for enrolment in Enrolment.objects.filter(study=study):
        n = Answer.objects.filter(enrolment=enrolment).count()
        assert (enrolment.finished_at is not None) == (n == len(enrolment.case_order))


def test_readers_keep_answering_while_the_broker_is_down_and_inference_waits(
    redis_server, web_servers, workers
):
    study = build_study(6)
    make_reader(study, "reader-1", seed=1)
    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    model = model_register(
        name=f"tiny-{uuid.uuid4().hex[:6]}", arch="efficientnet_b4_aux",
        classes="MN,SK,BCC,SD", img_size=64,
    )  # fmt: skip
    # The worker and its beat keep running through the outage, as in production.
    worker = workers(broker=redis_server.url, beat=True,
                     env={"READERSTUDY_SEND_PENDING_SECONDS": "2"})  # fmt: skip
    web = web_servers(broker=redis_server.url)
    wait_for(lambda: "ready" in worker.tail(), worker, "the worker to be ready")

    redis_server.kill()
    reader = Browser(web.url)
    reader.login("reader-1")
    acknowledged = []
    while (case := next_case(reader, study.slug)) is not None:
        response = reader.post(f"/studies/{study.slug}/case/", {"case": case, "answer": "MN"})
        assert response.status_code == 302, response.text[:2000]
        acknowledged.append(case)
    assert len(acknowledged) == 6
    stored = Answer.objects.filter(enrolment__study=study)
    assert sorted(stored.values_list("case__public_id", flat=True)) == sorted(acknowledged)

    admin = Browser(web.url)
    admin.login("boss")
    admin.get("/admin/inference/inferencerun/start/")
    response = admin.post(
        "/admin/inference/inferencerun/start/", {"study": study.pk, "model": model.pk}
    )
    assert response.status_code == 302, response.text[:2000]
    page = admin.get("/admin/inference/inferencerun/").text
    assert "broker is unreachable" in page
    run = InferenceRun.objects.get(model=model, study=study)
    assert (run.status, run.sent_at) == ("queued", None)
    assert run.error.startswith("waiting for the task broker")
    time.sleep(5)  # beat's tries fail while Redis is down: the run stays queued
    run.refresh_from_db()
    assert (run.status, run.sent_at) == ("queued", None)

    redis_server.start()  # empty, like a Redis that lost its data
    wait_for(lambda: InferenceRun.objects.get(pk=run.pk).status == "done", worker,
             "the waiting run to go through", timeout=180)  # fmt: skip
    run.refresh_from_db()
    assert run.sent_at is not None and (run.done, run.failed) == (6, 0)
    assert Prediction.objects.filter(model=model, status="ok").count() == 6


def _postgres_cluster() -> tuple[str, str]:
    if not shutil.which("pg_ctlcluster") or os.geteuid() != 0:
        service_missing("restarting PostgreSQL needs pg_ctlcluster and root")
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1], "main"


def postgres(action: str) -> None:
    version, cluster = _postgres_cluster()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, action, "-m", "fast"]
        if action == "stop"
        else ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, action],
        check=True,
        timeout=60,
    )


def test_the_database_restarted_under_load_gives_clear_errors_and_no_partial_writes(
    web_servers,
):
    _postgres_cluster()  # fail or skip before starting anything
    study = build_study(30)
    names = [f"reader-{i}" for i in range(6)]
    for seed, name in enumerate(names, start=1):
        make_reader(study, name, seed=seed)
    web = web_servers()
    connection.close()  # the server restarts under this connection too

    acknowledged: list[str] = []
    unavailable: list[int] = []
    unexpected: list[str] = []
    lock = threading.Lock()

    def answer_all(name: str) -> None:
        browser = Browser(web.url)
        while True:
            try:
                if not browser.session.cookies.get("sessionid"):
                    browser.login(name)
                case = next_case(browser, study.slug)
                if case is None:
                    return
                response = browser.post(
                    f"/studies/{study.slug}/case/", {"case": case, "answer": "SK"}
                )
            except requests.RequestException as exc:
                with lock:
                    unexpected.append(f"{name}: {exc}")
                return
            except AssertionError as exc:
                if "503" not in str(exc):
                    with lock:
                        unexpected.append(f"{name}: {exc}")
                    return
                with lock:
                    unavailable.append(503)
                time.sleep(0.2)
                continue
            with lock:
                if response.status_code == 302:
                    acknowledged.append(f"{name}:{case}")
                elif response.status_code == 503 and "database is unavailable" in response.text:
                    unavailable.append(503)
                else:
                    unexpected.append(f"{name}: submit {response.status_code}")
                    return
            if response.status_code == 503:
                time.sleep(0.2)

    threads = [threading.Thread(target=answer_all, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 30 or unexpected, "30 answers", timeout=120)
        postgres("stop")
        time.sleep(3)  # readers keep sending while the database is down
    finally:
        postgres("start")
    for thread in threads:
        thread.join(timeout=180)
    connection.close()

    assert not unexpected, unexpected
    assert unavailable, "no request met the outage: it tested nothing"
    stored = {
        f"{reader}:{case}"
        for reader, case in Answer.objects.filter(enrolment__study=study).values_list(
            "enrolment__reader__username", "case__public_id"
        )
    }
    assert set(acknowledged) <= stored  # nothing acknowledged is lost
    assert len(stored) == len(names) * 30  # every reader finished
    assert_no_partial_writes(study)
