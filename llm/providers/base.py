"""The one contract every provider implements.

A caller builds a :class:`ProviderRequest` (prompts, a pydantic output class, model, temperature,
max output tokens) and gets back a :class:`ProviderResult` (validated object, raw text, token usage,
latency, model version, finish reason) or a :class:`ProviderError`. Vendor exceptions never leak
past a provider: each is translated into ``ProviderError(message, transient, retry_after)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)

#: Failure kinds recorded on an LLMCall row (see DESIGN.md).
ERROR_KINDS = ("api_error", "timeout", "blocked", "validation_failed")

_SECRET_PATTERNS = [
    re.compile(r"(key=)[^&\s'\"]+", re.IGNORECASE),
    re.compile(r"(x-goog-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\"]+", re.IGNORECASE),
    re.compile(r"(authorization['\"]?\s*[:=]\s*['\"]?bearer\s+)[^\s'\"]+", re.IGNORECASE),
    re.compile(r"(x-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\"]+", re.IGNORECASE),
    re.compile(r"\b(sk-|AIza|sk-ant-)[A-Za-z0-9_\-]{8,}"),
]


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Remove API keys from ``text``: the given secret values and anything shaped like a key."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[REDACTED]", text)
        else:
            text = pattern.sub("[REDACTED]", text)
    return text


class ProviderError(Exception):
    """A failed provider call, vendor-neutral.

    Attributes:
        message: human-readable reason, with keys redacted.
        transient: True when retrying may succeed (429, 5xx, timeouts, connection errors).
        retry_after: seconds the provider asked us to wait (Retry-After), or None.
        kind: one of ``api_error``, ``timeout``, ``blocked``, ``validation_failed``.
        status_code: the HTTP status when there was one.
        raw_text: model output that failed validation, when there was any.
        rate_limited: the provider refused the call for its rate limit (HTTP 429 with a
            transient cause): waiting for capacity, not an error of the call.
        provider_limit: the provider's request limit per minute when its answer named it
            (``x-ratelimit-limit-requests``, Gemini's QuotaFailure), else None.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        kind: str = "api_error",
        status_code: int | None = None,
        raw_text: str = "",
        input_tokens: int = 0,
        output_tokens: int = 0,
        rate_limited: bool = False,
        provider_limit: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.retry_after = retry_after
        self.kind = kind
        self.status_code = status_code
        self.raw_text = raw_text
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.rate_limited = rate_limited
        self.provider_limit = provider_limit

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.message!r}, transient={self.transient}, "
            f"retry_after={self.retry_after}, kind={self.kind!r})"
        )


@dataclass(frozen=True)
class ProviderRequest(Generic[T]):
    """One structured-output request.

    ``output_class`` is the pydantic model the answer must validate against;
    ``max_output_tokens`` is in tokens; ``temperature`` in the vendor's usual 0..2 range.
    ``custom_id`` identifies the request inside a batch (unused in realtime calls).
    """

    system_prompt: str
    user_prompt: str
    output_class: type[T]
    model: str
    temperature: float = 0.2
    max_output_tokens: int = 2048
    custom_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderResult(Generic[T]):
    """A successful, validated answer.

    ``latency_seconds`` is wall time of the call; tokens are as the provider reported them
    (0 when it reported none); ``finish_reason`` is the vendor's own string (e.g. "STOP").
    """

    parsed: T
    raw_text: str
    input_tokens: int
    output_tokens: int
    latency_seconds: float
    model_version: str
    finish_reason: str


class Provider(Protocol):
    """A realtime LLM provider. ``name`` is the registry key (``gemini``, ``extractive`` ...)."""

    name: str

    def generate(self, request: ProviderRequest[T]) -> ProviderResult[T]:
        """Run one request.

        Raises:
            ProviderError: any failure, classified as transient or permanent.
        """
        ...
