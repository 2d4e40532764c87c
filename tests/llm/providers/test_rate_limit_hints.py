"""What each provider's 429 says: the wait and the provider's limit, read from the real SDK
exception objects (over HTTP from the bucket-mode emulators, and built by hand for the headers
the emulators do not send), plus the parsers themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors

from llm.emulators.ratelimit import ServerLimit, go_duration
from llm.providers.anthropic import AnthropicProvider
from llm.providers.gemini import GeminiProvider
from llm.providers.openai import OpenAIProvider
from llm.providers.ratelimit_hints import (
    delay_in_message,
    parse_go_duration,
    rate_limit_hint,
    retry_delay_in_details,
)
from tests.llm.provider_helpers import CANARY_KEY, HARNESSES, Harness, failure_of


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("150ms", 0.15),
        ("1.5s", 1.5),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("20s", 20.0),
        ("", None),
        ("soon", None),
        ("5", None),
    ],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    assert parse_go_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_delays_in_messages() -> None:
    openai_message = (
        "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform..."
    )
    assert delay_in_message(openai_message) == pytest.approx(20.0)
    assert delay_in_message("Please try again in 150ms.") == pytest.approx(0.15)
    assert delay_in_message("Please retry in 37.291s.") == pytest.approx(37.291)
    assert delay_in_message("Please try again later.") is None


def test_retry_info_forms() -> None:
    info = "type.googleapis.com/google.rpc.RetryInfo"
    assert retry_delay_in_details([{"@type": info, "retryDelay": "1.5s"}]) == pytest.approx(1.5)
    nested = {"error": {"details": [{"@type": info, "retryDelay": "37s"}]}}
    assert retry_delay_in_details(nested) == pytest.approx(37.0)
    as_object = [{"@type": info, "retryDelay": {"seconds": 2, "nanos": 500_000_000}}]
    assert retry_delay_in_details(as_object) == pytest.approx(2.5)
    assert retry_delay_in_details([{"@type": "other"}]) is None
    assert retry_delay_in_details("nonsense") is None


def test_most_precise_wait_wins() -> None:
    headers = httpx2.Headers({"retry-after": "2", "retry-after-ms": "120"})
    assert rate_limit_hint(headers, "Please try again in 1s").retry_after == pytest.approx(0.12)
    headers = httpx2.Headers(
        {
            "retry-after": "2",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "450ms",
            "x-ratelimit-limit-requests": "500",
        }
    )
    hint = rate_limit_hint(headers, "no delay here")
    assert hint.retry_after == pytest.approx(0.45)
    assert (hint.limit_per_minute, hint.remaining) == (500, 0)
    assert rate_limit_hint(httpx2.Headers({"retry-after": "2"})).retry_after == 2.0
    assert rate_limit_hint(None, None, None).retry_after is None


# --- over HTTP: the real SDKs against the bucket-mode emulators -------------------------------


@pytest.mark.parametrize("harness", HARNESSES, ids=[h.name for h in HARNESSES])
def test_bucket_emulator_429_reads_as_a_precise_rate_limit(harness: Harness) -> None:
    """60 per minute with a bucket of 1: the second call at once is refused; the error is a
    rate limit (not a failure), says to wait about one second (sub-second precision where the
    vendor gives it) and names the provider's limit where the vendor does."""
    with harness.emulator_class(rpm=60, window=60, rate_mode="bucket", burst=1) as emulator:
        provider = harness.provider(emulator)
        provider.generate(harness.request())
        error = failure_of(provider, harness.request())
        log = emulator.request_log()
    assert [e["status"] for e in log] == [200, 429]
    assert error.status_code == 429 and error.transient and error.rate_limited
    assert error.retry_after is not None
    if harness.name == "anthropic":  # whole-second retry-after; reset within the second
        assert 0.0 < error.retry_after <= 1.0
    else:  # "try again in 9xxms" / RetryInfo "0.9xxs"
        assert 0.5 < error.retry_after < 1.0
    assert error.provider_limit == 60


@pytest.mark.parametrize("harness", HARNESSES, ids=[h.name for h in HARNESSES])
def test_a_provider_that_does_not_name_its_limit(harness: Harness) -> None:
    with harness.emulator_class(rpm=60, window=60, rate_mode="bucket", burst=1) as emulator:
        emulator.report_limit = False
        provider = harness.provider(emulator)
        provider.generate(harness.request())
        error = failure_of(provider, harness.request())
    assert error.rate_limited and error.provider_limit is None
    assert error.retry_after is not None and 0 < error.retry_after <= 1.0


def test_window_mode_still_answers_429(harness_gemini_window: Any) -> None:
    emulator, provider, request = harness_gemini_window
    provider.generate(request)
    provider.generate(request)
    error = failure_of(provider, request)
    assert error.rate_limited and 0 < (error.retry_after or 0) <= 60
    assert [e["status"] for e in emulator.request_log()] == [200, 200, 429]


@pytest.fixture
def harness_gemini_window() -> Any:
    harness = HARNESSES[0]
    with harness.emulator_class(rpm=2, window=60, rate_mode="window") as emulator:
        yield emulator, harness.provider(emulator), harness.request()


def test_server_bucket_refills_continuously() -> None:
    limit = ServerLimit(rpm=120, window=60, mode="bucket", burst=2)
    assert [limit.admit(0.0).admitted for _ in range(3)] == [True, True, False]
    refused = limit.admit(0.0)
    assert refused.wait == pytest.approx(0.5) and refused.limit == 120
    assert limit.admit(0.5).admitted and not limit.admit(0.6).admitted
    assert go_duration(0.15) == "150ms" and go_duration(360.0) == "6m0s"
    with pytest.raises(ValueError, match="rate mode"):
        ServerLimit(rpm=1, window=60, mode="sometimes")


# --- SDK exceptions built by hand: what the emulators do not send -----------------------------


def _response(code: int, headers: dict[str, str], url: str) -> httpx2.Response:
    return httpx2.Response(code, headers=headers, request=httpx2.Request("POST", url))


def test_openai_retry_after_ms_and_insufficient_quota() -> None:
    provider = OpenAIProvider(CANARY_KEY, "http://127.0.0.1:1")
    url = "http://127.0.0.1:1/v1/chat/completions"
    body = {"message": "Rate limit reached. Please try again in 2s.", "code": "rate_limit_exceeded"}
    limited = openai.RateLimitError(
        "rate limited",
        response=_response(429, {"retry-after-ms": "250", "retry-after": "1"}, url),
        body=body,
    )
    error = provider._status_error(limited)
    assert error.rate_limited and error.retry_after == pytest.approx(0.25)

    quota = openai.RateLimitError(
        "quota",
        response=_response(429, {}, url),
        body={"message": "You exceeded your current quota.", "code": "insufficient_quota"},
    )
    error = provider._status_error(quota)
    assert error.status_code == 429 and not error.transient and not error.rate_limited


def test_anthropic_reset_header_is_read() -> None:
    provider = AnthropicProvider(CANARY_KEY, "http://127.0.0.1:1")
    reset = (datetime.now(UTC) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    headers = {
        "retry-after": "40",
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
    }
    limited = anthropic.RateLimitError(
        "rate limited",
        response=_response(429, headers, "http://127.0.0.1:1/v1/messages"),
        body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
    )
    error = provider._status_error(limited)
    assert error.rate_limited and error.provider_limit == 50
    assert error.retry_after is not None and 28 < error.retry_after <= 30


def test_gemini_retry_info_and_quota_failure() -> None:
    provider = GeminiProvider(api_key=CANARY_KEY, base_url="http://127.0.0.1:1")
    body = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaValue": "10",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13.5s"},
            ],
        }
    }
    limited = genai_errors.ClientError(429, body)
    error = provider._status_error(limited)
    assert error.rate_limited and error.retry_after == pytest.approx(13.5)
    assert error.provider_limit == 10
    denied = genai_errors.ClientError(
        403, {"error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}}
    )
    error = provider._status_error(denied)
    assert not error.transient and not error.rate_limited
