"""Google Gemini (Developer API) realtime provider, through the official ``google-genai`` SDK.

One ``generate_content`` call per request with structured output (``response_schema`` = the
caller's pydantic class). The answer text is validated by :func:`parse_structured` rather than the
SDK's ``.parsed``, which is silently None on invalid or truncated JSON. Every failure becomes a
:class:`ProviderError`; an empty or blocked answer is never reported as a success.

Protocol facts (paths, error shapes, ``HttpOptions.timeout`` in milliseconds) are in
``/work/shared/docs/provider-wire-reference.md``; ``llm/providers/emulators/gemini.py`` speaks the
same protocol locally.
"""

from __future__ import annotations

import email.utils
import importlib
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llm.providers.base import ProviderError, ProviderRequest, ProviderResult, T, redact
from llm.providers.parsing import parse_structured

#: HTTP statuses worth retrying: rate limited, request timeout, server-side failures.
TRANSIENT_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})

#: Finish reasons meaning the answer was withheld by a safety or policy filter.
BLOCKED_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "RECITATION",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)

_RETRY_DELAY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s\s*$")


_ExceptionTypes = tuple[type[BaseException], ...]


def _transport_exception_types() -> tuple[_ExceptionTypes, _ExceptionTypes]:
    """(timeout exceptions, other transport exceptions) of whichever HTTP stacks are installed.

    google-genai 3.x sends through ``httpx2`` when present and ``httpx`` otherwise; their
    exception classes are unrelated, so both families are caught.
    """
    timeouts: list[type[BaseException]] = [TimeoutError]
    transport: list[type[BaseException]] = [ConnectionError]
    for module_name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
    return tuple(timeouts), tuple(transport)


_TIMEOUT_EXCEPTIONS, _TRANSPORT_EXCEPTIONS = _transport_exception_types()


def _enum_value(value: Any) -> str:
    """The plain string of an SDK enum (``FinishReason.STOP`` -> ``"STOP"``); "" for None."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value.

    Accepts delta-seconds (``"7"``, ``"1.5"``) or an HTTP date; returns None when absent or
    unparseable, never a negative number.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def parse_retry_info(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` ``retryDelay`` (e.g. ``"7s"``) in an error body.

    ``details`` is the decoded error JSON (``{"error": {"details": [...]}}``) as the SDK keeps it
    in ``APIError.details``; returns None when there is no RetryInfo.
    """
    if not isinstance(details, dict):
        return None
    error = details.get("error", details)
    items = error.get("details") if isinstance(error, dict) else None
    if not isinstance(items, list):
        return None
    for item in items:
        if not isinstance(item, dict):
            continue
        if not str(item.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = item.get("retryDelay")
        if isinstance(delay, int | float):
            return max(0.0, float(delay))
        if isinstance(delay, str) and (match := _RETRY_DELAY_RE.match(delay)):
            return float(match.group(1))
    return None


def _retry_after_from(error: genai_errors.APIError) -> float | None:
    """Retry-After header of the SDK's HTTP response if exposed, else the RetryInfo delay."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            header = headers.get("retry-after")
        except (AttributeError, TypeError):
            header = None
        seconds = parse_retry_after(header if isinstance(header, str) else None)
        if seconds is not None:
            return seconds
    return parse_retry_info(getattr(error, "details", None))


class GeminiProvider:
    """Realtime Gemini calls with structured output.

    Args:
        api_key: Gemini Developer API key (from the environment; never logged, never in errors).
        base_url: endpoint root (e.g. an emulator ``http://127.0.0.1:PORT``); None = Google's.
        timeout: seconds one call may take before it fails with ``kind="timeout"``.

    Raises:
        ProviderError: ``kind="api_error"``, permanent, when ``api_key`` is empty.
    """

    name = "gemini"

    def __init__(self, api_key: str, base_url: str | None = None, timeout: float = 60.0) -> None:
        if not api_key:
            raise ProviderError(
                "Gemini API key is not set (GEMINI_API_KEY)", transient=False, kind="api_error"
            )
        self._api_key = api_key
        self.base_url = base_url or None
        self.timeout = float(timeout)
        options: dict[str, Any] = {
            "api_version": "v1beta",
            "timeout": max(1, round(self.timeout * 1000)),
        }
        if self.base_url:
            options["base_url"] = self.base_url
        # vertexai=False pins the Developer API even if GOOGLE_GENAI_USE_VERTEXAI is set.
        self._client = genai.Client(
            api_key=api_key, vertexai=False, http_options=types.HttpOptions(**options)
        )

    def __repr__(self) -> str:
        return f"GeminiProvider(base_url={self.base_url!r}, timeout={self.timeout})"

    def _error(self, message: str, **kwargs: Any) -> ProviderError:
        """A ProviderError whose message has the key (and anything key-shaped) redacted."""
        return ProviderError(redact(message, [self._api_key]), **kwargs)

    def _classify_api_error(self, error: genai_errors.APIError) -> ProviderError:
        """Map an SDK ``APIError`` (HTTP status != 200) to a ProviderError."""
        code = int(error.code) if isinstance(error.code, int) else None
        status = error.status or ""
        detail = error.message or str(error)
        transient = code is not None and (code in TRANSIENT_STATUS_CODES or code >= 500)
        retry_after = _retry_after_from(error) if transient else None
        label = f"{code} {status}" if status else f"{code}"
        return self._error(
            f"Gemini API error {label}: {detail}",
            transient=transient,
            retry_after=retry_after,
            kind="api_error",
            status_code=code,
        )

    def _call(self, request: ProviderRequest[T]) -> types.GenerateContentResponse:
        """One SDK call; raises ProviderError for every transport or HTTP failure."""
        failure: ProviderError | None = None
        try:
            return self._client.models.generate_content(
                model=request.model,
                contents=request.user_prompt,
                config=types.GenerateContentConfig(
                    system_instruction=request.system_prompt or None,
                    temperature=request.temperature,
                    max_output_tokens=request.max_output_tokens,
                    response_mime_type="application/json",
                    response_schema=request.output_class,
                ),
            )
        except genai_errors.APIError as error:
            failure = self._classify_api_error(error)
        except _TIMEOUT_EXCEPTIONS as error:
            failure = self._error(
                f"Gemini request timed out after {self.timeout:g} s ({type(error).__name__})",
                transient=True,
                kind="timeout",
            )
        except _TRANSPORT_EXCEPTIONS as error:
            failure = self._error(
                f"Gemini connection failed ({type(error).__name__}: {error})",
                transient=True,
                kind="api_error",
            )
        except genai_errors.UnknownApiResponseError as error:
            failure = self._error(
                f"Gemini returned an unreadable response: {error}",
                transient=True,
                kind="api_error",
            )
        except Exception as error:
            # The contract: no vendor exception leaks past a provider. Only the SDK call is
            # wrapped, so this cannot hide bugs in our own response handling.
            failure = self._error(
                f"Gemini SDK call failed unexpectedly ({type(error).__name__}: {error})",
                transient=False,
                kind="api_error",
            )
        # Raised outside the except blocks on purpose: the SDK exception (which holds the HTTP
        # request and its x-goog-api-key header) must not travel along as __context__.
        raise failure

    def generate(self, request: ProviderRequest[T]) -> ProviderResult[T]:
        """Run one structured-output request.

        Returns:
            ProviderResult with the validated ``request.output_class`` instance, raw text, input
            and output tokens (output includes thinking tokens, which are billed as output),
            latency in seconds, the model version reported (or ``request.model``) and the
            finish reason string (``"STOP"``).

        Raises:
            ProviderError: ``api_error`` (HTTP errors: 429/408/5xx and connection failures are
                transient with ``retry_after`` from Retry-After or RetryInfo; other 4xx permanent;
                also no candidates or empty text), ``timeout`` (transient), ``blocked`` (safety
                or policy finish reason, or a blocked prompt; permanent), ``validation_failed``
                (output cut at max tokens, or not valid for the output class; permanent).
        """
        started = time.perf_counter()
        response = self._call(request)
        latency = time.perf_counter() - started

        usage = response.usage_metadata
        input_tokens = int((usage.prompt_token_count if usage else None) or 0)
        output_tokens = int((usage.candidates_token_count if usage else None) or 0)
        output_tokens += int((usage.thoughts_token_count if usage else None) or 0)
        model_version = response.model_version or request.model
        tokens = {"input_tokens": input_tokens, "output_tokens": output_tokens}

        feedback = response.prompt_feedback
        block_reason = _enum_value(feedback.block_reason if feedback else None)
        if block_reason == "BLOCKED_REASON_UNSPECIFIED":
            block_reason = ""
        candidates = response.candidates or []
        if not candidates:
            if block_reason:
                raise self._error(
                    f"Gemini blocked the prompt ({block_reason}); no candidates returned",
                    transient=False,
                    kind="blocked",
                    **tokens,
                )
            raise self._error(
                "Gemini returned no candidates (empty response)",
                transient=False,
                kind="api_error",
                **tokens,
            )

        candidate = candidates[0]
        finish_reason = _enum_value(candidate.finish_reason)
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        text = "".join(part.text for part in parts if part.text and not part.thought)

        if finish_reason in BLOCKED_FINISH_REASONS or block_reason:
            reason = finish_reason if finish_reason in BLOCKED_FINISH_REASONS else block_reason
            raise self._error(
                f"Gemini withheld the answer (finish reason {reason})",
                transient=False,
                kind="blocked",
                raw_text=text,
                **tokens,
            )
        if finish_reason == "MAX_TOKENS":
            raise self._error(
                f"Gemini output truncated at max tokens ({request.max_output_tokens} output "
                f"tokens allowed); the JSON is incomplete",
                transient=False,
                kind="validation_failed",
                raw_text=text,
                **tokens,
            )
        if not text.strip():
            raise self._error(
                f"Gemini returned an empty answer (finish reason {finish_reason or 'none'})",
                transient=False,
                kind="api_error",
                **tokens,
            )

        invalid: ProviderError | None = None
        try:
            parsed = parse_structured(text, request.output_class)
        except ProviderError as error:
            invalid = error
        if invalid is not None:
            raise self._error(
                invalid.message,
                transient=False,
                kind="validation_failed",
                raw_text=text,
                **tokens,
            )

        return ProviderResult(
            parsed=parsed,
            raw_text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_seconds=latency,
            model_version=model_version,
            finish_reason=finish_reason,
        )
