"""One launcher of ``celery worker`` and ``celery beat`` subprocesses, for the tests, the drills
and the benchmarks.

:class:`CeleryProcesses` starts ``celery -A config worker`` / ``celery -A config beat`` with the
environment it is given (database, Redis and provider settings are the caller's), each in its own
session (process group) with its log in a file, waits until each is ready (a worker answers a
broadcast ``ping`` or prints its ``ready.`` line; beat prints ``beat: Starting``), never by
sleeping, and at the end stops them: SIGTERM (Celery's warm shutdown) with a deadline generous
enough for a fully loaded 2-core machine, then SIGKILL to whatever is left of each process group.
Failures carry the tails of the logs.

Importable without Django or pytest set up (the benchmarks import it before ``django.setup()``):
Django is imported only inside :func:`subprocess_database_url`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a worker or beat may take to become ready (imports, broker connection) on a loaded
#: 2-core machine.
READY_TIMEOUT = 120.0
#: Seconds the warm shutdown of every process together may take before the groups are killed.
STOP_TIMEOUT = 90.0


def subprocess_database_url(*, application_name: str = "") -> str:
    """postgres://USER[:PASSWORD]@HOST:PORT/NAME of the database this test process uses (the
    pytest-django test database, not the one DATABASE_URL names), for its subprocesses;
    optionally with an ``application_name`` (to find their connections in pg_stat_activity)."""
    from django.db import connection

    conf = connection.settings_dict
    user = quote(conf["USER"] or "postgres", safe="")
    password = f":{quote(conf['PASSWORD'], safe='')}" if conf.get("PASSWORD") else ""
    host = conf["HOST"] or "127.0.0.1"
    port = conf["PORT"] or "5432"
    query = f"?application_name={quote(application_name)}" if application_name else ""
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}{query}"


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the process that started it dies (Linux
    ``PR_SET_PDEATHSIG``), so a launcher killed with SIGKILL leaves no worker behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class CeleryProcess:
    """One started worker or beat: its node ``name`` (workers run as ``name@host``), ``kind``
    ("worker" or "beat"), process and log file."""

    name: str
    kind: str
    popen: subprocess.Popen[bytes]
    log: Path
    out: IO[bytes]

    @property
    def alive(self) -> bool:
        """The process has not exited."""
        return self.popen.poll() is None

    @property
    def pid(self) -> int:
        """Process id, also the id of its process group."""
        return self.popen.pid

    def text(self) -> str:
        """Everything the process logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logged_ready(self) -> bool:
        """The log shows the process ready: a worker's ``name@host ready.``, beat's
        ``beat: Starting`` (both at INFO level)."""
        text = self.text()
        if self.kind == "worker":
            return f"{self.name}@" in text and " ready." in text
        return "beat: Starting" in text


def _answered_ping(app: Any, pending: Sequence[CeleryProcess], seen: set[str]) -> None:
    """Add to ``seen`` the names of ``pending`` workers that answer one broadcast ping (0.5 s)."""
    for reply in app.control.ping(timeout=0.5) or []:
        seen.update(p.name for p in pending if any(k.startswith(f"{p.name}@") for k in reply))


@dataclass
class CeleryProcesses:
    """The Celery subprocesses of one test, drill or benchmark phase.

    Args:
        log_dir: where each process's log ``<name>.log`` goes (appended to).
        tag: prefix of the node names: workers ``{tag}-w{n}-{pid}``, beats
            ``{tag}-beat{n}-{pid}`` (n counts from 1 per kind, pid is this process's).
        die_with_parent: the processes get SIGTERM when this process dies (Linux), for
            scripts that may be killed with SIGKILL (the benchmarks).
    """

    log_dir: Path
    tag: str = "celery"
    die_with_parent: bool = False
    procs: list[CeleryProcess] = field(default_factory=list)

    def _name(self, kind: str) -> str:
        n = sum(p.kind == kind for p in self.procs) + 1
        return f"{self.tag}-{'w' if kind == 'worker' else 'beat'}{n}-{os.getpid()}"

    def _spawn(
        self, name: str, kind: str, args: list[str], env: Mapping[str, str]
    ) -> CeleryProcess:
        log = self.log_dir / f"{name}.log"
        out = log.open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped and killed as a whole
            preexec_fn=_die_with_parent
            if self.die_with_parent and sys.platform == "linux"
            else None,
        )
        proc = CeleryProcess(name=name, kind=kind, popen=popen, log=log, out=out)
        self.procs.append(proc)
        return proc

    def worker(
        self,
        env: Mapping[str, str],
        *,
        concurrency: int = 4,
        queues: str = "default,llm",
        pool: str = "threads",
        loglevel: str = "INFO",
        include: str = "",
        wait: bool = True,
        app: Any = None,
    ) -> CeleryProcess:
        """Start ``celery worker -Q queues --pool pool --concurrency N`` without heartbeat,
        gossip and mingle (``include``: extra task modules for ``-I``) and, with ``wait``,
        wait until it is ready (see :meth:`wait_ready` for ``app``).

        Raises:
            AssertionError: with ``wait``, it exited or was not ready within READY_TIMEOUT.
        """
        name = self._name("worker")
        args = ["worker", *(["-I", include] if include else []), "-Q", queues]
        args += ["--pool", pool, "--concurrency", str(concurrency)]
        args += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
        args += ["--loglevel", loglevel, "-n", f"{name}@%h"]
        proc = self._spawn(name, "worker", args, env)
        if wait:
            self.wait_ready(proc, app=app)
        return proc

    def beat(self, env: Mapping[str, str], *, wait: bool = True) -> CeleryProcess:
        """Start ``celery beat`` (the scheduler of the settings, waking at least every second,
        its schedule file in ``log_dir``) and, with ``wait``, wait until it runs.

        Raises:
            AssertionError: with ``wait``, it exited or did not start within READY_TIMEOUT.
        """
        name = self._name("beat")
        args = ["beat", "--loglevel", "INFO", "--max-interval", "1"]
        args += ["-s", str(self.log_dir / f"{name}-schedule")]
        proc = self._spawn(name, "beat", args, env)
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(
        self, *procs: CeleryProcess, app: Any = None, timeout: float = READY_TIMEOUT
    ) -> None:
        """Wait until every one of ``procs`` is ready: with a Celery ``app`` on the workers'
        broker, until each worker answers a broadcast ping (for workers that log below INFO);
        otherwise until each logs that it is ready (:meth:`CeleryProcess.logged_ready`).

        Raises:
            AssertionError: one exited, or they were not all ready within ``timeout`` seconds
                (with the log tails).
        """
        pinged: set[str] = set()
        workers = [p for p in procs if p.kind == "worker"]

        def ready() -> bool:
            if any(not p.alive for p in procs):
                return True  # reported below
            if app is not None and workers:
                _answered_ping(app, [p for p in workers if p.name not in pinged], pinged)
            return all(
                p.name in pinged if app is not None and p.kind == "worker" else p.logged_ready()
                for p in procs
            )

        names = ", ".join(p.name for p in procs)
        wait_until(ready, timeout, f"{names} ready", context=self.tails)
        for proc in procs:
            assert proc.alive, f"{proc.kind} {proc.name} exited at start-up\n{self.tails()}"

    def kill(self, proc: CeleryProcess, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process's group; with SIGKILL, reap it."""
        if proc.alive:
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.popen.wait(timeout=10)

    def pause(self, proc: CeleryProcess) -> None:
        """SIGSTOP the process group: it keeps its state and sockets but runs no code."""
        os.killpg(proc.pid, signal.SIGSTOP)

    def resume(self, proc: CeleryProcess) -> None:
        """SIGCONT a paused process group."""
        os.killpg(proc.pid, signal.SIGCONT)

    def kill_all(self) -> None:
        """SIGKILL every process that still runs."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                self.kill(proc)

    def stop(self, *, graceful: bool = True, timeout: float = STOP_TIMEOUT) -> None:
        """End every process and close the logs; safe to call more than once.

        With ``graceful``, SIGTERM each (a worker finishes its running tasks, beat saves its
        state; a paused one is resumed first) and wait up to ``timeout`` seconds for all of
        them; then SIGKILL each process group (whatever did not exit, and any child left
        behind). Without, SIGKILL at once (a drill keeps nothing worth a warm shutdown).
        """
        if graceful:
            for proc in self.procs:
                if proc.alive:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGCONT)
                        proc.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)
            proc.out.close()

    def tails(self, lines: int = 30) -> str:
        """The last ``lines`` lines of every process's log, each under a header with its state."""
        parts = []
        for proc in self.procs:
            text = proc.text().splitlines()[-lines:]
            state = "running" if proc.alive else f"exited {proc.popen.returncode}"
            parts.append(f"--- {proc.name} ({state}) ---\n" + "\n".join(text))
        return "\n".join(parts)
