"""Shared machinery of the benchmarks in ``bench/``: set-up of a private database and Redis db,
Celery worker subprocesses, synthetic clustering runs, figures.

Every benchmark owns a PostgreSQL database (dropped, created and migrated at start) and a Redis
db (flushed at start and between phases), so it never touches the test suite's database
(``clustersum``/``test_clustersum``) or Redis db 15. Workers are ``celery -A config worker``
subprocesses (threads pool) started by the shared launcher of ``tests/support/workers.py``,
which die with the benchmark: they are stopped in ``finally`` blocks, SIGTERM and SIGHUP unwind
like Ctrl-C, and on Linux each worker gets ``PR_SET_PDEATHSIG`` so it is terminated even if the
benchmark itself is killed with SIGKILL.

Figures are printed one per line as ``name: value unit`` (``[target ...]`` appended where the
issue sets one), so the output can be compared and grepped.

Scripts in ``bench/`` import this module after putting the project root first on ``sys.path``
(run as a script, ``sys.path[0]`` is ``bench/``, whose ``clustering.py`` would shadow the app).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.support.workers import CeleryProcesses

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gemini-2.5-flash"
#: A rate limit that never binds: orchestration benchmarks measure everything but the limit.
FAST_RATE = "100000/second"
#: Provider calls per cluster when the judge accepts at once (the emulator's default answer).
CALLS_PER_CLUSTER = 2
MIB = 1024 * 1024
#: Terms stored per synthetic cluster: (category, how many). WikiPathways terms are pathways
#: (llm.context.PATHWAY_CATEGORIES), so the summary's pathway check runs too.
SYNTHETIC_TERMS = (("GO_Biological_Process_2023", 4), ("WikiPathways", 2))


# --- figures and rates ----------------------------------------------------------------------


def emit(name: str, value: float | int | str, unit: str = "", *, target: str = "") -> None:
    """Print one figure as ``name: value unit`` with ``[target ...]`` appended when given.

    Floats print with 3 decimals below 10, else with 1.
    """
    if isinstance(value, float):
        value = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    line = f"{name}: {value}{f' {unit}' if unit else ''}"
    if target:
        line += f"  [target {target}]"
    print(line, flush=True)


@dataclass(frozen=True)
class Rate:
    """A rate limit: ``amount`` requests per ``window`` seconds (``text`` as configured)."""

    text: str
    amount: int
    window: float

    @property
    def per_minute(self) -> float:
        """Allowed calls per minute."""
        return self.amount * 60.0 / self.window


def rate_parse(text: str) -> Rate:
    """Parse a rate as the pipeline does (the `limits` library: "30/minute", "6 per 2 seconds").

    Raises:
        ValueError: unparseable rate.
    """
    from limits import parse

    item = parse(text)
    return Rate(text=text, amount=int(item.amount), window=float(item.get_expiry()))


def gap_rate(arrivals: Sequence[float], amount: int) -> float | None:
    """Achieved calls/minute from arrival times (seconds) under a limit of ``amount`` requests
    per window: ``amount / mean(t[i + amount] - t[i]) * 60`` over every request i that has an
    ``amount``-th successor; None when there are no more than ``amount`` arrivals.

    A saturated moving-window limit spaces each request exactly one window after the one
    ``amount`` places earlier, so this is exact for a moving window, where a first-to-last
    average is not (the limiter lets a burst through at the start and again whenever the window
    frees up, so the figure would depend on where the last burst is cut off).
    """
    times = sorted(arrivals)
    gaps = [times[i + amount] - times[i] for i in range(len(times) - amount)]
    if not gaps:
        return None
    return amount / (sum(gaps) / len(gaps)) * 60.0


# --- database, Redis, environment -----------------------------------------------------------


def database_recreate(url: str) -> None:
    """Drop (closing any leftover connections) and create the database ``url`` names.

    Raises:
        SystemExit: the URL names a system database or the test suite's.
    """
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name or name in ("postgres", "template0", "template1", "clustersum", "test_clustersum"):
        raise SystemExit(f"refusing to recreate database {name!r}")
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def redis_flush(url: str) -> None:
    """Empty the Redis db ``url`` names (broker queues, results, the shared rate window).

    Raises:
        SystemExit: the URL names Redis db 15, the test suite's.
    """
    import redis

    if urlsplit(url).path.strip("/") == "15":
        raise SystemExit("refusing to flush Redis db 15 (the test suite's)")
    redis.Redis.from_url(url).flushdb()


def base_env(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment of this process and the workers: the inherited one without any provider,
    LLM or batch setting (so a developer's key or limit cannot leak in), plus the bench's
    database, Redis db, the Gemini provider with a dummy key, realtime mode only, and ``extra``.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "LLM_", "BATCH_", "OPENAI_", "ANTHROPIC_"))
        and k != "GEMINI_API_KEY"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LLM_PROVIDER="gemini",
        LLM_MODEL=MODEL,
        GEMINI_API_KEY="bench-key-not-secret",
        LLM_TIMEOUT="30",
        # realtime calls only: large runs would otherwise go to the batch API
        BATCH_API_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _exit_on_signal(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def bench_setup(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Make SIGTERM/SIGHUP unwind like Ctrl-C, recreate and migrate the bench database, flush
    the bench Redis db and set up Django in this process; returns the workers' base environment
    (see :func:`base_env`)."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    env = base_env(database_url=database_url, redis_url=redis_url, **extra)
    os.environ.update(env)
    database_recreate(database_url)
    import logging

    import django

    django.setup()
    from django.core.management import call_command

    # no start-up line per emulator
    logging.getLogger("llm.emulators").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0, interactive=False)
    redis_flush(redis_url)
    return env


# --- memory ---------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux ``/proc/<pid>/task/<tid>/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size (``VmHWM``) of one process in bytes; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --- workers --------------------------------------------------------------------------------


class BenchWorkers(CeleryProcesses):
    """The benchmark's worker processes (the shared launcher, dying with the benchmark), with
    their memory figure."""

    def peak_rss_mib(self) -> list[float]:
        """Per worker, the peak resident set size (VmHWM) in MiB of the worker process or, if
        larger, of any of its child processes. Read it before the workers stop."""
        return [
            max((peak_rss_bytes(pid) for pid in process_tree(proc.pid)), default=0) / MIB
            for proc in self.procs
            if proc.kind == "worker"
        ]


@contextmanager
def running_workers(
    app: Any,
    *,
    count: int,
    concurrency: int,
    env: dict[str, str],
    log_dir: Path,
    tag: str = "bench",
) -> Iterator[BenchWorkers]:
    """``count`` started Celery worker subprocesses (threads pool, ``concurrency`` threads
    each) on the queues ``default`` and ``llm``, with the no-op tasks of ``bench/noop_tasks.py``
    loaded, logging warnings only (logs ``{tag}-w{n}-{pid}.log`` in ``log_dir``), ready when
    each answers ``app``'s ping; always stopped on exit (warm shutdown, then killed), their log
    tails printed to stderr when the block fails.

    Raises:
        AssertionError: a worker exited or did not answer within the launcher's READY_TIMEOUT.
    """
    workers = BenchWorkers(log_dir, tag=tag, die_with_parent=True)
    try:
        started = [
            workers.worker(
                env,
                concurrency=concurrency,
                loglevel="WARNING",
                include="bench.noop_tasks",
                wait=False,
            )
            for _ in range(count)
        ]
        workers.wait_ready(*started, app=app)
        yield workers
    except BaseException:
        print(workers.tails(lines=40), file=sys.stderr)
        raise
    finally:
        workers.stop()


def warm_up(*, workers: int, concurrency: int) -> None:
    """A chord of ``4 x workers x concurrency`` no-op tasks, so every worker thread has
    imported and connected before anything is timed."""
    from celery import chord

    from bench.noop_tasks import chord_done, noop

    warm = [noop.si(i) for i in range(4 * workers * concurrency)]
    chord(warm)(chord_done.si()).get(timeout=120)


def noop_chord_seconds(size: int, *, timeout: float = 1800.0) -> float:
    """Wall seconds of a bare chord of ``size`` no-op tasks, from applying it to its callback
    running (the callback's own ``time.time()``)."""
    from celery import chord

    from bench.noop_tasks import chord_done, noop

    header = [noop.si(i) for i in range(size)]
    started = time.time()
    finished = chord(header)(chord_done.si()).get(timeout=timeout)
    return float(finished) - started


# --- synthetic runs -------------------------------------------------------------------------


def synthetic_run_create(
    *, slug: str, clusters: int, prefix: str, cluster_size: int = 10, member_offset: int = 0
) -> int:
    """A succeeded functional clustering run of ``clusters`` clusters written directly with
    ``bulk_create`` (clustering thousands of clusters for real is not what is measured);
    returns its id.

    Cluster n has ``cluster_size`` members ``{prefix}{n + member_offset}_{i}`` (symbols
    ``{prefix}{n + member_offset}S{i}``), so two calls with the same prefix and offset give
    the same compositions (cache hits) and different prefixes give disjoint ones (misses), and
    the terms of :data:`SYNTHETIC_TERMS`, all with FDR < 0.05. The dataset ``slug`` is created
    if missing (no annotation rows: the pipeline reads clusters and terms only).
    """
    from django.db import transaction
    from django.utils import timezone

    from clustering.domain.hashing import composition_hash
    from clustering.models import Cluster, ClusteringRun, Dataset, TermEnrichment

    cluster_type = "functional"
    with transaction.atomic():
        dataset, _ = Dataset.objects.get_or_create(
            slug=slug,
            defaults={
                "name": f"synthetic {slug}",
                "kind": cluster_type,
                "source": "bench/_harness.py synthetic clusters",
                "entity_count": clusters * cluster_size,
            },
        )
        now = timezone.now()
        run = ClusteringRun.objects.create(
            dataset=dataset,
            cluster_type=cluster_type,
            params={"synthetic": True, "clusters": clusters, "cluster_size": cluster_size},
            status="succeeded",
            started_at=now,
            finished_at=now,
        )
        rows = []
        for n in range(clusters):
            g = n + member_offset
            ids = [f"{prefix}{g:06d}_{i:03d}" for i in range(cluster_size)]
            rows.append(
                Cluster(
                    run=run,
                    number=n + 1,
                    size=cluster_size,
                    members=[{"id": e, "symbol": f"{prefix}{g}S{i}"} for i, e in enumerate(ids)],
                    composition_hash=composition_hash(ids, cluster_type),
                    quality={},
                )
            )
        created = Cluster.objects.bulk_create(rows, batch_size=2000)
        terms = []
        for cluster in created:
            symbols = [m["symbol"] for m in cluster.members]
            rank = 0
            for category, count in SYNTHETIC_TERMS:
                short = "WP" if category == "WikiPathways" else "GO"
                for j in range(count):
                    rank += 1
                    overlap = max(2, cluster_size - rank)
                    p_value = 10.0 ** -(12 - rank)
                    terms.append(
                        TermEnrichment(
                            cluster=cluster,
                            category=category,
                            term_id=f"{short}:{cluster.number:06d}{j}",
                            term_name=f"{short} process {j} of group {cluster.number}",
                            overlap=overlap,
                            term_size=overlap + 5,
                            p_value=p_value,
                            fdr=min(0.04, p_value * 50),
                            fold_enrichment=20.0,
                            overlap_members=symbols[:overlap],
                            ancestor_ids=[],
                        )
                    )
        TermEnrichment.objects.bulk_create(terms, batch_size=5000)
    return run.pk


def plan_send(run_id: int) -> float:
    """Send the pipeline's plan step for ``run_id`` (what the cluster step chains into) to the
    workers; returns the send time as ``time.time()``."""
    from llm.tasks import plan_summaries

    sent = time.time()
    plan_summaries.delay(run_id, "gemini")
    return sent


def job_wait(*, run_id: int, timeout: float, on_poll: Callable[[Any], None] | None = None) -> Any:
    """Wait (at most ``timeout`` seconds) for the run's generation job to end; returns the
    ``GenerationJob``. ``on_poll`` is called with the job (or None) about every 0.2 s.

    Raises:
        RuntimeError: the job did not end in time.
    """
    from llm.models import GenerationJob, JobStatus

    ended = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = GenerationJob.objects.filter(run_id=run_id, scope="run").first()
        if on_poll is not None:
            on_poll(job)
        if job is not None and job.status in ended:
            return job
        time.sleep(0.2)
    raise RuntimeError(f"generation job of run {run_id} did not end within {timeout:.0f} s")


def task_states(job_id: int) -> dict[str, int]:
    """Count of the job's ``SummaryTask`` rows by state."""
    from django.db.models import Count

    from llm.models import SummaryTask

    rows = SummaryTask.objects.filter(job_id=job_id).values("state").annotate(n=Count("id"))
    return {row["state"]: row["n"] for row in rows}
