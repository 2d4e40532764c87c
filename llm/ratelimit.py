"""A request (and optional token) rate limit shared by every worker and process.

Built on the `limits` library (moving window): with ``REDIS_URL`` set the window lives in Redis,
so all workers on all machines share it; without it (embedded mode) an in-process window is used.
Chosen over hand-written Lua because `limits` is maintained, tested against Redis and supports
both fixed and moving windows with costs (tokens).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import cast

from django.conf import settings
from limits import RateLimitItem, parse, storage, strategies

_lock = threading.Lock()
_storages: dict[str, storage.Storage] = {}


class RateLimitWaitExceeded(TimeoutError):
    """No slot became free within the allowed wait (seconds)."""


def _storage() -> storage.Storage:
    uri = settings.REDIS_URL or "memory://"
    with _lock:
        if uri not in _storages:
            _storages[uri] = cast(storage.Storage, storage.storage_from_string(uri))
        return _storages[uri]


@dataclass
class SharedRateLimiter:
    """Limits calls per ``key`` (e.g. "gemini:gemini-2.5-flash") to ``rate`` requests and,
    optionally, ``tokens_per_minute`` estimated tokens.

    Raises:
        ValueError: ``rate`` cannot be parsed (e.g. "30/minute", "6 per 2 seconds").
    """

    key: str
    rate: str
    tokens_per_minute: int = 0

    def __post_init__(self) -> None:
        self._requests: RateLimitItem = parse(self.rate)
        self._tokens: RateLimitItem | None = (
            parse(f"{self.tokens_per_minute}/minute") if self.tokens_per_minute else None
        )
        self._limiter = strategies.MovingWindowRateLimiter(_storage())

    def acquire(self, *, tokens: int = 0, max_wait: float = 600.0) -> float:
        """Block until a request slot (and ``tokens`` of token budget) is free, then take it.

        Returns the seconds waited. Waits are bounded by ``max_wait`` seconds, which callers keep
        far below the broker's visibility timeout so waiting never causes a redelivery.

        Raises:
            RateLimitWaitExceeded: no slot within ``max_wait`` seconds.
        """
        started = time.monotonic()
        while True:
            if self._take(tokens):
                return time.monotonic() - started
            waited = time.monotonic() - started
            if waited >= max_wait:
                raise RateLimitWaitExceeded(
                    f"no {self.rate} slot for {self.key} within {max_wait:.0f} s"
                )
            stats = self._limiter.get_window_stats(self._requests, "llm", self.key)
            pause = max(0.01, stats.reset_time - time.time())
            # jitter so that waiting workers do not all retry in the same instant
            time.sleep(min(pause + random.uniform(0, 0.05), max(0.01, max_wait - waited)))

    def _take(self, tokens: int) -> bool:
        if (
            self._tokens is not None
            and tokens > 0
            and not self._limiter.test(self._tokens, "llm-tokens", self.key, cost=tokens)
        ):
            return False
        if not self._limiter.hit(self._requests, "llm", self.key):
            return False
        if self._tokens is not None and tokens > 0:
            self._limiter.hit(self._tokens, "llm-tokens", self.key, cost=tokens)
        return True


def limiter_for(provider: str, model: str) -> SharedRateLimiter:
    """The shared limiter of one provider and model, from settings ``LLM_RATE_LIMIT`` and
    ``LLM_TOKENS_PER_MINUTE``."""
    return SharedRateLimiter(
        key=f"{provider}:{model}",
        rate=settings.LLM_RATE_LIMIT,
        tokens_per_minute=settings.LLM_TOKENS_PER_MINUTE,
    )
