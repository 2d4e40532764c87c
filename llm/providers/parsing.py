"""Recovery of structured model output: text in, validated pydantic object out.

Models asked for JSON still answer with markdown fences, trailing commas, single quotes, prose
around the object, or JSON cut off mid-way. :func:`parse_structured` strips fences, tries a strict
parse, then lets ``json_repair`` fix the syntax, and always validates against the caller's pydantic
class: repair may fix syntax but never invents content, so an object missing required fields (the
usual result of repairing truncated output) still fails.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair
from pydantic import BaseModel, ValidationError

from llm.providers.base import ProviderError, T

# An opening fence with an optional language tag (```json, ```JSON, ~~~), the body, and an optional
# closing fence: truncated output often has the opening fence but no closing one.
_FENCE_RE = re.compile(
    r"^\s*(?:```|~~~)[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?"
    r"(?P<body>.*?)"
    r"(?:\r?\n?[ \t]*(?:```|~~~)\s*)?$",
    re.DOTALL,
)
# A fenced block somewhere inside prose ("Here is the JSON: ```json {...} ``` Hope it helps").
_INNER_FENCE_RE = re.compile(
    r"(?:```|~~~)[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n(?P<body>.*?)(?:```|~~~)", re.DOTALL
)
_MAX_ERRORS_IN_MESSAGE = 5


def strip_code_fences(text: str) -> str:
    """Return ``text`` without a surrounding markdown code fence.

    Handles ```` ```json\\n{...}\\n``` ````, fences without a language tag, a missing closing fence
    (truncated output) and a single fenced block embedded in prose. Text without fences is
    returned stripped of surrounding whitespace.
    """
    stripped = text.strip()
    if stripped.startswith(("```", "~~~")):
        match = _FENCE_RE.match(stripped)
        if match:
            return match.group("body").strip()
    inner = _INNER_FENCE_RE.search(stripped)
    if inner:
        return inner.group("body").strip()
    return stripped


def _describe(error: ValidationError) -> str:
    """One line naming the first few validation problems: ``loc: msg; loc: msg (+N more)``."""
    parts = []
    for item in error.errors()[:_MAX_ERRORS_IN_MESSAGE]:
        loc = ".".join(str(piece) for piece in item.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {item.get('msg', 'invalid')}")
    extra = error.error_count() - _MAX_ERRORS_IN_MESSAGE
    if extra > 0:
        parts.append(f"(+{extra} more)")
    return "; ".join(parts)


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The first complete, well-formed JSON object inside ``text``, or None."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _without_trailing_commas(text: str) -> str | None:
    """``text`` without the commas that precede a closing ``}`` or ``]`` (outside strings, only
    whitespace between), or None when it has none.

    The commonest syntax slip of models, removed exactly: json_repair (0.64) handles it too but
    may alter a string while doing so (``"\\u00e9["`` followed by a list came back as ``é["``).
    """
    out: list[str] = []
    in_string = escaped = changed = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "}]":
            last = len(out) - 1
            while last >= 0 and out[last] in " \t\r\n":
                last -= 1
            if last >= 0 and out[last] == ",":
                del out[last]
                changed = True
        out.append(char)
    return "".join(out) if changed else None


def _validate_value(value: Any, output_class: type[T]) -> T:
    """Validate a repaired JSON value in JSON mode (same coercion rules as a strict parse)."""
    return output_class.model_validate_json(json.dumps(value, allow_nan=False))


def _parse_structured(text: str, output_class: type[T]) -> T:
    """Parse model output ``text`` into an instance of ``output_class``, recovering what can be.

    Steps: strip markdown code fences; strict ``output_class.model_validate_json``; the first
    well-formed JSON object embedded in the fenced text or, failing that, in the whole text
    (prose around it, object repeated, a fence inside a string value); the same after removing
    trailing commas exactly (outside strings); then repair the syntax with ``json_repair``
    (quotes, unclosed brackets, prose around the object) and validate the repaired value. When
    the repaired value is a JSON array (e.g. the model repeated the object), its object elements
    are tried in order.

    Args:
        text: the raw model answer, expected to hold one JSON object.
        output_class: a pydantic ``BaseModel`` subclass the object must validate against.

    Returns:
        A validated ``output_class`` instance.

    Raises:
        ProviderError: ``kind="validation_failed"``, ``transient=False``, ``raw_text=text``, when
            the text is empty, not recoverable as JSON, or does not validate; the message names the
            validation problem (field path and reason). Nothing else is raised.
    """
    if not isinstance(text, str):
        raise ProviderError(
            f"model output is {type(text).__name__}, not text",
            transient=False,
            kind="validation_failed",
            raw_text="",
        )
    if not (isinstance(output_class, type) and issubclass(output_class, BaseModel)):
        raise ProviderError(
            f"output_class {output_class!r} is not a pydantic model",
            transient=False,
            kind="validation_failed",
            raw_text=text,
        )
    name = output_class.__name__
    candidate = strip_code_fences(text)
    if not candidate:
        raise ProviderError(
            f"model output is empty; expected a JSON object for {name}",
            transient=False,
            kind="validation_failed",
            raw_text=text,
        )

    first_problem = ""
    try:
        return output_class.model_validate_json(candidate)
    except ValidationError as error:
        first_problem = _describe(error)
    except (ValueError, RecursionError) as error:
        first_problem = f"{type(error).__name__}: {error}"

    # A complete object followed or preceded by other text ("Sure! {...}", or the object twice):
    # take the first well-formed object as written before any heuristic repair. The whole text
    # is tried too: a fence inside a JSON string ("summary": "use ```x```") cuts the fenced
    # candidate short, while the object itself is intact.
    for source in dict.fromkeys((candidate, text.strip())):
        embedded = _first_json_object(source)
        if embedded is None:
            continue
        try:
            return _validate_value(embedded, output_class)
        except (ValidationError, ValueError, TypeError, RecursionError):
            pass

    # Trailing commas are removed exactly before any heuristic repair.
    exact = _without_trailing_commas(candidate)
    embedded = _first_json_object(exact) if exact is not None else None
    if embedded is not None:
        try:
            return _validate_value(embedded, output_class)
        except (ValidationError, ValueError, TypeError, RecursionError):
            pass

    # json_repair is a heuristic parser over arbitrary text; anything it raises (recursion on
    # deeply nested input, odd escapes) means "not recoverable", never a crash of the caller.
    try:
        repaired: Any = json_repair.loads(candidate)
    except Exception as error:
        raise ProviderError(
            f"model output is not valid JSON for {name} and could not be repaired "
            f"({type(error).__name__}); strict parse: {first_problem}",
            transient=False,
            kind="validation_failed",
            raw_text=text,
        ) from None

    candidates: list[Any] = [repaired]
    if isinstance(repaired, list):
        candidates = [item for item in repaired if isinstance(item, dict)] or [repaired]
    if candidates == [""] or repaired is None:
        raise ProviderError(
            f"model output holds no JSON object for {name}; strict parse: {first_problem}",
            transient=False,
            kind="validation_failed",
            raw_text=text,
        )

    problem = ""
    for value in candidates:
        try:
            return _validate_value(value, output_class)
        except ValidationError as error:
            problem = problem or _describe(error)
        except (ValueError, TypeError, RecursionError) as error:
            problem = problem or f"{type(error).__name__}: {error}"
    raise ProviderError(
        f"model output failed validation against {name} after JSON repair: {problem}",
        transient=False,
        kind="validation_failed",
        raw_text=text,
    )


def parse_structured(text: str, output_class: type[T]) -> T:
    """Parse model output ``text`` into an instance of ``output_class``, recovering what can be
    (see :func:`_parse_structured` for the recovery steps). A result holding a NUL character is
    rejected: no database stores it in text, and it is never meaningful model output.

    Raises:
        ProviderError: ``kind="validation_failed"``, ``transient=False``, ``raw_text=text``.
    """
    parsed = _parse_structured(text, output_class)
    if _has_nul(parsed.model_dump()):
        raise ProviderError(
            "output contains a NUL character",
            transient=False,
            kind="validation_failed",
            raw_text=text,
        )
    return parsed


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False
