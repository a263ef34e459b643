"""Settings helpers reject malformed values; production settings pass the deploy check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from readerstudy.env import (
    allowed_hosts,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_path,
    env_url,
    secret_key,
)
from tests.processes import instance_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "raw, expected",
    [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False), ("", False)],
)
def test_env_bool_accepts_the_usual_spellings(raw, expected):
    assert env_bool("X", environ={"X": raw}) is expected


def test_env_bool_default_when_unset():
    assert env_bool("X", True, environ={}) is True


@pytest.mark.parametrize("raw", ["yes please", "2", "enable", "tru"])
def test_env_bool_rejects_anything_else(raw):
    with pytest.raises(ImproperlyConfigured, match=f"X={raw!r} is not a boolean"):
        env_bool("X", environ={"X": raw})


def test_env_int_rejects_text_and_values_below_minimum():
    assert env_int("N", 3, environ={"N": "12"}) == 12
    with pytest.raises(ImproperlyConfigured, match="N='12kb' is not an integer"):
        env_int("N", 3, environ={"N": "12kb"})
    with pytest.raises(ImproperlyConfigured, match="N=0 is below the minimum 1"):
        env_int("N", 3, minimum=1, environ={"N": "0"})


def test_env_choice_takes_one_of_its_choices_only():
    assert env_choice("L", "INFO", ("INFO", "DEBUG"), environ={}) == "INFO"
    assert env_choice("L", "INFO", ("INFO", "DEBUG"), upper=True, environ={"L": "debug"}) == "DEBUG"
    with pytest.raises(ImproperlyConfigured, match=r"L='debug': use one of INFO, DEBUG"):
        env_choice("L", "INFO", ("INFO", "DEBUG"), environ={"L": "debug"})


def test_env_list_rejects_empty_items():
    assert env_list("H", environ={"H": "a.org, b.org"}) == ["a.org", "b.org"]
    with pytest.raises(ImproperlyConfigured, match="has an empty item"):
        env_list("H", environ={"H": "a.org,,b.org"})


def test_env_url_checks_scheme_and_host():
    ok = "postgres://u@db.example.org:5432/rs"
    assert env_url("D", "sqlite:///x", schemes={"postgres"}, environ={"D": ok}) == ok
    with pytest.raises(ImproperlyConfigured, match="scheme 'mysql'; expected one of: postgres"):
        env_url("D", "", schemes={"postgres"}, environ={"D": "mysql://h/db"})
    with pytest.raises(ImproperlyConfigured, match="has no host name"):
        env_url("D", "", schemes={"postgres"}, environ={"D": "postgres:///db"})


@pytest.mark.parametrize("url", ["memory://", "filesystem://", "sqlite:///x.db"])
def test_env_url_needs_no_host_for_memory_folder_or_file(url):
    schemes = {"memory", "filesystem", "sqlite", "redis"}
    assert env_url("B", "", schemes=schemes, environ={"B": url}) == url
    with pytest.raises(ImproperlyConfigured, match="B='redis://' has no host name"):
        env_url("B", "", schemes=schemes, environ={"B": "redis://"})


def test_env_path_is_absolute_and_refuses_an_empty_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = Path("var")
    assert env_path("P", default, environ={}) == tmp_path / "var"
    assert env_path("P", default, environ={"P": "data"}) == tmp_path / "data"
    for empty in ("", "  "):
        with pytest.raises(
            ImproperlyConfigured,
            match=r"^P is empty: name a folder, or unset it for the default 'var'$",
        ):
            env_path("P", default, environ={"P": empty})


def test_allowed_hosts_required_in_production_only():
    default = ["127.0.0.1"]
    assert allowed_hosts(production=False, default=default, environ={}) == default
    hosts = {"DJANGO_ALLOWED_HOSTS": "rs.example.org"}
    assert allowed_hosts(production=True, default=default, environ=hosts) == ["rs.example.org"]
    with pytest.raises(
        ImproperlyConfigured,
        match=r"^DJANGO_ALLOWED_HOSTS must be set when DJANGO_SECURE=1 \(comma-separated",
    ):
        allowed_hosts(production=True, default=default, environ={})


def test_secret_key_is_generated_once_and_kept(tmp_path):
    first = secret_key(data_dir=tmp_path, production=False, environ={})
    second = secret_key(data_dir=tmp_path, production=False, environ={})
    assert first == second and len(first) >= 50
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_secret_key_required_and_strong_in_production(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="must be set when DJANGO_SECURE=1"):
        secret_key(data_dir=tmp_path, production=True, environ={})
    with pytest.raises(ImproperlyConfigured, match="too short"):
        secret_key(data_dir=tmp_path, production=True, environ={"DJANGO_SECRET_KEY": "abc"})


@pytest.mark.parametrize("production", [True, False])
def test_secret_key_refuses_djangos_insecure_placeholder(tmp_path, production):
    # Long and varied enough to pass the other checks: only the prefix is wrong.
    key = "django-insecure-" + PRODUCTION["DJANGO_SECRET_KEY"]
    with pytest.raises(
        ImproperlyConfigured, match="DJANGO_SECRET_KEY starts with 'django-insecure-'"
    ):
        secret_key(data_dir=tmp_path, production=production, environ={"DJANGO_SECRET_KEY": key})
    assert not (tmp_path / "secret_key").exists()


def _manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = instance_env()
    clean.update(
        {
            "READERSTUDY_DATA_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DJANGO_SECRET_KEY": "k3Jd9vQ2-xZ8pLm4Rt7wYb1Nc6Hs0Ga5Fe2Ui9Ko3Pq8Vj4Xl7Mz1Dy6Bw0Tr5Sn",
    "DJANGO_ALLOWED_HOSTS": "readerstudy.example.org",
    "DJANGO_SECURE": "1",
}


def test_deploy_check_passes_with_production_values(tmp_path):
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_check_warns_on_embedded_defaults(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env={}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stderr + result.stdout


INSECURE_KEY = "django-insecure-" + PRODUCTION["DJANGO_SECRET_KEY"]
SECURE_WITHOUT = {
    name: {key: value for key, value in PRODUCTION.items() if key != name}
    for name in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS")
}


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DJANGO_DEBUG": "yes please"}, "DJANGO_DEBUG='yes please' is not a boolean"),
        ({"DATABASE_URL": "mysql://h/db"}, "DATABASE_URL has scheme 'mysql'"),
        ({"CELERY_BROKER_URL": "kafka://h"}, "CELERY_BROKER_URL has scheme 'kafka'"),
        ({"CELERY_BROKER_URL": "redis://"}, "CELERY_BROKER_URL='redis://' has no host name"),
        (
            {"READERSTUDY_MAX_IMAGE_BYTES": "lots"},
            "READERSTUDY_MAX_IMAGE_BYTES='lots' is not an integer",
        ),
        ({"DJANGO_LOG_LEVEL": "loud"}, "DJANGO_LOG_LEVEL='LOUD': use one of DEBUG, INFO"),
        ({"DJANGO_LOG_FORMAT": "xml"}, "DJANGO_LOG_FORMAT='xml': use one of json, plain"),
        ({"DJANGO_SECURE": "sure"}, "DJANGO_SECURE='sure' is not a boolean"),
        (
            {"DJANGO_ALLOWED_HOSTS": "a.org,,b.org"},
            "DJANGO_ALLOWED_HOSTS='a.org,,b.org' has an empty item",
        ),
        (
            SECURE_WITHOUT["DJANGO_ALLOWED_HOSTS"],
            "DJANGO_ALLOWED_HOSTS must be set when DJANGO_SECURE=1",
        ),
        ({"DJANGO_SECRET_KEY": "abc"}, "DJANGO_SECRET_KEY is too short or too simple"),
        (
            {"DJANGO_SECRET_KEY": INSECURE_KEY},
            "DJANGO_SECRET_KEY starts with 'django-insecure-'",
        ),
        (SECURE_WITHOUT["DJANGO_SECRET_KEY"], "DJANGO_SECRET_KEY must be set when DJANGO_SECURE=1"),
        (
            {"READERSTUDY_DATA_DIR": ""},
            "READERSTUDY_DATA_DIR is empty: name a folder, or unset it for the default",
        ),
        # Not secure, so these two have no effect; a typo still stops the start-up.
        ({"DJANGO_HSTS_SECONDS": "1y"}, "DJANGO_HSTS_SECONDS='1y' is not an integer"),
        ({"DJANGO_BEHIND_PROXY": "maybe"}, "DJANGO_BEHIND_PROXY='maybe' is not a boolean"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_malformed_values_fail_loudly_at_start_up(tmp_path, env, message):
    result = _manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    "env",
    [{"CELERY_BROKER_URL": "memory://"}, {"DJANGO_BEHIND_PROXY": "1", "DJANGO_HSTS_SECONDS": "0"}],
    ids=lambda env: "-".join(env),
)
def test_well_formed_values_start(tmp_path, env):
    result = _manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
