"""A request (and token) rate shared by every worker and process: paced, and learned from 429s.

**Pacing (GCRA).** A limit of ``rate`` (e.g. "120/minute") is enforced as the generic cell rate
algorithm: one request every ``interval = (period + margin) / amount`` seconds (0.504 s at
120/minute with the default ``LLM_RATE_LIMIT_MARGIN`` of 0.5 s), with at most ``burst``
(``LLM_RATE_LIMIT_BURST``, default 1) back to back after an idle spell. The state is one
"theoretical arrival time" (TAT) per provider and model; a request may start when
``now >= TAT - (burst - 1) * interval - min(interval, LATENESS_SECONDS)`` and then moves the TAT
one interval on (the 50 ms of lateness allowance keeps a caller that woke a little late from
pushing every later slot back). Providers enforce
their per-minute limits at sub-minute granularity (a token bucket refilled continuously), so a
window that admits a minute's calls at once gets most of them refused; evenly spaced calls are
never refused. The margin makes the pace slightly slower than the limit so the jitter between
taking a slot and the provider receiving the call does not show as a burst: the default 0.5 s
covers the 50 ms lateness allowance plus the 0.1-0.2 s a worker's first request spends inside the
SDK, so a server that enforces a moving window (``amount`` calls in any ``period``) does not see
``amount + 1`` inside one period either; at a per-minute limit it costs 0.8% of the rate.
A token budget per minute (``LLM_TOKENS_PER_MINUTE``) is a second GCRA on the estimated tokens
of each call, checked and taken in the same atomic step.

**Learning (AIMD).** :meth:`SharedRateLimiter.penalize` is called on every 429: the shared rate
is multiplied by ``DECREASE`` (0.8; at most once per cooldown, so one burst of refusals counts
once), never below ``FLOOR`` of the configured rate; the next request waits at least the
provider's ``retry_after`` (the TAT is pushed past it, for every worker); when the provider
named its own per-minute limit (``x-ratelimit-limit-requests``, Gemini's QuotaFailure) below the
configured one, the rate is capped at it for ``CAP_SECONDS``. The rate then recovers additively,
the whole configured rate in ``LLM_RATE_LIMIT_RECOVERY`` seconds (default 60; from 0.8 back to
1.0 in 12 s). :meth:`SharedRateLimiter.learned` reads it.

With ``REDIS_URL`` set, the state is one Redis hash updated by Lua scripts that read Redis's own
clock (``TIME``), so workers on any machine share one pace and one clock. The embedded mode (no
Redis) keeps the same state in process memory.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from limits import RateLimitItem, parse

logger = logging.getLogger(__name__)

#: seconds between asking Redis again while it is unreachable
REDIS_RETRY_SECONDS = 0.5
#: multiplicative decrease of the shared rate on a 429
DECREASE = 0.8
#: the learned rate never goes below this fraction of the configured one
FLOOR = 0.02
#: seconds within which further 429s do not decrease the rate again (at least; also two
#: intervals at the current rate and the provider's retry_after)
COOLDOWN_SECONDS = 1.0
#: seconds a provider-reported limit caps the rate
CAP_SECONDS = 600.0
#: seconds a request may start ahead of its slot (at most one interval): a caller that woke
#: late (scheduling, the poll's jitter, a Redis round trip) does not push every later slot back,
#: so small delays are not lost throughput; the long-run pace stays one call per interval
LATENESS_SECONDS = 0.05
#: seconds an idle limiter's state is kept in Redis
STATE_TTL_SECONDS = 3600

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
_local_states: dict[str, dict[str, float]] = {}

# KEYS[1]: the state hash. Fields (microseconds on Redis's clock): tat, ttat (token TAT),
# factor (fraction of the configured rate), fstamp (when factor was written), cut (last
# decrease), cap (fraction), capstamp.
_STATE = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function factor_of(h, now, recovery)
  local factor = tonumber(h.factor) or 1
  local cap = tonumber(h.cap) or 1
  if (tonumber(h.capstamp) or 0) + CAP_US < now then cap = 1 end
  local fstamp = tonumber(h.fstamp) or now
  factor = math.min(cap, factor + (now - fstamp) / recovery)
  return math.max(FLOOR, factor), cap
end
local function load(key)
  local raw = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  return h
end
"""

#: ARGV: interval (us), burst, microseconds per token (0 = no token limit), tokens, recovery (us).
#: Returns -1 when the request may start (state updated), else microseconds to wait.
_ACQUIRE = (
    _STATE
    + """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local per_token = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local now = now_us()
local h = load(KEYS[1])
local factor = factor_of(h, now, tonumber(ARGV[5]))
local step = interval / factor
local tat = math.max(tonumber(h.tat) or now, now) + step
local wait = tat - burst * step - math.min(step, LATE_US) - now
local ttat = tonumber(h.ttat) or now
if per_token > 0 and tokens > 0 then
  local cost = tokens * per_token / factor
  ttat = math.max(ttat, now) + cost
  wait = math.max(wait, ttat - math.max(cost, burst * step) - now)
end
if wait > 0 then return math.max(1, math.ceil(wait)) end
redis.call('HSET', KEYS[1], 'tat', tat, 'ttat', ttat, 'factor', factor, 'fstamp', now)
redis.call('PEXPIRE', KEYS[1], TTL_MS)
return -1
"""
)

#: ARGV: interval (us), burst, retry_after (us, -1 = none), cap (fraction, -1 = none),
#: recovery (us), minimum cooldown (us). Returns {factor * 1e6, 1 if the rate was decreased}.
_PENALIZE = (
    _STATE
    + """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local retry_after = tonumber(ARGV[3])
local new_cap = tonumber(ARGV[4])
local now = now_us()
local h = load(KEYS[1])
local factor, cap = factor_of(h, now, tonumber(ARGV[5]))
if new_cap > 0 and new_cap < 1 then
  cap = new_cap
  redis.call('HSET', KEYS[1], 'cap', cap, 'capstamp', now)
  factor = math.min(factor, cap)
end
local cooldown = math.max(tonumber(ARGV[6]), 2 * interval / factor, retry_after)
local cut = 0
if now - (tonumber(h.cut) or 0) >= cooldown then
  factor = math.max(FLOOR, factor * DECREASE)
  cut = 1
  redis.call('HSET', KEYS[1], 'cut', now)
end
local step = interval / factor
local tat = math.max(tonumber(h.tat) or now, now)
if retry_after > 0 then
  tat = math.max(tat, now + retry_after + (burst - 1) * step + math.min(step, LATE_US))
end
redis.call('HSET', KEYS[1], 'tat', tat, 'factor', factor, 'fstamp', now)
redis.call('PEXPIRE', KEYS[1], TTL_MS)
return {math.floor(factor * 1000000), cut}
"""
)

#: ARGV: recovery (us). Returns factor * 1e6.
_LEARNED = (
    _STATE
    + """
local h = load(KEYS[1])
local factor = factor_of(h, now_us(), tonumber(ARGV[1]))
return math.floor(factor * 1000000)
"""
)


def _constants(script: str) -> str:
    return (
        script.replace("CAP_US", str(int(CAP_SECONDS * 1_000_000)))
        .replace("TTL_MS", str(STATE_TTL_SECONDS * 1000))
        .replace("LATE_US", str(int(LATENESS_SECONDS * 1_000_000)))
        .replace("FLOOR", repr(FLOOR))
        .replace("DECREASE", repr(DECREASE))
    )


_SCRIPTS = {name: _constants(s) for name, s in (("acquire", _ACQUIRE), ("penalize", _PENALIZE))}
_SCRIPTS["learned"] = _constants(_LEARNED)


class RateLimitWaitExceeded(TimeoutError):
    """No slot became free within the allowed wait (seconds)."""


def _redis(url: str) -> redis.Redis:
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url)
        return _clients[url]


@dataclass(frozen=True)
class LearnedRate:
    """The shared rate now: ``factor`` of the configured one, ``per_minute`` requests per
    minute (the pace, margin included), ``configured_per_minute`` what ``rate`` allows."""

    factor: float
    per_minute: float
    configured_per_minute: float

    def describe(self) -> str:
        """E.g. ``"pacing 96.0/min of 120/min configured (learned from 429s)"``."""
        if self.factor >= 0.999:
            return f"pacing {self.per_minute:.1f}/min (configured {self.configured_per_minute:g})"
        return (
            f"pacing {self.per_minute:.1f}/min of {self.configured_per_minute:g}/min configured "
            "(learned from the provider's 429s)"
        )


@dataclass
class SharedRateLimiter:
    """Paced request starts (and token use) per ``key`` (e.g. "gemini:gemini-2.5-flash"),
    shared through Redis when configured.

    Args:
        key: the provider and model sharing one limit.
        rate: e.g. "30/minute", "6 per 2 seconds" (the `limits` library's syntax).
        tokens_per_minute: token budget per minute (0 = none).
        margin: seconds added to the rate's period (default ``LLM_RATE_LIMIT_MARGIN``).
        burst: requests that may start back to back (default ``LLM_RATE_LIMIT_BURST``).
        recovery: seconds to recover the whole configured rate after 429s (default
            ``LLM_RATE_LIMIT_RECOVERY``).

    Raises:
        ValueError: ``rate`` cannot be parsed, a negative margin, a burst below 1 or a
            recovery not above 0.
    """

    key: str
    rate: str
    tokens_per_minute: int = 0
    margin: float | None = None
    burst: int | None = None
    recovery: float | None = None
    _item: RateLimitItem = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._item = parse(self.rate)
        if int(self._item.amount) < 1:
            raise ValueError(f"rate limit must allow at least one request, got {self.rate!r}")
        margin = settings.LLM_RATE_LIMIT_MARGIN if self.margin is None else self.margin
        if margin < 0:
            raise ValueError(f"rate limit margin must be >= 0 seconds, got {margin}")
        #: requests that may start back to back
        self.burst_requests = int(
            settings.LLM_RATE_LIMIT_BURST if self.burst is None else self.burst
        )
        if self.burst_requests < 1:
            raise ValueError(f"rate limit burst must be >= 1 request, got {self.burst_requests}")
        recovery = settings.LLM_RATE_LIMIT_RECOVERY if self.recovery is None else self.recovery
        if recovery <= 0:
            raise ValueError(f"rate limit recovery must be > 0 seconds, got {recovery}")
        self.recovery_seconds = float(recovery)
        self.limit = int(self._item.amount)
        self.period_seconds = float(self._item.get_expiry())
        #: seconds between request starts at the configured rate
        self.interval = (self.period_seconds + float(margin)) / self.limit
        self.configured_per_minute = self.limit * 60.0 / self.period_seconds
        #: seconds of token budget per token (0 = no token limit)
        self.per_token = 60.0 / self.tokens_per_minute if self.tokens_per_minute else 0.0
        self._redis_key = f"clustersum:ratelimit:{self.key}"
        self._url = settings.REDIS_URL

    # -- public --------------------------------------------------------------------------------

    def acquire(self, *, tokens: int = 0, max_wait: float = 600.0) -> float:
        """Block until this request may start (and ``tokens`` of token budget are free), then
        take its slot.

        Returns the seconds waited. Waits are bounded by ``max_wait`` seconds, which callers keep
        far below the broker's visibility timeout so waiting never causes a redelivery.

        Raises:
            RateLimitWaitExceeded: no slot within ``max_wait`` seconds.
        """
        started = time.monotonic()
        while True:
            pause = self._try(tokens)
            if pause is None:
                return time.monotonic() - started
            waited = time.monotonic() - started
            if waited >= max_wait:
                raise RateLimitWaitExceeded(
                    f"no {self.rate} slot for {self.key} within {max_wait:.0f} s"
                )
            # a little jitter so waiting workers do not all retry in the same instant
            time.sleep(min(pause + random.uniform(0.001, 0.01), max(0.01, max_wait - waited)))

    def penalize(
        self, *, retry_after: float | None = None, provider_limit: int | None = None
    ) -> LearnedRate:
        """Record a 429 for every worker: decrease the shared rate (at most once per cooldown),
        hold every next request until ``retry_after`` seconds from now, and cap the rate at
        ``provider_limit`` requests per minute when that is below the configured rate.

        Returns the rate now. Never raises: with Redis away the penalty is lost (logged).
        """
        cap = -1.0
        if provider_limit:
            cap = provider_limit / self.configured_per_minute
        wait = retry_after if retry_after is not None and retry_after > 0 else -1.0
        decreased = False
        if self._url:
            try:
                answer: Any = _redis(self._url).eval(
                    _SCRIPTS["penalize"],
                    1,
                    self._redis_key,
                    int(self.interval * 1_000_000),
                    self.burst_requests,
                    int(wait * 1_000_000) if wait > 0 else -1,
                    cap,
                    int(self.recovery_seconds * 1_000_000),
                    int(COOLDOWN_SECONDS * 1_000_000),
                )
            except redis.RedisError as exc:
                logger.warning("rate limiter for %s: Redis unavailable (%s)", self.key, exc)
                return self.learned()
            factor, decreased = int(answer[0]) / 1_000_000, bool(int(answer[1]))
        else:
            factor, decreased = self._local_penalize(wait, cap)
        learned = self._learned(factor)
        if decreased:
            logger.warning(
                "rate limit %s: provider answered 429 (retry after %s s, provider limit %s/min); "
                "%s",
                self.key,
                f"{retry_after:.3f}" if retry_after is not None else "?",
                provider_limit if provider_limit else "?",
                learned.describe(),
            )
        return learned

    def learned(self) -> LearnedRate:
        """The shared rate now (recovered up to this moment). Never raises."""
        if not self._url:
            with _lock:
                state = _local_states.get(self._redis_key, {})
                return self._learned(self._local_factor(state, time.monotonic()))
        try:
            answer: Any = _redis(self._url).eval(
                _SCRIPTS["learned"],
                1,
                self._redis_key,
                int(self.recovery_seconds * 1_000_000),
            )
        except redis.RedisError:
            return self._learned(1.0)
        return self._learned(int(answer) / 1_000_000)

    # -- internals -----------------------------------------------------------------------------

    def _learned(self, factor: float) -> LearnedRate:
        return LearnedRate(
            factor=factor,
            per_minute=60.0 / self.interval * factor,
            configured_per_minute=self.configured_per_minute,
        )

    def _try(self, tokens: int) -> float | None:
        """Take a slot and return None, or return the seconds to wait before trying again."""
        tokens = max(0, int(tokens)) if self.per_token else 0
        if not self._url:
            return self._local_try(tokens)
        try:
            waited: Any = _redis(self._url).eval(
                _SCRIPTS["acquire"],
                1,
                self._redis_key,
                int(self.interval * 1_000_000),
                self.burst_requests,
                int(self.per_token * 1_000_000),
                tokens,
                int(self.recovery_seconds * 1_000_000),
            )
        except redis.RedisError as exc:
            # Redis away (restart, network): no slot can be proven free, so nothing is sent;
            # wait and ask again within the caller's max_wait rather than fail the cluster.
            logger.warning("rate limiter for %s: Redis unavailable (%s); waiting", self.key, exc)
            return REDIS_RETRY_SECONDS
        return None if int(waited) < 0 else int(waited) / 1_000_000

    # The in-process twin of the Lua scripts (seconds on time.monotonic()).

    def _local_factor(self, state: dict[str, float], now: float) -> float:
        cap = state.get("cap", 1.0) if state.get("capstamp", -1e18) + CAP_SECONDS >= now else 1.0
        factor = state.get("factor", 1.0)
        factor = min(cap, factor + (now - state.get("fstamp", now)) / self.recovery_seconds)
        return max(FLOOR, factor)

    def _local_try(self, tokens: int) -> float | None:
        with _lock:
            state = _local_states.setdefault(self._redis_key, {})
            now = time.monotonic()
            factor = self._local_factor(state, now)
            step = self.interval / factor
            tat = max(state.get("tat", now), now) + step
            wait = tat - self.burst_requests * step - min(step, LATENESS_SECONDS) - now
            ttat = state.get("ttat", now)
            if self.per_token and tokens:
                cost = tokens * self.per_token / factor
                ttat = max(ttat, now) + cost
                wait = max(wait, ttat - max(cost, self.burst_requests * step) - now)
            if wait > 0:
                return wait
            state.update(tat=tat, ttat=ttat, factor=factor, fstamp=now)
            return None

    def _local_penalize(self, wait: float, cap: float) -> tuple[float, bool]:
        with _lock:
            state = _local_states.setdefault(self._redis_key, {})
            now = time.monotonic()
            factor = self._local_factor(state, now)
            if 0 < cap < 1:
                state.update(cap=cap, capstamp=now)
                factor = min(factor, cap)
            cooldown = max(COOLDOWN_SECONDS, 2 * self.interval / factor, wait)
            decreased = now - state.get("cut", -1e18) >= cooldown
            if decreased:
                factor = max(FLOOR, factor * DECREASE)
                state["cut"] = now
            step = self.interval / factor
            tat = max(state.get("tat", now), now)
            if wait > 0:
                late = min(step, LATENESS_SECONDS)
                tat = max(tat, now + wait + (self.burst_requests - 1) * step + late)
            state.update(tat=tat, factor=factor, fstamp=now)
            return factor, decreased


#: job id -> (monotonic time, text): the latest learned rate a call of the job saw
_notes: dict[int, tuple[float, str]] = {}
#: seconds a note is shown after the 429 that wrote it
NOTE_SECONDS = 120.0


def rate_note(job_id: int, text: str) -> None:
    """Remember, in this process, the learned rate a call of job ``job_id`` saw on a 429 (shown
    in the job's progress message by :func:`rate_note_for`)."""
    with _lock:
        if len(_notes) > 1000:
            _notes.clear()
        _notes[job_id] = (time.monotonic(), text)


def rate_note_for(job_id: int) -> str:
    """The job's rate note if a 429 wrote one in the last ``NOTE_SECONDS`` seconds, else ""."""
    with _lock:
        stamp, text = _notes.get(job_id, (-NOTE_SECONDS - 1.0, ""))
    return text if time.monotonic() - stamp <= NOTE_SECONDS else ""


def limiter_for(provider: str, model: str) -> SharedRateLimiter:
    """The shared limiter of one provider and model, from settings ``LLM_RATE_LIMIT``,
    ``LLM_RATE_LIMIT_MARGIN``, ``LLM_RATE_LIMIT_BURST``, ``LLM_RATE_LIMIT_RECOVERY`` and
    ``LLM_TOKENS_PER_MINUTE``."""
    return SharedRateLimiter(
        key=f"{provider}:{model}",
        rate=settings.LLM_RATE_LIMIT,
        tokens_per_minute=settings.LLM_TOKENS_PER_MINUTE,
    )
