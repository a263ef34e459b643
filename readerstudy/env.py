"""Read settings from the environment, loudly.

Every helper raises ``ImproperlyConfigured`` naming the variable and the bad value, so a
typo in a deployment fails at start-up instead of silently falling back to a default.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# URL schemes that name no server: a file, a folder, or the process's own memory.
_HOSTLESS_SCHEMES = {"sqlite", "filesystem", "memory"}
# Django's `startproject` prefixes the key it writes into settings.py with this: such a
# key has been in a file, usually a repository, and is not a secret.
_INSECURE_KEY_PREFIX = "django-insecure-"


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    env = os.environ if environ is None else environ
    value = env.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str = "", *, environ: Mapping[str, str] | None = None) -> str:
    """The variable as a string, or ``default`` when unset."""
    value = _raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool = False, *, environ: Mapping[str, str] | None = None) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an error."""
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a boolean: use one of 1, 0, true, false, yes, no, on, off"
    )


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """An integer, optionally bounded below."""
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum {minimum}")
    return number


def env_choice(
    name: str,
    default: str,
    choices: tuple[str, ...],
    *,
    upper: bool = False,
    environ: Mapping[str, str] | None = None,
) -> str:
    """One of ``choices`` (after upper-casing the value when ``upper``); anything else
    is an error listing them."""
    value = env_str(name, default, environ=environ)
    if upper:
        value = value.upper()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: use one of {', '.join(choices)}")
    return value


def env_list(
    name: str, default: list[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> list[str]:
    """A comma-separated list; empty items are an error (``a,,b`` is a typo)."""
    value = _raw(name, environ)
    if value is None:
        return list(default or [])
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(f"{name}={value!r} has an empty item: separate values by commas")
    return items


def env_url(
    name: str,
    default: str,
    *,
    schemes: set[str],
    environ: Mapping[str, str] | None = None,
) -> str:
    """A URL whose scheme is one of ``schemes`` (e.g. a database or broker URL)."""
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ImproperlyConfigured(
            f"{name} has scheme {parsed.scheme or '(none)'!r}; expected one of: {allowed}"
        )
    if parsed.scheme not in _HOSTLESS_SCHEMES and not parsed.hostname:
        raise ImproperlyConfigured(f"{name}={value!r} has no host name")
    return value


def env_path(name: str, default: Path, *, environ: Mapping[str, str] | None = None) -> Path:
    """A folder path, made absolute; an empty value is an error, not the current folder."""
    value = _raw(name, environ)
    if value is None:
        return default.resolve()
    if value == "":
        raise ImproperlyConfigured(
            f"{name} is empty: name a folder, or unset it for the default {str(default)!r}"
        )
    return Path(value).expanduser().resolve()


def allowed_hosts(
    *, production: bool, default: list[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """``DJANGO_ALLOWED_HOSTS``; ``default`` when unset, except in production
    (``DJANGO_SECURE=1``), where it must be set: an empty list would answer every
    request with 400."""
    if production and _raw("DJANGO_ALLOWED_HOSTS", environ) is None:
        raise ImproperlyConfigured(
            "DJANGO_ALLOWED_HOSTS must be set when DJANGO_SECURE=1 (comma-separated host names)"
        )
    return env_list("DJANGO_ALLOWED_HOSTS", default, environ=environ)


def secret_key(
    *, data_dir: Path, production: bool, environ: Mapping[str, str] | None = None
) -> str:
    """``DJANGO_SECRET_KEY``; outside production, generated once and kept in ``data_dir``.

    A production deployment (``DJANGO_SECURE=1``) must set the key explicitly: a key
    generated on one web host would not match the key of the next. A key given
    explicitly is refused, in production or not, when it is short, simple, or Django's
    ``django-insecure-`` placeholder.
    """
    value = _raw("DJANGO_SECRET_KEY", environ)
    if value:
        if value.startswith(_INSECURE_KEY_PREFIX):
            raise ImproperlyConfigured(
                f"DJANGO_SECRET_KEY starts with {_INSECURE_KEY_PREFIX!r}, the prefix of the "
                "key Django's startproject writes into settings.py: use at least 50 random "
                "characters of your own"
            )
        if len(value) < 50 or len(set(value)) < 5:
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY is too short or too simple: use at least 50 random characters"
            )
        return value
    if production:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_SECURE=1")
    key_file = data_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(64)
    # Created exclusively with owner-only permissions; a concurrent start that lost the
    # race reads the winner's key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


# S3's rules for a bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting
# and ending with a letter or digit.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def object_storage(*, environ: Mapping[str, str] | None = None) -> dict | None:
    """The ``STORAGES["default"]`` entry for S3-compatible object storage when
    ``READERSTUDY_S3_BUCKET`` is set, else None (files stay under the data dir).

    ``AWS_S3_ENDPOINT_URL`` names a server other than Amazon's (MinIO, Ceph, a
    hospital's appliance); ``AWS_S3_REGION_NAME`` and ``AWS_S3_ADDRESSING_STYLE`` pass
    through; ``READERSTUDY_S3_PREFIX`` puts every key under a folder of the bucket. The
    credentials are not settings: boto3 reads ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY`` (or an instance role) from the environment itself; only
    one of the two set is an error. Objects get the bucket's own access rules (no ACL
    is sent, so none is made public) and are served only through the platform's views.
    """
    bucket = env_str("READERSTUDY_S3_BUCKET", "", environ=environ)
    if not bucket:
        return None
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise ImproperlyConfigured(
            f"READERSTUDY_S3_BUCKET={bucket!r} is not a bucket name: 3-63 lowercase "
            "letters, digits, dots and hyphens, starting and ending with a letter or digit"
        )
    endpoint = env_url("AWS_S3_ENDPOINT_URL", "", schemes={"http", "https"}, environ=environ)
    prefix = env_str("READERSTUDY_S3_PREFIX", "", environ=environ).strip("/")
    if prefix and (not _KEY_PREFIX.fullmatch(prefix) or {".", ".."} & set(prefix.split("/"))):
        raise ImproperlyConfigured(
            f"READERSTUDY_S3_PREFIX={prefix!r}: use folder names of letters, digits, '.', "
            "'_' and '-', separated by '/'"
        )
    style = env_choice(
        "AWS_S3_ADDRESSING_STYLE", "auto", ("auto", "path", "virtual"), environ=environ
    )
    key_id = env_str("AWS_ACCESS_KEY_ID", "", environ=environ)
    secret = env_str("AWS_SECRET_ACCESS_KEY", "", environ=environ)
    if bool(key_id) != bool(secret):
        raise ImproperlyConfigured(
            "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (an instance role)"
        )
    if importlib.util.find_spec("storages") is None or importlib.util.find_spec("boto3") is None:
        raise ImproperlyConfigured(
            "READERSTUDY_S3_BUCKET is set but django-storages or boto3 is not installed: "
            "pip install -e '.[s3]'"
        )
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint or None,
            "region_name": env_str("AWS_S3_REGION_NAME", "", environ=environ) or None,
            "addressing_style": None if style == "auto" else style,
            "location": prefix,
            "default_acl": None,
            "file_overwrite": False,
        },
    }
