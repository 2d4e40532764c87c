"""A request rate limit shared by every worker and process, with an arrival margin.

A moving window of ``rate`` (e.g. "30/minute": 30 requests in any 60 s) plus a margin
(``LLM_RATE_LIMIT_MARGIN`` seconds, default 0.25): a request may start only when fewer than the
allowed number started in the last ``period + margin`` seconds. The margin absorbs the jitter
between starting a call and the provider receiving it (SDK work, scheduling, network), so the
provider's own window never sees more than the limit (the first call of a worker process spends
about 0.1-0.2 s inside the SDK before it is sent); it costs ``margin / period`` of the rate (0.4%
at 30/minute).

With ``REDIS_URL`` set, the window is a Redis sorted set updated by one Lua script that reads
Redis's own clock (``TIME``), so workers on any machine share one window and one clock. The
embedded mode (no Redis) uses an in-process window. An optional token budget per minute
(``LLM_TOKENS_PER_MINUTE``) uses the `limits` library's moving window with costs; it is checked
before the request slot is taken, so it is a soft limit under heavy concurrency.

The `limits` library also parses the rate strings; its own moving window is not used for requests
because its Redis script sets the key's expiry in whole seconds, which cannot carry a sub-second
margin.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from django.conf import settings
from limits import RateLimitItem, parse, storage, strategies

logger = logging.getLogger(__name__)

#: seconds between asking Redis again while it is unreachable
REDIS_RETRY_SECONDS = 0.5

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
_storages: dict[str, storage.Storage] = {}
_local_windows: dict[str, deque[float]] = {}

#: KEYS[1] = window key; ARGV = limit, window in microseconds, member. Returns -1 when a slot was
#: taken, else the microseconds until the oldest start leaves the window.
_ACQUIRE = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class RateLimitWaitExceeded(TimeoutError):
    """No slot became free within the allowed wait (seconds)."""


def _redis(url: str) -> redis.Redis:
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url)
        return _clients[url]


def _token_storage() -> storage.Storage:
    uri = settings.REDIS_URL or "memory://"
    with _lock:
        if uri not in _storages:
            _storages[uri] = cast(storage.Storage, storage.storage_from_string(uri))
        return _storages[uri]


@dataclass
class SharedRateLimiter:
    """At most ``rate`` request starts per ``key`` (e.g. "gemini:gemini-2.5-flash") in any window
    of the rate's period plus ``margin`` seconds, shared through Redis when configured.

    Raises:
        ValueError: ``rate`` cannot be parsed (e.g. "30/minute", "6 per 2 seconds"), or a
            negative margin.
    """

    key: str
    rate: str
    tokens_per_minute: int = 0
    margin: float | None = None
    _item: RateLimitItem = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._item = parse(self.rate)
        margin = settings.LLM_RATE_LIMIT_MARGIN if self.margin is None else self.margin
        if margin < 0:
            raise ValueError(f"rate limit margin must be >= 0 seconds, got {margin}")
        self.limit = int(self._item.amount)
        self.window_seconds = float(self._item.get_expiry()) + float(margin)
        self._tokens: RateLimitItem | None = (
            parse(f"{self.tokens_per_minute}/minute") if self.tokens_per_minute else None
        )
        self._token_limiter = (
            strategies.MovingWindowRateLimiter(_token_storage()) if self._tokens else None
        )
        self._redis_key = f"clustersum:ratelimit:{self.key}"
        self._url = settings.REDIS_URL

    def acquire(self, *, tokens: int = 0, max_wait: float = 600.0) -> float:
        """Block until a request slot (and ``tokens`` of token budget) is free, then take it.

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
            time.sleep(min(pause + random.uniform(0.001, 0.02), max(0.01, max_wait - waited)))

    def _try(self, tokens: int) -> float | None:
        """Take a slot and return None, or return the seconds to wait before trying again."""
        if (
            self._token_limiter is not None
            and self._tokens is not None
            and tokens > 0
            and not self._token_limiter.test(self._tokens, "llm-tokens", self.key, cost=tokens)
        ):
            stats = self._token_limiter.get_window_stats(self._tokens, "llm-tokens", self.key)
            return max(0.01, stats.reset_time - time.time())
        pause = self._take_request_slot()
        if pause is None and self._token_limiter is not None and self._tokens and tokens > 0:
            self._token_limiter.hit(self._tokens, "llm-tokens", self.key, cost=tokens)
        return pause

    def _take_request_slot(self) -> float | None:
        if self._url:
            client = _redis(self._url)
            try:
                waited: Any = client.eval(
                    _ACQUIRE,
                    1,
                    self._redis_key,
                    self.limit,
                    int(self.window_seconds * 1_000_000),
                    uuid.uuid4().hex,
                )
            except redis.RedisError as exc:
                # Redis away (restart, network): no slot can be proven free, so nothing is sent;
                # wait and ask again within the caller's max_wait rather than fail the cluster.
                logger.warning(
                    "rate limiter for %s: Redis unavailable (%s); waiting", self.key, exc
                )
                return REDIS_RETRY_SECONDS
            return None if int(waited) < 0 else int(waited) / 1_000_000
        with _lock:
            window = _local_windows.setdefault(self._redis_key, deque())
            now = time.monotonic()
            while window and window[0] <= now - self.window_seconds:
                window.popleft()
            if len(window) < self.limit:
                window.append(now)
                return None
            return max(0.001, window[0] + self.window_seconds - now)


def limiter_for(provider: str, model: str) -> SharedRateLimiter:
    """The shared limiter of one provider and model, from settings ``LLM_RATE_LIMIT``,
    ``LLM_RATE_LIMIT_MARGIN`` and ``LLM_TOKENS_PER_MINUTE``."""
    return SharedRateLimiter(
        key=f"{provider}:{model}",
        rate=settings.LLM_RATE_LIMIT,
        tokens_per_minute=settings.LLM_TOKENS_PER_MINUTE,
    )
