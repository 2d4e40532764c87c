"""Benchmark: realtime efficiency against the Gemini emulator with 1 s latency, two worker
processes and a server-side rate limit; items lost when the product is configured above it.

    python bench/realtime.py                        # the four scenarios, about 13 minutes
    python bench/realtime.py --scenario a b         # some of them
    python bench/realtime.py --minutes 1            # the same measured minutes for every one
    python bench/realtime.py --listen-backlog 128   # emulator accepting bursts of connections

Scenarios (product = ``LLM_RATE_LIMIT``, shared by both workers through Redis; server = the
emulator's own moving window ``rpm`` per ``window`` s, answering 429 with Retry-After):

    a  server 30/60 s,  product "30/minute"    achieved / server limit, >= 0.99, zero 429s
    b  server 600/60 s, product "600/minute"   achieved / server limit, >= 0.99, zero 429s
    c  server 30/60 s,  product "60/minute"    items lost (target 0: every 429 honoured
                                               through Retry-After); 429s answered
    d  no server limit, product "600/minute"   achieved / configured rate, >= 0.97

Method. Each scenario has fresh workers (``--workers`` 2 ``celery worker --pool threads -c
--concurrency`` (16) subprocesses; 600 RPM x 1 s latency needs only 10 calls in flight, but the
moving window admits a full window's worth in a burst, so more threads keep up with it), a fresh
``GeminiEmulator(latency=--latency (1 s), rpm, window)`` in this process, reached by the real
google-genai SDK through ``LLM_BASE_URL``, and a flushed Redis db (broker, results and the shared
rate window). The run is a synthetic succeeded clustering run (``bulk_create``, 10 members and 6
enriched terms per cluster, cold cache) whose plan step is sent to the workers: plan (one bulk
cache lookup) -> chord of one task per cluster (generate -> validation -> judge; the emulator's
judge accepts, so two calls per cluster) -> finalize.

With a binding limit of L calls per window W s (the smaller of product and server; W = 60) and
``--minutes`` M (default 2 for a and c, 1 for b and d), the run is sized to
L x (ceil(60 M / W) + 2) calls: the measured windows, plus one so the product has work waiting
throughout them. Steady state = the first L x (ceil(60 M / W) + 1) accepted arrivals (answered
200) of the emulator's log; the last window, where the run drains and requests no longer wait
for the limit, is left out. Achieved calls/minute = L / mean(t[i + L] - t[i]) * 60 over those
arrival times (exact for a saturated moving window, see ``bench/_harness.gap_rate``);
efficiency = achieved / the server's limit (a, b, c) or / the configured rate (d). The
product's limiter window is the rate's period plus ``LLM_RATE_LIMIT_MARGIN`` (0.25 s;
``--margin`` sets another for the workers), so the ceiling is 60 / 60.25 = 0.996.
Items lost = clusters whose task did not end ``succeeded``; beside it, the calls given up after
their last try (``LLM_CALL_TRIES``) and the summaries stored without a verdict because their
judge call was given up. 429s = answers with status 429 in the log. Worker peak memory =
``VmHWM`` of each worker process (and children) read just before it stops, in MiB; the largest
is printed.

Diagnostics: the closest two arrivals L places apart (below the server's window W means the
product let more than L requests into one server window); the delay from taking a slot of the
shared limiter (its Redis sorted set, polled every 0.25 s) to the emulator receiving the
request, matching the k-th slot with the k-th arrival (the margin must cover it); the kernel's
listen-queue overflows during the run (``/proc/net/netstat``, machine-wide): the emulator's HTTP
server keeps Python socketserver's listen backlog of 5, so a burst of new connections (the first
call of each worker thread) can overflow it, and the client's TCP retries the dropped connection
after 1 s - longer than the margin, so that request lands in the next server window and causes a
429 there. ``--listen-backlog`` raises the backlog (a real provider front end accepts such
bursts); ``--dump FILE`` writes the slots and the request log as JSON lines.

Own database ``clustersum_bench_realtime`` (dropped, created, migrated) and Redis db 14 (flushed);
workers and emulator are stopped on exit, also on Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
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
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
#: The shared limiter's Redis sorted set (llm/ratelimit.py: member per slot taken, score = the
#: Redis clock in microseconds when it was taken).
LIMITER_KEY = f"clustersum:ratelimit:gemini:{MODEL}"


class SlotRecorder:
    """Polls the shared limiter's sorted set every 0.25 s from a thread and keeps every slot
    seen with its start time (seconds since the epoch, Redis clock). Entries live a whole
    window (>= 60 s here) before the limiter drops them, so none is missed."""

    def __init__(self, redis_url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(redis_url)
        self._slots: dict[bytes, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slot-recorder", daemon=True)

    def __enter__(self) -> SlotRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll()

    def _poll(self) -> None:
        rows: list[tuple[bytes, float]] = self._client.zrange(  # type: ignore[assignment]
            LIMITER_KEY, 0, -1, withscores=True
        )
        for member, score in rows:
            self._slots[member] = float(score) / 1_000_000

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._poll()

    def starts(self) -> list[float]:
        """Slot start times, sorted (seconds since the epoch)."""
        return sorted(self._slots.values())


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


def delay_stats(starts: list[float], arrivals: list[float]) -> tuple[float, float] | None:
    """(median, max) seconds from taking a limiter slot to the emulator receiving the request,
    matching the k-th slot with the k-th arrival (both sorted; every try takes a slot and makes
    one request). None when the counts differ (then the matching would be meaningless)."""
    if not starts or len(starts) != len(arrivals):
        return None
    delays = sorted(a - s for s, a in zip(starts, sorted(arrivals), strict=True))
    return delays[len(delays) // 2], delays[-1]


@dataclass(frozen=True)
class Scenario:
    """One measured configuration: ``product`` rate (LLM_RATE_LIMIT), the emulator's
    ``server_rpm`` per ``server_window`` s (None = no server limit), default ``minutes``."""

    key: str
    name: str
    product: str
    server_rpm: int | None
    server_window: float
    minutes: float
    what: str

    def binding(self) -> Rate:
        """The limit that binds: the server's when it is lower than the product's."""
        product = rate_parse(self.product)
        if self.server_rpm is None:
            return product
        server = Rate(
            text=f"{self.server_rpm} per {self.server_window:g} seconds",
            amount=self.server_rpm,
            window=self.server_window,
        )
        return server if server.per_minute <= product.per_minute else product


SCENARIOS = {
    s.key: s
    for s in (
        Scenario("a", "realtime_30rpm", "30/minute", 30, 60.0, 2.0, "server 30 RPM"),
        Scenario("b", "realtime_600rpm", "600/minute", 600, 60.0, 1.0, "server 600 RPM"),
        Scenario(
            "c", "realtime_over_limit", "60/minute", 30, 60.0, 2.0, "product 60 > server 30 RPM"
        ),
        Scenario("d", "realtime_no_server_limit", "600/minute", None, 60.0, 1.0, "no server limit"),
    )
}


def scenario_run(
    scenario: Scenario, args: argparse.Namespace, env: dict[str, str], tmp: Path
) -> dict[str, float]:
    """Run one scenario and print its figures; returns the headline figures by name."""
    from config.celery import app
    from llm.providers.emulators.gemini import GeminiEmulator

    minutes = args.minutes if args.minutes is not None else scenario.minutes
    limit = scenario.binding()
    windows = max(1, math.ceil(minutes * 60.0 / limit.window))
    calls = limit.amount * (windows + 2)
    clusters = math.ceil(calls / CALLS_PER_CLUSTER)
    # the first window's calls start at once, each later window one period on
    expected = (math.ceil(calls / limit.amount) - 1) * limit.window + 10.0
    server = (
        f"{scenario.server_rpm}/{scenario.server_window:g} s" if scenario.server_rpm else "none"
    )
    print(
        f"# {scenario.key}: {scenario.what}; product {scenario.product}, server {server}"
        f", {clusters} clusters ({calls} calls), {minutes:g} measured minutes, "
        f"expected run about {expected / 60:.1f} min",
        flush=True,
    )
    run_id = synthetic_run_create(
        slug=f"bench-realtime-{scenario.key}", clusters=clusters, prefix=f"RT{scenario.key.upper()}"
    )
    redis_flush(env["REDIS_URL"])
    emulator = GeminiEmulator(
        latency=args.latency, rpm=scenario.server_rpm, window=scenario.server_window
    )
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
            with SlotRecorder(env["REDIS_URL"]) as recorder:
                plan_send(run_id)
                job = job_wait(run_id=run_id, timeout=3 * expected + 300)
            overflows = listen_overflows() - overflows
            peaks = workers.peak_rss_mib()
        log = emulator.request_log()
    redis_flush(env["REDIS_URL"])

    states = task_states(job.pk)
    given_up = _calls_given_up(job.pk)
    unjudged = _unjudged_summaries(job.pk)
    accepted = sorted(e["monotonic"] for e in log if e["status"] == 200)
    answered_429 = sum(1 for e in log if e["status"] == 429)
    other_errors = sum(1 for e in log if e["status"] not in (200, 429))
    steady = accepted[: limit.amount * (windows + 1)]
    every = sorted(e["monotonic"] for e in log)
    closest = min(
        (every[i + limit.amount] - every[i] for i in range(len(every) - limit.amount)),
        default=float("nan"),
    )
    delays = delay_stats(recorder.starts(), [e["wall"] for e in log])
    if args.dump:
        record = {
            "scenario": scenario.key,
            "slots": recorder.starts(),
            "requests": [
                {k: e.get(k) for k in ("wall", "monotonic", "status", "target", "duration")}
                for e in log
            ],
        }
        with Path(args.dump).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
    achieved = gap_rate(steady, limit.amount)
    lost = sum(n for state, n in states.items() if state != "succeeded")
    p = scenario.name
    emit(f"{p}_measured_minutes", minutes, "minutes (setting)")
    emit(f"{p}_steady_span", steady[-1] - steady[0] if steady else 0.0, "seconds")
    emit(f"{p}_clusters", sum(states.values()), "clusters")
    emit(f"{p}_calls_accepted", len(accepted), "calls")
    emit(f"{p}_other_errors", other_errors, "answers (not 200/429)")
    figures: dict[str, float] = {"peak_rss": max(peaks, default=0.0)}
    emit(f"{p}_generate_calls_given_up", given_up.get("generate", 0), "calls (tries exhausted)")
    emit(f"{p}_judge_calls_given_up", given_up.get("judge", 0), "calls (tries exhausted)")
    emit(f"{p}_unjudged_summaries", unjudged, "summaries (stored pending: judge unreachable)")
    if scenario.key == "c":
        emit(f"{p}_429", answered_429, "answers (honoured through Retry-After)")
        emit(f"{p}_items_lost", lost, "clusters", target="0")
        figures["items_lost"] = lost
        figures["429"] = answered_429
    else:
        emit(f"{p}_429", answered_429, "answers", target="0")
        emit(f"{p}_items_lost", lost, "clusters", target="0")
    if scenario.server_rpm is None:
        allowed = rate_parse(scenario.product).per_minute
        label, target = "achieved / configured rate", ">= 0.97"
    else:
        allowed = scenario.server_rpm * 60.0 / scenario.server_window
        label, target = "achieved / server limit", ">= 0.99" if scenario.key != "c" else ""
    emit(f"{p}_allowed_rate", allowed, "calls/minute")
    if achieved is None:
        emit(f"{p}_achieved_rate", "n/a", "calls/minute (too few arrivals)")
    else:
        emit(f"{p}_achieved_rate", achieved, "calls/minute")
        emit(f"{p}_efficiency", achieved / allowed, f"ratio ({label})", target=target)
        figures["efficiency"] = achieved / allowed
    emit(
        f"{p}_closest_arrivals_{limit.amount}_apart",
        closest,
        f"seconds (below {limit.window:g}: the product put more than {limit.amount} requests "
        "into one server window)",
    )
    emit(f"{p}_listen_overflows", overflows, "connection attempts dropped (machine-wide)")
    if delays is not None:
        emit(f"{p}_slot_to_arrival_median", delays[0], "seconds")
        emit(
            f"{p}_slot_to_arrival_max", delays[1], "seconds (rank-matched; compare with the margin)"
        )
    emit(f"{p}_worker_peak_rss", max(peaks, default=0.0), "MiB (largest of the workers)")
    emit(f"{p}_job_seconds", _job_seconds(job), "seconds (plan to finalize)")
    return figures


def _calls_given_up(job_id: int) -> dict[str, int]:
    """Provider calls that ended in an error on their last allowed try (``LLM_CALL_TRIES``), by
    kind (generate | judge)."""
    from django.conf import settings
    from django.db.models import Count

    from llm.models import LLMCall

    rows = (
        LLMCall.objects.filter(job_id=job_id, try_number=settings.LLM_CALL_TRIES)
        .exclude(status=LLMCall.Status.SUCCESS)
        .values("kind")
        .annotate(n=Count("id"))
    )
    return {row["kind"]: row["n"] for row in rows}


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
        "--minutes",
        type=float,
        default=None,
        help="measured minutes per scenario (default: 2 for a and c, 1 for b and d)",
    )
    parser.add_argument("--latency", type=float, default=1.0, help="emulator seconds per call")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        help="LLM_RATE_LIMIT_MARGIN for the workers, seconds (default: the product's, 0.25)",
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
        or (args.minutes is not None and args.minutes <= 0)
        or (args.margin is not None and args.margin < 0)
        or (args.listen_backlog is not None and args.listen_backlog < 1)
    ):
        parser.error(
            "--workers >= 1, --concurrency >= 1, --minutes > 0, --margin >= 0, "
            "--listen-backlog >= 1"
        )

    if args.listen_backlog is not None:
        from llm.providers.emulators import common

        # the emulators' server class; its instances read the backlog when they start
        common._Server.request_queue_size = args.listen_backlog
    extra = {} if args.margin is None else {"LLM_RATE_LIMIT_MARGIN": f"{args.margin:g}"}
    env = bench_setup(database_url=args.database_url, redis_url=args.redis_url, **extra)
    emit("workers", f"{args.workers} x {args.concurrency}", "processes x threads")
    if args.margin is not None:
        emit("rate_limit_margin", args.margin, "seconds (LLM_RATE_LIMIT_MARGIN)")
    if args.listen_backlog is not None:
        emit("emulator_listen_backlog", args.listen_backlog, "connections")
    emit("emulator_latency", args.latency, "seconds")
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as tmp:
        for key in args.scenario:
            figures = scenario_run(SCENARIOS[key], args, env, Path(tmp))
            peaks.append(figures["peak_rss"])
    emit("realtime_worker_peak_rss", max(peaks), "MiB (largest worker, all scenarios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
