"""Benchmark: orchestration overhead of the summary pipeline per cluster at zero provider
latency, as a ratio to a bare Celery chord of no-op tasks on the same workers in the same run;
clusters per second for 1,000 and 10,000 clusters.

    python bench/overhead.py                          # 1,000 and 10,000 clusters, ~5 minutes
    python bench/overhead.py --sizes 1000             # one size
    python bench/overhead.py --workers 2 --concurrency 4

Method. Own database ``clustersum_bench_overhead`` (dropped, created, migrated) and Redis db 3
(flushed). For each size N a synthetic succeeded clustering run of N clusters is written with
``bulk_create`` (10 members and 6 enriched terms per cluster, disjoint members: every cluster is
a cache miss). ``--workers`` (2) ``celery worker --pool threads -c --concurrency`` (4)
subprocesses run with ``LLM_PROVIDER=gemini``, the real google-genai SDK pointed at a
``GeminiEmulator(latency=0)`` in this process, ``LLM_RATE_LIMIT=100000/second`` (the shared
Redis limiter is still consulted on every call, it never waits) and realtime mode only. After a
warm-up chord (every worker thread imports and connects), for each size:

- pipeline: the plan step is sent to the workers; it plans (one bulk cache lookup, N task rows),
  applies a chord of N ``summarise_cluster`` tasks (each: database claim, context, generate call,
  entity validation, judge call, ``LLMCall`` and summary rows, progress) whose body is
  ``finalize_job``. Time = from sending the plan to the job's ``finished_at`` (written by
  finalize), seconds; per cluster in ms; clusters per second = N / time;
- baseline: a bare chord of N no-op tasks (``bench/noop_tasks.py``: no database, no provider) on
  the same workers, from applying it to its callback running; per task in ms;
- ratio = pipeline ms per cluster / no-op ms per task.

Each figure is one ``name: value unit`` line. Workers and emulator are stopped on exit, also on
Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    # run as a script: the project root, not bench/ (whose clustering.py would shadow the app)
    sys.path[0] = str(ROOT)

from bench._harness import (  # noqa: E402
    FAST_RATE,
    bench_setup,
    emit,
    job_wait,
    noop_chord_seconds,
    plan_send,
    running_workers,
    synthetic_run_create,
    task_states,
    warm_up,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clustersum_bench_overhead"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"


def size_measure(size: int, run_id: int, *, timeout: float) -> dict[str, float]:
    """Run the pipeline on ``run_id`` (``size`` clusters), then a no-op chord of ``size``
    tasks; print the figures and return them by name.

    Raises:
        RuntimeError: the job did not end succeeded (clusters that failed are counted).
    """
    from llm.models import JobStatus, LLMCall, SummaryTask

    sent = plan_send(run_id)
    job = job_wait(run_id=run_id, timeout=timeout)
    if job.status != JobStatus.SUCCEEDED or job.finished_at is None:
        raise RuntimeError(f"overhead job of {size} clusters ended {job.status}: {job.message}")
    states = task_states(job.pk)
    failed = size - states.get("succeeded", 0)
    errors = list(
        SummaryTask.objects.filter(job=job)
        .exclude(state="succeeded")
        .values_list("last_error", flat=True)
        .distinct()[:3]
    )
    pipeline = job.finished_at.timestamp() - sent
    calls = LLMCall.objects.filter(job=job).count()
    time.sleep(1.0)  # let the finalize task's acknowledgement settle before the baseline
    noop = noop_chord_seconds(size)
    p = f"overhead_{size}"
    per_cluster = pipeline * 1000 / size
    per_noop = noop * 1000 / size
    emit(f"{p}_provider_calls", calls, "calls")
    emit(f"{p}_clusters_not_succeeded", failed, "clusters", target="0")
    for error in errors:
        print(f"#   {error.splitlines()[0][:300] if error else '(no message)'}", flush=True)
    emit(f"{p}_pipeline_seconds", pipeline, "seconds (plan sent -> finalize done)")
    emit(f"{p}_pipeline_per_cluster", per_cluster, "ms")
    emit(f"{p}_clusters_per_second", size / pipeline, "clusters/s")
    emit(f"{p}_noop_chord_seconds", noop, "seconds")
    emit(f"{p}_noop_chord_per_task", per_noop, "ms")
    emit(f"{p}_noop_tasks_per_second", size / noop, "tasks/s")
    emit(f"{p}_pipeline_vs_noop", per_cluster / per_noop, "ratio")
    return {"per_cluster": per_cluster, "per_noop": per_noop}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, reset the bench database and Redis db, measure each size, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    if args.workers < 1 or args.concurrency < 1 or min(args.sizes) < 1:
        parser.error("--workers >= 1, --concurrency >= 1, --sizes >= 1")

    env = bench_setup(database_url=args.database_url, redis_url=args.redis_url)
    from config.celery import app
    from llm.emulators.gemini import GeminiEmulator

    runs = {
        size: synthetic_run_create(slug=f"bench-overhead-{size}", clusters=size, prefix=f"OV{i}X")
        for i, size in enumerate(args.sizes)
    }
    emit("workers", f"{args.workers} x {args.concurrency}", "processes x threads")
    with (
        tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp,
        GeminiEmulator(latency=0.0) as emulator,
    ):
        phase_env = {**env, "LLM_BASE_URL": emulator.url, "LLM_RATE_LIMIT": FAST_RATE}
        with running_workers(
            app,
            count=args.workers,
            concurrency=args.concurrency,
            env=phase_env,
            log_dir=Path(tmp),
            tag="overhead",
        ) as workers:
            warm_up(workers=args.workers, concurrency=args.concurrency)
            for size in args.sizes:
                size_measure(size, runs[size], timeout=max(600.0, size * 0.5))
            emit("overhead_worker_peak_rss", max(workers.peak_rss_mib()), "MiB (largest worker)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
