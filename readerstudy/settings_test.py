"""Test settings: the real settings with a throw-away data directory and fast hashing.

``DATABASE_URL`` is honoured, so ``DATABASE_URL=postgres://... make test`` runs the suite
on PostgreSQL.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("READERSTUDY_DATA_DIR", tempfile.mkdtemp(prefix="readerstudy-test-"))

from readerstudy.settings import *  # noqa: F403
from readerstudy.settings import DATA_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The suite's xdist processes share DATA_DIR (the controller sets it before they start):
# each has its own media folder, which the worker subprocesses it starts (they inherit
# PYTEST_XDIST_WORKER) share with it. Tests that use such a worker set MEDIA_ROOT to it;
# the others get a folder of their own (tests/conftest.py).
READERSTUDY_WORKER_MEDIA_ROOT = Path(DATA_DIR) / (
    f"media-{os.environ['PYTEST_XDIST_WORKER']}"
    if os.environ.get("PYTEST_XDIST_WORKER")
    else "media"
)
MEDIA_ROOT = READERSTUDY_WORKER_MEDIA_ROOT
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
CELERY_TASK_ALWAYS_EAGER = False
# The settings' default storage: the media folder, unless READERSTUDY_S3_BUCKET is set
# (a worker that tests/test_object_storage.py starts on its S3 server).
STORAGES = {
    "default": STORAGES["default"],  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Sessions through the file cache on PostgreSQL too where no CACHE_URL names a Redis:
# the suite runs on one machine, and both passes then count the same queries for a
# reader's requests (tests/cases/test_reader_queries.py).
if "sessions" not in CACHES:  # noqa: F405
    CACHES["sessions"] = {  # noqa: F405
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(Path(DATA_DIR) / "cache" / "sessions"),
    }
    SESSION_ENGINE = "audit.sessions"

# A file, not SQLite's in-memory default, so that a Celery worker started by a test
# (tests/inference/test_worker.py) opens the same test database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(Path(DATA_DIR) / "test-db.sqlite3")}  # noqa: F405

# One filesystem broker per xdist worker: the suite's processes share READERSTUDY_DATA_DIR
# (the controller sets it before the workers start), and a Celery worker that one test
# process starts must never take a task another one sent (its run is not in that
# process's test database). The worker subprocesses inherit PYTEST_XDIST_WORKER.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _XDIST_WORKER and CELERY_BROKER_URL.startswith("filesystem://"):  # noqa: F405
    _queue_dir = Path(DATA_DIR) / f"celery-broker-{_XDIST_WORKER}"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "control_folder": str(_queue_dir / "control"),
    }
    for _folder in ("queue", "control"):
        (_queue_dir / _folder).mkdir(parents=True, exist_ok=True)
