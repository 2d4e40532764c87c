"""A local Gemini Developer API server for tests and benchmarks, with fault injection.

It is a real HTTP server (stdlib ``ThreadingHTTPServer`` in a background thread) speaking
``POST /v1beta/models/{model}:generateContent`` exactly as google-genai 3.x sends it (see
``/work/shared/docs/provider-wire-reference.md``), so the real SDK is exercised end to end.

Answers are schema-valid JSON built from the request itself: the ``responseSchema`` (Gemini's
OpenAPI subset, as the SDK sends it for a pydantic class) or ``responseJsonSchema`` (JSON Schema)
is walked, and fields are filled from the ``<cluster_data>{...}</cluster_data>`` block of the prompt
(real member symbols, verbatim term and pathway names). Judge requests (a schema with a
``verdict`` property) get a verdict, all-true checks and a 2-3 sentence reasoning. The same request
always gets the same answer (no randomness), so golden tests can compare outputs.

Faults are scripted FIFO, one consumed per matching request, in-process
(:meth:`GeminiEmulator.add_fault`) or over HTTP (``POST /_control/faults``), see
:data:`FAULT_KINDS`. A default latency, a server-side rate limit (``rpm`` per ``window`` seconds,
answered with 429 + Retry-After) and a thread-safe request log complete the picture.

Usage::

    with GeminiEmulator(latency=0.0) as emu:
        provider = GeminiProvider(api_key="k", base_url=emu.url)
        emu.add_fault("status", code=429, retry_after=7)
        ...
        assert len(emu.request_log()) == 2
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from llm.context import PATHWAY_CATEGORIES

logger = logging.getLogger(__name__)

#: Fault kinds and their parameters (all optional unless noted):
#:   latency {seconds}: extra delay before answering.
#:   status {code: 400|401|403|404|429|500|503|..., retry_after (seconds, Retry-After header),
#:          retry_delay (seconds, google.rpc.RetryInfo detail), message}: an error answer.
#:   timeout {seconds=10}: sleep longer than the client waits, then answer normally.
#:   fenced: valid JSON wrapped in a ```json fence.  truncated: JSON cut in half (finish STOP).
#:   hallucinated_gene {symbol="FAKEGENE1"}: a non-member symbol in the summary text and tags.
#:   hallucinated_pathway {name}: a pathway name that is not among the enriched terms.
#:   empty: no candidates.  safety {block_reason}: finishReason SAFETY and no text (or, with
#:          block_reason, a blocked prompt: promptFeedback.blockReason and no candidates).
#:   max_tokens: finishReason MAX_TOKENS with truncated text.
#:   verdict {verdict: accept|low_confidence|reject, reasoning}: judge requests only.
FAULT_KINDS = frozenset(
    {
        "latency",
        "status",
        "timeout",
        "fenced",
        "truncated",
        "hallucinated_gene",
        "hallucinated_pathway",
        "empty",
        "safety",
        "max_tokens",
        "verdict",
    }
)
#: Which requests a fault applies to; judge requests have a schema with a "verdict" property.
FAULT_TARGETS = frozenset({"generate", "judge", "any"})
VERDICTS = ("accept", "low_confidence", "reject")

DEFAULT_FAKE_GENE = "FAKEGENE1"
DEFAULT_FAKE_PATHWAY = "Imaginary Neuronal Signaling Pathway WP99999"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GENERATE_PATH_RE = re.compile(r"^/(v1beta|v1alpha|v1)/models/([^/:]+):generateContent$")
_CLUSTER_DATA_RE = re.compile(r"<cluster_data>(.*?)</cluster_data>", re.DOTALL)
_SUMMARY_RE = re.compile(r"<summary>(.*?)</summary>", re.DOTALL)
_TERM_ID_NOISE_RE = re.compile(
    r"\s*\((?:GO|HP|MP|R-HSA|WP)[:\-][^)]*\)|\s+WP\d+$|\s+R-HSA-\d+$|\s+HP:\d+$"
)
_MAX_DEPTH = 8
_UNCHANGED: Any = object()


# --------------------------------------------------------------------------------------------
# Prompt data
# --------------------------------------------------------------------------------------------


class PromptData:
    """The cluster facts found in a prompt.

    Attributes:
        cluster_type: "functional" or "phenotype" ("" when unknown).
        size: cluster size (entities); members_total: members before any prompt truncation.
        members: member symbols in prompt order.
        terms: ``{"category","term_id","name","fdr","overlap","term_size"}`` dicts sorted by FDR.
        summary: the decoded ``<summary>`` JSON of a judge prompt, or None.
    """

    def __init__(self, cluster: Mapping[str, Any] | None, summary: Any = None) -> None:
        cluster = cluster or {}
        self.found = bool(cluster)
        self.cluster_type = str(cluster.get("cluster_type") or "")
        members = cluster.get("members") or []
        self.members: list[str] = [str(m) for m in members if isinstance(m, str | int)]
        self.size = _as_int(cluster.get("size"), len(self.members))
        self.members_total = _as_int(cluster.get("members_total"), self.size)
        terms: list[dict[str, Any]] = []
        raw_terms = cluster.get("terms") or {}
        if isinstance(raw_terms, Mapping):
            for category, rows in raw_terms.items():
                if not isinstance(rows, list):
                    continue
                for row in rows:
                    if isinstance(row, Mapping) and row.get("name"):
                        terms.append({**row, "category": str(category)})
        elif isinstance(raw_terms, list):
            terms = [dict(row) for row in raw_terms if isinstance(row, Mapping) and row.get("name")]
        terms.sort(key=lambda row: _as_float(row.get("fdr"), 1.0))
        self.terms = terms
        self.summary = summary if isinstance(summary, Mapping) else None

    @classmethod
    def from_prompt(cls, text: str) -> PromptData:
        """Parse ``<cluster_data>`` (and ``<summary>``) JSON blocks out of ``text``; tolerant."""
        cluster = _load_block(_CLUSTER_DATA_RE, text)
        summary = _load_block(_SUMMARY_RE, text)
        return cls(cluster if isinstance(cluster, Mapping) else None, summary)

    @property
    def term_names(self) -> list[str]:
        """Distinct term names, most significant first."""
        return _unique(str(row["name"]) for row in self.terms)

    @property
    def pathway_names(self) -> list[str]:
        """Distinct names of pathway-category terms (WikiPathways, Reactome, KEGG, *Pathway*)."""
        return _unique(
            str(row["name"])
            for row in self.terms
            if row.get("category") in PATHWAY_CATEGORIES
            or "pathway" in str(row["category"]).lower()
        )

    def theme_names(self, max_words: int = 0) -> list[str]:
        """Short lowercase term names without ids; at most ``max_words`` words if > 0."""
        themes = []
        for name in self.term_names:
            theme = _TERM_ID_NOISE_RE.sub("", name).strip().lower()
            theme = re.sub(r"\s+", " ", theme)
            if max_words > 0:
                theme = " ".join(theme.split()[:max_words])
            if theme:
                themes.append(theme)
        return _unique(themes)


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _as_float(value: Any, default: float) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(result) else result


def _unique(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for value in values:
        key = value.lower()
        if value and key not in seen:
            seen.add(key)
            result.append(value)
    return result


def _load_block(pattern: re.Pattern[str], text: str) -> Any:
    match = pattern.search(text)
    if not match:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def _join(items: list[str]) -> str:
    """English list: "A", "A and B", "A, B and C"."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------------------------
# Schema walking
# --------------------------------------------------------------------------------------------


def _kw(schema: Mapping[str, Any], *names: str) -> Any:
    """First present keyword among camelCase / snake_case spellings (the SDK sends snake_case)."""
    for name in names:
        if name in schema:
            return schema[name]
    return None


def _resolve(schema: Any, root: Mapping[str, Any]) -> dict[str, Any]:
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
            merged.update(_resolve(part, root))
        current = {**merged, **current}
    return current


def _types(schema: Mapping[str, Any]) -> list[str]:
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


def response_schema_of(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The response schema of a generateContent body and whether it is JSON Schema.

    Returns ``(schema, is_json_schema)``; ``(None, False)`` when the request has none.
    """
    config = _kw(body, "generationConfig", "generation_config") or {}
    if not isinstance(config, Mapping):
        return None, False
    schema = _kw(config, "responseJsonSchema", "response_json_schema")
    if isinstance(schema, Mapping):
        return dict(schema), True
    schema = _kw(config, "responseSchema", "response_schema")
    if isinstance(schema, Mapping):
        return dict(schema), False
    return None, False


def is_judge_schema(schema: Mapping[str, Any] | None) -> bool:
    """True when the (resolved) top-level schema has a ``verdict`` property."""
    if not schema:
        return False
    resolved = _resolve(schema, schema)
    properties = resolved.get("properties")
    return isinstance(properties, Mapping) and "verdict" in properties


class AnswerBuilder:
    """Builds a schema-valid answer object from a schema and the prompt's cluster data.

    Args:
        data: facts parsed from the prompt.
        judge: True for judge requests (schema with a "verdict" property).
        verdict: judge verdict to give (accept | low_confidence | reject).
        reasoning: judge reasoning to give instead of the default 2-3 sentences.
    """

    def __init__(
        self,
        data: PromptData,
        *,
        judge: bool = False,
        verdict: str = "accept",
        reasoning: str | None = None,
    ) -> None:
        self.data = data
        self.judge = judge
        self.verdict = verdict
        self.reasoning = reasoning

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
        members = data.members[:5]
        names = data.term_names
        size = data.size or len(data.members)
        noun = "phenotype" if data.cluster_type == "phenotype" else "functional"
        subject = f"This {noun} cluster of {size} genes"
        if members:
            subject += f", including {_join(members)},"
        sentences = []
        if names:
            fdr = _as_float(data.terms[0].get("fdr"), 1.0)
            sentences.append(f"{subject} is most strongly enriched for {names[0]}, FDR {fdr:.1e}.")
        else:
            sentences.append(f"{subject.rstrip(',')} has no enriched terms.")
        named = set(names[:3])
        if len(names) > 1:
            verb = "is characterised by" if noun == "phenotype" else "also points to"
            sentences.append(f"The cluster {verb} {_join(names[1:3])}.")
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
        who = f" ({_join(data.members[:2])})" if data.members else ""
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
            f"({_join(members) or 'none named'}) and its themes match the top terms "
            f"({'; '.join(names) or 'none'}). Listed pathways are copied verbatim from the "
            f"enriched terms and the stated confidence fits the FDR values."
        )

    # -- schema walk ---------------------------------------------------------------------------

    def _fill(
        self, raw: Mapping[str, Any], root: Mapping[str, Any], *, name: str, index: int, depth: int
    ) -> Any:
        schema = _resolve(raw, root)
        if "const" in schema:
            return schema["const"]
        options = _kw(schema, "anyOf", "any_of", "oneOf", "one_of")
        if isinstance(options, list) and options:
            resolved = [_resolve(option, root) for option in options]
            concrete = [option for option in resolved if _types(option) != ["null"]]
            if not concrete or depth >= _MAX_DEPTH:
                return None
            return self._fill(concrete[0], root, name=name, index=index, depth=depth + 1)
        types_ = _types(schema)
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
        order = _kw(schema, "propertyOrdering", "property_ordering")
        keys = [k for k in order if k in properties] if isinstance(order, list) else []
        keys += [k for k in properties if k not in keys]
        required = set(schema.get("required") or [])
        result: dict[str, Any] = {}
        for key in keys:
            if depth + 1 >= _MAX_DEPTH and key not in required:
                continue
            result[key] = self._fill(
                properties[key], root, name=str(key), index=index, depth=depth + 1
            )
        return result

    def _array(
        self, schema: Mapping[str, Any], root: Mapping[str, Any], *, name: str, depth: int
    ) -> list[Any]:
        low = _as_int(_kw(schema, "minItems", "min_items"), 0)
        high_raw = _kw(schema, "maxItems", "max_items")
        high = _as_int(high_raw, 10**6) if high_raw is not None else 10**6
        items = _resolve(schema.get("items") or {"type": "string"}, root)
        item_types = _types(items)
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
        if "string" in item_types and not _kw(items, "enum", "anyOf", "any_of"):
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
            pool = _unique(str(row.get("term_id", "")) for row in data.terms)
        elif any(word in lname for word in ("term", "phenotype", "process", "function")):
            pool = data.term_names
        elif any(word in lname for word in ("evidence", "reason", "strength", "finding")):
            pool = [
                f"{row['name']} is enriched (FDR {_as_float(row.get('fdr'), 1.0):.1e})."
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
        if not self.data.terms:
            return "low"
        fdr = _as_float(self.data.terms[0].get("fdr"), 1.0)
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
        minimum = _kw(schema, "minimum")
        maximum = _kw(schema, "maximum")
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
            value = _as_float(term.get("fdr"), 0.01)
        elif "overlap" in lname:
            value = _as_int(term.get("overlap"), 1)
        elif "term_size" in lname:
            value = _as_int(term.get("term_size"), 1)
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
            high = _kw(schema, "maxLength", "max_length")
            text = self.summary_text()
            if high is not None and len(text) > _as_int(high, len(text)):
                text = self.short_summary()
        return self._fit(text, schema, name=lname)

    def _fit(self, text: str, schema: Mapping[str, Any], *, name: str) -> str:
        """Pad or cut ``text`` to the schema's minLength / maxLength (characters)."""
        low = _as_int(_kw(schema, "minLength", "min_length"), 0)
        high_raw = _kw(schema, "maxLength", "max_length")
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
            high = _as_int(high_raw, len(text))
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
    minimum = _kw(schema, "minimum")
    maximum = _kw(schema, "maximum")
    ex_min = _kw(schema, "exclusiveMinimum", "exclusive_minimum")
    ex_max = _kw(schema, "exclusiveMaximum", "exclusive_maximum")
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
    system = texts(_kw(body, "systemInstruction", "system_instruction"))
    return "\n".join(user), "\n".join(system)


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def normalise_fault(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one fault description and fill defaults.

    Returns a new dict ``{"kind", "target", ...params}``.

    Raises:
        ValueError: unknown kind or target, bad status code or verdict.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"a fault must be a JSON object, got {type(raw).__name__}")
    fault = dict(raw)
    kind = fault.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
    target = fault.setdefault("target", "judge" if kind == "verdict" else "any")
    if target not in FAULT_TARGETS:
        raise ValueError(
            f"unknown fault target {target!r}; expected one of {sorted(FAULT_TARGETS)}"
        )
    fault.pop("times", None)
    if kind == "status":
        code = _as_int(fault.get("code", fault.get("status", 500)), -1)
        if not 400 <= code <= 599:
            raise ValueError(f"status fault needs an HTTP error code 400-599, got {code}")
        fault["code"] = code
        fault.pop("status", None)
    elif kind in ("latency", "timeout"):
        seconds = _as_float(fault.get("seconds"), 10.0 if kind == "timeout" else 1.0)
        if seconds < 0:
            raise ValueError(f"{kind} fault seconds must be >= 0, got {seconds}")
        fault["seconds"] = seconds
    elif kind == "verdict":
        verdict = fault.get("verdict", "reject")
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}; expected one of {list(VERDICTS)}")
        fault["verdict"] = verdict
    return fault


def _fault_matches(fault: Mapping[str, Any], target: str) -> bool:
    if fault["kind"] == "verdict" and target != "judge":
        return False
    return fault["target"] in ("any", target)


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    emulator: GeminiEmulator


class GeminiEmulator:
    """A Gemini ``generateContent`` server on a background thread, with scripted faults.

    Args:
        host: interface to bind (``127.0.0.1``).
        port: TCP port; 0 picks a free one (read it back from :attr:`url`).
        latency: default delay in seconds before every generateContent answer.
        rpm: server-side limit, requests per ``window`` seconds (None = unlimited); excess
            requests get 429 RESOURCE_EXHAUSTED with a Retry-After header (seconds).
        window: length of the rate-limit window in seconds (60 = requests per minute).
        api_key: when set, requests with another key get 400 "API key not valid"; requests
            without any key always get 403 PERMISSION_DENIED, as from Google.

    Use as a context manager or call :meth:`start` / :meth:`stop`. All methods are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        rpm: int | None = None,
        window: float = 60.0,
        api_key: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self._initial: tuple[float, int | None, float] = (float(latency), rpm, float(window))
        self._latency = float(latency)
        self._rpm: int | None = rpm
        self._window = float(window)
        self._lock = threading.Lock()
        self._faults: deque[dict[str, Any]] = deque()
        self._log: list[dict[str, Any]] = []
        self._accepted: deque[float] = deque()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> GeminiEmulator:
        """Bind and serve on a daemon thread; returns self. Idempotent."""
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        server = _Server((self.host, self.port), _Handler)
        server.emulator = self
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"gemini-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("Gemini emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close the socket. Idempotent."""
        server, self._server = self._server, None
        self._stopping.set()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GeminiEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL for ``HttpOptions(base_url=...)``, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    # -- configuration -------------------------------------------------------------------------

    def configure(
        self,
        *,
        latency: float | None = None,
        rpm: Any = _UNCHANGED,
        window: float | None = None,
    ) -> dict[str, Any]:
        """Change default latency (s), rate limit (``rpm``; None = off) or window (s).

        Returns the current ``{"latency", "rpm", "window"}``.
        """
        with self._lock:
            if latency is not None:
                self._latency = max(0.0, float(latency))
            if rpm is not _UNCHANGED:
                self._rpm = None if rpm is None else int(rpm)
            if window is not None:
                self._window = max(0.001, float(window))
            self._accepted.clear()
            return self._config_locked()

    def _config_locked(self) -> dict[str, Any]:
        return {"latency": self._latency, "rpm": self._rpm, "window": self._window}

    def config(self) -> dict[str, Any]:
        """Current ``{"latency": s, "rpm": n or None, "window": s}``."""
        with self._lock:
            return self._config_locked()

    def add_fault(self, kind: str, target: str = "any", *, times: int = 1, **params: Any) -> None:
        """Queue ``times`` copies of one fault (see :data:`FAULT_KINDS` for params).

        Raises:
            ValueError: invalid fault.
        """
        default_target = "judge" if kind == "verdict" and target == "any" else target
        self.add_faults([{"kind": kind, "target": default_target, **params}] * max(1, times))

    def add_faults(self, faults: Iterable[Mapping[str, Any]]) -> None:
        """Queue faults in order (FIFO); each may carry ``times``. All validated before any is
        queued.

        Raises:
            ValueError: any invalid fault (nothing is queued then).
        """
        expanded: list[dict[str, Any]] = []
        for raw in faults:
            times = _as_int(raw.get("times", 1), 1) if isinstance(raw, Mapping) else 1
            fault = normalise_fault(raw)
            expanded.extend(copy.deepcopy(fault) for _ in range(max(1, times)))
        with self._lock:
            self._faults.extend(expanded)

    def pending_faults(self) -> list[dict[str, Any]]:
        """Faults not yet consumed, in order."""
        with self._lock:
            return copy.deepcopy(list(self._faults))

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Clear faults, the request log and the rate window; restore start-up configuration."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._accepted.clear()
            self._latency, self._rpm, self._window = self._initial

    def request_log(self, target: str | None = None) -> list[dict[str, Any]]:
        """Copies of logged generateContent requests, in arrival order.

        Each entry: ``seq``, ``monotonic`` and ``wall`` (arrival, seconds), ``method``, ``path``,
        ``model``, ``target`` (generate | judge | None for unknown paths), ``status`` (HTTP status
        answered; None while in flight), ``fault`` (kind applied or None), ``finish_reason``,
        ``duration`` (seconds until answered).
        """
        with self._lock:
            entries = [dict(entry) for entry in self._log]
        if target is not None:
            entries = [entry for entry in entries if entry.get("target") == target]
        return entries

    # -- used by the handler -------------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry["seq"] = len(self._log) + 1
            self._log.append(entry)
        return entry

    def _finish(self, entry: dict[str, Any], status: int, **extra: Any) -> None:
        with self._lock:
            entry["status"] = status
            entry["duration"] = time.monotonic() - entry["monotonic"]
            entry.update(extra)

    def _admit(self, now: float) -> float | None:
        """None when the request fits the rate limit, else seconds until a slot frees."""
        with self._lock:
            if not self._rpm:
                return None
            while self._accepted and now - self._accepted[0] >= self._window:
                self._accepted.popleft()
            if len(self._accepted) >= self._rpm:
                return max(0.0, self._accepted[0] + self._window - now)
            self._accepted.append(now)
            return None

    def _take_fault(self, target: str) -> dict[str, Any] | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if _fault_matches(fault, target):
                    del self._faults[i]
                    return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    @property
    def latency(self) -> float:
        """Default delay before every answer, seconds."""
        with self._lock:
            return self._latency


def _error_body(
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


def _retry_info(seconds: float) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds:g}s"}


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
    prompt_tokens = max(1, (len(user_text) + len(system_text)) // 4)
    response_id = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    base: dict[str, Any] = {"modelVersion": model, "responseId": response_id}
    kind = fault["kind"] if fault else ""

    def usage(output_tokens: int) -> dict[str, int]:
        return {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        }

    if kind == "empty":
        return {"candidates": [], "usageMetadata": usage(0), **base}
    if kind == "safety":
        ratings = [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
        ]
        if fault and fault.get("block_reason"):
            return {
                "promptFeedback": {
                    "blockReason": str(fault["block_reason"]),
                    "safetyRatings": ratings,
                },
                "usageMetadata": usage(0),
                **base,
            }
        return {
            "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": ratings}],
            "usageMetadata": usage(0),
            **base,
        }

    schema, _ = response_schema_of(body)
    data = PromptData.from_prompt(user_text + "\n" + system_text)
    judge = is_judge_schema(schema)
    verdict = str(fault.get("verdict", "accept")) if fault and kind == "verdict" else "accept"
    reasoning = fault.get("reasoning") if fault and kind == "verdict" else None
    builder = AnswerBuilder(data, judge=judge, verdict=verdict, reasoning=reasoning)
    answer = builder.build(schema)
    if fault and isinstance(answer, dict) and kind in ("hallucinated_gene", "hallucinated_pathway"):
        _inject(answer, schema or {}, fault)

    config = _kw(body, "generationConfig", "generation_config") or {}
    mime = str(_kw(config, "responseMimeType", "response_mime_type") or "")
    if schema is None and mime != "application/json":
        text = builder.summary_text()
    else:
        text = json.dumps(answer, ensure_ascii=False)
    finish = "STOP"
    max_tokens = _as_int(_kw(config, "maxOutputTokens", "max_output_tokens"), 0)
    output_tokens = len(text) // 4
    if kind == "fenced":
        text = f"```json\n{text}\n```"
        output_tokens = len(text) // 4
    elif kind == "truncated":
        text = text[: len(text) // 2]
        output_tokens = len(text) // 4
    elif kind == "max_tokens" or (max_tokens and output_tokens > max_tokens):
        # As Gemini does: generation stops mid-answer when the token budget is spent.
        cut = min(len(text) // 2, max_tokens * 4) if max_tokens else len(text) // 2
        text = text[:cut]
        output_tokens = max_tokens or len(text) // 4
        finish = "MAX_TOKENS"
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": finish,
                "index": 0,
            }
        ],
        "usageMetadata": usage(output_tokens),
        **base,
    }


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
    properties = _resolve(schema, schema).get("properties") or {}
    return _resolve(properties.get(key) or {}, schema)


def _append_text(answer: dict[str, Any], schema: Mapping[str, Any], addition: str) -> None:
    keys = [k for k in ("summary", "description", "text") if isinstance(answer.get(k), str)]
    keys = keys or [k for k, v in answer.items() if isinstance(v, str) and k != "verdict"]
    if not keys:
        return
    key = keys[0]
    prop = _property_schema(schema, key)
    high = _kw(prop, "maxLength", "max_length")
    base = answer[key]
    if high is not None and len(base) + len(addition) > int(high):
        base = base[: max(0, int(high) - len(addition))].rstrip()
    answer[key] = base + addition


def _append_item(answer: dict[str, Any], schema: Mapping[str, Any], key: str, value: str) -> bool:
    if not isinstance(answer.get(key), list):
        return False
    items = answer[key]
    prop = _property_schema(schema, key)
    high = _kw(prop, "maxItems", "max_items")
    if high is not None and len(items) >= int(high) and items:
        items[-1] = value
    else:
        items.append(value)
    return True


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler: generateContent plus the ``/_control/*`` endpoints."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("gemini emulator: " + format, *args)

    # -- plumbing ------------------------------------------------------------------------------

    def _read_json(self) -> Any:
        length = _as_int(self.headers.get("Content-Length"), 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw:
            return None
        return json.loads(raw.decode("utf-8"))

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client gave up (e.g. a timeout fault); nothing to answer to.
            self.close_connection = True

    # -- routing -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        emulator = self.server.emulator
        if path == "/_control/log":
            query = parse_qs(urlsplit(self.path).query)
            target = query.get("target", [None])[0]
            self._send(200, {"requests": emulator.request_log(target)})
        elif path == "/_control/faults":
            self._send(200, {"pending": emulator.pending_faults()})
        elif path in ("/_control/config", "/_control/health"):
            self._send(200, {"ok": True, "url": emulator.url, **emulator.config()})
        else:
            self._send(404, _error_body(404, f"Unknown path {path}"))

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/_control/faults":
            self.server.emulator.clear_faults()
            self._send(200, {"pending": []})
        else:
            self._send(404, _error_body(404, "Unknown path"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_control/"):
            self._control(path)
            return
        match = _GENERATE_PATH_RE.match(path)
        if not match:
            self._read_body_quietly()
            self._send(404, _error_body(404, f"Method not found: POST {path}"))
            return
        self._generate(path, match.group(2))

    def _read_body_quietly(self) -> None:
        with contextlib.suppress(ValueError):
            self._read_json()

    def _control(self, path: str) -> None:
        emulator = self.server.emulator
        try:
            payload = self._read_json()
        except ValueError as error:
            self._send(400, _error_body(400, f"invalid JSON: {error}"))
            return
        try:
            if path == "/_control/faults":
                if isinstance(payload, Mapping) and "faults" in payload:
                    if payload.get("replace"):
                        emulator.clear_faults()
                    faults = payload["faults"]
                else:
                    faults = payload
                if isinstance(faults, Mapping):
                    faults = [faults]
                if not isinstance(faults, list):
                    raise ValueError("expected a fault object, a list of faults or {faults: [...]}")
                emulator.add_faults(faults)
                self._send(200, {"pending": emulator.pending_faults()})
            elif path == "/_control/reset":
                emulator.reset()
                self._send(200, {"ok": True})
            elif path == "/_control/config":
                payload = payload or {}
                if not isinstance(payload, Mapping):
                    raise ValueError("expected {latency, rpm, window}")
                kwargs: dict[str, Any] = {
                    "latency": payload.get("latency"),
                    "window": payload.get("window"),
                }
                if "rpm" in payload:
                    kwargs["rpm"] = payload["rpm"]
                self._send(200, emulator.configure(**kwargs))
            else:
                self._send(404, _error_body(404, f"Unknown control path {path}"))
        except (ValueError, TypeError) as error:
            self._send(400, _error_body(400, str(error)))

    def _generate(self, path: str, model: str) -> None:
        emulator = self.server.emulator
        entry = emulator._record(
            {
                "monotonic": time.monotonic(),
                "wall": time.time(),
                "method": "POST",
                "path": path,
                "model": model,
                "target": None,
                "status": None,
                "fault": None,
                "finish_reason": None,
                "duration": None,
            }
        )
        try:
            body = self._read_json()
            if not isinstance(body, Mapping):
                raise ValueError("request body must be a JSON object")
        except ValueError as error:
            emulator._finish(entry, 400)
            self._send(400, _error_body(400, f"Invalid JSON payload received. {error}"))
            return
        schema, _ = response_schema_of(body)
        target = "judge" if is_judge_schema(schema) else "generate"
        with emulator._lock:
            entry["target"] = target

        query = parse_qs(urlsplit(self.path).query)
        key = self.headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
        if not key:
            emulator._finish(entry, 403)
            self._send(
                403,
                _error_body(
                    403,
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity.",
                ),
            )
            return
        if emulator.api_key is not None and key != emulator.api_key:
            emulator._finish(entry, 400)
            self._send(400, _error_body(400, "API key not valid. Please pass a valid API key."))
            return

        wait = emulator._admit(time.monotonic())
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            emulator._finish(entry, 429, fault="rate_limit")
            self._send(
                429,
                _error_body(
                    429,
                    "Resource has been exhausted (e.g. check quota).",
                    [_retry_info(seconds)],
                ),
                {"Retry-After": str(seconds)},
            )
            return

        fault = emulator._take_fault(target)
        kind = fault["kind"] if fault else None
        delay = emulator.latency + (float(fault["seconds"]) if fault and kind == "latency" else 0.0)
        emulator._sleep(delay)

        if fault and kind == "status":
            self._send_status_fault(entry, fault)
            return
        if fault and kind == "timeout":
            emulator._sleep(float(fault["seconds"]))

        response = build_response(body, model, fault)
        candidates = response.get("candidates") or []
        finish = candidates[0].get("finishReason") if candidates else None
        emulator._finish(entry, 200, fault=kind, finish_reason=finish)
        self._send(200, response)

    def _send_status_fault(self, entry: dict[str, Any], fault: Mapping[str, Any]) -> None:
        code = int(fault["code"])
        headers: dict[str, str] = {}
        details: list[dict[str, Any]] = []
        if fault.get("retry_after") is not None:
            headers["Retry-After"] = f"{_as_float(fault['retry_after'], 1.0):g}"
        if fault.get("retry_delay") is not None:
            details.append(_retry_info(_as_float(fault["retry_delay"], 1.0)))
        default_messages = {
            400: "Request contains an invalid argument.",
            401: "Request had invalid authentication credentials.",
            403: "The caller does not have permission.",
            404: "models/unknown is not found for API version v1beta.",
            429: "Resource has been exhausted (e.g. check quota).",
            500: "An internal error has occurred. Please retry or report.",
            503: "The model is overloaded. Please try again later.",
        }
        message = str(fault.get("message") or default_messages.get(code, f"Error {code}"))
        self.server.emulator._finish(entry, code, fault="status")
        self._send(code, _error_body(code, message, details), headers)


class EmulatorControl:
    """Drive an emulator running in another process through its ``/_control`` endpoints.

    Args:
        url: the emulator's base URL (what it printed at start-up).
        timeout: seconds per control request.

    Raises (from every method):
        RuntimeError: the emulator answered with an error (message included).
        OSError: the emulator is unreachable.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            body = error.read().decode("utf-8", "replace")
            message = f"emulator control {method} {path} failed: {error.code} {body}"
            raise RuntimeError(message) from None

    def add_faults(
        self, faults: list[Mapping[str, Any]], *, replace: bool = False
    ) -> list[dict[str, Any]]:
        """Queue faults; returns the pending list."""
        answer = self._call("POST", "/_control/faults", {"faults": faults, "replace": replace})
        return list(answer["pending"])

    def pending_faults(self) -> list[dict[str, Any]]:
        """Faults not yet consumed."""
        return list(self._call("GET", "/_control/faults")["pending"])

    def log(self, target: str | None = None) -> list[dict[str, Any]]:
        """The request log (see :meth:`GeminiEmulator.request_log`)."""
        suffix = f"?target={target}" if target else ""
        return list(self._call("GET", "/_control/log" + suffix)["requests"])

    def reset(self) -> None:
        """Clear faults, log and rate window."""
        self._call("POST", "/_control/reset", {})

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set ``latency`` (s), ``rpm`` (None = off) and/or ``window`` (s); returns the config."""
        return dict(self._call("POST", "/_control/config", settings))
