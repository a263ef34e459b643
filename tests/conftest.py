"""Shared fixtures: an isolated media folder per test, personas, and image helpers."""

from __future__ import annotations

import os
import signal

import pytest


@pytest.fixture(autouse=True)
def _media_root(request, tmp_path):
    """Each test writes images into its own empty folder, so tests can assert on it.
    Without pytest-django (the pure statistics and model tests run with
    ``-p no:django``) there are no settings to change."""
    media = tmp_path / "media"
    if request.config.pluginmanager.hasplugin("django"):
        request.getfixturevalue("settings").MEDIA_ROOT = media
    return media


@pytest.fixture
def media_root(_media_root):
    return _media_root


def pytest_configure(config):
    # A shell that starts a job in the background (``make test &``) makes it ignore
    # SIGINT, and an ignored signal stays ignored across exec: every child process of
    # the suite (a demo that a test stops with Ctrl-C, a worker) would ignore it too.
    # Give this process Python's own handler, so children start with the default.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    # Tests that only make sense on PostgreSQL run in `make test-postgres`; in the
    # SQLite pass they are skipped with that reason (never silently: see -ra output).
    on_postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))
    if on_postgres:
        return
    skip = pytest.mark.skip(reason="PostgreSQL only: runs in `make test-postgres`")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


def _create_reference_diagnoses() -> None:
    import importlib

    from django.apps import apps

    importlib.import_module("cases.migrations.0002_diagnoses").create(apps, None)


@pytest.fixture(autouse=True)
def _reference_data_survives_flushes(request):
    """A transactional test ends by emptying every table, the 14 diagnoses of the data
    migration included. Before each database test, put them back if an earlier test in
    this process removed them. (A no-op where pytest-django is off: the pure statistics
    and model tests.)"""
    uses_db = request.node.get_closest_marker("django_db") is not None or bool(
        {"db", "transactional_db", "live_server", "admin_client", "django_user_model"}
        & set(request.fixturenames)
    )
    if request.config.pluginmanager.hasplugin("django") and uses_db:
        request.getfixturevalue(
            "transactional_db"
            if "transactional_db" in request.fixturenames or "live_server" in request.fixturenames
            else "db"
        )
        from cases.models import Diagnosis

        if not Diagnosis.objects.filter(code="MN").exists():
            _create_reference_diagnoses()
    yield


@pytest.fixture
def reference_diagnoses(transactional_db):
    """Transactional tests flush every table, data migrations included: put the 14
    reference diagnoses back, from the migration that creates them."""
    _create_reference_diagnoses()


# --- personas ---------------------------------------------------------------------------


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_user(
        "admin", password="pw-admin-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def reader(django_user_model):
    return django_user_model.objects.create_user("reader", password="pw-reader-123")


@pytest.fixture
def other_reader(django_user_model):
    return django_user_model.objects.create_user("other", password="pw-other-123")


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("outsider", password="pw-outsider-123")


@pytest.fixture
def study_admin(django_user_model):
    """A user who will administer one study: the test makes them staff and adds them to
    that study's admins (``cases.services.study_admin_add``)."""
    return django_user_model.objects.create_user("study-admin", password="pw-sa-123")


@pytest.fixture
def other_study_admin(django_user_model):
    """Like ``study_admin``, for another study."""
    return django_user_model.objects.create_user("other-study-admin", password="pw-osa-123")


@pytest.fixture
def plain_staff(django_user_model):
    """Staff (may open the admin) who administers no study and is not a superuser."""
    return django_user_model.objects.create_user(
        "plain-staff", password="pw-staff-123", is_staff=True
    )


@pytest.fixture
def workers(tmp_path):
    """Start Celery worker subprocesses (tests.processes.Worker); all stop at the end."""
    from tests.processes import Worker

    started: list[Worker] = []

    def start(**kwargs) -> Worker:
        worker = Worker(tmp_path / f"worker-{len(started)}.log", **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def empty_filesystem_queue(settings):
    """The filesystem transport's folder (this test process's, shared with the worker
    subprocesses it starts) emptied: earlier tests of this process may have left
    messages."""
    import shutil
    from pathlib import Path

    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


@pytest.fixture
def enqueued_reports(monkeypatch):
    """Records the report ids the report task was enqueued with instead of sending them."""
    from analysis.tasks import report_compute_task

    calls = []
    monkeypatch.setattr(
        report_compute_task, "apply_async", lambda kwargs, **_: calls.append(kwargs["report_id"])
    )
    return calls
