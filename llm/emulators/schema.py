"""Reading request JSON tolerantly: numbers that may be anything, schema keywords in either
spelling, ``$ref`` / ``allOf`` resolution and type inference over JSON Schema or Gemini's OpenAPI
subset, and telling a judge request's schema (one with a ``verdict`` property) from a generate
request's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def as_int(value: Any, default: int) -> int:
    """``int(value)``, or ``default`` when it is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def as_float(value: Any, default: float) -> float:
    """``float(value)``, or ``default`` when it is not a number or NaN."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(result) else result


def first_key(schema: Mapping[str, Any], *names: str) -> Any:
    """First present keyword among camelCase / snake_case spellings (the SDK sends snake_case)."""
    for name in names:
        if name in schema:
            return schema[name]
    return None


def resolve_schema(schema: Any, root: Mapping[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` (``#/$defs/X``, ``#/definitions/X``) and merge ``allOf``."""
    if not isinstance(schema, Mapping):
        return {}
    seen = 0
    current: dict[str, Any] = dict(schema)
    while "$ref" in current and seen < 20:
        seen += 1
        ref = str(current.pop("$ref"))
        target: Any = root
        for piece in ref.lstrip("#/").split("/"):
            target = target.get(piece, {}) if isinstance(target, Mapping) else {}
        current = {**dict(target), **current}
    if isinstance(current.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in current.pop("allOf"):
            merged.update(resolve_schema(part, root))
        current = {**merged, **current}
    return current


def schema_types(schema: Mapping[str, Any]) -> list[str]:
    """Lowercase type names of a schema; inferred when ``type`` is absent."""
    raw = schema.get("type")
    if isinstance(raw, list):
        return [str(t).lower() for t in raw]
    if isinstance(raw, str):
        return [raw.lower()]
    if "properties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        first = enum[0]
        if isinstance(first, bool):
            return ["boolean"]
        if isinstance(first, int):
            return ["integer"]
        if isinstance(first, float):
            return ["number"]
    return ["string"]


def is_judge_schema(schema: Mapping[str, Any] | None) -> bool:
    """True when the (resolved) top-level schema has a ``verdict`` property."""
    if not schema:
        return False
    resolved = resolve_schema(schema, schema)
    properties = resolved.get("properties")
    return isinstance(properties, Mapping) and "verdict" in properties


def schema_target(schema: Mapping[str, Any] | None) -> str:
    """``judge`` for a schema with a ``verdict`` property, else ``generate``."""
    return "judge" if is_judge_schema(schema) else "generate"
