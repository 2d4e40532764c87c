"""The Gemini generateContent wire format: what a request asks for (its response schema, its
prompt texts) and the response JSON that answers it, and Google's error envelope. Pure functions;
:class:`~llm.emulators.gemini.GeminiEmulator` serves them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from llm.emulators.answers import compose_answer
from llm.emulators.schema import as_int, first_key

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def response_schema_of(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The response schema of a generateContent body and whether it is JSON Schema.

    Returns ``(schema, is_json_schema)``; ``(None, False)`` when the request has none.
    """
    config = first_key(body, "generationConfig", "generation_config") or {}
    if not isinstance(config, Mapping):
        return None, False
    schema = first_key(config, "responseJsonSchema", "response_json_schema")
    if isinstance(schema, Mapping):
        return dict(schema), True
    schema = first_key(config, "responseSchema", "response_schema")
    if isinstance(schema, Mapping):
        return dict(schema), False
    return None, False


def prompt_text_of(body: Mapping[str, Any]) -> tuple[str, str]:
    """(user text, system text) of a generateContent body: all text parts joined."""

    def texts(content: Any) -> list[str]:
        if not isinstance(content, Mapping):
            return []
        parts = content.get("parts") or []
        return [str(p["text"]) for p in parts if isinstance(p, Mapping) and "text" in p]

    user: list[str] = []
    contents = body.get("contents") or []
    if isinstance(contents, Mapping):
        contents = [contents]
    for content in contents if isinstance(contents, list) else []:
        user.extend(texts(content))
    system = texts(first_key(body, "systemInstruction", "system_instruction"))
    return "\n".join(user), "\n".join(system)


def build_response(
    body: Mapping[str, Any], model: str, fault: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The 200 JSON answer to a generateContent ``body`` for ``model``, with an optional fault.

    Shape: ``{"candidates": [{"content": {"role": "model", "parts": [{"text"}]}, "finishReason",
    "index"}], "usageMetadata": {"promptTokenCount", "candidatesTokenCount", "totalTokenCount"},
    "modelVersion": model, "responseId"}``; token counts are ``len(text) // 4``. Status, latency
    and timeout faults are handled by the server, not here.
    """
    user_text, system_text = prompt_text_of(body)
    schema, _ = response_schema_of(body)
    config = first_key(body, "generationConfig", "generation_config") or {}
    mime = str(first_key(config, "responseMimeType", "response_mime_type") or "")
    answer = compose_answer(
        user_text=user_text,
        system_text=system_text,
        schema=schema,
        json_mode=mime == "application/json",
        max_tokens=as_int(first_key(config, "maxOutputTokens", "max_output_tokens"), 0),
        fault=fault,
    )
    response_id = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    base: dict[str, Any] = {"modelVersion": model, "responseId": response_id}

    def usage(output_tokens: int) -> dict[str, int]:
        return {
            "promptTokenCount": answer.prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": answer.prompt_tokens + output_tokens,
        }

    if answer.kind == "empty":
        return {"candidates": [], "usageMetadata": usage(0), **base}
    if answer.kind == "blocked":
        ratings = [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
        ]
        if answer.block_reason:
            return {
                "promptFeedback": {"blockReason": answer.block_reason, "safetyRatings": ratings},
                "usageMetadata": usage(0),
                **base,
            }
        return {
            "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": ratings}],
            "usageMetadata": usage(0),
            **base,
        }
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": answer.text}]},
                "finishReason": "MAX_TOKENS" if answer.kind == "max_tokens" else "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": usage(answer.output_tokens),
        **base,
    }


def google_error(
    code: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Google's error envelope ``{"error": {"code", "message", "status"[, "details"]}}``."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": _STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def retry_info(seconds: float) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds:g}s"}
