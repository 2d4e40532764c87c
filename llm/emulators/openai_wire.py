"""The OpenAI chat completions wire format: what a request asks for (its prompt texts, its
``response_format``) and the ``chat.completion`` JSON that answers it. Pure functions;
:class:`~llm.emulators.openai.OpenAIEmulator` serves them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from llm.emulators.answers import compose_answer
from llm.emulators.schema import as_int
from llm.emulators.transport import short_hash

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."


def chat_texts(body: Mapping[str, Any]) -> tuple[str, str]:
    """(user text, system text) of a chat completions body; system and developer messages
    count as system, text parts of content lists are joined."""
    user: list[str] = []
    system: list[str] = []
    for message in body.get("messages") or []:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, list):
            text = "\n".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, Mapping) and part.get("type") in ("text", "input_text")
            )
        else:
            text = str(content or "")
        (system if message.get("role") in ("system", "developer") else user).append(text)
    return "\n".join(user), "\n".join(system)


def chat_schema(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """(JSON schema or None, JSON mode) from ``response_format``."""
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping):
        return None, False
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return (dict(schema) if isinstance(schema, Mapping) else None), True
    return None, kind == "json_object"


def chat_completion(
    body: Mapping[str, Any], fault: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``chat.completion`` JSON answering ``body``, with an optional content fault.

    ``finish_reason`` is ``stop`` (also for ``empty``: content ""), ``length`` when cut at
    ``max_completion_tokens`` / ``max_tokens``, ``content_filter`` for a safety fault with a
    ``block_reason``; a plain safety fault is a refusal (``message.refusal``, content null).
    Token counts are ``len(text) // 4``.
    """
    user_text, system_text = chat_texts(body)
    schema, json_mode = chat_schema(body)
    max_tokens = as_int(body.get("max_completion_tokens") or body.get("max_tokens"), 0)
    answer = compose_answer(
        user_text=user_text,
        system_text=system_text,
        schema=schema,
        json_mode=json_mode,
        max_tokens=max_tokens,
        fault=fault,
    )
    content: str | None = answer.text
    refusal: str | None = None
    finish = "stop"
    if answer.kind == "max_tokens":
        finish = "length"
    elif answer.kind == "blocked":
        content = None
        if answer.block_reason:
            finish = "content_filter"
        else:
            refusal = REFUSAL_TEXT
    return {
        "id": f"chatcmpl-{short_hash(body)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or ""),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": refusal,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.prompt_tokens + answer.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_emulator",
        "service_tier": "default",
    }
