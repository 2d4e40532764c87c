"""Start-up fails with a message naming the variable when the environment is invalid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llm.providers.specs import PROVIDER_SPECS

ROOT = Path(__file__).resolve().parents[2]


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


#: A bad value for every variable of README's Configuration table (and the keys' aliases).
#: A variable documented there without an entry here fails
#: :func:`test_every_documented_variable_has_a_bad_value`.
BAD_VALUES: dict[str, str] = {
    "DATABASE_URL": "nosuchdb://x/y",
    "REDIS_URL": "http://127.0.0.1:6379",
    "SECRET_KEY": "short",
    "DEBUG": "maybe",
    "ALLOWED_HOSTS": "https://example.org/",
    "STATIC_ROOT": "relative/static",
    "CELERY_TASK_TIME_LIMIT": "soon",
    "CELERY_VISIBILITY_TIMEOUT": "10",  # must exceed the task time limit
    "CELERY_WORKER_MEMORY_LIMIT_MB": "-1",
    "LLM_PROVIDER": "gpt",
    "LLM_MODEL": "gemini 2.5 flash",
    "LLM_JUDGE_MODEL": "judge;rm",
    "GEMINI_API_KEY": "AIza key-with a space",
    "GOOGLE_API_KEY": "AIza-line-break\n",
    "OPENAI_API_KEY": "sk-tab\tinside",
    "ANTHROPIC_API_KEY": " sk-ant-leading-space",
    "LLM_BASE_URL": "localhost:8765",
    "LLM_TIMEOUT": "-3",
    "LLM_RATE_LIMIT": "fast",
    "LLM_RATE_LIMIT_MARGIN": "nan",
    "LLM_RATE_LIMIT_BURST": "0",
    "LLM_RATE_LIMIT_RECOVERY": "soon",
    "LLM_RATE_LIMIT_BUDGET": "-5",
    "LLM_TEMPERATURE": "3",
    "LLM_MAX_OUTPUT_TOKENS": "10",
    "LLM_TOKENS_PER_MINUTE": "-1",
    "LLM_CALL_TRIES": "0",
    "LLM_CLUSTERS_PER_MESSAGE": "0",
    "LLM_BACKOFF_BASE": "inf",
    "LLM_BACKOFF_MAX": "a minute",
    "LLM_MAX_ATTEMPTS": "0",
    "LLM_JOB_TIME_LIMIT": "1h",
    "LLM_PRICES": '{"gemini-2.5-flash": [0.3]}',
    "BATCH_API_ENABLED": "sometimes",
    "BATCH_THRESHOLD": "-1",
    "BATCH_POLL_INTERVAL": "0",
    "BATCH_TIMEOUT": "5",
    "BATCH_TIMEOUT_GEMINI": "two days",
    "BATCH_TIMEOUT_OPENAI": "59",
    "BATCH_TIMEOUT_ANTHROPIC": "-1",
    "LLM_BATCH_KEEP_FILES": "maybe",
    "BATCH_MAX_REQUESTS_PER_BATCH": "0",
    "BATCH_DRIVER_LEASE_SECONDS": "5",
    "RECONCILE_INTERVAL_SECONDS": "0",
    "RECONCILE_STALL_SECONDS": "0",
    "RECONCILE_MAX_REDRIVES": "0",
    "API_ANONYMOUS_READ": "perhaps",
    "API_WRITE_THROTTLE": "60 per hour",
    "API_ANON_THROTTLE": "0/hour",
    "CACHE_URL": "nosuch://cache",
    "DATA_UPLOAD_MAX_MEMORY_SIZE": "12",
}
SECRETS = {"SECRET_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"}


def documented_variables() -> list[str]:
    """Every variable named in the first column of README's Configuration table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names += [n for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", first) if n not in names]
    return names


DOCUMENTED = documented_variables()


def test_every_documented_variable_has_a_bad_value() -> None:
    assert len(DOCUMENTED) >= 40, DOCUMENTED
    assert [v for v in DOCUMENTED if v not in BAD_VALUES] == []


def test_every_variable_read_by_the_settings_is_documented() -> None:
    source = (ROOT / "config" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    read |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]+)"', source))
    read |= set(re.findall(r'fallback="([A-Z][A-Z0-9_]+)"', source))
    # the settings read each provider spec's key (and its fallback) and batch timeout by name
    for spec in PROVIDER_SPECS:
        read |= {name for name in (spec.key_setting, spec.key_fallback) if name}
        read |= {spec.batch_timeout_setting} if spec.batch else set()
    renamed = {"RECONCILE_MAX_DELIVERIES"}  # refused with a pointer to its new name
    assert len(read) >= 40
    assert sorted(read - set(DOCUMENTED) - renamed) == []


def _one_line_error(result: subprocess.CompletedProcess[str], variable: str, value: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {variable}: expected"), lines[0]
    if variable in SECRETS:
        assert value.strip() not in result.stderr  # a secret is never echoed
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("variable", DOCUMENTED)
def test_invalid_value_fails_with_one_line_naming_the_variable(variable: str) -> None:
    value = BAD_VALUES[variable]
    _one_line_error(_start({variable: value}), variable, value)


def test_renamed_variable_is_refused_naming_its_successor() -> None:
    result = _start({"RECONCILE_MAX_DELIVERIES": "10"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "configuration error: RECONCILE_MAX_DELIVERIES: no longer read; set "
        "RECONCILE_MAX_REDRIVES (re-drives by the reconciler after which stalled work fails; "
        "default 5) instead"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # numbers too large to be meant (and that overflowed later, e.g. in a timedelta)
        ("BATCH_TIMEOUT", "100000000000000000000"),
        ("RECONCILE_STALL_SECONDS", "99999999999"),
        ("LLM_BACKOFF_MAX", "1e300"),
        ("CELERY_TASK_TIME_LIMIT", "31536000"),
    ],
)
def test_numbers_above_their_maximum_are_refused(variable: str, value: str) -> None:
    result = _start({variable: value})
    _one_line_error(result, variable, value)
    assert " between " in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgres://app:hunter2-secret@127.0.0.1:5432"),
        ("REDIS_URL", "redis://:hunter2-secret@127.0.0.1:port/0"),
        ("CACHE_URL", "redis://:hunter2-secret@/1"),
        ("LLM_BASE_URL", "ftp://user:hunter2-secret@127.0.0.1:8765"),
    ],
)
def test_a_password_inside_a_url_is_never_echoed(variable: str, value: str) -> None:
    result = _start({variable: value})
    _one_line_error(result, variable, value)
    assert "hunter2-secret" not in result.stderr and ":***@" in result.stderr


@pytest.mark.parametrize(
    ("entry", "variable", "value"),
    [
        # the Celery worker and beat load the app the same way: `celery -A config ...`
        (["-m", "celery", "-A", "config", "worker", "--pool", "solo"], "LLM_RATE_LIMIT", "x/y"),
        (["-m", "celery", "-A", "config", "beat"], "LLM_PRICES", "{not json"),
        # gunicorn imports config.wsgi in its workers; the import fails the same way
        (["-c", "import config.wsgi"], "LLM_PROVIDER", "gpt"),
        # gunicorn's master reads gunicorn.conf.py, which validates before forking a worker
        (["-m", "gunicorn", "config.wsgi", "--bind", "127.0.0.1:0"], "DEBUG", "maybe"),
    ],
)
def test_worker_beat_and_wsgi_stop_with_the_same_line(
    entry: list[str], variable: str, value: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    clean[variable] = value
    result = subprocess.run(
        [sys.executable, *entry],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _one_line_error(result, variable, value)


def test_defaults_start_with_sqlite_and_eager_celery() -> None:
    result = _start({})
    assert result.returncode == 0, result.stderr
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','config.settings');"
        "django.setup(); from django.conf import settings as s; from config.celery import app;"
        "print(s.DATABASES['default']['ENGINE'], app.conf.task_always_eager,"
        " app.conf.task_acks_late, app.conf.worker_prefetch_multiplier,"
        " app.conf.broker_transport_options['visibility_timeout'] > app.conf.task_time_limit,"
        " app.conf.task_serializer, sorted(q.name for q in app.conf.task_queues))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "django.db.backends.sqlite3",
        "True",
        "True",
        "1",
        "True",
        "json",
        "['default',",
        "'llm']",
    ]
