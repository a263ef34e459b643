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
MEDIA_ROOT = Path(DATA_DIR) / "media"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
CELERY_TASK_ALWAYS_EAGER = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# A file, not SQLite's in-memory default, so that a Celery worker started by a test
# (tests/inference/test_worker.py) opens the same test database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(Path(DATA_DIR) / "test-db.sqlite3")}  # noqa: F405
