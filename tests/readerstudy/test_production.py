"""The production-shaped stack starts from environment variables and serves custom error
pages without tracebacks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.processes import instance_env

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
def test_bin_production_serves_and_stops_cleanly(tmp_path):
    port = _free_port()
    env = instance_env()
    env.update(
        {
            "PYTHON": str(Path(os.sys.executable)),
            "DJANGO_SECRET_KEY": "p9Xv2Lq8Zt4Wm7Rc1Ns5Hb3Ky6Jd0Fg2Ue8Io4Pa7Sl1Qw5Er9Ty3Ui6Op0As2D",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE": "0",  # plain HTTP on loopback for the test
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "READERSTUDY_DATA_DIR": str(tmp_path),
            "WEB_CONCURRENCY": "2",
            "BIND": f"127.0.0.1:{port}",
            "DJANGO_LOG_FORMAT": "json",
        }
    )
    process = subprocess.Popen(
        [str(ROOT / "bin" / "production")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        # Generous: check, migrate and collectstatic run first, and on a busy 2-core
        # machine the worker's imports (torch) alone take a while.
        deadline = time.monotonic() + 240
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/health/")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        health = (status, body) if status is not None else None
        if health:
            status, body = _get(f"http://127.0.0.1:{port}/no-such-page/")
            not_found = (status, "Not found" in body, "Traceback" in body)
            static_status, _ = _get(f"http://127.0.0.1:{port}/static/css/site.css")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert health, f"bin/production never answered /health/; its output:\n{output[-6000:]}"
    assert health[0] == 200 and '"database": "ok"' in health[1]
    assert not_found == (404, True, False)
    assert static_status == 200  # whitenoise
    assert process.returncode == 0, output
    # structured JSON log lines on stdout (the 404 above is logged as a warning)
    assert '"logger": "django.request"' in output and '"level": "WARNING"' in output


@pytest.mark.django_db
def test_server_error_page_has_no_traceback(client, monkeypatch, settings):
    settings.DEBUG = False
    client.raise_request_exception = False

    def boom(**kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("readerstudy.views.studies_for_user", boom)
    monkeypatch.setattr("readerstudy.views.is_study_staff", lambda user: True)
    response = client.get("/")
    body = response.content.decode()
    assert response.status_code == 500 and "Something went wrong" in body
    assert "secret internal detail" not in body and "Traceback" not in body


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path, kind", [("/", "text/html"), ("/api/admin/studies/", "application/json")]
)
def test_a_database_error_answers_503_saying_so(client, admin_user, monkeypatch, settings, path,
                                                kind):  # fmt: skip
    from django.db import OperationalError

    settings.DEBUG = False
    client.raise_request_exception = False
    client.force_login(admin_user)

    def down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("readerstudy.views.studies_for_user", down)
    monkeypatch.setattr("django.db.models.query.QuerySet._fetch_all", down)
    response = client.get(path)
    body = response.content.decode()
    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert response["Content-Type"].startswith(kind)
    assert "database is unavailable" in body and "server closed" not in body
