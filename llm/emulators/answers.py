"""The deterministic answer to a prompt: :func:`compose_answer` builds it with the shared
:class:`~llm.emulators.builder.AnswerBuilder` and applies a content fault; each emulator wraps the
provider-neutral :class:`Answer` in its own wire format."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm.emulators.builder import AnswerBuilder
from llm.emulators.faults import DEFAULT_FAKE_GENE, DEFAULT_FAKE_PATHWAY
from llm.emulators.prompt import PromptData
from llm.emulators.schema import as_int, first_key, is_judge_schema, resolve_schema


@dataclass(frozen=True)
class Answer:
    """A provider-neutral answer; each emulator wraps it in its own wire format.

    Attributes:
        kind: ``ok`` (text, possibly fenced or truncated by a fault), ``max_tokens`` (text cut at
            the token budget), ``empty`` (no answer at all) or ``blocked`` (withheld by a filter).
        text: the answer text ("" for empty and blocked).
        value: the answer object when ``text`` is its complete, unaltered JSON, else None.
        prompt_tokens, output_tokens: estimates, ``len(text) // 4`` (prompt at least 1).
        fault: the content fault kind applied, or None.
        block_reason: for ``blocked``, the fault's ``block_reason`` ("" when not given).
    """

    kind: str
    text: str
    value: Any
    prompt_tokens: int
    output_tokens: int
    fault: str | None = None
    block_reason: str = ""


def prompt_tokens_of(user_text: str, system_text: str) -> int:
    """The emulators' prompt token count: ``(len(user) + len(system)) // 4``, at least 1 (the
    usage every answer reports, exact, so tests can assert it)."""
    return max(1, (len(user_text) + len(system_text)) // 4)


def compose_answer(
    *,
    user_text: str,
    system_text: str,
    schema: Mapping[str, Any] | None,
    json_mode: bool,
    max_tokens: int,
    fault: Mapping[str, Any] | None = None,
) -> Answer:
    """The deterministic answer to a prompt, with an optional content fault applied.

    Args:
        user_text, system_text: the prompt texts (the cluster data is looked for in both).
        schema: the requested output schema (JSON Schema or Gemini's OpenAPI subset) or None.
        json_mode: True when JSON output was asked for without a schema; with neither, the answer
            is plain summary prose.
        max_tokens: the request's output budget in tokens (0 = none); an answer longer than
            ``max_tokens * 4`` characters is cut, as the vendors do.
        fault: a normalised fault (see :data:`~llm.emulators.faults.FAULT_KINDS`); non-content
            kinds are ignored.
    """
    prompt_tokens = prompt_tokens_of(user_text, system_text)
    kind = str(fault["kind"]) if fault else ""
    if kind == "empty":
        return Answer("empty", "", None, prompt_tokens, 0, kind)
    if kind == "safety":
        reason = str((fault or {}).get("block_reason") or "")
        return Answer("blocked", "", None, prompt_tokens, 0, kind, reason)

    data = PromptData.from_prompt(user_text + "\n" + system_text)
    judge = is_judge_schema(schema)
    verdict_fault = fault if fault and kind == "verdict" else {}
    verdict = str(verdict_fault.get("verdict", "accept"))
    percent = verdict_fault.get("grounding_percent")
    builder = AnswerBuilder(
        data,
        judge=judge,
        verdict=verdict,
        reasoning=verdict_fault.get("reasoning"),
        corrections=verdict_fault.get("corrections"),
        hard_failures=verdict_fault.get("hard_failures"),
        grounding_percent=as_int(percent, 0) if percent is not None else None,
    )
    answer = builder.build(schema)
    if fault and isinstance(answer, dict) and kind in ("hallucinated_gene", "hallucinated_pathway"):
        _inject(answer, schema or {}, fault)

    value: Any = answer
    if schema is None and not json_mode:
        text = builder.summary_text()
        value = None
    else:
        text = json.dumps(answer, ensure_ascii=False)
    result = "ok"
    output_tokens = len(text) // 4
    if kind == "fenced":
        text = f"```json\n{text}\n```"
        output_tokens = len(text) // 4
        value = None
    elif kind == "truncated":
        text = text[: len(text) // 2]
        output_tokens = len(text) // 4
        value = None
    elif kind == "max_tokens" or (max_tokens and output_tokens > max_tokens):
        # As the vendors do: generation stops mid-answer when the token budget is spent.
        cut = min(len(text) // 2, max_tokens * 4) if max_tokens else len(text) // 2
        text = text[:cut]
        output_tokens = max_tokens or len(text) // 4
        result = "max_tokens"
        value = None
    return Answer(result, text, value, prompt_tokens, output_tokens, kind or None)


def _inject(answer: dict[str, Any], schema: Mapping[str, Any], fault: Mapping[str, Any]) -> None:
    """Put a hallucinated gene or pathway into an answer, keeping it schema-valid."""
    if fault["kind"] == "hallucinated_gene":
        symbol = str(fault.get("symbol") or DEFAULT_FAKE_GENE)
        _append_text(answer, schema, f" {symbol} is also part of this module.")
        _append_item(answer, schema, "tags", symbol)
    else:
        name = str(fault.get("name") or DEFAULT_FAKE_PATHWAY)
        if not _append_item(answer, schema, "pathways", name):
            _append_text(answer, schema, f" It is linked to {name}.")


def _property_schema(schema: Mapping[str, Any], key: str) -> dict[str, Any]:
    properties = resolve_schema(schema, schema).get("properties") or {}
    return resolve_schema(properties.get(key) or {}, schema)


def _append_text(answer: dict[str, Any], schema: Mapping[str, Any], addition: str) -> None:
    keys = [k for k in ("summary", "description", "text") if isinstance(answer.get(k), str)]
    keys = keys or [k for k, v in answer.items() if isinstance(v, str) and k != "verdict"]
    if not keys:
        return
    key = keys[0]
    prop = _property_schema(schema, key)
    high = first_key(prop, "maxLength", "max_length")
    base = answer[key]
    if high is not None and len(base) + len(addition) > int(high):
        base = base[: max(0, int(high) - len(addition))].rstrip()
    answer[key] = base + addition


def _append_item(answer: dict[str, Any], schema: Mapping[str, Any], key: str, value: str) -> bool:
    if not isinstance(answer.get(key), list):
        return False
    items = answer[key]
    prop = _property_schema(schema, key)
    high = first_key(prop, "maxItems", "max_items")
    if high is not None and len(items) >= int(high) and items:
        items[-1] = value
    else:
        items.append(value)
    return True
