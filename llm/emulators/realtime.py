"""What a realtime call meets before it is answered, and what it leaves behind: the default
latency, the server-side rate limit (:mod:`llm.emulators.ratelimit`), the FIFO of scripted
realtime faults (:data:`~llm.emulators.faults.FAULT_KINDS`), the log of realtime generation
requests with the prompts received, and the log of every API call. :class:`RealtimeScript` is
that half of :class:`~llm.emulators.server.EmulatorServer`; all its methods are thread-safe.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from llm.emulators.faults import expand_faults, fault_matches, normalise_fault
from llm.emulators.ratelimit import Decision, ServerLimit

_UNCHANGED: Any = object()


class RealtimeScript:
    """Latency, rate limit, realtime faults and call logs of an emulator (see the module
    docstring); the arguments are those of :class:`~llm.emulators.server.EmulatorServer`.

    Raises:
        ValueError: with ``rpm`` set, a rate limit :class:`~llm.emulators.ratelimit.ServerLimit`
            refuses (unknown mode, rpm or burst below 1, window not above 0).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        rpm: int | None = None,
        window: float = 60.0,
        rate_mode: str = "bucket",
        burst: int | None = None,
    ) -> None:
        self._initial: tuple[float, int | None, float, str, int | None] = (
            float(latency),
            rpm,
            float(window),
            rate_mode,
            burst,
        )
        self._latency = float(latency)
        self._rpm: int | None = rpm
        self._window = float(window)
        self._rate_mode = rate_mode
        self._burst = burst
        self._limit: ServerLimit | None = self._new_limit()
        self._lock = threading.Lock()
        self._faults: deque[dict[str, Any]] = deque()
        self._log: list[dict[str, Any]] = []
        self._api_log: list[dict[str, Any]] = []

    # -- configuration and faults --------------------------------------------------------------

    def configure(
        self,
        *,
        latency: float | None = None,
        rpm: Any = _UNCHANGED,
        window: float | None = None,
        rate_mode: str | None = None,
        burst: Any = _UNCHANGED,
    ) -> dict[str, Any]:
        """Change default latency (s), rate limit (``rpm``; None = off), window (s), rate mode
        (``bucket`` | ``window``) or bucket size (``burst`` requests; None = the default). The
        limit starts afresh (a full bucket, an empty window).

        Returns the current ``{"latency", "rpm", "window", "rate_mode", "burst"}``.

        Raises:
            ValueError: an unknown rate mode, rpm or burst below 1 (nothing is changed then).
        """
        with self._lock:
            new_rpm = self._rpm if rpm is _UNCHANGED else (None if rpm is None else int(rpm))
            new_window = self._window if window is None else max(0.001, float(window))
            new_mode = self._rate_mode if rate_mode is None else str(rate_mode)
            new_burst = (
                self._burst if burst is _UNCHANGED else (None if burst is None else int(burst))
            )
            if new_rpm is not None:
                ServerLimit(new_rpm, new_window, new_mode, new_burst)  # validates
            elif new_mode not in ("bucket", "window"):
                raise ValueError(f"rate mode must be bucket or window, got {new_mode!r}")
            if latency is not None:
                self._latency = max(0.0, float(latency))
            self._rpm, self._window, self._rate_mode, self._burst = (
                new_rpm,
                new_window,
                new_mode,
                new_burst,
            )
            self._limit = self._new_limit()
            return self._config_locked()

    def _new_limit(self) -> ServerLimit | None:
        if not self._rpm:
            return None
        return ServerLimit(self._rpm, self._window, self._rate_mode, self._burst)

    def _config_locked(self) -> dict[str, Any]:
        return {
            "latency": self._latency,
            "rpm": self._rpm,
            "window": self._window,
            "rate_mode": self._rate_mode,
            "burst": self._limit.burst if self._limit is not None else self._burst,
        }

    def config(self) -> dict[str, Any]:
        """Current ``{"latency": s, "rpm": n or None, "window": s, "rate_mode": "bucket" |
        "window", "burst": requests or None}``."""
        with self._lock:
            return self._config_locked()

    def add_fault(self, kind: str, target: str = "any", *, times: int = 1, **params: Any) -> None:
        """Queue ``times`` copies of one realtime fault (see
        :data:`~llm.emulators.faults.FAULT_KINDS` for its parameters).

        Raises:
            ValueError: invalid fault.
        """
        default_target = "judge" if kind == "verdict" and target == "any" else target
        self.add_faults([{"kind": kind, "target": default_target, **params}] * max(1, times))

    def add_faults(self, faults: Iterable[Mapping[str, Any]]) -> None:
        """Queue realtime faults in order (FIFO); each may carry ``times``. All are validated
        before any is queued.

        Raises:
            ValueError: any invalid fault (nothing is queued then).
        """
        expanded = expand_faults(faults, normalise_fault)
        with self._lock:
            self._faults.extend(expanded)

    def pending_faults(self) -> list[dict[str, Any]]:
        """Realtime faults not yet consumed, in order."""
        with self._lock:
            return copy.deepcopy(list(self._faults))

    def clear_faults(self) -> None:
        """Drop every pending realtime fault."""
        with self._lock:
            self._faults.clear()

    # -- logs ----------------------------------------------------------------------------------

    def request_log(self, target: str | None = None) -> list[dict[str, Any]]:
        """Copies of logged realtime generation requests, in arrival order.

        Each entry: ``seq``, ``monotonic`` and ``wall`` (arrival, seconds), ``method``, ``path``,
        ``model``, ``target`` (generate | judge | None for unreadable bodies), ``status`` (HTTP
        status answered; None while in flight), ``fault`` (kind applied or None),
        ``finish_reason``, ``duration`` (seconds until answered), and for readable bodies the
        prompt received: ``user``, ``system`` and ``prompt_tokens`` (the usage answered).
        Batch and file calls are in :meth:`api_log` instead.
        """
        with self._lock:
            entries = [dict(entry) for entry in self._log]
        if target is not None:
            entries = [entry for entry in entries if entry.get("target") == target]
        return entries

    def api_log(self) -> list[dict[str, Any]]:
        """Every provider API call (realtime, batch, files; not ``/_control``), in arrival
        order: ``{"seq", "wall", "method", "path", "status"}``."""
        with self._lock:
            return [dict(entry) for entry in self._api_log]

    @property
    def latency(self) -> float:
        """Default delay before every realtime answer, seconds."""
        with self._lock:
            return self._latency

    # -- internals -----------------------------------------------------------------------------

    def _reset_realtime(self) -> None:
        """Clear faults and logs, restore the start-up latency and rate limit (a fresh one)."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._api_log.clear()
            (
                self._latency,
                self._rpm,
                self._window,
                self._rate_mode,
                self._burst,
            ) = self._initial
            self._limit = self._new_limit()

    def _record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry["seq"] = len(self._log) + 1
            self._log.append(entry)
        return entry

    def _finish(self, entry: dict[str, Any], status: int, **extra: Any) -> None:
        with self._lock:
            entry["status"] = status
            entry["duration"] = time.monotonic() - entry["monotonic"]
            entry.update(extra)

    def _admit(self, now: float) -> Decision | None:
        """None when the request fits the rate limit, else the refusal."""
        with self._lock:
            if self._limit is None:
                return None
            decision = self._limit.admit(now)
            return None if decision.admitted else decision

    def _take_fault(self, target: str) -> dict[str, Any] | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault_matches(fault, target):
                    del self._faults[i]
                    return fault
        return None
