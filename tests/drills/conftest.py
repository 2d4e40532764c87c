"""Fixtures of the fault drills.

A drill owns every moving part it breaks, so that killing and restarting them never touches the
machine's shared services or another test:

- :class:`RedisServer`: a private ``redis-server`` on a free loopback port, without persistence
  (``--save "" --appendonly no``), so a restart loses every queued message, as a broker crash does.
- ``celery -A config worker -Q default,llm`` and ``celery -A config beat`` subprocesses, started
  by the shared launcher (:class:`tests.support.workers.CeleryProcesses`: own session each, logs
  in the test's tmp dir), whose environment points at the pytest test database, the private
  Redis and the emulator. Every process is SIGKILLed at the end of the test, whatever happened.
- :class:`DrillGeminiEmulator`: the Gemini emulator in this process; its request log also says
  which cluster each realtime request was for and how long a status fault asked to wait.
- This process's Celery app is pointed at the private Redis for the test (``pipeline_start`` and
  ``reconcile()`` send their messages there) and restored afterwards.

Everything waits with bounded timeouts (:func:`tests.support.waiting.wait_until`); a timeout
fails with the tails of the subprocess logs.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import redis
from kombu import pools as kombu_pools

from clustering.models import Cluster, ClusteringRun
from clustering.services import dataset_import
from config.celery import app
from llm.emulators.gemini import GeminiEmulator
from llm.emulators.gemini_wire import prompt_text_of
from llm.emulators.prompt import PromptData
from llm.models import TERMINAL_STATES, ClusterSummary, GenerationJob, JobStatus, SummaryTask
from tests.conftest import planted_rows
from tests.support.net import free_port
from tests.support.waiting import wait_until
from tests.support.workers import CeleryProcesses, subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]
#: clustering parameters that recover the planted groups of ``planted_rows``
PARAMS = {"k": 5, "min_cluster_size": 5}
#: planted groups (clusters) of the drill dataset
GROUPS = 12
DATASET_SLUG = "drill"
FINAL_JOB = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
#: variables of the test process that must not leak into the drill's processes
_DROPPED_ENV = (
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "LLM_MODEL",
    "LLM_JUDGE_MODEL",
    "CACHE_URL",
)


# --- the private Redis ------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on a free loopback port, without persistence; restartable on
    the same port (the restarted server is empty: queued and unacked messages, chord counters
    and kombu's queue bindings are gone)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._logs: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Start the server and wait (10 s at most) until it answers PING."""
        self.starts += 1
        log = (self.workdir / f"redis-{self.starts}.log").open("wb")
        self._logs.append(log)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self.ping, 10.0, f"redis-server on port {self.port} answering PING")

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no save) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.kill()
        self.start()

    def queue_lengths(self) -> dict[str, int]:
        """Messages waiting in the worker queues."""
        client = self.client()
        return {name: int(client.llen(name)) for name in ("default", "llm")}

    def close(self) -> None:
        self.kill()
        for log in self._logs:
            log.close()


# --- this process's Celery app ------------------------------------------------------------------


def _drop_app_connections() -> None:
    """Forget the app's broker and result-backend connections, so the next message uses the
    current ``broker_url`` / ``result_backend``."""
    celery: Any = app  # private attributes of Celery 5.x, reset as Celery.close() does
    # kombu keeps one pool per connection in a process-wide registry: closing a pool in place
    # would leave a closed pool there for the next user of the same URL (the rest of the suite),
    # so close them all and empty the registry; new pools are made on demand
    kombu_pools.reset()
    celery._pool = None
    amqp = celery.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    celery._backend_cache = None
    celery._local.__dict__.pop("backend", None)


class AppOnPrivateRedis:
    """Points this process's Celery app at the drill's Redis; :meth:`restore` undoes it."""

    KEYS = ("broker_url", "result_backend", "task_always_eager")

    def __init__(self, url: str) -> None:
        self.saved = {key: app.conf[key] for key in self.KEYS}
        _drop_app_connections()
        app.conf.update(broker_url=url, result_backend=url, task_always_eager=False)

    def restore(self) -> None:
        _drop_app_connections()
        app.conf.update(self.saved)


# --- the emulator ---------------------------------------------------------------------------------


def cluster_key(symbols: list[str]) -> str:
    """The key of a cluster in :class:`DrillGeminiEmulator`'s log: its sorted member symbols."""
    return ",".join(sorted(symbols))


class DrillGeminiEmulator(GeminiEmulator):
    """The Gemini emulator; every realtime log entry also carries ``cluster`` (the
    :func:`cluster_key` of the members in the prompt's ``<cluster_data>``) and ``retry_hint``
    (seconds a status fault asked the client to wait, as a Retry-After header or a RetryInfo
    retryDelay, else None)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_local = threading.local()

    def handle(self, request: Any) -> Any:
        local = self._request_local
        local.cluster, local.fault = None, None
        if request.method == "POST" and request.path.endswith(":generateContent"):
            try:
                user_text, _ = prompt_text_of(request.json())
                local.cluster = cluster_key(PromptData.from_prompt(user_text).members) or None
            except (ValueError, TypeError, AttributeError):
                pass  # the emulator itself answers an unreadable body with 400
        return super().handle(request)

    def _record(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry["cluster"] = getattr(self._request_local, "cluster", None)
        entry["retry_hint"] = None
        return super()._record(entry)

    def _take_fault(self, target: str) -> dict[str, Any] | None:
        fault = super()._take_fault(target)
        self._request_local.fault = fault
        return fault

    def _finish(self, entry: dict[str, Any], status: int, **extra: Any) -> None:
        fault = getattr(self._request_local, "fault", None)
        if fault is not None and fault.get("kind") == "status":
            hint = fault.get("retry_after")
            extra.setdefault("retry_hint", hint if hint is not None else fault.get("retry_delay"))
        super()._finish(entry, status, **extra)

    def calls_per_cluster(self) -> dict[str | None, int]:
        """Realtime requests received per cluster key (None: a body the emulator could not
        read)."""
        counts: dict[str | None, int] = {}
        for entry in self.request_log():
            counts[entry["cluster"]] = counts.get(entry["cluster"], 0) + 1
        return counts


# --- the drill fixture --------------------------------------------------------------------------


@dataclass
class Drill:
    """What a drill works with: its Redis, emulator, processes and the environment of its
    processes."""

    tmp: Path
    redis: RedisServer
    emulator: DrillGeminiEmulator
    procs: CeleryProcesses

    def env(self, **overrides: Any) -> dict[str, str]:
        """Environment of a worker or beat: the test database, the private Redis, Gemini at
        the emulator, a rate limit that never binds, short task leases (CELERY_TASK_TIME_LIMIT,
        which is also the summary task lease), a short reconcile threshold and a reconciler
        every 2 s (beat applies the interval settings to its rows on start); ``overrides`` win
        (values are turned into strings)."""
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=subprocess_database_url(),
            REDIS_URL=self.redis.url,
            LLM_PROVIDER="gemini",
            GEMINI_API_KEY="drill-key-not-secret",
            LLM_BASE_URL=self.emulator.url,
            LLM_RATE_LIMIT="1000/second",
            LLM_TOKENS_PER_MINUTE="0",
            LLM_TIMEOUT="10",
            LLM_CALL_TRIES="3",
            LLM_BACKOFF_BASE="0.1",
            LLM_BACKOFF_MAX="2",
            LLM_MAX_ATTEMPTS="3",
            LLM_JOB_TIME_LIMIT="600",
            CELERY_TASK_TIME_LIMIT="8",
            RECONCILE_STALL_SECONDS="2",
            RECONCILE_INTERVAL_SECONDS="2",
            RECONCILE_MAX_REDRIVES="5",
            BATCH_API_ENABLED="false",
            PYTHONUNBUFFERED="1",
        )
        env.update({key: str(value) for key, value in overrides.items()})
        return env

    def context(self) -> str:
        """Log tails and the job's task states, for failure messages."""
        states = list(
            SummaryTask.objects.order_by("pk").values_list(
                "pk", "state", "deliveries", "redrives", "last_error"
            )
        )
        return f"{self.procs.tails()}\n--- tasks ---\n{states}"


@pytest.fixture
def drill(tmp_path: Path, transactional_db: None) -> Iterator[Drill]:
    """A private Redis (started), a Gemini emulator in this process (no latency until a drill
    sets one), this process's Celery app on that Redis, and a process manager; everything is
    stopped and restored at the end, in reverse order."""
    redis_server = RedisServer(tmp_path)
    procs = CeleryProcesses(tmp_path, tag="drill")
    emulator = DrillGeminiEmulator()
    retarget: AppOnPrivateRedis | None = None
    try:
        redis_server.start()
        emulator.start()
        retarget = AppOnPrivateRedis(redis_server.url)
        yield Drill(tmp=tmp_path, redis=redis_server, emulator=emulator, procs=procs)
    finally:
        procs.stop(graceful=False)
        emulator.stop()
        if retarget is not None:
            retarget.restore()
        redis_server.close()


# --- data and checks ------------------------------------------------------------------------------


def import_drill_dataset(tmp: Path, *, groups: int = GROUPS, kind: str = "functional") -> str:
    """Import ``groups`` planted groups of twelve entities of ``kind`` (functional, or phenotype
    with the terms in the HPO category); returns the slug."""
    path = tmp / "drill.csv"
    rows = planted_rows(groups=groups, size=12)
    if kind == "phenotype":
        rows = [(e, s, t, n, "HPO") for e, s, t, n, _ in rows]
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n"
        + "\n".join(",".join(row) for row in rows)
        + "\n",
        encoding="utf-8",
    )
    dataset_import(path=path, slug=DATASET_SLUG, kind=kind)
    return DATASET_SLUG


def job_of(run_id: int) -> GenerationJob | None:
    return GenerationJob.objects.filter(run_id=run_id, scope=GenerationJob.Scope.RUN).first()


def final_job(run_id: int) -> GenerationJob | None:
    """The run's job once it is final, else None."""
    job = job_of(run_id)
    return job if job is not None and job.status in FINAL_JOB else None


def unfinished_tasks(job: GenerationJob) -> int:
    return SummaryTask.objects.filter(job=job).exclude(state__in=TERMINAL_STATES).count()


def assert_one_current_summary_per_cluster(job: GenerationJob) -> list[Cluster]:
    """Every cluster of the job's run has exactly one current summary, its task points at it,
    and no composition got a second summary row (not even as history). Returns the clusters."""
    run = ClusteringRun.objects.get(pk=job.run_id)
    clusters = list(Cluster.objects.filter(run=run))
    assert clusters
    tasks = {t.cluster_id: t for t in SummaryTask.objects.filter(job=job)}
    for cluster in clusters:
        current = list(
            ClusterSummary.objects.filter(
                composition_hash=cluster.composition_hash,
                cluster_type=run.cluster_type,
                is_current=True,
            )
        )
        assert len(current) == 1, (cluster.number, [s.pk for s in current])
        assert tasks[cluster.pk].summary_id == current[0].pk, (cluster.number, tasks[cluster.pk])
    rows = ClusterSummary.objects.filter(
        composition_hash__in=[c.composition_hash for c in clusters]
    ).count()
    assert rows == len(clusters), f"{rows} summary rows for {len(clusters)} clusters"
    return clusters
