"""The shared rate limiter, retry backoff and cost accounting."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import pytest

from llm.pricing import call_cost
from llm.ratelimit import RateLimitWaitExceeded, SharedRateLimiter
from llm.services.calls import backoff_seconds


def _max_in_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_limiter_holds_across_threads_on_redis(settings) -> None:
    assert settings.REDIS_URL, "the suite runs against Redis"
    limiter = SharedRateLimiter(key=f"test:{uuid.uuid4()}", rate="5 per 1 second")
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(4):
            limiter.acquire(max_wait=10)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stamps) == 12
    assert _max_in_window(stamps, 1.0) <= 5
    assert time.monotonic() - started >= 2.0  # 12 slots at 5 per second need two full windows


def test_limiter_gives_up_after_max_wait(settings) -> None:
    limiter = SharedRateLimiter(key=f"test:{uuid.uuid4()}", rate="1 per 10 seconds")
    limiter.acquire(max_wait=1)
    with pytest.raises(RateLimitWaitExceeded):
        limiter.acquire(max_wait=0.3)


def test_bad_rate_is_rejected() -> None:
    with pytest.raises(ValueError):
        SharedRateLimiter(key="x", rate="often")


def test_backoff_honours_retry_after_and_grows(settings) -> None:
    settings.LLM_BACKOFF_BASE = 1.0
    settings.LLM_BACKOFF_MAX = 60.0
    assert 7.0 <= backoff_seconds(1, 7.0) <= 7.25
    for try_number, base in ((1, 1.0), (2, 2.0), (3, 4.0)):
        wait = backoff_seconds(try_number, None)
        assert 0.5 * base <= wait <= 1.5 * base
    settings.LLM_BACKOFF_MAX = 3.0
    assert backoff_seconds(10, None) <= 4.5


def test_call_cost_uses_the_price_table(settings) -> None:
    # gemini-2.5-flash: 0.30 USD per M input, 2.50 per M output
    assert call_cost("gemini-2.5-flash", 1_000_000, 0) == Decimal("0.300000")
    assert call_cost("gemini-2.5-flash", 1000, 2000) == Decimal("0.005300")
    assert call_cost("gemini-2.5-flash-001", 1000, 2000) == Decimal("0.005300")  # prefix
    assert call_cost("gemini-2.5-flash", 1000, 2000, batch=True) == Decimal("0.002650")
    assert call_cost("unknown-model", 10**6, 10**6) == 0
    settings.LLM_PRICES = {"unknown-model": [1, 2]}
    assert call_cost("unknown-model", 10**6, 10**6) == Decimal("3.000000")


def test_window_includes_the_margin(settings) -> None:
    """The 3rd start of "2 per 1 second" with a 0.3 s margin waits until 1.3 s after the 1st."""
    limiter = SharedRateLimiter(key=f"test:{uuid.uuid4()}", rate="2 per 1 second", margin=0.3)
    assert limiter.window_seconds == pytest.approx(1.3)
    started = time.monotonic()
    limiter.acquire(max_wait=5)
    limiter.acquire(max_wait=5)
    limiter.acquire(max_wait=5)
    assert time.monotonic() - started >= 1.3


def test_in_process_window_without_redis(settings) -> None:
    settings.REDIS_URL = None
    limiter = SharedRateLimiter(key=f"test:{uuid.uuid4()}", rate="3 per 1 second", margin=0.0)
    stamps: list[float] = []
    for _ in range(7):
        limiter.acquire(max_wait=5)
        stamps.append(time.monotonic())
    assert _max_in_window(stamps, 1.0) <= 3
    assert stamps[-1] - stamps[0] >= 2.0


def test_negative_margin_is_rejected() -> None:
    with pytest.raises(ValueError, match="margin"):
        SharedRateLimiter(key="x", rate="1/second", margin=-1)
