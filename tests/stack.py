"""The production stack of ``make up`` for tests: collectstatic, then honcho running the
Procfile (gunicorn, a Celery worker, Celery beat) as real subprocesses against the test
database (committed rows: use with ``transactional_db``) and the suite's Redis.

:func:`stack_start` yields a :class:`Stack` once gunicorn answers and the worker is ready, and
stops it at the end the way Ctrl-C does (SIGINT to honcho), killing leftovers only in the
process group it created.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.support.net import free_port
from tests.support.workers import subprocess_database_url

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
#: Seconds to wait for the stack to start / stop on a loaded 2-core machine.
START_DEADLINE = 240.0
STOP_DEADLINE = 90.0


@dataclass
class Stack:
    """A running stack: ``url`` of gunicorn (no trailing slash), honcho's process, its log."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Everything honcho printed so far (the three processes' prefixed logs)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, pattern: str, *, deadline: float = 120.0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the log; fails with the log's tail."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            found = re.search(pattern, self.log())
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"{pattern!r} not in the stack's log:\n{self.log()[-4000:]}")

    def stop(self) -> int:
        """Ctrl-C: SIGINT to honcho, which stops web, worker and beat; returns its exit code.
        Fails if anything of the process group is still alive after STOP_DEADLINE."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=STOP_DEADLINE)
        finally:
            leftover = _group_alive(self.process.pid)
            if leftover:
                os.killpg(self.process.pid, signal.SIGKILL)
        assert not leftover, f"processes left after Ctrl-C:\n{self.log()[-3000:]}"
        return code


def _group_alive(pgid: int) -> bool:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True


def stack_env(static_root: Path) -> dict[str, str]:
    """The environment of ``make up`` pointed at the test database and Redis."""
    assert connection.vendor == "postgresql", "the stack runs on PostgreSQL (DATABASE_URL)"
    assert settings.REDIS_URL, "the stack needs REDIS_URL"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_ALLOW"))}
    env.update(
        DATABASE_URL=subprocess_database_url(),
        REDIS_URL=str(settings.REDIS_URL),
        STATIC_ROOT=str(static_root),
        DEBUG="false",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


def http_status(url: str) -> int:
    """The status of GET ``url`` (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@contextmanager
def stack_start(tmp_path: Path) -> Iterator[Stack]:
    """``make up``'s last two steps (collectstatic, honcho on the Procfile) on the test
    database; yields when /admin/login/ answers 200 and the worker is ready."""
    from llm.services.maintenance import maintenance_schedules_ensure

    # a transactional test's flush emptied the beat tables: register the schedules again
    maintenance_schedules_ensure()
    static_root = tmp_path / "static"
    env = stack_env(static_root)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    port = free_port()
    log_path = tmp_path / "honcho.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "honcho"), "start", "--procfile", "Procfile", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    stack = Stack(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        end = time.monotonic() + START_DEADLINE
        while http_status(f"{stack.url}/admin/login/") != 200:
            assert process.poll() is None, f"the stack exited:\n{stack.log()[-4000:]}"
            assert time.monotonic() < end, f"gunicorn did not answer:\n{stack.log()[-4000:]}"
            time.sleep(0.5)
        stack.wait_for_log(r"worker\.1 +\| .*celery@\S+ ready", deadline=START_DEADLINE)
        yield stack
    finally:
        if process.poll() is None:
            stack.stop()
