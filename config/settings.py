"""Django settings, all from the environment (see README.md, "Configuration").

Embedded default with no variables set: SQLite file ``db.sqlite3`` beside manage.py and Celery in
eager mode. Set ``DATABASE_URL`` and ``REDIS_URL`` for PostgreSQL and a Redis broker.
"""

from __future__ import annotations

import os
from pathlib import Path

from kombu import Queue

# pure declarations (no Django, no SDK): each provider's name, key variable and batch window
from llm.providers.specs import PROVIDER_SPECS

from .env import (
    SettingError,
    env_bool,
    env_cache,
    env_choice,
    env_database,
    env_float,
    env_hosts,
    env_int,
    env_name,
    env_path,
    env_price_table,
    env_rate,
    env_redis_url,
    env_secret,
    env_throttle_rate,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
_DAY = 86400  # seconds

DEBUG = env_bool("DEBUG", False)
_DEV_KEY = "insecure-dev-key-only-for-the-embedded-default"
SECRET_KEY = env_secret("SECRET_KEY", min_length=32) or _DEV_KEY
ALLOWED_HOSTS = env_hosts("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "clustering",
    "llm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # static files (admin CSS, the API docs' JS) served by the app under gunicorn, from
    # STATIC_ROOT after `collectstatic`, compressed and with far-future caching of hashed names
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if "sqlite" in DATABASES["default"]["ENGINE"]:
    # Celery eager tasks and the web app share one file; wait for the writer instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# `python manage.py collectstatic` copies every app's static files here (hashed names and a
# manifest, plus gzip/brotli copies); WhiteNoise serves them. With DEBUG on, names are not
# hashed and no collectstatic is needed. Tests use the plain storage (tests/conftest.py), as
# Django advises for manifest storage.
STATIC_ROOT = env_path("STATIC_ROOT", BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env_redis_url("REDIS_URL")
# Unset REDIS_URL: tasks run eagerly in-process (the embedded default).
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
# Longest task we run (a clustering run or one LLM job step) must finish well within this, or the
# broker would redeliver a task that is still running.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3600, minimum=1, maximum=7 * _DAY)
CELERY_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT", 2 * CELERY_TASK_TIME_LIMIT, minimum=CELERY_TASK_TIME_LIMIT + 1
)
# the soft limit leaves the task up to 30 s (at most a tenth of the limit) to record its failure
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - min(30, max(1, CELERY_TASK_TIME_LIMIT // 10))
# Address-space limit (MB) of each prefork worker child (RLIMIT_AS, set in config/celery.py):
# a task that needs more gets MemoryError and its row records "memory limit"; 0 = no limit.
# A child whose resident memory grew past half of it is replaced after its task.
CELERY_WORKER_MEMORY_LIMIT_MB = env_int(
    "CELERY_WORKER_MEMORY_LIMIT_MB", 4096, minimum=0, maximum=1024 * 1024
)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = CELERY_WORKER_MEMORY_LIMIT_MB * 512 or None  # KiB
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 10
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (Queue("default"), Queue("llm"))
# Exact names win over the pattern: maintenance stays on "default" so an llm backlog never
# delays the reconciler or a scheduled rerun.
CELERY_TASK_ROUTES = {
    "llm.reconcile": {"queue": "default"},
    "llm.scheduled_rerun": {"queue": "default"},
    "llm.poll_batches": {"queue": "default"},
    "llm.*": {"queue": "llm"},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"

CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The reconciler (beat, every RECONCILE_INTERVAL_SECONDS) re-drives work stalled longer than
# RECONCILE_STALL_SECONDS; a row re-driven RECONCILE_MAX_REDRIVES times that stalls again fails
# with the reason.
RECONCILE_INTERVAL_SECONDS = env_int("RECONCILE_INTERVAL_SECONDS", 60, minimum=1, maximum=_DAY)
RECONCILE_STALL_SECONDS = env_int("RECONCILE_STALL_SECONDS", 300, minimum=1, maximum=7 * _DAY)
RECONCILE_MAX_REDRIVES = env_int("RECONCILE_MAX_REDRIVES", 5, minimum=1, maximum=1000)
if "RECONCILE_MAX_DELIVERIES" in os.environ:  # renamed: counted claims and re-drives together
    raise SettingError(
        "RECONCILE_MAX_DELIVERIES: no longer read; set RECONCILE_MAX_REDRIVES (re-drives by the "
        "reconciler after which stalled work fails; default 5) instead"
    )

# --- REST API -----------------------------------------------------------------------------------
# Anonymous users may read validated summaries only (set False to require a login for reading).
API_ANONYMOUS_READ = env_bool("API_ANONYMOUS_READ", True)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int(
    "DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024, minimum=1024, maximum=1024**3
)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "config.api_schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "write": env_throttle_rate("API_WRITE_THROTTLE", "60/hour"),
        "anon": env_throttle_rate("API_ANON_THROTTLE", "600/hour"),
    },
}
# under /api/ a CSRF failure is the API's JSON 403, elsewhere Django's page
CSRF_FAILURE_VIEW = "config.api_errors.csrf_failure"
SPECTACULAR_SETTINGS = {
    "TITLE": "clustersum API",
    "DESCRIPTION": "Clusters, LLM summaries with judge verdicts, and their human review.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # PATCH bodies documented as sent: the review PATCH requires validation_status
    "COMPONENT_SPLIT_PATCH": False,
    # the documentation page's assets come from the installed sidecar package, not a CDN
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Throttle counters are kept in the cache: set CACHE_URL (e.g. redis://127.0.0.1:6379/1, a
# database of its own, not the broker's) to share them between processes; default per process.
if os.environ.get("CACHE_URL"):
    CACHES = {"default": env_cache("CACHE_URL")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "clustering": {"level": "INFO"},
        "llm": {"level": "INFO"},
    },
}

# --- LLM providers ----------------------------------------------------------------------------
# "extractive" is the offline, deterministic, non-LLM baseline; "gemini" uses google-genai.
# the names of the providers' specs (llm/providers/specs/), in their order
LLM_PROVIDERS = tuple(spec.name for spec in PROVIDER_SPECS)
LLM_PROVIDER = env_choice("LLM_PROVIDER", "extractive", LLM_PROVIDERS)
LLM_MODEL = env_name("LLM_MODEL")
LLM_JUDGE_MODEL = env_name("LLM_JUDGE_MODEL")
# Points a provider at a compatible endpoint (a local emulator, an OpenAI-compatible server).
LLM_BASE_URL = env_url("LLM_BASE_URL")
# seconds per provider call
LLM_TIMEOUT = env_float("LLM_TIMEOUT", 60.0, minimum=0.1, maximum=3600.0)
# Keys are read from the environment only; never logged, stored or echoed in errors. One setting
# per spec's key_setting, named like its variable: GEMINI_API_KEY (or GOOGLE_API_KEY),
# OPENAI_API_KEY, ANTHROPIC_API_KEY.
for _spec in PROVIDER_SPECS:
    if _spec.key_setting:
        globals()[_spec.key_setting] = env_secret(_spec.key_setting, fallback=_spec.key_fallback)

# --- Provider batch APIs --------------------------------------------------------------------
BATCH_API_ENABLED = env_bool("BATCH_API_ENABLED", True)
# runs with more missed clusters than this go through the provider's batch API
BATCH_THRESHOLD = env_int("BATCH_THRESHOLD", 100, minimum=0, maximum=10_000_000)
BATCH_POLL_INTERVAL = env_int(
    "BATCH_POLL_INTERVAL", 60, minimum=1, maximum=_DAY
)  # seconds between polls
# seconds a batch may stay open before it is cancelled and its items redone in realtime: each
# provider's documented window by default (Gemini batches may run 48 h, OpenAI's and Anthropic's
# 24 h); BATCH_TIMEOUT, when set, overrides all three
BATCH_TIMEOUT: int | None = (
    env_int("BATCH_TIMEOUT", 0, minimum=60, maximum=7 * _DAY)
    if os.environ.get("BATCH_TIMEOUT", "").strip()
    else None
)
# BATCH_TIMEOUT_GEMINI, BATCH_TIMEOUT_OPENAI, BATCH_TIMEOUT_ANTHROPIC: one per spec with a
# batch API, defaulting to the spec's batch_timeout
for _spec in PROVIDER_SPECS:
    if _spec.batch:
        globals()[_spec.batch_timeout_setting] = env_int(
            _spec.batch_timeout_setting, _spec.batch_timeout, minimum=60, maximum=7 * _DAY
        )
# keep a batch's uploaded input and result files at the provider after its results are stored
# (OpenAI and Gemini file storage has quotas; `llm_batch files` lists and removes leftovers)
LLM_BATCH_KEEP_FILES = env_bool("LLM_BATCH_KEEP_FILES", False)
BATCH_MAX_REQUESTS_PER_BATCH = env_int(
    "BATCH_MAX_REQUESTS_PER_BATCH", 10_000, minimum=1, maximum=1_000_000
)
# seconds a batch driver's lease on a job lasts without renewal: a crashed driver blocks its job
# this long; a live one renews it every quarter of it, however long building or collecting takes
BATCH_DRIVER_LEASE_SECONDS = env_int("BATCH_DRIVER_LEASE_SECONDS", 120, minimum=10, maximum=_DAY)
# Requests per provider+model shared by every worker (Redis when REDIS_URL is set, else in-process),
# paced evenly (one every period/amount s); any rate the `limits` library parses: "30/minute",
# "6 per 2 seconds".
LLM_RATE_LIMIT = env_rate("LLM_RATE_LIMIT", "30/minute")
LLM_TOKENS_PER_MINUTE = env_int(
    "LLM_TOKENS_PER_MINUTE", 0, minimum=0, maximum=10**9
)  # 0: no token limit
# seconds added to the rate's window so call-start jitter never shows as a burst at the provider
LLM_RATE_LIMIT_MARGIN = env_float("LLM_RATE_LIMIT_MARGIN", 0.5, minimum=0.0, maximum=60.0)
# requests that may start back to back after an idle spell (then one per interval)
LLM_RATE_LIMIT_BURST = env_int("LLM_RATE_LIMIT_BURST", 1, minimum=1, maximum=1000)
# seconds for the shared rate to climb back by the whole configured rate after 429s lowered it
LLM_RATE_LIMIT_RECOVERY = env_float("LLM_RATE_LIMIT_RECOVERY", 60.0, minimum=1.0, maximum=_DAY)
# seconds a call may keep waiting for capacity through 429s before it is given up (a 429 does
# not use up LLM_CALL_TRIES; the job's deadline still bounds it)
LLM_RATE_LIMIT_BUDGET = env_float("LLM_RATE_LIMIT_BUDGET", 900.0, minimum=1.0, maximum=_DAY)
LLM_MAX_ATTEMPTS = env_int(
    "LLM_MAX_ATTEMPTS", 3, minimum=1, maximum=10
)  # generation attempts per cluster
LLM_CALL_TRIES = env_int(
    "LLM_CALL_TRIES", 3, minimum=1, maximum=20
)  # tries per call on transient errors
# clusters per chord-header message of a realtime job (fewer broker round trips per cluster);
# a job always gets at least 64 messages, so small jobs still use every worker thread
LLM_CLUSTERS_PER_MESSAGE = env_int("LLM_CLUSTERS_PER_MESSAGE", 10, minimum=1, maximum=10_000)
LLM_BACKOFF_BASE = env_float(
    "LLM_BACKOFF_BASE", 1.0, minimum=0.0, maximum=3600.0
)  # seconds, doubled per try
LLM_BACKOFF_MAX = env_float("LLM_BACKOFF_MAX", 60.0, minimum=0.0, maximum=86400.0)  # seconds
LLM_JOB_TIME_LIMIT = env_int(
    "LLM_JOB_TIME_LIMIT", 3600, minimum=1, maximum=7 * _DAY
)  # seconds per generation job
LLM_TEMPERATURE = env_float("LLM_TEMPERATURE", 0.2, minimum=0.0, maximum=2.0)
LLM_MAX_OUTPUT_TOKENS = env_int("LLM_MAX_OUTPUT_TOKENS", 4096, minimum=64, maximum=1_000_000)
# USD per million input / output tokens per model, JSON; merged over the specs' prices.
LLM_PRICES = env_price_table("LLM_PRICES")
