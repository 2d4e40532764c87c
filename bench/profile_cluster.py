"""Profile: where one summarised cluster's time goes, in one process - SQL statements per
cluster by kind and ``cProfile`` own time grouped by package.

    python bench/profile_cluster.py                 # 150 clusters
    python bench/profile_cluster.py --clusters 300 --top 30

Method. Own database ``clustersum_bench_profile`` (dropped, created, migrated) and Redis db 4
(flushed). A synthetic run (``bench/_harness.py``: 10 members, 6 terms per cluster, all misses)
is planned; the first task is summarised untimed (per-process caches: the run's symbols, the
SDK client), then every other task in this thread in chunks of ``LLM_CLUSTERS_PER_MESSAGE``
through ``llm.summarise_clusters`` called as a function (what a worker runs for one chord-header
message, without the broker), the real google-genai SDK calling a ``GeminiEmulator(latency=0)``
served by this process's threads.
Printed: ms per cluster (wall), SQL statements per cluster by their first 60 characters, own
time per package in ms per cluster and percent (``psycopg-wait`` is psycopg waiting for the
server), then ``--top`` functions by own time.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench._harness import FAST_RATE, bench_setup, emit, synthetic_run_create  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clustersum_bench_profile"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/4"
#: (substring of the file path, package) in the order tried
AREAS = (
    ("/google/genai/", "google-genai"),
    ("httpx", "httpx/httpcore"),
    ("httpcore", "httpx/httpcore"),
    ("/psycopg/", "psycopg"),
    ("/django/", "django"),
    ("pydantic", "pydantic"),
    ("/redis/", "redis"),
)


def area_of(path: str, name: str) -> str:
    """The package a profiled function belongs to (see :data:`AREAS`)."""
    if "psycopg/connection.py" in path and name == "wait":
        return "psycopg-wait"
    if path == "~":
        return "builtins (sockets, C)"
    for part, area in AREAS:
        if part in path:
            return area
    if str(ROOT) in path and ".venv" not in path:
        return "project"
    return "other"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, reset the profile database and Redis db, profile, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clusters", type=int, default=150)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    if args.clusters < 2 or args.top < 0:
        parser.error("--clusters >= 2, --top >= 0")
    bench_setup(database_url=args.database_url, redis_url=args.redis_url)
    from django.conf import settings
    from django.db import connection

    from llm.emulators.gemini import GeminiEmulator
    from llm.services.generation import job_plan, summary_task_execute
    from llm.tasks import summarise_clusters

    with GeminiEmulator(latency=0.0) as emulator:
        settings.LLM_BASE_URL = emulator.url
        settings.LLM_RATE_LIMIT = FAST_RATE
        run_id = synthetic_run_create(slug="bench-profile", clusters=args.clusters, prefix="PR")
        misses = job_plan(run_id=run_id, provider="gemini")
        summary_task_execute(task_id=misses[0])
        sqls: list[str] = []

        def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            sqls.append(sql[:60])
            return execute(sql, params, many, context)

        profile = cProfile.Profile()
        with connection.execute_wrapper(record):
            started = time.perf_counter()
            profile.enable()
            size = settings.LLM_CLUSTERS_PER_MESSAGE
            for at in range(1, len(misses), size):
                summarise_clusters(misses[at : at + size])
            profile.disable()
            elapsed = time.perf_counter() - started
    n = len(misses) - 1
    emit("profile_clusters", n, "clusters")
    emit("profile_per_cluster", elapsed * 1000 / n, "ms (wall, profiled)")
    emit("profile_statements_per_cluster", len(sqls) / n, "SQL statements")
    for sql, count in collections.Counter(sqls).most_common():
        print(f"#   {count / n:5.2f} x {sql}")
    stats = pstats.Stats(profile)
    own: collections.Counter[str] = collections.Counter()
    for (path, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        own[area_of(path, name)] += row[2]
    total = sum(own.values()) or 1.0
    for area, seconds in own.most_common():
        emit(
            f"profile_own_{area}",
            seconds * 1000 / n,
            f"ms per cluster ({100 * seconds / total:.1f}%)",
        )
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
