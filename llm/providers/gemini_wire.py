"""The Gemini wire format: what the Gemini provider reads from and writes to google-genai.

REST JSON of an answer to the SDK's ``GenerateContentResponse`` (:func:`response_from_rest`,
for batch responses files), JSONL lines, the RetryInfo delay and Retry-After of an error, batch
state strings, Google's int64 counts and RFC 3339 times, the output schema built once per class
(``_transformers.t_schema``, one of the two SDK internals the provider uses; see
``tests/llm/providers/test_genai_internals.py``), and the transport exceptions of the installed HTTP
stacks. Used by :mod:`llm.providers.gemini`; protocol facts are in
``/work/shared/docs/provider-wire-reference.md``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from google.genai import _transformers, types
from google.genai import errors as genai_errors
from pydantic import BaseModel

from llm.providers.batch_support import decode_row
from llm.providers.common import parse_retry_after

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


TIMEOUT_EXCEPTIONS, TRANSPORT_EXCEPTIONS = _transport_exception_types()


_SCHEMAS: dict[type[BaseModel], types.Schema] = {}


def output_schema(output_class: type[BaseModel]) -> types.Schema:
    """The Gemini ``Schema`` of a pydantic output class, built once per class and process.

    Given the class itself, the SDK regenerates its JSON schema on every call (pydantic's
    ``model_json_schema``, about 0.5 ms for a summary class, 15% of a profiled call at zero
    latency); given the ready ``Schema`` it only copies it. The wire payload is the same: this is
    the SDK's own translation (``t_schema``) of the same class.
    """
    schema = _SCHEMAS.get(output_class)
    if schema is None:  # a race builds it twice, harmlessly: the result is the same
        built = _transformers.t_schema(None, output_class)
        assert built is not None
        schema = _SCHEMAS[output_class] = built
    return schema


def enum_value(value: Any) -> str:
    """The plain string of an SDK enum (``FinishReason.STOP`` -> ``"STOP"``); "" for None."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


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


def retry_after_from(error: genai_errors.APIError) -> float | None:
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


def iter_lines(handle: IO[bytes]) -> Iterator[dict[str, Any]]:
    """Decoded JSON objects of a JSONL file, one line at a time; blank lines skipped.

    Undecodable lines are yielded as ``{"__invalid__": "<reason>"}`` so the caller can report
    them without stopping.
    """
    for raw in handle:
        line = raw.strip()
        if not line:
            continue
        row = decode_row(line)
        yield row if isinstance(row, dict) else {"__invalid__": row}


def _parts_from_rest(content: Any) -> dict[str, Any] | None:
    if not isinstance(content, Mapping):
        return None
    parts = [
        {"text": part.get("text"), "thought": part.get("thought")}
        for part in content.get("parts") or []
        if isinstance(part, Mapping)
    ]
    return {"role": content.get("role"), "parts": parts}


def response_from_rest(raw: Mapping[str, Any]) -> types.GenerateContentResponse:
    """A ``GenerateContentResponse`` from the REST JSON of one answer (a line of a batch
    responses file), through the SDK's public pydantic model.

    Only the fields this provider reads are kept (candidates' text parts and finish reason,
    usage, prompt feedback, model version), so fields the SDK does not know (its models forbid
    extra fields) never make an answer unreadable.

    Raises:
        pydantic.ValidationError: a kept field has the wrong type.
    """
    found = raw.get("usageMetadata")
    usage: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    feedback = raw.get("promptFeedback")
    lean: dict[str, Any] = {
        "candidates": [
            {
                "content": _parts_from_rest(candidate.get("content")),
                "finish_reason": candidate.get("finishReason"),
            }
            for candidate in raw.get("candidates") or []
            if isinstance(candidate, Mapping)
        ],
        "usage_metadata": {
            "prompt_token_count": usage.get("promptTokenCount"),
            "candidates_token_count": usage.get("candidatesTokenCount"),
            "thoughts_token_count": usage.get("thoughtsTokenCount"),
        },
        "prompt_feedback": (
            {"block_reason": feedback.get("blockReason")} if isinstance(feedback, Mapping) else None
        ),
        "model_version": raw.get("modelVersion"),
        "response_id": raw.get("responseId"),
    }
    return types.GenerateContentResponse.model_validate(lean)


#: Gemini batch states (BATCH_STATE_* raw, JOB_STATE_* as the SDK maps them) -> normalised.
BATCH_STATE_MAP = {
    "BATCH_STATE_UNSPECIFIED": "pending",
    "BATCH_STATE_PENDING": "pending",
    "BATCH_STATE_RUNNING": "running",
    "BATCH_STATE_SUCCEEDED": "succeeded",
    "BATCH_STATE_FAILED": "failed",
    "BATCH_STATE_CANCELLED": "cancelled",
    "BATCH_STATE_EXPIRED": "expired",
    "JOB_STATE_UNSPECIFIED": "pending",
    "JOB_STATE_QUEUED": "pending",
    "JOB_STATE_PENDING": "pending",
    "JOB_STATE_RUNNING": "running",
    "JOB_STATE_CANCELLING": "running",
    "JOB_STATE_PAUSED": "running",
    "JOB_STATE_UPDATING": "running",
    "JOB_STATE_SUCCEEDED": "succeeded",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "succeeded",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "expired",
}


def batch_state(raw_state: str) -> str:
    """Normalised state of a Gemini batch state string; unknown states count as running (so
    the caller polls again rather than acting on a state it does not understand)."""
    return BATCH_STATE_MAP.get(raw_state, "running")


def batch_name(batch_id: str) -> str:
    """``batches/ID`` (the SDK needs the prefix) from ``ID`` or ``batches/ID``."""
    return batch_id if batch_id.startswith("batches/") else f"batches/{batch_id}"


def as_count(value: Any) -> int:
    """An int64 count as Google sends it (a JSON string or number); 0 when absent."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


_FRACTION_RE = re.compile(r"(\.\d{1,6})\d*")


def as_time(value: Any) -> datetime | None:
    """An RFC 3339 time as Google sends it (``2026-12-03T10:00:00.123456789Z``); None when
    absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(
            _FRACTION_RE.sub(r"\1", value, count=1).replace("Z", "+00:00")
        )
    except ValueError:
        return None
