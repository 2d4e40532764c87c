"""Benchmark: warm-cache rerun of 10,000 clusters - seconds from plan to finalize, and the
database queries of the plan step (one bulk cache lookup, not one per cluster).

    python bench/warm_cache.py                  # 10,000 clusters, under a minute
    python bench/warm_cache.py --clusters 1000

Method. Own database ``clustersum_bench_warm`` (dropped, created, migrated) and Redis db 2
(flushed). A first synthetic succeeded clustering run of N clusters (``bulk_create``; 10 members
and 6 enriched terms each) gets one current, validated ``ClusterSummary`` per cluster, written
with ``bulk_create`` for the cluster's composition hash (the cache, as a finished earlier run
leaves it). A second run with the same N compositions (new ``Cluster`` rows, same members) is
then summarised: the pipeline's plan step (``llm.tasks.plan_summaries``, the task the cluster
step chains into) runs in this process with every query counted (a
``connection.execute_wrapper``: ``CaptureQueriesContext`` keeps only the last 9,000); it
creates the job and N task rows, looks the cache up and marks every cluster skipped, and, with
no misses, sends ``finalize_job`` to a real worker (one ``celery worker --pool threads``
subprocess). Printed: plan seconds; plan -> finalize seconds (from calling the plan to the
job's ``finished_at``, written by finalize on the worker); the plan's queries in all, the
queries naming ``llm_clustersummary`` (the cache lookups: one ``UPDATE`` that marks every hit
and links its summary), and the ``UPDATE`` statements on ``llm_summarytask``; the tasks
skipped. Each figure is one
``name: value unit`` line. The worker is stopped on exit, also on Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    # run as a script: the project root, not bench/ (whose clustering.py would shadow the app)
    sys.path[0] = str(ROOT)

from bench._harness import (  # noqa: E402
    MODEL,
    bench_setup,
    emit,
    job_wait,
    running_workers,
    synthetic_run_create,
    task_states,
    warm_up,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clustersum_bench_warm"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/2"
SLUG = "bench-warm-cache"
PREFIX = "WC"


def cache_fill(run_id: int) -> int:
    """One current, validated ``ClusterSummary`` per cluster of ``run_id``, written with
    ``bulk_create``; returns how many."""
    from clustering.models import Cluster
    from llm.models import ClusterSummary, ValidationStatus
    from llm.prompts.templates import JUDGE_PROMPT_VERSION, prompt_version_for

    rows = []
    for cluster in Cluster.objects.filter(run_id=run_id).select_related("run"):
        symbols = [m["symbol"] for m in cluster.members]
        text = f"Synthetic cached summary of cluster {cluster.number}."
        rows.append(
            ClusterSummary(
                composition_hash=cluster.composition_hash,
                cluster_type=cluster.run.cluster_type,
                is_current=True,
                dataset_id=cluster.run.dataset_id,
                cluster=cluster,
                members=symbols,
                content={
                    "summary": text,
                    "key_themes": ["theme a", "theme b", "theme c"],
                    "pathways": [],
                    "tags": ["synthetic", "bench", "cache"],
                    "clinical_relevance": None,
                    "confidence": "high",
                },
                summary_text=text,
                tags=["synthetic", "bench", "cache"],
                confidence="high",
                derived_confidence="medium",
                provider="gemini",
                model=MODEL,
                prompt_version=prompt_version_for(cluster.run.cluster_type),
                validation_status=ValidationStatus.VALIDATED,
                judge_verdict="accept",
                judge_model=MODEL,
                judge_prompt_version=JUDGE_PROMPT_VERSION,
            )
        )
    ClusterSummary.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


class QueryCounter:
    """A ``connection.execute_wrapper`` that keeps every SQL statement's first 2,000 characters
    (enough to classify it), without Django's 9,000-query cap."""

    def __init__(self) -> None:
        self.sqls: list[str] = []

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.sqls.append(sql[:2000])
        return execute(sql, params, many, context)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, reset the bench database and Redis db, measure, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10000)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    if args.clusters < 1:
        parser.error("--clusters >= 1")

    env = bench_setup(database_url=args.database_url, redis_url=args.redis_url)
    from django.db import connection

    from config.celery import app
    from llm.models import JobStatus
    from llm.tasks import plan_summaries

    first = synthetic_run_create(slug=SLUG, clusters=args.clusters, prefix=PREFIX)
    cached = cache_fill(first)
    rerun = synthetic_run_create(slug=SLUG, clusters=args.clusters, prefix=PREFIX)
    emit("warm_cache_clusters", args.clusters, "clusters")
    emit("warm_cache_cached_summaries", cached, "summaries")
    with (
        tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp,
        running_workers(app, count=1, concurrency=2, env=env, log_dir=Path(tmp), tag="warm"),
    ):
        warm_up(workers=1, concurrency=2)
        counter = QueryCounter()
        with connection.execute_wrapper(counter):
            started = time.time()
            plan_summaries.apply(args=(rerun, "gemini"), throw=True)
            planned = time.time()
        job = job_wait(run_id=rerun, timeout=600)
    if job.status != JobStatus.SUCCEEDED or job.finished_at is None:
        raise RuntimeError(f"warm-cache job ended {job.status}: {job.message}")
    sqls = counter.sqls
    # the cache is looked up inside the UPDATE that marks the hits (a statement naming the table)
    lookups = sum(1 for s in sqls if '"llm_clustersummary"' in s)
    updates = sum(1 for s in sqls if s.startswith('UPDATE "llm_summarytask"'))
    states = task_states(job.pk)
    emit("warm_cache_skipped", states.get("skipped", 0), "clusters", target=str(args.clusters))
    emit("warm_cache_plan_seconds", planned - started, "seconds")
    emit(
        "warm_cache_plan_to_finalize",
        job.finished_at.timestamp() - started,
        "seconds",
        target="one bulk lookup",
    )
    emit("warm_cache_plan_queries", len(sqls), "queries (all of the plan step)")
    emit("warm_cache_lookup_queries", lookups, "queries on llm_clustersummary", target="1")
    emit("warm_cache_task_update_queries", updates, "UPDATE queries on llm_summarytask")
    return 0


if __name__ == "__main__":
    sys.exit(main())
