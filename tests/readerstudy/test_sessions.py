"""Sessions read from a cache and kept in the database (``audit.sessions``), and the
settings that choose the session engine and the database connections."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.urls import reverse

from tests.processes import instance_env, service_missing

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/13"
CACHED = "django.contrib.sessions.cached_db"

pytestmark = pytest.mark.django_db


def _login(client) -> str:
    response = client.post(reverse("login"), {"username": "reader", "password": "pw-reader-123"})
    assert response.status_code == 302
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _logged_in(client) -> bool:
    return client.get(reverse("api-reader-studies")).status_code == 200


def _sessions_cache(settings, backend: str, location: str, **options) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "sessions": {"BACKEND": backend, "LOCATION": location, "OPTIONS": options},
    }
    settings.SESSION_ENGINE = "audit.sessions"


def test_a_session_outlives_an_emptied_cache(client, reader):
    key = _login(client)
    assert caches["sessions"].get(CACHED + key) is not None
    caches["sessions"].clear()
    assert _logged_in(client)  # read from the database, and cached again
    assert caches["sessions"].get(CACHED + key) is not None


@pytest.mark.redis
def test_a_session_outlives_a_redis_that_lost_its_data(client, reader, settings):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        service_missing(f"Redis at {REDIS_URL} is not reachable: {error}")
    _sessions_cache(settings, "django.core.cache.backends.redis.RedisCache", REDIS_URL)
    key = _login(client)
    assert _logged_in(client)
    assert caches["sessions"].get(CACHED + key) is not None
    # Gone from Redis, as after a restart without persistence (only this test's key: the
    # database may be shared).
    server = redis.Redis.from_url(REDIS_URL)
    assert server.delete(*server.scan_iter(f"*{key}")) == 1
    assert _logged_in(client)
    client.post(reverse("logout"))
    assert caches["sessions"].get(CACHED + key) is None
    assert not Session.objects.filter(session_key=key).exists()
    assert not _logged_in(client)


def test_an_unreachable_cache_falls_back_to_the_database(client, reader, settings):
    import redis

    # Nothing listens on port 1: every cache call fails at once.
    _sessions_cache(
        settings,
        "django.core.cache.backends.redis.RedisCache",
        "redis://127.0.0.1:1/0",
        socket_connect_timeout=0.5,
    )
    key = _login(client)
    assert _logged_in(client) and _logged_in(client)
    # Logging out fails and deletes nothing, so that the cache, once it answers again,
    # holds no session that the database no longer has.
    with pytest.raises(redis.ConnectionError):
        client.post(reverse("logout"))
    assert Session.objects.filter(session_key=key).exists()


def test_deactivating_a_user_removes_their_sessions_from_the_cache(client, reader):
    key = _login(client)
    assert caches["sessions"].get(CACHED + key) is not None
    reader.is_active = False
    reader.save()
    assert caches["sessions"].get(CACHED + key) is None
    assert not Session.objects.filter(session_key=key).exists()


def _settings_for(env: dict[str, str], tmp_path: Path) -> dict:
    probe = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "db = s.DATABASES['default']; "
        "print(json.dumps({'engine': s.SESSION_ENGINE, 'caches': s.CACHES, "
        "'conn_max_age': db['CONN_MAX_AGE'], 'health_checks': db['CONN_HEALTH_CHECKS']}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=instance_env(
            DJANGO_SETTINGS_MODULE="readerstudy.settings", READERSTUDY_DATA_DIR=str(tmp_path), **env
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_demo_reads_sessions_from_files_and_keeps_its_connections(tmp_path):
    chosen = _settings_for({}, tmp_path)
    assert chosen["engine"] == "audit.sessions"
    assert chosen["caches"]["sessions"]["BACKEND"].endswith("FileBasedCache")
    assert chosen["caches"]["sessions"]["LOCATION"] == str(tmp_path / "cache" / "sessions")
    assert chosen["conn_max_age"] > 0 and chosen["health_checks"] is True


def test_cache_url_puts_sessions_in_redis(tmp_path):
    chosen = _settings_for(
        {"DATABASE_URL": "postgres://u@db.example.org/rs", "CACHE_URL": "redis://r:6379/1"},
        tmp_path,
    )
    assert chosen["engine"] == "audit.sessions"
    assert chosen["caches"]["sessions"]["BACKEND"].endswith("RedisCache")
    assert chosen["caches"]["sessions"]["LOCATION"] == "redis://r:6379/1"


def test_postgresql_without_a_cache_reads_sessions_from_the_database(tmp_path):
    # Web hosts may not share a data dir: no file cache then.
    chosen = _settings_for({"DATABASE_URL": "postgres://u@db.example.org/rs"}, tmp_path)
    assert chosen["engine"] == "django.contrib.sessions.backends.db"
    assert "sessions" not in chosen["caches"]


def test_a_malformed_cache_url_stops_the_start_up(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=instance_env(
            DJANGO_SETTINGS_MODULE="readerstudy.settings",
            READERSTUDY_DATA_DIR=str(tmp_path),
            CACHE_URL="memcached://m:11211",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CACHE_URL has scheme 'memcached'" in result.stderr
