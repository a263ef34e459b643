"""Settings for the reader-study platform, read from the environment.

Defaults are the embedded, safe ones: SQLite and Celery's filesystem transport under
``READERSTUDY_DATA_DIR`` (``./var``), debug off, a secret key generated once and kept
in the data directory. ``DJANGO_SECURE=1`` turns on the production hardening
(HTTPS-only cookies, HSTS, SSL redirect) and requires an explicit secret key and
allowed hosts.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _
from whitenoise.compress import Compressor

from readerstudy.env import (
    allowed_hosts,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_path,
    env_url,
    object_storage,
    secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_path("READERSTUDY_DATA_DIR", BASE_DIR / "var")

SECURE = env_bool("DJANGO_SECURE", False)
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = secret_key(data_dir=DATA_DIR, production=SECURE)
ALLOWED_HOSTS = allowed_hosts(production=SECURE, default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "audit",
    "cases",
    "inference",
    "analysis",
    "backups",
    "console",
    "demo",
]

MIDDLEWARE = [
    # First: everything the audit trail logs during a request carries its origin.
    "audit.middleware.AuditOriginMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "readerstudy.middleware.SessionTimeoutMiddleware",
    # Last, as django-axes asks: it turns a lockout into a 403 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "readerstudy.urls"
WSGI_APPLICATION = "readerstudy.wsgi.application"
ASGI_APPLICATION = "readerstudy.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
    schemes={"sqlite", "postgres", "postgresql", "pgsql"},
)
# Persistent connections, checked before reuse: after a database restart the first
# request on each worker reconnects instead of failing on a dead connection. SQLite too:
# opening the file and running the PRAGMAs below cost a fifth of an answer's CPU. Django
# keeps a connection per thread, so a threaded server shares none; between requests a
# connection holds no transaction open, so it never holds up a WAL checkpoint. (The
# demo's runserver closes each request's connection itself: there this changes nothing.)
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo runs a web server and a worker on one file: WAL lets readers proceed
    # while one writes, IMMEDIATE transactions make writers queue instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a locked-out user name + address before the password
    # is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Lock a user name from one address after this many failed logins, for an hour; every
# failure is also in the audit trail. A study admin unlocks a reader from the admin's
# "Password / unlock" page; `manage.py axes_reset` unlocks from the command line.
AXES_FAILURE_LIMIT = env_int("READERSTUDY_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("READERSTUDY_LOGIN_LOCKOUT_HOURS", 1, minimum=1)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"

# --- languages --------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

# --- files ------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# Case images, Grad-CAM maps, model weights and reports: under MEDIA_ROOT, or in an
# S3-compatible bucket (READERSTUDY_S3_BUCKET) that every host reads and writes, served
# through the same permission-checked views either way (readerstudy.env.object_storage).
STORAGES = {
    "default": object_storage() or {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Source maps (the API docs' bundles ship 1-4 MB ones) are fetched only by a browser's
# developer tools: compressing them with brotli took most of collectstatic's 40 s.
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (*Compressor.SKIP_COMPRESS_EXTENSIONS, "map")
# Case images live here and are served only through permission-checked views: there is
# deliberately no MEDIA_URL route.
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media-not-served/"
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Limits applied to every imported image (see cases.importing.imaging).
READERSTUDY_MAX_IMAGE_BYTES = env_int("READERSTUDY_MAX_IMAGE_BYTES", 40 * 1024 * 1024, minimum=1)
READERSTUDY_MAX_IMAGE_PIXELS = env_int("READERSTUDY_MAX_IMAGE_PIXELS", 60_000_000, minimum=1)
READERSTUDY_MAX_ARCHIVE_BYTES = env_int(
    "READERSTUDY_MAX_ARCHIVE_BYTES", 4 * 1024 * 1024 * 1024, minimum=1
)

# Time on a case is measured by the server and capped, so an idle tab does not count.
READERSTUDY_MAX_SECONDS_PER_CASE = env_int("READERSTUDY_MAX_SECONDS_PER_CASE", 600, minimum=1)

# --- Celery -----------------------------------------------------------------------------
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL",
    "filesystem://",
    schemes={"filesystem", "redis", "rediss", "amqp", "memory"},
)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis hands an unacknowledged task to another worker after this long; it must
    # outlast the longest task (an inference run: 6 h) or the work would be done twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 7 * 3600}
elif CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = DATA_DIR / "celery-broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "control"):
        (_queue_dir / _folder).mkdir(parents=True, exist_ok=True)
# Task state lives in our own tables (runs, predictions): no result backend needed.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Two queues, so that an inference run of hours never holds up a report or the beat's
# light tasks: "inference" for the workers that run a model (a GPU host), "default" for
# everything else. Every task is named here (a test checks it); one not named would go
# to the default queue. The names are fixed: `bin/production --queues`, the demo's
# worker and the README name them, and the broker URL (a Redis database per
# installation) already keeps installations apart.
READERSTUDY_INFERENCE_QUEUE = "inference"
READERSTUDY_DEFAULT_QUEUE = "default"
READERSTUDY_QUEUES = (READERSTUDY_DEFAULT_QUEUE, READERSTUDY_INFERENCE_QUEUE)
CELERY_TASK_DEFAULT_QUEUE = READERSTUDY_DEFAULT_QUEUE
CELERY_TASK_ROUTES = {
    "inference.tasks.run_inference": {"queue": READERSTUDY_INFERENCE_QUEUE},
    "inference.tasks.send_pending_runs": {"queue": READERSTUDY_DEFAULT_QUEUE},
    "analysis.tasks.report_compute_task": {"queue": READERSTUDY_DEFAULT_QUEUE},
    "analysis.tasks.send_pending_reports": {"queue": READERSTUDY_DEFAULT_QUEUE},
    "cases.tasks.close_due_studies": {"queue": READERSTUDY_DEFAULT_QUEUE},
}
# Celery beat sends again what waited for a broker that was down (see readerstudy.tasks).
READERSTUDY_SEND_PENDING_SECONDS = env_int("READERSTUDY_SEND_PENDING_SECONDS", 30, minimum=1)
# An inference run silent for this long counts as dead (`reconcile_inference`).
READERSTUDY_INFERENCE_STALE_SECONDS = env_int(
    "READERSTUDY_INFERENCE_STALE_SECONDS", 900, minimum=60
)
CELERY_BEAT_SCHEDULE = {
    f"send-pending-{name}": {
        "task": f"{name}.tasks.{task}",
        "schedule": float(READERSTUDY_SEND_PENDING_SECONDS),
        "options": {"expires": float(READERSTUDY_SEND_PENDING_SECONDS)},
    }
    for name, task in [("inference", "send_pending_runs"), ("analysis", "send_pending_reports")]
}
# A study past its closing date is closed to readers at once (Study.is_open); this
# records it as closed, with its audit event.
CELERY_BEAT_SCHEDULE["close-due-studies"] = {
    "task": "cases.tasks.close_due_studies",
    "schedule": 60.0,
    "options": {"expires": 60.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # DRF's JSON parser, with a translated error message.
    "DEFAULT_PARSER_CLASSES": [
        "readerstudy.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    # A service's refusal (readerstudy.errors.ServiceError) -> {"detail", "code"}.
    "EXCEPTION_HANDLER": "readerstudy.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Reader study API",
    "DESCRIPTION": "Reader studies that compare dermatologists with CNNs.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI from the installed package, not a CDN: hospital networks are often closed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # drf-spectacular's enum hook, then the 400/403/404/405 every view can answer.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "readerstudy.api.error_responses",
    ],
}

# --- sessions ---------------------------------------------------------------------------
# Every request of a logged-in user reads its session. With a cache, it is read from
# there and kept in the database too (audit.sessions: Django's cached_db, which also
# survives an unreachable cache): a session outlives a cache that restarts or loses its
# data, and logging out deletes it from both. The cache is the Redis of CACHE_URL, which
# every web host shares. Without one, on SQLite (everything on one machine: the demo),
# files under the data dir, which every process there shares (the web server, the
# worker, management commands). On PostgreSQL without CACHE_URL (web hosts may not share
# a data dir) sessions are read from the database.
CACHE_URL = env_url("CACHE_URL", "", schemes={"redis", "rediss"})
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if CACHE_URL:
    CACHES["sessions"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        # A Redis that does not answer costs a request a second at most (then the
        # database answers).
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    CACHES["sessions"] = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(DATA_DIR / "cache" / "sessions"),
        # Beyond this many files a third is dropped (those sessions are read from the
        # database again): a study's readers fit.
        "OPTIONS": {"MAX_ENTRIES": 20_000},
    }
SESSION_CACHE_ALIAS = "sessions"
SESSION_ENGINE = "audit.sessions" if "sessions" in CACHES else "django.contrib.sessions.backends.db"

# --- security ---------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# A session ends after this long without a request, and in any case this long after login.
READERSTUDY_SESSION_IDLE_SECONDS = env_int("READERSTUDY_SESSION_IDLE_SECONDS", 2 * 3600, minimum=60)
READERSTUDY_SESSION_ABSOLUTE_SECONDS = env_int("READERSTUDY_SESSION_SECONDS", 12 * 3600, minimum=60)
SESSION_COOKIE_AGE = READERSTUDY_SESSION_ABSOLUTE_SECONDS
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Read whether secure or not, so that a typo fails on a staging machine too; they take
# effect only with DJANGO_SECURE=1.
_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000, minimum=0)
_BEHIND_PROXY = env_bool("DJANGO_BEHIND_PROXY", False)
if SECURE:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = _HSTS_SECONDS
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if _BEHIND_PROXY:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The audit trail's client address: REMOTE_ADDR, or behind the reverse proxy (which
# sets or appends X-Forwarded-For) the last address of that header (audit.middleware).
READERSTUDY_CLIENT_ADDRESS_FROM_PROXY = SECURE and _BEHIND_PROXY
# Login lockouts count failures per (user name, client address) with the same address:
# behind the proxy, the reader's own, not the proxy's (which every reader would share).
AXES_CLIENT_IP_CALLABLE = "audit.middleware.client_address"

# --- logging: structured lines to stdout -------------------------------------------------
LOG_LEVEL = env_choice(
    "DJANGO_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), upper=True
)
# json: one JSON object per line (for a log collector); plain: for a terminal.
LOG_FORMAT = env_choice("DJANGO_LOG_FORMAT", "json" if SECURE else "plain", ("json", "plain"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    # django-axes announces itself at every start-up; keep its warnings only.
    "loggers": {"axes": {"level": "WARNING"}},
}
