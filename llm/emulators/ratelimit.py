"""Server-side rate limits of the provider emulators, enforced the two ways providers do.

- ``window``: a moving window, at most ``rpm`` requests whose arrival lies in the last ``window``
  seconds (what the emulators always did; a whole window's requests may arrive in one burst).
- ``bucket``: a token bucket holding at most ``burst`` requests, refilled continuously at
  ``rpm / window`` requests per second, the way real providers enforce a per-minute limit at
  sub-minute granularity (OpenAI, Anthropic and Gemini all answer a burst well under the
  per-minute figure with 429). A client pacing evenly at the rate never waits; one sending a
  minute's calls at once gets ``burst`` through and 429 for the rest.

:class:`ServerLimit` answers each arrival with a :class:`Decision`: admitted or not, the seconds
until a request would be admitted, the requests left and the seconds until the limit is whole
again - what each emulator turns into its vendor's 429 body and ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

#: The enforcement modes of :class:`ServerLimit`.
RATE_MODES = ("bucket", "window")
#: Default bucket size (requests) when none is given: the issue's measured provider behaviour
#: (a 120 RPM limit refilled at 2 per second with a burst of 2), never more than the limit.
DEFAULT_BURST = 2


@dataclass(frozen=True)
class Decision:
    """The limit's answer to one arrival.

    Attributes:
        admitted: the request may be served.
        wait: seconds until a request would be admitted (0 when admitted).
        remaining: whole requests left after this one (0 when refused).
        reset: seconds until the limit is back to its full allowance.
        limit: requests per ``window`` (the configured ``rpm``).
    """

    admitted: bool
    wait: float
    remaining: int
    reset: float
    limit: int


class ServerLimit:
    """A request limit of ``rpm`` per ``window`` seconds enforced as ``mode`` (``bucket`` or
    ``window``); ``burst`` is the bucket size in requests (bucket mode only; default
    ``min(DEFAULT_BURST, rpm)``). Not thread-safe: the emulator holds its lock around
    :meth:`admit`.

    Raises:
        ValueError: unknown mode, ``rpm`` < 1, ``window`` <= 0 or ``burst`` < 1.
    """

    def __init__(self, rpm: int, window: float, mode: str = "bucket", burst: int | None = None):
        if mode not in RATE_MODES:
            raise ValueError(f"rate mode must be one of {', '.join(RATE_MODES)}, got {mode!r}")
        if int(rpm) < 1:
            raise ValueError(f"rpm must be >= 1 request, got {rpm}")
        if float(window) <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        if burst is not None and int(burst) < 1:
            raise ValueError(f"burst must be >= 1 request, got {burst}")
        self.rpm = int(rpm)
        self.window = float(window)
        self.mode = mode
        self.burst = int(burst) if burst is not None else min(DEFAULT_BURST, self.rpm)
        self._accepted: deque[float] = deque()
        self._tokens = float(self.burst)
        self._stamp: float | None = None

    @property
    def refill_per_second(self) -> float:
        """Requests the bucket regains per second (``rpm / window``)."""
        return self.rpm / self.window

    def admit(self, now: float) -> Decision:
        """Admit or refuse one request arriving at ``now`` (monotonic seconds)."""
        if self.mode == "window":
            return self._admit_window(now)
        return self._admit_bucket(now)

    def _admit_window(self, now: float) -> Decision:
        while self._accepted and now - self._accepted[0] >= self.window:
            self._accepted.popleft()
        if len(self._accepted) >= self.rpm:
            wait = max(0.0, self._accepted[0] + self.window - now)
            return Decision(False, wait, 0, self._accepted[-1] + self.window - now, self.rpm)
        self._accepted.append(now)
        reset = self._accepted[0] + self.window - now
        return Decision(True, 0.0, self.rpm - len(self._accepted), reset, self.rpm)

    def _admit_bucket(self, now: float) -> Decision:
        if self._stamp is not None:
            elapsed = max(0.0, now - self._stamp)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.refill_per_second)
        self._stamp = now
        rate = self.refill_per_second
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            reset = (self.burst - self._tokens) / rate
            return Decision(True, 0.0, math.floor(self._tokens), reset, self.rpm)
        wait = (1.0 - self._tokens) / rate
        reset = (self.burst - self._tokens) / rate
        return Decision(False, wait, 0, reset, self.rpm)


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*`` and error messages: Go's
    ``time.Duration`` format (``"150ms"``, ``"1.5s"``, ``"6m0s"``)."""
    if seconds < 1.0:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60.0:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60.0)
    if minutes < 60:
        return f"{int(minutes)}m{round(rest, 3):g}s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h{minutes}m{round(rest, 3):g}s"
