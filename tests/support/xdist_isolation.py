"""Per-worker isolation for ``pytest -n N`` (pytest-xdist), loaded with ``-p`` before Django's
settings are read (``make test`` runs ``python -m pytest -p tests.support.xdist_isolation -n 2
--dist loadgroup``; ``python -m`` puts the checkout on ``sys.path``, which ``-p tests...`` needs).

pytest-django already gives each xdist worker its own test database (``test_<name>_gw0``, ...).
Redis is the other shared service: the in-process ``celery_worker`` fixture purges the queues,
the shared rate limiter keeps its windows there and subprocess workers consume from it, so two
xdist workers on one Redis database would take each other's messages and tokens. Each worker
therefore gets its own database index, counted down from the one ``REDIS_URL`` names (``/15``:
gw0 uses 15, gw1 14, gw2 13), written back into ``os.environ`` so that settings and every
subprocess a test starts (which inherit the environment or read ``settings.REDIS_URL``) agree.

Tests that start many processes or measure time against a window (drills, the production
stack, the multi-process rate-limit tests) share one ``xdist_group``: with ``--dist loadgroup``
they run one after another on one worker, never beside each other; modules whose expensive
module-scoped fixture all their tests read are kept on one worker the same way.

Without xdist (``PYTEST_XDIST_WORKER`` unset) nothing changes.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

#: Redis has 16 databases (0..15) unless configured otherwise.
REDIS_DATABASES = 16

#: Path prefixes (relative to the rootdir) of tests that must not run beside each other.
SERIAL = (
    "tests/drills/",
    "tests/config/test_stack.py",
    "tests/llm/test_rate_limit_workers.py",
    "tests/llm/test_rate_pacing.py",
    "tests/llm/admin/test_browser.py",
)
#: Modules whose tests all read one expensive module-scoped result: one worker computes it.
WHOLE_MODULE = ("tests/clustering/test_evidence_real.py",)


def worker_redis_url(url: str, worker: str) -> str:
    """``url`` with its database index moved down by the xdist worker's number (``gw3`` -> 3),
    wrapping below 0.

    Raises:
        ValueError: ``worker`` is not of the form ``gw<number>``.
    """
    if not worker.startswith("gw") or not worker[2:].isdigit():
        raise ValueError(f"unexpected xdist worker id {worker!r}")
    parts = urlsplit(url)
    path = parts.path.strip("/")
    base = int(path) if path.isdigit() else 0
    index = (base - int(worker[2:])) % REDIS_DATABASES
    return urlunsplit(parts._replace(path=f"/{index}"))


_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = worker_redis_url(os.environ["REDIS_URL"], _WORKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the serial tests in one ``xdist_group`` and each whole module in its own.

    Raises:
        pytest.UsageError: a path of :data:`SERIAL` or :data:`WHOLE_MODULE` no longer exists
            (a moved test would silently run beside the others).
    """
    root = config.rootpath
    gone = [path for path in (*SERIAL, *WHOLE_MODULE) if not (root / path).exists()]
    if gone:
        raise pytest.UsageError(f"tests/support/xdist_isolation.py names missing paths: {gone}")
    for item in items:
        relative = item.path.relative_to(root).as_posix()
        if relative.startswith(SERIAL):
            item.add_marker(pytest.mark.xdist_group("serial"))
        elif relative in WHOLE_MODULE:
            item.add_marker(pytest.mark.xdist_group(relative))
