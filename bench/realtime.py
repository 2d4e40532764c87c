"""Benchmark: realtime efficiency against the Gemini emulator with 1 s latency, two worker
processes and a server-side rate limit; items lost when the product is configured above it.

    python bench/realtime.py                        # the four scenarios, bucket server, ~9 min
    python bench/realtime.py --scenario a b         # some of them
    python bench/realtime.py --server-mode window   # the same against a moving-window server
    python bench/realtime.py --calls 100            # the same number of calls for every one
    python bench/realtime.py --scenario c --hide-server-limit   # 429s without the limit in them

Scenarios (product = ``LLM_RATE_LIMIT``, shared by both workers through Redis and paced by its
GCRA; server = the emulator's own limit, ``--server-mode bucket`` (default: a token bucket
refilled at rpm/60 per second holding ``--server-burst`` (2) requests, how providers enforce a
per-minute limit) or ``window`` (a moving window of rpm per 60 s); either answers 429 with
RetryInfo and a per-minute QuotaFailure naming the limit, as Gemini does, or without the
QuotaFailure with ``--hide-server-limit``, so the product learns the rate from 429s alone):

    a  server 30/min,  product "30/minute"    achieved / server limit >= 0.97, 429s < 2%, 0 lost
    b  server 120/min, product "120/minute"   achieved / server limit >= 0.97, 429s < 2%, 0 lost
    c  server 120/min, product "600/minute"   items lost (target 0: 429s are waited through);
                                              429s answered, achieved / server limit
    d  no server limit, product "600/minute"  achieved / configured rate, >= 0.97

Method. Each scenario has fresh workers (``--workers`` 2 ``celery worker --pool threads -c
--concurrency`` (16) subprocesses), a fresh ``GeminiEmulator(latency=--latency (1 s), rpm,
rate_mode, burst)`` in this process, reached by the real google-genai SDK through
``LLM_BASE_URL``, and a flushed Redis db (broker, results and the shared limiter). The run is a
synthetic succeeded clustering run (``bulk_create``, 10 members and 6 enriched terms per cluster,
cold cache) whose plan step is sent to the workers: plan -> chord of one task per cluster
(generate -> validation -> judge; the emulator's judge accepts, so two calls per cluster) ->
finalize. Each scenario makes ``--calls`` calls (default a 80, b 160, c 240, d 600: about
2.7, 1.3, 2 and 1 minutes of steady pacing).

Achieved calls/minute. Bucket server (or none): the pace of the accepted arrivals (answered 200)
in the emulator's log, ``(n - 1) / (t[-1] - t[0]) * 60`` over them without the first
``--server-burst`` (the bucket starts full) and the last 5% (the run drains: fewer calls wait).
Window server: ``L / mean(t[i + L] - t[i]) * 60`` over the accepted arrivals (exact for a
saturated moving window, see ``bench/_harness.gap_rate``). Efficiency = achieved / the server's
limit (a, b, c) or / the configured rate (d). The product paces at one call every
(60 s + ``LLM_RATE_LIMIT_MARGIN`` 0.5 s) / L, so its ceiling is 60 / 60.5 = 0.992.
Items lost = clusters whose task did not end ``succeeded``; beside it, the calls that ended in
an error and the summaries stored without a verdict because their judge call was given up.
429s = answers with status 429 in the log, and their share of all requests. The learned rate =
the shared limiter's factor of the configured rate when the run ends (1.0 = never lowered).
Worker peak memory = ``VmHWM`` of each worker process (and children) read just before it stops,
in MiB; the largest is printed.

Diagnostics: the kernel's listen-queue overflows during the run (``/proc/net/netstat``,
machine-wide; the emulator's HTTP server keeps Python socketserver's listen backlog of 5, and a
dropped connection is retried by the client's TCP after 1 s; ``--listen-backlog`` raises it);
``--dump FILE`` writes the request log as JSON lines.

Own database ``clustersum_bench_realtime`` (dropped, created, migrated) and Redis db 13 (flushed);
workers and emulator are stopped on exit, also on Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    # run as a script: the project root, not bench/ (whose clustering.py would shadow the app)
    sys.path[0] = str(ROOT)

from bench._harness import (  # noqa: E402
    CALLS_PER_CLUSTER,
    MODEL,
    Rate,
    bench_setup,
    emit,
    gap_rate,
    job_wait,
    plan_send,
    rate_parse,
    redis_flush,
    running_workers,
    synthetic_run_create,
    task_states,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clustersum_bench_realtime"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"  # not 14: bench/pipeline.py flushes that
#: The shared limiter's Redis hash (llm/ratelimit.py: TAT, learned factor, ...).
LIMITER_KEY = f"clustersum:ratelimit:gemini:{MODEL}"
#: Calls per scenario unless --calls says otherwise.
DEFAULT_CALLS = {"a": 80, "b": 160, "c": 240, "d": 600}


def learned_factor(redis_url: str) -> float:
    """The shared limiter's learned fraction of the configured rate as last written (1.0 when
    never lowered or not written)."""
    import redis

    raw = redis.Redis.from_url(redis_url).hget(LIMITER_KEY, "factor")
    return float(raw) if raw else 1.0


def pace_rate(arrivals: list[float], skip: int) -> float | None:
    """Calls/minute of evenly paced arrivals (seconds): ``(n - 1) / (t[-1] - t[0]) * 60`` over
    them without the first ``skip`` and the last 5%; None with fewer than 3 left."""
    times = sorted(arrivals)
    tail = max(1, round(0.05 * len(times)))
    steady = times[skip : len(times) - tail]
    if len(steady) < 3 or steady[-1] <= steady[0]:
        return None
    return (len(steady) - 1) / (steady[-1] - steady[0]) * 60.0


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full
    (``TcpExt: ListenOverflows`` in ``/proc/net/netstat``; whole machine, since boot; 0 where
    unavailable). A dropped connection attempt is retried by the client's TCP after 1 s."""
    try:
        lines = [
            line.split()
            for line in Path("/proc/net/netstat").read_text().splitlines()
            if line.startswith("TcpExt:")
        ]
        return int(dict(zip(lines[0], lines[1], strict=True)).get("ListenOverflows", 0))
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(frozen=True)
class Scenario:
    """One measured configuration: ``product`` rate (LLM_RATE_LIMIT), the emulator's
    ``server_rpm`` requests per minute (None = no server limit)."""

    key: str
    name: str
    product: str
    server_rpm: int | None
    what: str

    def binding(self) -> Rate:
        """The limit that binds: the server's when it is lower than the product's."""
        product = rate_parse(self.product)
        if self.server_rpm is None:
            return product
        server = Rate(text=f"{self.server_rpm}/minute", amount=self.server_rpm, window=60.0)
        return server if server.per_minute <= product.per_minute else product


SCENARIOS = {
    s.key: s
    for s in (
        Scenario("a", "realtime_30rpm", "30/minute", 30, "server 30 RPM"),
        Scenario("b", "realtime_120rpm", "120/minute", 120, "server 120 RPM"),
        Scenario("c", "realtime_over_limit", "600/minute", 120, "product 600 > server 120 RPM"),
        Scenario("d", "realtime_no_server_limit", "600/minute", None, "no server limit"),
    )
}


def scenario_run(
    scenario: Scenario, args: argparse.Namespace, env: dict[str, str], tmp: Path
) -> dict[str, float]:
    """Run one scenario and print its figures; returns the headline figures by name."""
    from config.celery import app
    from llm.emulators.gemini import GeminiEmulator

    limit = scenario.binding()
    calls = args.calls if args.calls is not None else DEFAULT_CALLS[scenario.key]
    clusters = math.ceil(calls / CALLS_PER_CLUSTER)
    expected = calls / limit.per_minute * 60.0 + 10.0
    mode = args.server_mode
    server = f"{scenario.server_rpm}/min ({mode})" if scenario.server_rpm else "none"
    print(
        f"# {scenario.key}: {scenario.what}; product {scenario.product}, server {server}"
        f", {clusters} clusters ({calls} calls), expected run about {expected / 60:.1f} min",
        flush=True,
    )
    run_id = synthetic_run_create(
        slug=f"bench-realtime-{scenario.key}", clusters=clusters, prefix=f"RT{scenario.key.upper()}"
    )
    redis_flush(env["REDIS_URL"])
    emulator = GeminiEmulator(
        latency=args.latency,
        rpm=scenario.server_rpm,
        window=60.0,
        rate_mode=mode,
        burst=args.server_burst,
    )
    emulator.report_limit = not args.hide_server_limit
    with emulator:
        phase_env = {**env, "LLM_BASE_URL": emulator.url, "LLM_RATE_LIMIT": scenario.product}
        with running_workers(
            app,
            count=args.workers,
            concurrency=args.concurrency,
            env=phase_env,
            log_dir=tmp,
            tag=f"realtime-{scenario.key}",
        ) as workers:
            overflows = listen_overflows()
            plan_send(run_id)
            job = job_wait(run_id=run_id, timeout=3 * expected + 300)
            overflows = listen_overflows() - overflows
            peaks = workers.peak_rss_mib()
            factor = learned_factor(env["REDIS_URL"])
        log = emulator.request_log()
    redis_flush(env["REDIS_URL"])

    states = task_states(job.pk)
    given_up = _calls_given_up(job.pk)
    unjudged = _unjudged_summaries(job.pk)
    accepted = sorted(e["monotonic"] for e in log if e["status"] == 200)
    answered_429 = sum(1 for e in log if e["status"] == 429)
    other_errors = sum(1 for e in log if e["status"] not in (200, 429))
    if args.dump:
        record = {
            "scenario": scenario.key,
            "server_mode": mode,
            "requests": [
                {k: e.get(k) for k in ("wall", "monotonic", "status", "target", "duration")}
                for e in log
            ],
        }
        with Path(args.dump).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
    if mode == "window" and scenario.server_rpm is not None:
        achieved = gap_rate(accepted, limit.amount)
    else:
        achieved = pace_rate(accepted, skip=args.server_burst or 2)
    lost = sum(n for state, n in states.items() if state != "succeeded")
    p = f"{scenario.name}_{mode}"
    emit(f"{p}_clusters", sum(states.values()), "clusters")
    emit(f"{p}_calls_accepted", len(accepted), "calls")
    emit(f"{p}_other_errors", other_errors, "answers (not 200/429)")
    figures: dict[str, float] = {"peak_rss": max(peaks, default=0.0)}
    emit(f"{p}_generate_calls_given_up", given_up.get("generate", 0), "calls (ended in error)")
    emit(f"{p}_judge_calls_given_up", given_up.get("judge", 0), "calls (ended in error)")
    emit(f"{p}_unjudged_summaries", unjudged, "summaries (stored pending: judge unreachable)")
    share = answered_429 / len(log) if log else 0.0
    target_429 = "" if scenario.key in ("c", "d") else "< 0.02"
    emit(f"{p}_429", answered_429, f"answers of {len(log)} requests")
    emit(f"{p}_429_share", share, "ratio of requests", target=target_429)
    emit(f"{p}_items_lost", lost, "clusters", target="0")
    emit(f"{p}_learned_factor_at_end", factor, "of the configured rate")
    figures.update(items_lost=lost, share_429=share)
    if scenario.server_rpm is None:
        allowed = rate_parse(scenario.product).per_minute
        label, target = "achieved / configured rate", ">= 0.97"
    else:
        allowed = float(scenario.server_rpm)
        label, target = "achieved / server limit", ">= 0.97" if scenario.key != "c" else ""
    emit(f"{p}_allowed_rate", allowed, "calls/minute")
    if achieved is None:
        emit(f"{p}_achieved_rate", "n/a", "calls/minute (too few arrivals)")
    else:
        emit(f"{p}_achieved_rate", achieved, "calls/minute")
        emit(f"{p}_efficiency", achieved / allowed, f"ratio ({label})", target=target)
        figures["efficiency"] = achieved / allowed
    emit(f"{p}_listen_overflows", overflows, "connection attempts dropped (machine-wide)")
    emit(f"{p}_worker_peak_rss", max(peaks, default=0.0), "MiB (largest of the workers)")
    emit(f"{p}_job_seconds", _job_seconds(job), "seconds (plan to finalize)")
    return figures


def _calls_given_up(job_id: int) -> dict[str, int]:
    """Provider calls that ended in an error (their last try failed: permanent, tries used up,
    or rate limited past LLM_RATE_LIMIT_BUDGET), by kind (generate | judge)."""
    from llm.models import LLMCall

    last: dict[tuple[int | None, str, int], tuple[int, str]] = {}
    rows = LLMCall.objects.filter(job_id=job_id).values_list(
        "task_id", "kind", "attempt", "try_number", "status"
    )
    for task_id, kind, attempt, try_number, status in rows:
        key = (task_id, kind, attempt)
        if key not in last or try_number > last[key][0]:
            last[key] = (try_number, status)
    counts: dict[str, int] = {}
    for (_, kind, _), (_, status) in last.items():
        if status != LLMCall.Status.SUCCESS:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _unjudged_summaries(job_id: int) -> int:
    """Summaries of the job's tasks stored without a judge verdict (the judge call failed)."""
    from llm.models import ClusterSummary

    return ClusterSummary.objects.filter(tasks__job_id=job_id, judge_verdict="").distinct().count()


def _job_seconds(job: object) -> float:
    started, finished = getattr(job, "started_at", None), getattr(job, "finished_at", None)
    return (finished - started).total_seconds() if started and finished else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, reset the bench database and Redis db, run the scenarios, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--scenario", nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS)
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help="provider calls per scenario (default: a 80, b 160, c 240, d 600)",
    )
    parser.add_argument(
        "--server-mode",
        choices=("bucket", "window"),
        default="bucket",
        help="how the emulator enforces its limit (default bucket, as providers do)",
    )
    parser.add_argument(
        "--hide-server-limit",
        action="store_true",
        help="429s do not name the server's limit (no QuotaFailure): the product must learn it",
    )
    parser.add_argument(
        "--server-burst",
        type=int,
        default=2,
        help="the emulator's bucket size in requests (bucket mode; default 2)",
    )
    parser.add_argument("--latency", type=float, default=1.0, help="emulator seconds per call")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        help="LLM_RATE_LIMIT_MARGIN for the workers, seconds (default: the product's, 0.5)",
    )
    parser.add_argument(
        "--listen-backlog",
        type=int,
        default=None,
        help=(
            "TCP listen backlog of the emulator (default: its own, Python socketserver's 5; "
            "a burst of new connections beyond it waits for TCP's 1 s SYN retry)"
        ),
    )
    parser.add_argument(
        "--dump",
        help="append each scenario's limiter slots and emulator request log to this JSONL file",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    if (
        args.workers < 1
        or args.concurrency < 1
        or (args.calls is not None and args.calls < 10)
        or args.server_burst < 1
        or (args.margin is not None and args.margin < 0)
        or (args.listen_backlog is not None and args.listen_backlog < 1)
    ):
        parser.error(
            "--workers >= 1, --concurrency >= 1, --calls >= 10, --server-burst >= 1, "
            "--margin >= 0, --listen-backlog >= 1"
        )

    if args.listen_backlog is not None:
        from llm.emulators.transport import EmulatorHTTPServer

        # the emulators' server class; its instances read the backlog when they start
        EmulatorHTTPServer.request_queue_size = args.listen_backlog
    extra = {} if args.margin is None else {"LLM_RATE_LIMIT_MARGIN": f"{args.margin:g}"}
    env = bench_setup(database_url=args.database_url, redis_url=args.redis_url, **extra)
    emit("workers", f"{args.workers} x {args.concurrency}", "processes x threads")
    if args.margin is not None:
        emit("rate_limit_margin", args.margin, "seconds (LLM_RATE_LIMIT_MARGIN)")
    if args.listen_backlog is not None:
        emit("emulator_listen_backlog", args.listen_backlog, "connections")
    emit("emulator_latency", args.latency, "seconds")
    emit("server_mode", args.server_mode, f"(burst {args.server_burst} in bucket mode)")
    if args.hide_server_limit:
        emit("server_limit_in_429", "hidden", "(no QuotaFailure: learned from 429s alone)")
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as tmp:
        for key in args.scenario:
            figures = scenario_run(SCENARIOS[key], args, env, Path(tmp))
            peaks.append(figures["peak_rss"])
    emit("realtime_worker_peak_rss", max(peaks), "MiB (largest worker, all scenarios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
