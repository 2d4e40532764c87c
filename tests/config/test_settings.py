"""Start-up fails with a message naming the variable when the environment is invalid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "nosuchdb://x/y"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("CELERY_TASK_TIME_LIMIT", "soon"),
        ("LLM_TIMEOUT", "-3"),
        ("RECONCILE_MAX_REDRIVES", "0"),
        ("RECONCILE_MAX_DELIVERIES", "10"),  # renamed to RECONCILE_MAX_REDRIVES
        ("BATCH_DRIVER_LEASE_SECONDS", "5"),
    ],
)
def test_invalid_value_fails_naming_the_variable(variable: str, value: str) -> None:
    result = _start({variable: value})
    assert result.returncode != 0
    assert f"{variable}:" in result.stderr


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
