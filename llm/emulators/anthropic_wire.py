"""The Anthropic Messages wire format: what a request asks for (its prompt texts, the tool it
forces) and the ``message`` JSON that answers it, and Anthropic's error types. Pure functions;
:class:`~llm.emulators.anthropic.AnthropicEmulator` serves them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm.emulators.answers import compose_answer
from llm.emulators.schema import as_int
from llm.emulators.transport import short_hash

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(code: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    return _ERROR_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, Mapping) and block.get("type") == "text"
        )
    return str(content or "")


def message_texts(body: Mapping[str, Any]) -> tuple[str, str]:
    """(user text, system text) of a messages body (``system`` string or text blocks)."""
    user = [
        _text_of(message.get("content"))
        for message in body.get("messages") or []
        if isinstance(message, Mapping) and message.get("role") == "user"
    ]
    return "\n".join(user), _text_of(body.get("system"))


def forced_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The tool the model must call: the one named by ``tool_choice`` (type ``tool``), or the
    first tool for ``any`` / ``auto``; None without tools or with ``tool_choice: none``."""
    tools = [tool for tool in body.get("tools") or [] if isinstance(tool, Mapping)]
    if not tools:
        return None
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "none":
        return None
    if kind == "tool":
        return next((tool for tool in tools if tool.get("name") == choice.get("name")), None)
    return tools[0]


def message_response(
    body: Mapping[str, Any], fault: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``message`` JSON answering ``body``, with an optional content fault.

    Shape: ``{"id", "type": "message", "role": "assistant", "model", "content": [blocks],
    "stop_reason", "stop_sequence": null, "usage": {"input_tokens", "output_tokens", ...}}``;
    token counts are ``len(text) // 4``.
    """
    user_text, system_text = message_texts(body)
    tool = forced_tool(body)
    schema = tool.get("input_schema") if tool else None
    answer = compose_answer(
        user_text=user_text,
        system_text=system_text,
        schema=schema if isinstance(schema, Mapping) else None,
        json_mode=False,
        max_tokens=as_int(body.get("max_tokens"), 0),
        fault=fault,
    )
    ident = short_hash(body)
    content: list[dict[str, Any]] = []
    stop = "end_turn"
    if answer.kind == "blocked":
        stop = "refusal"
    elif answer.kind == "max_tokens":
        stop = "max_tokens"
        if tool is not None:
            # The tool input was still being generated: what arrived is incomplete.
            content = [{"type": "tool_use", "id": f"toolu_{ident}", "name": tool["name"]}]
            content[0]["input"] = {}
        else:
            content = [{"type": "text", "text": answer.text}]
    elif answer.kind == "ok":
        if tool is not None and answer.value is not None:
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{ident}",
                    "name": tool["name"],
                    "input": answer.value,
                }
            ]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": answer.text}]
    return {
        "id": f"msg_{ident}",
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model") or ""),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": answer.prompt_tokens,
            "output_tokens": answer.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
