"""Signs of life and cancellation of a clustering run while a worker computes it.

:class:`RunHeartbeat` renews ``ClusteringRun.heartbeat_at`` from a daemon thread every
:func:`heartbeat_interval` seconds while the run is ``running``, so a step that takes longer than
``RECONCILE_STALL_SECONDS`` (a stability analysis of a large dataset) is not taken for a stalled
run by the reconciler. The thread dies with its worker, so a killed worker's run stops beating
and is re-driven. :func:`progress_write` is what the pipeline's progress callback does between
steps: it writes the progress and the heartbeat in one statement that only matches a running
run, and raises :class:`RunCancelled` when the run was cancelled meanwhile.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from .models import ClusteringRun, RunStatus

logger = logging.getLogger(__name__)

#: Longest interval between two heartbeats, in seconds.
MAX_HEARTBEAT_SECONDS = 30.0
#: Shortest interval, in seconds (tests use a stall threshold of a few seconds).
MIN_HEARTBEAT_SECONDS = 0.5


class RunCancelled(Exception):
    """The run was cancelled while it was being computed; the computation stops here."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"clustering run {run_id} was cancelled")


def heartbeat_interval() -> float:
    """Seconds between two heartbeats: a quarter of ``RECONCILE_STALL_SECONDS`` (so three
    heartbeats may be late before the reconciler re-drives the run), within 0.5-30 s."""
    stall = float(getattr(settings, "RECONCILE_STALL_SECONDS", 300))
    return max(MIN_HEARTBEAT_SECONDS, min(MAX_HEARTBEAT_SECONDS, stall / 4))


def progress_write(run_id: int, current: int, total: int, message: str) -> None:
    """Record the run's progress (step ``current`` of ``total``) and renew its heartbeat.

    Raises:
        RunCancelled: the run is no longer running because it was cancelled.
    """
    updated = ClusteringRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        progress_current=current,
        progress_total=total,
        progress_message=message[:300],
        heartbeat_at=timezone.now(),
    )
    if not updated and run_cancelled(run_id):
        raise RunCancelled(run_id)


def run_cancelled(run_id: int) -> bool:
    """Whether the run's row says cancelled."""
    return ClusteringRun.objects.filter(pk=run_id, status=RunStatus.CANCELLED).exists()


class RunHeartbeat:
    """Context manager: a daemon thread renews the run's ``heartbeat_at`` every ``interval``
    seconds (default :func:`heartbeat_interval`) until the block ends or the run is no longer
    running (then ``stopped_by_status`` is True). Database errors are logged and retried at the
    next beat; the thread uses, and closes, its own connection."""

    def __init__(self, run_id: int, interval: float | None = None) -> None:
        self.run_id = run_id
        self.interval = heartbeat_interval() if interval is None else interval
        self.beats = 0
        self.stopped_by_status = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"run-{run_id}-heartbeat", daemon=True
        )

    def __enter__(self) -> RunHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval))

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    close_old_connections()
                    alive = ClusteringRun.objects.filter(
                        pk=self.run_id, status=RunStatus.RUNNING
                    ).update(heartbeat_at=timezone.now())
                except Exception:  # the next beat tries again; the reconciler judges the gaps
                    logger.warning("heartbeat of clustering run %s failed", self.run_id)
                    continue
                self.beats += 1
                if not alive:
                    self.stopped_by_status = True
                    return
        finally:
            connection.close()
