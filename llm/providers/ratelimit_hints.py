"""What a provider's 429 answer says about its rate limit: how long to wait and its limit.

Every vendor says it differently:

- OpenAI: ``retry-after-ms`` (Azure and some gateways), ``Retry-After`` (whole seconds), the
  ``x-ratelimit-{limit,remaining,reset}-requests`` headers (reset as a Go duration: ``"6m0s"``,
  ``"150ms"``) and the message ("... Please try again in 150ms.").
- Anthropic: ``retry-after`` (whole seconds) and ``anthropic-ratelimit-requests-{limit,
  remaining,reset}`` (reset as an RFC 3339 time).
- Gemini: no header; the error's ``details`` carry ``google.rpc.RetryInfo`` (``retryDelay``, a
  protobuf Duration such as ``"1.5s"``) and a ``QuotaFailure`` whose violation names the quota
  (``...PerMinute...``) and its ``quotaValue``; the message says "Please retry in 37.2s.".

:func:`rate_limit_hint` reads all of them into one :class:`RateLimitHint`, preferring the most
precise wait: milliseconds, then the body's delay, then the reset of an exhausted limit, then
whole-second ``Retry-After``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:h|ms|us|µs|ns|m|s))+$")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
#: "Please try again in 150ms." (OpenAI), "Please retry in 37.2s." (Gemini)
_MESSAGE_DELAY = re.compile(
    r"(?:try again|retry) in ((?:\d+(?:\.\d+)?(?:h|ms|us|µs|ns|m|s))+)", re.IGNORECASE
)


@dataclass(frozen=True)
class RateLimitHint:
    """What a 429 answer told us.

    Attributes:
        retry_after: seconds to wait before the next request, or None when not said.
        limit_per_minute: the provider's request limit per minute, when it said so.
        remaining: requests left in the provider's current allowance, when it said so.
    """

    retry_after: float | None = None
    limit_per_minute: int | None = None
    remaining: int | None = None


def parse_go_duration(text: str | None) -> float | None:
    """Seconds of a Go ``time.Duration`` string (``"6m0s"``, ``"1.5s"``, ``"150ms"``), or None
    when absent or not one."""
    if not text:
        return None
    value = text.strip()
    if not _GO_DURATION.match(value):
        return None
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _GO_PART.findall(value))


def delay_in_message(message: str | None) -> float | None:
    """Seconds from "try again in 150ms" / "retry in 1.5s" in an error message, or None."""
    match = _MESSAGE_DELAY.search(message or "")
    return parse_go_duration(match.group(1)) if match else None


def retry_delay_in_details(details: Any) -> float | None:
    """Seconds of the first ``google.rpc.RetryInfo`` ``retryDelay`` in an error's details
    (a list of typed objects, or Google's envelope ``{"error": {"details": [...]}}``), or None."""
    for item in _detail_items(details):
        if not str(item.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = item.get("retryDelay")
        if isinstance(delay, int | float) and math.isfinite(delay):
            return max(0.0, float(delay))
        if isinstance(delay, str):
            seconds = parse_go_duration(delay)  # "1.5s" is both a Duration and a Go duration
            if seconds is not None:
                return seconds
        if isinstance(delay, Mapping):  # {"seconds": 1, "nanos": 500000000}
            try:
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
            except (TypeError, ValueError):
                return None
    return None


def quota_per_minute_in_details(details: Any) -> int | None:
    """The ``quotaValue`` of a per-minute ``QuotaFailure`` violation in Gemini's details, or
    None."""
    for item in _detail_items(details):
        if not str(item.get("@type", "")).endswith("QuotaFailure"):
            continue
        for violation in item.get("violations") or []:
            if not isinstance(violation, Mapping):
                continue
            if "perminute" not in str(violation.get("quotaId", "")).lower():
                continue
            value = _int(violation.get("quotaValue"))
            if value is not None and value > 0:
                return value
    return None


def _detail_items(details: Any) -> list[Mapping[str, Any]]:
    if isinstance(details, Mapping):
        error = details.get("error")
        details = error.get("details") if isinstance(error, Mapping) else details.get("details")
    if not isinstance(details, Sequence) or isinstance(details, str | bytes):
        return []
    return [item for item in details if isinstance(item, Mapping)]


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except (AttributeError, TypeError):
        return None
    return value if isinstance(value, str) and value.strip() else None


def _rfc3339_in(text: str | None) -> float | None:
    """Seconds from now until an RFC 3339 time (never negative), or None."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _retry_after_seconds(headers: Any) -> float | None:
    from llm.providers.common import parse_retry_after  # the HTTP delta-seconds / date parser

    return parse_retry_after(_header(headers, "retry-after"))


def rate_limit_hint(
    headers: Any = None, message: str | None = None, details: Any = None
) -> RateLimitHint:
    """Everything a 429 answer says about the limit: response ``headers`` (any mapping with
    ``get``), the error ``message`` and Google's error ``details``.

    The wait is, in order of precision: ``retry-after-ms``; the delay in the message or in
    RetryInfo; the reset of the exhausted request limit (``x-ratelimit-reset-requests``,
    ``anthropic-ratelimit-requests-reset``) when it says 0 remain; ``Retry-After``. Never
    raises: unreadable parts are ignored.
    """
    waits: list[float | None] = []
    milliseconds = _header(headers, "retry-after-ms")
    if milliseconds is not None:
        try:
            value = float(milliseconds)
        except ValueError:
            value = math.nan
        waits.append(value / 1000.0 if math.isfinite(value) and value >= 0 else None)
    waits.append(delay_in_message(message))
    waits.append(retry_delay_in_details(details))
    remaining = _int(_header(headers, "x-ratelimit-remaining-requests"))
    limit = _int(_header(headers, "x-ratelimit-limit-requests"))
    reset = parse_go_duration(_header(headers, "x-ratelimit-reset-requests"))
    if remaining is None:
        remaining = _int(_header(headers, "anthropic-ratelimit-requests-remaining"))
        limit = _int(_header(headers, "anthropic-ratelimit-requests-limit"))
        reset = _rfc3339_in(_header(headers, "anthropic-ratelimit-requests-reset"))
    if remaining == 0:
        waits.append(reset)
    waits.append(_retry_after_seconds(headers))
    if limit is None:
        limit = quota_per_minute_in_details(details)
    wait = next((w for w in waits if w is not None), None)
    return RateLimitHint(
        retry_after=wait,
        limit_per_minute=limit if limit is not None and limit > 0 else None,
        remaining=remaining,
    )
