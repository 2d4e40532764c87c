"""Retry backoff and cost accounting (the shared limiter: tests/llm/test_rate_pacing.py)."""

from __future__ import annotations

from decimal import Decimal

from llm.pricing import call_cost
from llm.services.calls import backoff_seconds


def _max_in_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


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
