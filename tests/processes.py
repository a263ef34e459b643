"""Helpers that run parts of the platform as subprocesses on the test database: a
Celery worker (optionally slowed down so a test can kill it between two batches).

The test database is a file under DATA_DIR on SQLite (readerstudy/settings_test.py) or
the test database on PostgreSQL; the tests that use these are transactional, so the
subprocesses see what they write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import NoReturn

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds; the worker imports torch and timm on a loaded machine

# A worker like `celery -A readerstudy worker`, with a pause after each stored batch so
# that a test can kill it between two batches; with TEST_STORE_GATE, each batch also
# waits until that file exists, so that a run stays in progress while a test looks.
SLOW_WORKER = """
import os, sys, time
import django
django.setup()
import inference.services.execution as execution
store, delay = execution._store, float(os.environ["TEST_STORE_DELAY"])
gate = os.environ.get("TEST_STORE_GATE")
def slow_store(**kwargs):
    created = store(**kwargs)
    time.sleep(delay)
    deadline = time.monotonic() + 300
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.1)  # held until the test creates the file TEST_STORE_GATE names
    return created
execution._store = slow_store
from readerstudy.celery import app
app.worker_main(sys.argv[1:])
"""


def service_missing(message: str) -> NoReturn:
    """A service a test needs is missing: fail where the services are required (CI,
    `make test-postgres`), skip elsewhere."""
    if os.environ.get("READERSTUDY_REQUIRE_SERVICES") == "1" or os.environ.get("CI"):
        pytest.fail(f"required here: {message}")
    pytest.skip(message)


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """A Celery worker subprocess; its log goes to a file shown when a test fails."""

    def __init__(self, log: Path, *, broker: str | None = None, queue: str | None = None,
                 store_delay: float = 0.0, hostname: str | None = None, beat: bool = False,
                 pool: str = "solo", env: dict[str, str] | None = None,
                 command: list[str] | None = None):  # fmt: skip
        """``command``: run this command line instead of the one these options make
        (e.g. the demo's worker), with the same environment."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "readerstudy.settings_test",
            "READERSTUDY_DATA_DIR": str(settings.DATA_DIR),
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "TEST_STORE_DELAY": str(store_delay),
            **(env or {}),
        }
        if broker:
            env["CELERY_BROKER_URL"] = broker
        self.hostname = hostname or f"test-{uuid.uuid4().hex[:8]}@localhost"
        # Every queue unless told (one worker does it all, as in the demo).
        queue = queue or ",".join(settings.READERSTUDY_QUEUES)
        args = ["worker", "--pool", pool, "-c", "1", "--loglevel", "INFO", "-Q", queue,
                "--hostname", self.hostname,
                "--without-mingle", "--without-gossip", "--without-heartbeat"]  # fmt: skip
        if beat:
            args += ["--beat", "--schedule", str(log.with_suffix(".beat"))]
        if command is None and store_delay:
            command = [sys.executable, "-c", SLOW_WORKER, *args]
        elif command is None:
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


def instance_env(**overrides: str) -> dict[str, str]:
    """The environment for a subprocess that is another instance of the platform: this
    process's variables without any of the platform's own settings, plus ``overrides``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "CELERY_", "READERSTUDY_"))
    }
    return {**env, **overrides}
