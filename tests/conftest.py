"""Shared fixtures.

The suite runs on PostgreSQL and Redis only (README: `make test` points DATABASE_URL and
REDIS_URL at the local services; ``pytest_sessionstart`` refuses anything else).
Tests that need a real Celery worker use the ``celery_worker`` fixture, which starts one in
this process against the configured Redis broker.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from clustering.domain.annotations import AnnotationTable, annotation_table_build


def planted_rows(
    *, groups: int = 3, size: int = 12, seed: int = 7
) -> list[tuple[str, str, str, str, str]]:
    """Synthetic entity x term rows with ``groups`` planted communities.

    Entity ``E{g}_{i}`` of group g carries most of the group's 8 private terms ``T{g}_{j}``,
    plus a few shared background terms, so a correct clustering recovers the groups and their
    private terms are enriched.
    """
    rng = random.Random(seed)
    rows: list[tuple[str, str, str, str, str]] = []
    for g in range(groups):
        for i in range(size):
            entity = f"E{g:02d}_{i:02d}"
            symbol = f"G{g}S{i}"
            for j in range(8):
                if rng.random() < 0.85:
                    rows.append((entity, symbol, f"T{g}_{j}", f"group {g} term {j}", "CAT"))
            for b in range(6):
                if rng.random() < 0.2:
                    rows.append((entity, symbol, f"B{b}", f"background {b}", "CAT"))
    return rows


@pytest.fixture
def planted_table() -> AnnotationTable:
    """Three planted groups of twelve entities."""
    return annotation_table_build(planted_rows())


@pytest.fixture
def planted_csv(tmp_path: Path) -> Path:
    """The planted rows as a CSV file for ``dataset_import``."""
    path = tmp_path / "planted.csv"
    lines = ["entity_id,symbol,term_id,term_name,category"]
    lines += [",".join(row) for row in planted_rows()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def redis_url() -> str:
    """The Redis URL the suite was started with; skips nothing: worker tests require it."""
    url = settings.REDIS_URL
    if not url:
        pytest.fail(
            "REDIS_URL is not set: worker tests need a real Redis (run the README's test command)"
        )
    return url


@pytest.fixture
def celery_worker(redis_url: str, transactional_db: None) -> Iterator[object]:
    """A real Celery worker thread in this process, consuming both queues from Redis.

    Uses the transactional database so the worker's own connection sees committed rows.
    """
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    app.conf.task_always_eager = False
    # messages left by an earlier test name rows that no longer exist; start from empty queues
    app.control.purge()
    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=["default", "llm"],
        shutdown_timeout=30,
    ) as worker:
        yield worker


def pytest_configure(config: pytest.Config) -> None:
    """Plain static files storage in-process: the production manifest storage needs
    ``collectstatic`` first, which Django advises against for tests (the stack test in
    tests/config/test_stack.py runs collectstatic and the manifest storage under gunicorn).

    Passwords are hashed with PBKDF2 at few iterations (tests/support/hashers.py), in a format
    the default hashers of subprocesses still verify."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = [
        "tests.support.hashers.FastPBKDF2PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show which services the run uses."""
    return [
        f"database: {settings.DATABASES['default']['ENGINE']}",
        f"redis: {'set' if os.environ.get('REDIS_URL') else 'unset (eager Celery)'}",
    ]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to run on anything but PostgreSQL and Redis.

    Lease, lock and constraint tests pass vacuously on SQLite (``select_for_update`` is a no-op
    there), and the integration tests need a broker; a suite that silently ran on the embedded
    default would prove nothing. ``make test`` sets both URLs.

    Raises:
        pytest.UsageError: ``DATABASE_URL`` is not PostgreSQL or ``REDIS_URL`` is unset.
    """
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            f"the test suite needs PostgreSQL, DATABASE_URL gives {engine}: run `make test`"
        )
    if not os.environ.get("REDIS_URL"):
        raise pytest.UsageError("the test suite needs Redis, REDIS_URL is unset: run `make test`")
