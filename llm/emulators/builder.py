"""The shared answer builder: :class:`AnswerBuilder` walks a request's output schema (JSON
Schema or Gemini's OpenAPI subset) and fills it from the prompt's cluster data, so the same prompt
and schema get the same answer on every emulator, in realtime and in batch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from llm.emulators.prompt import PromptData, join_words, unique_names
from llm.emulators.schema import as_float, as_int, first_key, resolve_schema, schema_types

#: Rubric score and grounding percentage an emulated judge gives for each verdict.
_VERDICT_SCORE = {"accept": 2, "accept_with_corrections": 2, "low_confidence": 1, "reject": 0}
_VERDICT_GROUNDING = {
    "accept": 95,
    "accept_with_corrections": 85,
    "low_confidence": 65,
    "reject": 30,
}

_MAX_DEPTH = 8
_UNCHANGED: Any = object()


class AnswerBuilder:
    """Builds a schema-valid answer object from a schema and the prompt's cluster data.

    Phenotype answers name no member gene (the product's phenotype rule), fill
    ``inheritance_patterns`` with the supported modes, ``notably_absent`` with depleted terms and
    ``syndromicity`` with the figures' call, so they pass the product's own validation.

    Args:
        data: facts parsed from the prompt.
        judge: True for judge requests (schema with a "verdict" property).
        verdict: judge verdict to give (see :data:`~llm.emulators.faults.VERDICTS`).
        reasoning: judge reasoning to give instead of the default 2-3 sentences.
        corrections: ``corrected_*`` field -> value for the judge answer (others are null).
        hard_failures: the judge's hard failures (default none).
        grounding_percent: the judge's grounding percentage (default by verdict).
    """

    def __init__(
        self,
        data: PromptData,
        *,
        judge: bool = False,
        verdict: str = "accept",
        reasoning: str | None = None,
        corrections: Mapping[str, Any] | None = None,
        hard_failures: Sequence[str] | None = None,
        grounding_percent: int | None = None,
    ) -> None:
        self.data = data
        self.judge = judge
        self.verdict = verdict
        self.reasoning = reasoning
        self.corrections = dict(corrections or {})
        self.hard_failures = list(hard_failures or [])
        self.grounding_percent = grounding_percent

    # -- public --------------------------------------------------------------------------------

    def build(self, schema: Mapping[str, Any] | None) -> Any:
        """A value valid for ``schema`` (an object for the usual object schema)."""
        if not schema:
            return {"text": self.summary_text()}
        return self._fill(schema, schema, name="", index=0, depth=0)

    def summary_text(self) -> str:
        """Two or three sentences grounded in the cluster's members and top terms."""
        data = self.data
        if not data.found:
            return (
                "This cluster groups entities that share annotations. No enrichment data was "
                "provided with the request, so no specific terms are named."
            )
        members = data.members[:5] if data.cluster_type != "phenotype" else []
        names = data.term_names
        size = data.size or len(data.members)
        noun = "phenotype" if data.cluster_type == "phenotype" else "functional"
        subject = f"This {noun} cluster of {size} genes"
        if members:
            subject += f", including {join_words(members)},"
        sentences = []
        if names:
            fdr = as_float(data.terms[0].get("fdr"), 1.0)
            sentences.append(f"{subject} is most strongly enriched for {names[0]}, FDR {fdr:.1e}.")
        else:
            sentences.append(f"{subject.rstrip(',')} has no enriched terms.")
        named = set(names[:3])
        if len(names) > 1:
            verb = "is characterised by" if noun == "phenotype" else "also points to"
            sentences.append(f"The cluster {verb} {join_words(names[1:3])}.")
        pathways = [name for name in data.pathway_names if name not in named]
        if pathways and noun != "phenotype":
            sentences.append(f"Pathway enrichment highlights {pathways[0]}.")
        return " ".join(sentences)

    def short_summary(self) -> str:
        """One compact sentence (for tight maxLength limits): size, two members, top term."""
        data = self.data
        if not data.found:
            return "A cluster of entities with shared annotations."
        size = data.size or len(data.members)
        who = f" ({join_words(data.members[:2])})" if data.members else ""
        names = data.term_names
        if not names:
            return f"{size} genes{who} without enriched terms."
        return f"{size} genes{who} enriched for {names[0]}."

    def judge_reasoning(self) -> str:
        """The judge's 2-3 sentence reasoning for ``self.verdict``."""
        if self.reasoning:
            return self.reasoning
        names = self.data.term_names[:2]
        members = self.data.members[:3]
        if self.verdict == "reject":
            return (
                "The summary names genes or pathways that are not in the cluster data. "
                "It is not supported by the enrichment table and should be regenerated."
            )
        if self.verdict == "low_confidence":
            return (
                "The summary is broadly consistent with the enrichment table, but some claims go "
                "beyond the top terms. The stated confidence is stronger than the FDR values "
                "support."
            )
        if not self.data.found:
            return (
                "The summary is consistent with the information provided. "
                "No unsupported genes, pathways or claims were found."
            )
        return (
            f"The summary is grounded in the enrichment table: it names only cluster members "
            f"({join_words(members) or 'none named'}) and its themes match the top terms "
            f"({'; '.join(names) or 'none'}). Listed pathways are copied verbatim from the "
            f"enriched terms and the stated confidence fits the FDR values."
        )

    # -- schema walk ---------------------------------------------------------------------------

    def _fill(
        self, raw: Mapping[str, Any], root: Mapping[str, Any], *, name: str, index: int, depth: int
    ) -> Any:
        schema = resolve_schema(raw, root)
        if "const" in schema:
            return schema["const"]
        options = first_key(schema, "anyOf", "any_of", "oneOf", "one_of")
        if isinstance(options, list) and options:
            resolved = [resolve_schema(option, root) for option in options]
            concrete = [option for option in resolved if schema_types(option) != ["null"]]
            if not concrete or depth >= _MAX_DEPTH:
                return None
            return self._fill(concrete[0], root, name=name, index=index, depth=depth + 1)
        types_ = schema_types(schema)
        kind = next((t for t in types_ if t != "null"), "null")
        if kind == "null":
            return None
        if depth >= _MAX_DEPTH and (schema.get("nullable") or "null" in types_):
            return None
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self._enum(enum, name)
        if kind == "object":
            return self._object(schema, root, index=index, depth=depth)
        if kind == "array":
            return self._array(schema, root, name=name, depth=depth)
        if kind == "boolean":
            return self._boolean(name)
        if kind in ("integer", "number"):
            return self._number(schema, name=name, index=index, integer=kind == "integer")
        return self._string(schema, name=name, index=index)

    def _object(
        self, schema: Mapping[str, Any], root: Mapping[str, Any], *, index: int, depth: int
    ) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        order = first_key(schema, "propertyOrdering", "property_ordering")
        keys = [k for k in order if k in properties] if isinstance(order, list) else []
        keys += [k for k in properties if k not in keys]
        required = set(schema.get("required") or [])
        result: dict[str, Any] = {}
        for key in keys:
            if depth + 1 >= _MAX_DEPTH and key not in required:
                continue
            special = self._special(str(key))
            if special is not _UNCHANGED:
                result[key] = special
                continue
            result[key] = self._fill(
                properties[key], root, name=str(key), index=index, depth=depth + 1
            )
        return result

    def _special(self, key: str) -> Any:
        """Fields whose value comes from the data or the verdict, not from the schema walk."""
        data = self.data
        if self.judge:
            if key.startswith("corrected_"):
                return self.corrections.get(key)
            if key == "corrections_made":
                return [f"{k.removeprefix('corrected_')} corrected" for k in self.corrections]
            if key == "hard_failures":
                return list(self.hard_failures)
            if key.startswith("score_"):
                return _VERDICT_SCORE.get(self.verdict, 2)
            if key == "grounding_percent":
                if self.grounding_percent is not None:
                    return self.grounding_percent
                return _VERDICT_GROUNDING.get(self.verdict, 95)
            return _UNCHANGED
        if key == "inheritance_patterns":
            return list(data.supported_modes)
        if key == "notably_absent":
            return data.depleted_names[:3]
        if key == "syndrome_hints":
            return []
        if key == "syndromicity" and data.syndromicity_call:
            return data.syndromicity_call
        return _UNCHANGED

    def _array(
        self, schema: Mapping[str, Any], root: Mapping[str, Any], *, name: str, depth: int
    ) -> list[Any]:
        low = as_int(first_key(schema, "minItems", "min_items"), 0)
        high_raw = first_key(schema, "maxItems", "max_items")
        high = as_int(high_raw, 10**6) if high_raw is not None else 10**6
        items = resolve_schema(schema.get("items") or {"type": "string"}, root)
        item_types = schema_types(items)
        lname = name.lower()
        if self.judge and _is_problem_name(lname) and self.verdict == "accept":
            wanted = 0
        elif "pathway" in lname:
            wanted = min(len(self.data.pathway_names), 5)
        elif "string" in item_types:
            wanted = min(3, len(self._string_pool(lname, 0, pad=False)))
        else:
            wanted = 3
        count = max(low, min(high, wanted))
        if depth + 1 >= _MAX_DEPTH:
            count = low
        if "string" in item_types and not first_key(items, "enum", "anyOf", "any_of"):
            pool = self._string_pool(lname, count)
            values = [self._fit(pool[i], items, name=lname) for i in range(count)]
            if schema.get("uniqueItems") or schema.get("unique_items"):
                values = _make_unique(values)
            return values
        return [
            self._fill(items, root, name=_singular(name), index=i, depth=depth + 1)
            for i in range(count)
        ]

    def _string_pool(self, lname: str, count: int, *, pad: bool = True) -> list[str]:
        """Strings for an array called ``lname``: from the data, padded to ``count`` if ``pad``."""
        data = self.data
        if "pathway" in lname:
            pool = data.pathway_names + [n for n in data.term_names if n not in data.pathway_names]
        elif "tag" in lname or "keyword" in lname:
            pool = data.theme_names(max_words=4)
        elif "theme" in lname:
            pool = data.theme_names()
        elif any(word in lname for word in ("gene", "member", "symbol", "entit")):
            pool = list(data.members)
        elif "term" in lname and "id" in lname:
            pool = unique_names(str(row.get("term_id", "")) for row in data.terms)
        elif any(word in lname for word in ("term", "phenotype", "process", "function")):
            pool = data.term_names
        elif any(word in lname for word in ("evidence", "reason", "strength", "finding")):
            pool = [
                f"{row['name']} is enriched (FDR {as_float(row.get('fdr'), 1.0):.1e})."
                for row in data.terms
            ]
        elif self.judge and _is_problem_name(lname):
            pool = ["none"]
        else:
            pool = data.theme_names()
        pool = [p for p in pool if p]
        if not pad:
            return pool
        if "tag" in lname or "theme" in lname:
            extra = [f"{self.data.cluster_type or 'gene'} cluster", "enrichment", "gene set"]
            pool += [e for e in extra if e not in pool]
        singular = _singular(lname).replace("_", " ") or "item"
        while len(pool) < count:
            pool.append(f"{singular} {len(pool) + 1}")
        return pool

    def _enum(self, enum: list[Any], name: str) -> Any:
        lname = name.lower()
        preferences: list[Any] = []
        if lname == "verdict" or lname.endswith("verdict"):
            preferences = [self.verdict]
        elif "confidence" in lname:
            preferences = [self._confidence_word(), "high", "medium", "low"]
        elif lname == "cluster_type":
            preferences = [self.data.cluster_type]
        for preferred in preferences:
            if preferred in enum:
                return preferred
        return enum[0]

    def _confidence_word(self) -> str:
        if self.judge:
            return {"accept": "high", "low_confidence": "medium"}.get(self.verdict, "low")
        if self.data.derived_confidence in ("high", "medium", "low"):
            return self.data.derived_confidence
        if not self.data.terms:
            return "low"
        fdr = as_float(self.data.terms[0].get("fdr"), 1.0)
        return "high" if fdr < 1e-3 else "medium" if fdr < 0.05 else "low"

    def _boolean(self, name: str) -> bool:
        good = self.verdict != "reject"
        # A check named after a problem ("has_hallucinations") is true when things are bad.
        return (not good) if _is_problem_name(name.lower()) else good

    def _number(
        self, schema: Mapping[str, Any], *, name: str, index: int, integer: bool
    ) -> int | float:
        lname = name.lower()
        term = self.data.terms[index] if index < len(self.data.terms) else {}
        minimum = first_key(schema, "minimum")
        maximum = first_key(schema, "maximum")
        value: float
        scored = any(w in lname for w in ("score", "confidence", "rating", "quality", "grounded"))
        # In a judge schema every bounded number is a rating of the summary.
        if scored or (self.judge and maximum is not None and "fdr" not in lname):
            if maximum is not None:
                top = float(maximum)
                bottom = float(minimum) if minimum is not None else 0.0
                value = {"accept": top, "low_confidence": (top + bottom) / 2}.get(
                    self.verdict if self.judge else "accept", bottom
                )
            else:
                value = 5 if integer else 0.9
        elif "fdr" in lname or "p_value" in lname or "pvalue" in lname:
            value = as_float(term.get("fdr"), 0.01)
        elif "overlap" in lname:
            value = as_int(term.get("overlap"), 1)
        elif "term_size" in lname:
            value = as_int(term.get("term_size"), 1)
        elif "members_total" in lname:
            value = self.data.members_total
        elif any(w in lname for w in ("size", "count", "n_members", "num")):
            value = self.data.size or len(self.data.members) or 1
        else:
            value = float(minimum) if minimum is not None else 1
        return _clamp(value, schema, integer)

    def _string(self, schema: Mapping[str, Any], *, name: str, index: int) -> str:
        lname = name.lower()
        data = self.data
        term = data.terms[index] if index < len(data.terms) else {}
        fmt = str(schema.get("format") or "").lower()
        text: str
        if fmt == "date-time":
            return "2025-01-01T00:00:00Z"
        if fmt == "date":
            return "2025-01-01"
        if fmt in ("uri", "url"):
            return "https://example.org/"
        if lname == "verdict" or lname.endswith("verdict"):
            text = self.verdict
        elif any(w in lname for w in ("reasoning", "rationale", "justification", "feedback")):
            text = self.judge_reasoning() if self.judge else self.summary_text()
        elif "confidence" in lname:
            text = self._confidence_word()
        elif lname == "cluster_type":
            text = data.cluster_type or "functional"
        elif lname in ("term_id", "id"):
            text = str(term.get("term_id") or f"TERM:{index + 1:07d}")
        elif lname == "category":
            text = str(term.get("category") or "category")
        elif lname in ("symbol", "gene", "member"):
            text = data.members[index] if index < len(data.members) else f"GENE{index + 1}"
        elif "pathway" in lname:
            pool = self._string_pool("pathways", index + 1)
            text = pool[index]
        elif "theme" in lname or "tag" in lname:
            text = self._string_pool(lname, index + 1)[index]
        elif lname in ("name", "term", "term_name", "title", "label", "headline"):
            text = str(term.get("name") or (data.term_names[:1] or ["cluster"])[0])
        elif lname in ("note", "notes", "comment", "comments"):
            text = self.judge_reasoning() if self.judge else self.summary_text()
        else:
            high = first_key(schema, "maxLength", "max_length")
            text = self.summary_text()
            if high is not None and len(text) > as_int(high, len(text)):
                text = self.short_summary()
        return self._fit(text, schema, name=lname)

    def _fit(self, text: str, schema: Mapping[str, Any], *, name: str) -> str:
        """Pad or cut ``text`` to the schema's minLength / maxLength (characters)."""
        low = as_int(first_key(schema, "minLength", "min_length"), 0)
        high_raw = first_key(schema, "maxLength", "max_length")
        if len(text) < low:
            extra = [self.summary_text(), *self.data.term_names, *self.data.members]
            for piece in extra:
                if len(text) >= low:
                    break
                if piece and piece not in text:
                    text = f"{text} {piece}".strip()
            while len(text) < low:
                text = f"{text} cluster".strip()
        if high_raw is not None:
            high = as_int(high_raw, len(text))
            if len(text) > high:
                cut = text[:high]
                # Prefer ending at a sentence, then at a word, to keep the text readable.
                stop = cut.rfind(". ")
                if stop >= max(low, 1) and stop + 1 <= high:
                    cut = cut[: stop + 1]
                elif " " in cut and cut.rfind(" ") >= low:
                    cut = cut[: cut.rfind(" ")]
                text = cut.rstrip() if len(cut.rstrip()) >= low else cut
        return text


def _is_problem_name(lname: str) -> bool:
    return any(
        word in lname
        for word in (
            "hallucinat",
            "error",
            "issue",
            "problem",
            "concern",
            "missing",
            "unsupported",
            "invented",
            "fabricat",
            "contradict",
            "invalid",
        )
    )


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


def _make_unique(values: list[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for i, value in enumerate(values):
        candidate = value
        while candidate in seen:
            candidate = f"{value} {i + 1}"
            i += 1
        seen.add(candidate)
        result.append(candidate)
    return result


def _clamp(value: float, schema: Mapping[str, Any], integer: bool) -> int | float:
    minimum = first_key(schema, "minimum")
    maximum = first_key(schema, "maximum")
    ex_min = first_key(schema, "exclusiveMinimum", "exclusive_minimum")
    ex_max = first_key(schema, "exclusiveMaximum", "exclusive_maximum")
    if isinstance(ex_min, int | float) and not isinstance(ex_min, bool) and value <= ex_min:
        value = ex_min + (1 if integer else 1e-6)
    if isinstance(ex_max, int | float) and not isinstance(ex_max, bool) and value >= ex_max:
        value = ex_max - (1 if integer else 1e-6)
    if minimum is not None and value < float(minimum):
        value = float(minimum)
    if maximum is not None and value > float(maximum):
        value = float(maximum)
    if integer:
        result = math.floor(value)
        if minimum is not None and result < float(minimum):
            result = math.ceil(float(minimum))
        return result
    return float(value)
