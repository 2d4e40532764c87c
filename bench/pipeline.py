"""Benchmark: how well the summary pipeline keeps a shared rate limit busy, and what its
orchestration costs per cluster, on real Celery workers against the Gemini emulator.

    python bench/pipeline.py                                   # defaults, about 2 minutes
    python bench/pipeline.py --rate "30/minute" --duration 60  # any rate `limits` parses
    python bench/pipeline.py --clusters 100 --workers 2 --concurrency 4

Set-up (the benchmark owns both, and resets them at start): the PostgreSQL database
``clustersum_bench`` (dropped, created, then migrated with Django's ``migrate`` command) and
Redis db 14 (flushed), so it never touches the test suite's database or Redis db 15.
``--workers`` (2) ``celery -A config worker -Q default,llm --pool threads -c CONCURRENCY``
subprocesses run against them, with ``LLM_PROVIDER=gemini``, ``LLM_BASE_URL`` pointing the real
google-genai SDK at a ``GeminiEmulator`` in this process, and ``BATCH_API_ENABLED=false``
(realtime calls only). Datasets are synthetic planted groups (10 entities with 8 private terms
each; clustered with k=5, min_cluster_size=5), one cluster per group; each phase has its own
entities, so the summary cache is always cold. Workers and emulator are stopped on exit, also on
Ctrl-C, SIGTERM or SIGHUP; worker logs are shown when a phase fails. The shared machinery (set-up,
workers, the no-op chord, ``gap_rate``) lives in ``bench/_harness.py``; ``bench/realtime.py`` and
``bench/overhead.py`` are the issue's figures at the issue's sizes.

(a) Rate-limit utilisation, realtime. ``LLM_RATE_LIMIT=--rate`` (default "120 per 10 seconds",
L requests per window W seconds), emulator latency ``--latency`` (0.2 s). The run is sized to
need at least ``--duration`` (30) seconds at the allowed rate: L * (ceil(duration / W) + 1) calls,
two per cluster (generate + judge). From the emulator's own request log (arrival times, between
the first and the last request): achieved calls/minute = L / mean(t[i + L] - t[i]) * 60 over
every request i that has an L-th successor. The shared limiter paces calls evenly (one every
(W + margin) / L s), so each request comes L intervals after the one L places earlier and the
figure is exact for it (as it was for the moving window it replaced, which let bursts of L
through). Printed:
``rate_utilisation`` = achieved / allowed calls per minute (1.0 = the limit never idles).

(b) Orchestration overhead per cluster at zero provider latency (emulator latency 0,
``LLM_RATE_LIMIT=100000/second``): wall time of the summary chord, from the plan step (the job's
``started_at``) to the finalize step (its ``finished_at``), divided by the number of clusters, in
ms. It includes per cluster two SDK calls to the local emulator, the database claim, context,
validation, ``LLMCall`` and summary rows. Beside it, on the same workers in the same run, a bare
chord of as many no-op tasks (``bench/noop_tasks.py``; from applying the chord to its callback
running), per task in ms, and the ratio of the two. Each figure is one ``name: value unit`` line.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    # run as a script: the project root, not bench/ (whose clustering.py would shadow the app)
    sys.path[0] = str(ROOT)

from bench._harness import (  # noqa: E402
    CALLS_PER_CLUSTER,
    FAST_RATE,
    bench_setup,
    emit,
    gap_rate,
    noop_chord_seconds,
    rate_parse,
    running_workers,
    warm_up,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clustersum_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
PARAMS = {"k": 5, "min_cluster_size": 5}
GROUP_SIZE = 10


def planted_csv_write(path: Path, *, groups: int, prefix: str, seed: int = 7) -> None:
    """Write ``groups`` planted groups of GROUP_SIZE entities as a ``dataset_import`` CSV.

    Entity ``{prefix}{g}_{i}`` carries each of its group's 8 private terms with probability
    0.85 and each of 6 shared background terms with probability 0.2.
    """
    import random

    rng = random.Random(seed)
    lines = ["entity_id,symbol,term_id,term_name,category"]
    for g in range(groups):
        for i in range(GROUP_SIZE):
            entity, symbol = f"{prefix}{g:04d}_{i:02d}", f"{prefix}G{g}S{i}"
            for j in range(8):
                if rng.random() < 0.85:
                    lines.append(f"{entity},{symbol},{prefix}T{g}_{j},group {g} term {j},CAT")
            for b in range(6):
                if rng.random() < 0.2:
                    lines.append(f"{entity},{symbol},B{b},background {b},CAT")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def dataset_create(*, slug: str, groups: int, prefix: str, tmp: Path) -> str:
    """Import a planted dataset; returns its slug."""
    from clustering.services import dataset_import

    path = tmp / f"{slug}.csv"
    planted_csv_write(path, groups=groups, prefix=prefix)
    dataset_import(path=path, slug=slug, kind="functional")
    return slug


def job_run(*, slug: str, timeout: float) -> Any:
    """Start the whole pipeline on ``slug`` and wait (at most ``timeout`` seconds) for its
    generation job to finish; returns the ``GenerationJob``.

    Raises:
        RuntimeError: the clustering run failed, or the job did not finish in time.
    """
    from clustering.models import ClusteringRun, RunStatus
    from llm.models import GenerationJob, JobStatus
    from llm.services.pipeline import pipeline_start

    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = GenerationJob.objects.filter(run_id=run.pk).first()
        if job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return job
        status = ClusteringRun.objects.values_list("status", flat=True).get(pk=run.pk)
        if status == RunStatus.FAILED:
            raise RuntimeError(f"clustering run {run.pk} failed")
        time.sleep(0.2)
    raise RuntimeError(f"generation job of run {run.pk} did not finish within {timeout:.0f} s")


def phase_realtime(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    """(a): rate-limit utilisation of a realtime run; prints its figures."""
    from config.celery import app
    from llm.emulators.gemini import GeminiEmulator
    from llm.models import SummaryTask

    rate = rate_parse(args.rate)
    windows = max(1, math.ceil(args.duration / rate.window))
    clusters = args.clusters or math.ceil(rate.amount * (windows + 1) / CALLS_PER_CLUSTER)
    slug = dataset_create(slug="bench-realtime", groups=clusters, prefix="R", tmp=tmp)
    expected = clusters * CALLS_PER_CLUSTER / rate.per_minute * 60.0
    with GeminiEmulator(latency=args.latency) as emulator:
        phase_env = {**env, "LLM_BASE_URL": emulator.url, "LLM_RATE_LIMIT": rate.text}
        with running_workers(
            app, count=args.workers, concurrency=args.concurrency, env=phase_env, log_dir=tmp
        ):
            job = job_run(slug=slug, timeout=2 * expected + 120)
        arrivals = sorted(entry["monotonic"] for entry in emulator.request_log())
    tasks = SummaryTask.objects.filter(job=job).count()
    achieved = gap_rate(arrivals, rate.amount)
    span = arrivals[-1] - arrivals[0] if arrivals else 0.0
    emit("realtime_clusters", tasks, "clusters")
    emit("realtime_failed_clusters", job.failed + job.rejected, "clusters")
    emit("realtime_calls", len(arrivals), "calls")
    emit("realtime_span", span, "seconds")
    emit("allowed_rate", rate.per_minute, "calls/minute")
    if achieved is None:
        emit(
            "achieved_rate",
            "n/a",
            "calls/minute (no more requests than the limit; raise --clusters)",
        )
        emit("rate_utilisation", "n/a", "ratio")
    else:
        emit("achieved_rate", achieved, "calls/minute")
        emit("rate_utilisation", achieved / rate.per_minute, "ratio")


def phase_overhead(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    """(b): orchestration overhead per cluster vs a bare chord of no-op tasks; prints figures."""
    from config.celery import app
    from llm.emulators.gemini import GeminiEmulator
    from llm.models import JobStatus, SummaryTask

    if args.clusters:
        groups = args.clusters
    else:
        rate = rate_parse(args.rate)
        windows = max(1, math.ceil(args.duration / rate.window))
        groups = math.ceil(rate.amount * (windows + 1) / CALLS_PER_CLUSTER)
    slug = dataset_create(slug="bench-overhead", groups=groups, prefix="O", tmp=tmp)
    with GeminiEmulator(latency=0.0) as emulator:
        phase_env = {**env, "LLM_BASE_URL": emulator.url, "LLM_RATE_LIMIT": FAST_RATE}
        with running_workers(
            app, count=args.workers, concurrency=args.concurrency, env=phase_env, log_dir=tmp
        ):
            # every worker thread imports and connects before anything is timed
            warm_up(workers=args.workers, concurrency=args.concurrency)
            job = job_run(slug=slug, timeout=600)
            if job.status != JobStatus.SUCCEEDED or not job.started_at or not job.finished_at:
                raise RuntimeError(f"overhead job ended {job.status}: {job.message}")
            tasks = SummaryTask.objects.filter(job=job).count()
            noop_seconds = noop_chord_seconds(tasks, timeout=600)
    pipeline_ms = (job.finished_at - job.started_at).total_seconds() * 1000 / tasks
    noop_ms = noop_seconds * 1000 / tasks
    emit("overhead_clusters", tasks, "clusters")
    emit("pipeline_chord_per_cluster", pipeline_ms, "ms")
    emit("noop_chord_per_task", noop_ms, "ms")
    emit("pipeline_vs_noop", pipeline_ms / noop_ms, "ratio")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, reset the bench database and Redis db, run both phases, print figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--clusters",
        type=int,
        default=0,
        help="clusters per phase (default: sized from --rate and --duration)",
    )
    parser.add_argument("--rate", default="120 per 10 seconds", help="LLM_RATE_LIMIT for (a)")
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds the realtime run must last at the allowed rate (a)",
    )
    parser.add_argument("--latency", type=float, default=0.2, help="emulator seconds per call (a)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--skip", choices=("realtime", "overhead"), help="leave out one phase")
    args = parser.parse_args(argv)
    try:
        rate_parse(args.rate)
    except ValueError as exc:
        parser.error(f"--rate: {exc}")
    if args.clusters < 0 or args.workers < 1 or args.concurrency < 1 or args.duration <= 0:
        parser.error("--clusters >= 0, --workers >= 1, --concurrency >= 1, --duration > 0")

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks stop workers and emulators
    env = bench_setup(database_url=args.database_url, redis_url=args.redis_url)
    emit("workers", f"{args.workers} x {args.concurrency}", "processes x threads")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        if args.skip != "realtime":
            phase_realtime(args, env, Path(tmp))
        if args.skip != "overhead":
            phase_overhead(args, env, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
