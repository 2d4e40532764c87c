"""Benchmark: batch mode at scale against a provider emulator - wall seconds per phase and peak
memory, at two sizes, to show that memory does not grow with the number of requests.

    python bench/batch.py                                # 10,000 and 2,500 clusters, OpenAI
    python bench/batch.py --provider gemini              # the Gemini emulator (JSONL file path)
    python bench/batch.py --requests 10000 --compare 0 --no-judge
    python bench/batch.py --requests 2000 --compare 500 --tracemalloc   # heap peak per phase

For each size N (``--compare`` first, then ``--requests``), each step in a fresh process:

1. set-up: the PostgreSQL database ``clustersum_benchbatch`` is dropped, created and migrated,
   Redis db 7 flushed, and a synthetic succeeded clustering run of N clusters is written with
   ``bulk_create`` (``--cluster-size`` members each, 6 GO terms and 2 WikiPathways terms each,
   all with FDR < 0.05; every cluster has its own members, so the cache is cold and the dataset
   has N x cluster-size symbols);
2. plan (measured): ``llm.services.batch_admin.batch_job_create(submit=False)``, the job of
   ``llm_batch create``: a batch-mode job, one task per cluster, one bulk cache lookup;
3. batch (measured): the batch driver's own steps, one after the other, timed: ``build``
   (batch and item rows written, each request built and sized), ``submit`` (requests rebuilt
   from the items, uploaded as JSONL, batch created), ``poll`` (until the provider reports the
   batch ended), ``collect`` (results streamed and matched by custom_id; each item validated and
   stored: LLMCall rows, drafts and, for the judge batch, the summaries), for the generation
   batch and then the judge batch; then ``finalize``. ``BATCH_MAX_REQUESTS_PER_BATCH`` = N, so
   each kind is one batch of N requests.

The emulator (``manage.py provider_emulator``) runs in its own process, so the memory measured
is ours. Per measured process: its resident size before the first phase (``baseline``: Django,
SDKs, one connection), each phase's own peak (``/proc/self/clear_refs`` resets the resident
high-water mark before the phase, Linux; memory the allocator kept from an earlier phase counts
again), and the process's peak (the largest of those and ``ru_maxrss``). ``--tracemalloc``
adds each phase's Python-heap peak above its start (slower). Every figure is one
``name: value unit`` line; at the end, the growth of each process's peak per 1,000 requests
between the two sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    # run as a script: the project root, not bench/ (whose clustering.py would shadow the app)
    sys.path[0] = str(ROOT)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clustersum_benchbatch"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
SLUG = "bench-batch"
MODELS = {"openai": "gpt-4.1-mini", "gemini": "gemini-2.5-flash", "anthropic": "claude-haiku-4-5"}
KEYS = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
PHASES = ("build", "submit", "poll", "collect")
MIB = 1024 * 1024


def emit(name: str, value: float | int | str, unit: str) -> None:
    """Print one figure as ``name: value unit``."""
    if isinstance(value, float):
        value = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    print(f"{name}: {value} {unit}", flush=True)


def database_recreate(url: str) -> None:
    """Drop (closing any leftover connections) and create the database ``url`` names."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name or name in ("postgres", "template0", "template1"):
        raise SystemExit(f"refusing to recreate database {name!r}")
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def bench_env(args: argparse.Namespace, *, clusters: int, base_url: str = "") -> dict[str, str]:
    """Environment of the set-up and measured processes (no provider variable is inherited)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "LLM_", "BATCH_", "OPENAI_", "ANTHROPIC_", "GEMINI_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        LLM_PROVIDER=args.provider,
        LLM_MODEL=MODELS[args.provider],
        LLM_TIMEOUT="600",
        BATCH_API_ENABLED="true",
        BATCH_MAX_REQUESTS_PER_BATCH=str(max(1, clusters)),
        PYTHONUNBUFFERED="1",
        **{KEYS[args.provider]: "bench-key-not-secret"},
    )
    if base_url:
        env["LLM_BASE_URL"] = base_url
    return env


# --- set-up process -----------------------------------------------------------------------------


def synthetic_run_create(*, clusters: int, size: int) -> int:
    """Write a succeeded functional clustering run of ``clusters`` clusters of ``size`` members
    (entities ``B{cluster}_{member}``, symbols ``BG{cluster}S{member}``), each with 6 GO
    biological-process terms and 2 WikiPathways terms (FDR 1e-8 .. 8e-8, overlap = size);
    returns the run id. Synthetic data: no source, no licence."""
    from django.db import transaction

    from clustering.domain.hashing import composition_hash
    from clustering.models import Cluster, ClusteringRun, Dataset, TermEnrichment

    with transaction.atomic():
        dataset = Dataset.objects.create(
            slug=SLUG,
            name="synthetic batch benchmark",
            kind="functional",
            release="synthetic (bench/batch.py)",
            licence="synthetic data, no licence",
            entity_count=clusters * size,
            term_count=clusters * 8,
        )
        run = ClusteringRun.objects.create(
            dataset=dataset,
            cluster_type="functional",
            params={"synthetic": True},
            status="succeeded",
        )
        step = 1000
        for start in range(0, clusters, step):
            rows = []
            for number in range(start + 1, min(clusters, start + step) + 1):
                members = [
                    {"id": f"B{number:06d}_{j:02d}", "symbol": f"BG{number}S{j}"}
                    for j in range(size)
                ]
                rows.append(
                    Cluster(
                        run=run,
                        number=number,
                        size=size,
                        members=members,
                        composition_hash=composition_hash([m["id"] for m in members], "functional"),
                    )
                )
            stored = Cluster.objects.bulk_create(rows)
            terms = []
            for cluster in stored:
                symbols = [m["symbol"] for m in cluster.members]
                for k in range(8):
                    pathway = k >= 6
                    terms.append(
                        TermEnrichment(
                            cluster=cluster,
                            category="WikiPathways" if pathway else "GO_Biological_Process_2023",
                            term_id=(
                                f"WP{cluster.number * 2 + k - 6}"
                                if pathway
                                else f"GO:{cluster.number * 6 + k:07d}"
                            ),
                            term_name=(
                                f"Synthetic signalling pathway {cluster.number} {k}"
                                if pathway
                                else f"synthetic regulation of process {cluster.number} {k}"
                            ),
                            overlap=size,
                            term_size=size + 5,
                            p_value=(k + 1) * 1e-9,
                            fdr=(k + 1) * 1e-8,
                            fold_enrichment=50.0,
                            overlap_members=symbols,
                        )
                    )
            TermEnrichment.objects.bulk_create(terms, batch_size=5000)
    return run.pk


def setup_main(args: argparse.Namespace) -> None:
    """Reset the bench database and Redis db, migrate, write the synthetic run."""
    database_recreate(args.database_url)
    import django
    import redis

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    redis.Redis.from_url(args.redis_url).flushdb()
    started = time.perf_counter()
    synthetic_run_create(clusters=args.child_clusters, size=args.cluster_size)
    print(json.dumps({"setup_seconds": time.perf_counter() - started}))


# --- measured process ---------------------------------------------------------------------------


def _rss_mib() -> float:
    """Current resident set size (MiB), from /proc/self/statm."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def _hwm_reset() -> bool:
    """Reset this process's resident high-water mark (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _hwm_mib() -> float:
    """The resident high-water mark (VmHWM, MiB) since start or the last reset."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def phase(figures: dict[str, float], name: str, can_reset: bool) -> Iterator[None]:
    """Time a phase (wall seconds) and record its own resident peak (MiB) in ``figures``; with
    tracemalloc on, also the phase's Python-heap peak above its start (``*_heap_mib``)."""
    import tracemalloc

    if can_reset:
        _hwm_reset()
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
        heap_start = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    yield
    figures[f"{name}_seconds"] = time.perf_counter() - started
    if can_reset:
        figures[f"{name}_peak_mib"] = _hwm_mib()
    if tracing:
        figures[f"{name}_heap_mib"] = (tracemalloc.get_traced_memory()[1] - heap_start) / MIB


def _measured_start(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Django set up, one connection, the provider and its SDK loaded; tracemalloc started on
    request. Returns the figures so far (``baseline_mib``) and whether the resident high-water
    mark can be reset per phase."""
    import django

    django.setup()
    from django.db import connection

    from llm.providers.registry import batch_provider_get
    from llm.services import batch_admin  # noqa: F401  (loaded before the baseline)

    connection.ensure_connection()
    batch_provider_get(args.provider)
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    return {"baseline_mib": _rss_mib()}, _hwm_reset()


def _peak(figures: dict[str, Any]) -> float:
    """The process's peak resident size (MiB): each reset of the high-water mark also resets
    ``ru_maxrss``, so the largest of it, the baseline and every phase's peak."""
    return max(
        [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, figures["baseline_mib"]]
        + [v for k, v in figures.items() if k.endswith("_peak_mib")]
    )


def plan_main(args: argparse.Namespace) -> None:
    """Plan the batch-mode job (``batch_job_create(submit=False)``: job, tasks, one bulk cache
    lookup); print a JSON object of figures."""
    figures, can_reset = _measured_start(args)
    from llm.services.batch_admin import batch_job_create

    with phase(figures, "plan", can_reset):
        created = batch_job_create(dataset=SLUG, provider=args.provider, submit=False)
    figures.update(clusters=created.clusters, to_generate=created.to_generate)
    figures["peak_mib"] = _peak(figures)
    print(json.dumps(figures))


def measured_main(args: argparse.Namespace) -> None:
    """Run the batch phases of the planned job; print a JSON object of figures."""
    figures, can_reset = _measured_start(args)
    from llm.models import GenerationJob, LLMCall
    from llm.providers.registry import batch_provider_get
    from llm.services import batches as driver
    from llm.services.steps import NEXT_GENERATE, NEXT_JUDGE, job_finalize

    provider = batch_provider_get(args.provider)
    job = GenerationJob.objects.get(run__dataset__slug=SLUG, scope="clusters")
    figures["clusters"] = job.total
    total_started = time.perf_counter()
    kinds = (NEXT_GENERATE, NEXT_JUDGE) if args.judge else (NEXT_GENERATE,)
    lease = driver.DriverLease.take(job.pk)  # the phases run under the driver's lease, as in
    if lease is None:  # job_batch_advance, renewing it as they go
        raise RuntimeError(f"job {job.pk} is leased by another driver")
    try:
        _measured_phases(figures, can_reset, job, provider, kinds, lease)
    finally:
        lease.release()
    with phase(figures, "finalize", can_reset):
        driver._progress(job)
        job_finalize(job_id=job.pk)
    figures["total_seconds"] = time.perf_counter() - total_started
    job = GenerationJob.objects.get(pk=job.pk)
    figures.update(
        job_status=job.status,
        succeeded=job.succeeded,
        failed=job.failed,
        unfinished=job.total - job.succeeded - job.failed - job.skipped - job.rejected,
        calls=LLMCall.objects.filter(job=job).count(),
    )
    figures["peak_mib"] = _peak(figures)
    print(json.dumps(figures))


def _measured_phases(
    figures: dict[str, Any],
    can_reset: bool,
    job: Any,
    provider: Any,
    kinds: tuple[str, ...],
    lease: Any,
) -> None:
    """Build, submit, poll and collect the batches of each kind in ``kinds``, timing each."""
    from llm.models import ProviderBatch
    from llm.services import batches as driver

    for kind in kinds:
        with phase(figures, f"{kind}_build", can_reset):
            made = driver._create_batches(job, provider, None, lease)
        assert {b.kind for b in made} == {kind}, f"expected {kind} batches, got {made}"
        figures[f"{kind}_batches"] = len(made)
        figures[f"{kind}_requests"] = sum(b.request_count for b in made)
        with phase(figures, f"{kind}_submit", can_reset):
            for batch in made:
                if not driver._submit(batch, provider, job, lease, recovering=False):
                    raise RuntimeError(f"batch {batch.display_name} was not submitted")
        with phase(figures, f"{kind}_poll", can_reset):
            deadline = time.monotonic() + 3600
            while True:
                open_rows = list(
                    ProviderBatch.objects.filter(job=job, kind=kind, state__in=driver.OPEN_STATES)
                )
                if not open_rows:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("batches did not end within an hour")
                for batch in open_rows:
                    driver._poll(batch, provider)
        with phase(figures, f"{kind}_collect", can_reset):
            fallbacks = 0
            for batch in ProviderBatch.objects.filter(job=job, kind=kind).exclude(
                state=ProviderBatch.State.COLLECTED
            ):
                _items, sent = driver._collect(batch, provider, job, lease)
                fallbacks += sent
        figures[f"{kind}_fallbacks"] = fallbacks


# --- parent -------------------------------------------------------------------------------------


@contextmanager
def emulator_process(provider: str, env: dict[str, str]) -> Iterator[str]:
    """A provider emulator in its own process (``manage.py provider_emulator``); yields its URL
    and stops it on exit."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "provider_emulator", provider, "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"the {provider} emulator did not start: {line!r}")
        yield line.rsplit("listening on ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _child(args: argparse.Namespace, mode: str, clusters: int, env: dict[str, str]) -> Any:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--{mode}",
        str(clusters),
        "--provider",
        args.provider,
        "--cluster-size",
        str(args.cluster_size),
        "--database-url",
        args.database_url,
        "--redis-url",
        args.redis_url,
    ]
    if not args.judge:
        command.append("--no-judge")
    if args.tracemalloc:
        command.append("--tracemalloc")
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} process for {clusters} clusters failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_size(args: argparse.Namespace, clusters: int) -> dict[str, Any]:
    """Set up, plan and measure one size; print its figures; return those of the batch process
    (with ``plan_peak_mib`` of the plan process added)."""
    setup = _child(args, "setup", clusters, bench_env(args, clusters=clusters))
    plan: dict[str, Any] = _child(args, "plan", clusters, bench_env(args, clusters=clusters))
    with emulator_process(args.provider, bench_env(args, clusters=clusters)) as url:
        figures: dict[str, Any] = _child(
            args, "measure", clusters, bench_env(args, clusters=clusters, base_url=url)
        )
    n = clusters
    kinds = ("generate", "judge") if args.judge else ("generate",)
    emit(f"n{n}_setup_synthetic_run", float(setup["setup_seconds"]), "seconds")
    for kind in kinds:
        emit(f"n{n}_{kind}_requests", figures[f"{kind}_requests"], "requests")
        emit(f"n{n}_{kind}_batches", figures[f"{kind}_batches"], "batches")
        emit(f"n{n}_{kind}_fallbacks", figures[f"{kind}_fallbacks"], "items sent to realtime")
    emit(f"n{n}_plan", float(plan["plan_seconds"]), "seconds")
    for kind in kinds:
        for step in PHASES:
            emit(f"n{n}_{kind}_{step}", float(figures[f"{kind}_{step}_seconds"]), "seconds")
    emit(f"n{n}_finalize", float(figures["finalize_seconds"]), "seconds")
    emit(f"n{n}_batch_total", float(figures["total_seconds"]), "seconds")
    emit(f"n{n}_total", float(plan["plan_seconds"] + figures["total_seconds"]), "seconds")
    emit(
        f"n{n}_clusters_succeeded",
        f"{figures['succeeded']}/{figures['clusters']} (failed {figures['failed']}, "
        f"unfinished {figures['unfinished']}, job {figures['job_status']})",
        "clusters",
    )
    emit(f"n{n}_llm_call_rows", figures["calls"], "rows")
    emit(f"n{n}_plan_process_baseline_rss", float(plan["baseline_mib"]), "MiB")
    emit(f"n{n}_plan_process_peak_rss", float(plan["peak_mib"]), "MiB")
    if "plan_heap_mib" in plan:
        emit(f"n{n}_plan_heap_peak", float(plan["plan_heap_mib"]), "MiB")
    emit(f"n{n}_batch_process_baseline_rss", float(figures["baseline_mib"]), "MiB")
    phases = [*(f"{kind}_{step}" for kind in kinds for step in PHASES), "finalize"]
    for name in phases:
        if f"{name}_peak_mib" in figures:
            emit(f"n{n}_{name}_peak_rss", float(figures[f"{name}_peak_mib"]), "MiB")
    for name in phases:
        if f"{name}_heap_mib" in figures:
            emit(f"n{n}_{name}_heap_peak", float(figures[f"{name}_heap_mib"]), "MiB")
    emit(f"n{n}_batch_process_peak_rss", float(figures["peak_mib"]), "MiB")
    figures["plan_peak_mib"] = plan["peak_mib"]
    return figures


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; run the set-up and measured processes for each size; print figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="clusters (= requests)")
    parser.add_argument(
        "--compare", type=int, default=2_500, help="a second, smaller size (0 = none)"
    )
    parser.add_argument("--provider", choices=("openai", "gemini", "anthropic"), default="openai")
    parser.add_argument("--cluster-size", type=int, default=10, help="members per cluster")
    parser.add_argument(
        "--no-judge", dest="judge", action="store_false", help="generation batch only"
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also trace the Python heap: each phase's heap peak (slower; for diagnosis)",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--setup", dest="child_setup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plan", dest="child_plan", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", dest="child_measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_setup is not None:
        args.child_clusters = args.child_setup
        setup_main(args)
        return 0
    if args.child_plan is not None:
        plan_main(args)
        return 0
    if args.child_measure is not None:
        measured_main(args)
        return 0
    if args.requests < 1 or args.compare < 0 or args.cluster_size < 1:
        parser.error("--requests >= 1, --compare >= 0, --cluster-size >= 1")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    emit("provider", f"{args.provider} emulator", "(real SDK, separate process)")
    emit("cluster_size", args.cluster_size, "members")
    sizes = [n for n in (args.compare, args.requests) if n]
    results = {n: run_size(args, n) for n in sizes}
    if len(sizes) == 2:
        small, large = sizes
        for key, name in (("peak_mib", "batch_process"), ("plan_peak_mib", "plan_process")):
            growth = (results[large][key] - results[small][key]) / (large - small) * 1000
            emit(f"{name}_peak_rss_growth_per_1000_requests", growth, "MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
