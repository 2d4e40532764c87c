"""Shared machinery of the local provider emulators (Gemini, OpenAI, Anthropic).

Each emulator (``gemini.py``, ``openai.py``, ``anthropic.py`` next to this module) is a real HTTP
server speaking one vendor's REST protocol, so the official SDKs are exercised end to end (see
``/work/shared/docs/provider-wire-reference.md``). What they have in common lives here:

- **Answers**: :class:`PromptData` parses the ``<cluster_data>{...}</cluster_data>`` (and a judge's
  ``<summary>``) block out of the prompt; :class:`AnswerBuilder` walks the request's output schema
  (JSON Schema or Gemini's OpenAPI subset) and fills it from that data; :func:`compose_answer`
  applies content faults. The same prompt and schema give the same answer on every emulator, in
  realtime and in batch, so golden tests can compare them.
- **Realtime faults** (:data:`FAULT_KINDS`), scripted FIFO per target (generate | judge | any),
  a default latency, a rate limit of ``rpm`` per ``window`` seconds enforced as a token bucket
  with ``burst`` (default) or a moving window (:mod:`llm.emulators.ratelimit`),
  answered with 429 in each vendor's shape (Retry-After, ``x-ratelimit-*`` headers, the delay in
  the message or RetryInfo), and a thread-safe log of realtime calls: :class:`EmulatorServer`.
- **Batches**: a provider-neutral store (:class:`EmuBatch`) with scripted behaviour
  (:class:`BatchSettings`: state progression over polls, whole-batch failure, expiry with some or
  all items unprocessed, per-item errors and content faults, dropped or unknown results, shuffled
  order, size limits answering 400), batch-endpoint faults (e.g. a create whose answer is lost)
  and a submission log, so a crash test can assert exactly one submission.
- **Files** (Gemini and OpenAI batch input/output files) and the HTTP ``/_control/*`` endpoints,
  driven from another process with :class:`EmulatorControl`.

Control endpoints (JSON in and out; every emulator):

    GET    /_control/health | /_control/config      {"ok", "url", "latency", "rpm", "window",
                                                     "rate_mode", "burst"}
    POST   /_control/config                         {latency?, rpm?, window?, rate_mode?, burst?}
    GET    /_control/log?target=generate|judge      {"requests": [...]}   realtime calls
    GET    /_control/api_log                        {"requests": [...]}   every API call
    GET    /_control/faults                         {"pending": [...]}
    POST   /_control/faults                         fault | [faults] | {"faults": [...], "replace"}
    DELETE /_control/faults
    POST   /_control/reset                          faults, logs, batches, files, settings
    GET    /_control/batches                        {"batches": [...], "submissions": [...]}
    GET    /_control/batches/config                 the BatchSettings as JSON
    POST   /_control/batches/config                 {setting: value, ..., "reset"?: bool}
    POST   /_control/batches/finish                 {"batch_id"?}: finish now (all if omitted)
    GET    /_control/batches/faults                 {"pending": [...]}
    POST   /_control/batches/faults                 fault | [faults] (see BATCH_FAULT_KINDS)
    DELETE /_control/batches/faults
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import hashlib
import json
import logging
import math
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from llm.context import PATHWAY_CATEGORIES
from llm.emulators.ratelimit import Decision, ServerLimit

logger = logging.getLogger(__name__)

#: Realtime fault kinds and their parameters (all optional unless noted). Each emulator renders
#: them in its own wire format (Gemini / OpenAI / Anthropic):
#:   latency {seconds}: extra delay before answering.
#:   status {code: 400|401|403|404|429|500|503|529|..., retry_after (seconds, Retry-After header),
#:          retry_delay (seconds, Gemini google.rpc.RetryInfo detail), message}: an error answer.
#:   timeout {seconds=10}: sleep longer than the client waits, then answer normally.
#:   fenced: valid JSON wrapped in a ```json fence (Anthropic: a text block instead of the tool
#:          call).  truncated: JSON cut in half with a normal stop (Gemini STOP, OpenAI stop,
#:          Anthropic end_turn with a text block).
#:   hallucinated_gene {symbol="FAKEGENE1"}: a non-member symbol in the summary text and tags.
#:   hallucinated_pathway {name}: a pathway name that is not among the enriched terms.
#:   empty: no answer (Gemini no candidates; OpenAI empty content; Anthropic no content blocks).
#:   safety {block_reason}: withheld (Gemini finishReason SAFETY, or with block_reason a blocked
#:          prompt; OpenAI a refusal, or with block_reason finish_reason content_filter;
#:          Anthropic stop_reason refusal).
#:   max_tokens: cut at the token budget (Gemini MAX_TOKENS; OpenAI length; Anthropic max_tokens).
#:   verdict {verdict: accept|accept_with_corrections|low_confidence|reject, reasoning,
#:          corrections {corrected_field: value}, hard_failures [..], grounding_percent}: judge
#:          requests only; the corrected_* fields of the answer are null unless given here.
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
#: Fault kinds that change the answer's content; these may also be set per batch item.
CONTENT_FAULT_KINDS = FAULT_KINDS - {"latency", "status", "timeout"}
#: Which requests a fault applies to; judge requests have a schema with a "verdict" property.
FAULT_TARGETS = frozenset({"generate", "judge", "any"})
VERDICTS = ("accept", "accept_with_corrections", "low_confidence", "reject")
#: Rubric score and grounding percentage an emulated judge gives for each verdict.
_VERDICT_SCORE = {"accept": 2, "accept_with_corrections": 2, "low_confidence": 1, "reject": 0}
_VERDICT_GROUNDING = {
    "accept": 95,
    "accept_with_corrections": 85,
    "low_confidence": 65,
    "reject": 30,
}

#: Batch-endpoint fault kinds, applied to the next call of ``op`` (create | get | list | results
#: | cancel | upload | download | any):
#:   status {code, message, retry_after, commit}: answer with an error; with ``commit`` the
#:          operation still takes effect (e.g. the batch is created but its answer is lost).
#:   timeout {seconds=10}: perform the operation, then answer only after ``seconds``.
#:   latency {seconds}: extra delay, then perform the operation normally.
BATCH_FAULT_KINDS = frozenset({"status", "timeout", "latency"})
BATCH_OPS = frozenset({"create", "get", "list", "results", "cancel", "upload", "download", "any"})

#: Normalised batch states, as in ``llm.providers.batch.BATCH_STATES``.
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "expired"})
BATCH_OUTCOMES = ("succeeded", "failed", "expired")

DEFAULT_FAKE_GENE = "FAKEGENE1"
DEFAULT_FAKE_PATHWAY = "Imaginary Neuronal Signaling Pathway WP99999"

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
        depleted_names: names of the depleted terms (prompt v2), in prompt order.
        supported_modes: inheritance modes marked supported; syndromicity_call and
            derived_confidence: the figures' call and level ("" when absent).
        summary: the decoded ``<summary>`` JSON of a judge prompt, or None.
    """

    def __init__(self, cluster: Mapping[str, Any] | None, summary: Any = None) -> None:
        cluster = cluster or {}
        self.found = bool(cluster)
        self.cluster_type = str(cluster.get("cluster_type") or "")
        members = cluster.get("members") or []
        self.members: list[str] = [str(m) for m in members if isinstance(m, str | int)]
        self.size = as_int(cluster.get("size"), len(self.members))
        self.members_total = as_int(cluster.get("members_total"), self.size)
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
        terms.sort(key=lambda row: as_float(row.get("fdr"), 1.0))
        self.terms = terms
        depleted = cluster.get("depleted_terms") or {}
        self.depleted_names: list[str] = _unique(
            str(row.get("name"))
            for rows in (depleted.values() if isinstance(depleted, Mapping) else [])
            if isinstance(rows, list)
            for row in rows
            if isinstance(row, Mapping) and row.get("name")
        )
        inheritance = cluster.get("inheritance")
        modes = inheritance.get("modes") if isinstance(inheritance, Mapping) else None
        self.supported_modes: list[str] = [
            str(m.get("mode")) for m in modes or [] if isinstance(m, Mapping) and m.get("supported")
        ]
        syndromicity = cluster.get("syndromicity")
        self.syndromicity_call = (
            str(syndromicity.get("call") or "") if isinstance(syndromicity, Mapping) else ""
        )
        quality = cluster.get("quality")
        self.derived_confidence = (
            str(quality.get("derived_confidence") or "") if isinstance(quality, Mapping) else ""
        )
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


def first_key(schema: Mapping[str, Any], *names: str) -> Any:
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


def is_judge_schema(schema: Mapping[str, Any] | None) -> bool:
    """True when the (resolved) top-level schema has a ``verdict`` property."""
    if not schema:
        return False
    resolved = _resolve(schema, schema)
    properties = resolved.get("properties")
    return isinstance(properties, Mapping) and "verdict" in properties


class AnswerBuilder:
    """Builds a schema-valid answer object from a schema and the prompt's cluster data.

    Phenotype answers name no member gene (the product's phenotype rule), fill
    ``inheritance_patterns`` with the supported modes, ``notably_absent`` with depleted terms and
    ``syndromicity`` with the figures' call, so they pass the product's own validation.

    Args:
        data: facts parsed from the prompt.
        judge: True for judge requests (schema with a "verdict" property).
        verdict: judge verdict to give (see :data:`VERDICTS`).
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
            subject += f", including {_join(members)},"
        sentences = []
        if names:
            fdr = as_float(data.terms[0].get("fdr"), 1.0)
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
        options = first_key(schema, "anyOf", "any_of", "oneOf", "one_of")
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
            pool = _unique(str(row.get("term_id", "")) for row in data.terms)
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
        code = as_int(fault.get("code", fault.get("status", 500)), -1)
        if not 400 <= code <= 599:
            raise ValueError(f"status fault needs an HTTP error code 400-599, got {code}")
        fault["code"] = code
        fault.pop("status", None)
    elif kind in ("latency", "timeout"):
        seconds = as_float(fault.get("seconds"), 10.0 if kind == "timeout" else 1.0)
        if seconds < 0:
            raise ValueError(f"{kind} fault seconds must be >= 0, got {seconds}")
        fault["seconds"] = seconds
    elif kind == "verdict":
        verdict = fault.get("verdict", "reject")
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}; expected one of {list(VERDICTS)}")
        fault["verdict"] = verdict
        corrections = fault.get("corrections") or {}
        if not isinstance(corrections, Mapping) or not all(
            str(k).startswith("corrected_") for k in corrections
        ):
            raise ValueError("verdict corrections must map corrected_* fields to values")
        fault["corrections"] = dict(corrections)
        failures = fault.get("hard_failures") or []
        if not isinstance(failures, list):
            raise ValueError("verdict hard_failures must be a list")
        fault["hard_failures"] = [str(f) for f in failures]
    return fault


def _fault_matches(fault: Mapping[str, Any], target: str) -> bool:
    if fault["kind"] == "verdict" and target != "judge":
        return False
    return fault["target"] in ("any", target)


# --------------------------------------------------------------------------------------------
# Answers with content faults
# --------------------------------------------------------------------------------------------


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
        fault: a normalised fault (see :data:`FAULT_KINDS`); non-content kinds are ignored.
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


def schema_target(schema: Mapping[str, Any] | None) -> str:
    """``judge`` for a schema with a ``verdict`` property, else ``generate``."""
    return "judge" if is_judge_schema(schema) else "generate"


def short_hash(value: Any, length: int = 24) -> str:
    """A stable hex digest of a JSON-serialisable value (for deterministic response ids)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def iso_time(wall: float | None) -> str | None:
    """RFC 3339 UTC timestamp of a ``time.time()`` value (None stays None)."""
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request as the emulators see it.

    ``path`` has no query string; ``query`` maps names to value lists; ``body`` is the raw bytes
    (chunked transfer decoded).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes

    def json(self) -> Any:
        """The decoded JSON body, None when empty.

        Raises:
            ValueError: the body is not UTF-8 JSON.
        """
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str:
        """A request header ("" when absent)."""
        return str(self.headers.get(name) or "")


@dataclass
class Reply:
    """An HTTP answer: a JSON ``payload`` or ``raw`` bytes, with extra headers."""

    status: int
    payload: Any = None
    raw: bytes | None = None
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    emulator: EmulatorServer


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler: ``/_control/*`` to the control API, everything else to the emulator."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every answer on loopback.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(f"{self.server.emulator.provider} emulator: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if "chunked" in str(self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = as_int(self.headers.get("Content-Length"), 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        emulator = self.server.emulator
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except (ValueError, OSError) as error:
            self._send(emulator.error_reply(400, f"unreadable request body: {error}"))
            return
        request = Request(method, split.path, parse_qs(split.query), self.headers, body)
        if split.path.startswith("/_control/"):
            reply = emulator.control(request)
        else:
            reply = emulator.dispatch(request)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.raw is not None:
            data = reply.raw
        else:
            data = json.dumps(reply.payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client gave up (e.g. a timeout fault); nothing to answer to.
            self.close_connection = True


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """The parts of a ``multipart/form-data`` body: field name -> (filename or "", bytes).

    Raises:
        ValueError: not a multipart body.
    """
    if "multipart/form-data" not in content_type.lower():
        raise ValueError(f"expected multipart/form-data, got {content_type or 'no content type'}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        parts[str(name)] = (part.get_filename() or "", data)
    return parts


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def normalise_batch_fault(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one batch-endpoint fault (see :data:`BATCH_FAULT_KINDS`) and fill defaults.

    Raises:
        ValueError: unknown kind or op, bad status code or seconds.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"a batch fault must be a JSON object, got {type(raw).__name__}")
    fault = dict(raw)
    kind = fault.get("kind")
    if kind not in BATCH_FAULT_KINDS:
        raise ValueError(
            f"unknown batch fault kind {kind!r}; expected one of {sorted(BATCH_FAULT_KINDS)}"
        )
    op = fault.setdefault("op", "any")
    if op not in BATCH_OPS:
        raise ValueError(f"unknown batch op {op!r}; expected one of {sorted(BATCH_OPS)}")
    fault.pop("times", None)
    if kind == "status":
        code = as_int(fault.get("code", 500), -1)
        if not 400 <= code <= 599:
            raise ValueError(f"status fault needs an HTTP error code 400-599, got {code}")
        fault["code"] = code
        fault["commit"] = bool(fault.get("commit", False))
    else:
        seconds = as_float(fault.get("seconds"), 10.0 if kind == "timeout" else 1.0)
        if seconds < 0:
            raise ValueError(f"{kind} fault seconds must be >= 0, got {seconds}")
        fault["seconds"] = seconds
    return fault


def _expand(
    faults: Iterable[Mapping[str, Any]], normalise: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Validate every fault and repeat each ``times`` times (nothing is queued on error)."""
    expanded: list[dict[str, Any]] = []
    for raw in faults:
        times = as_int(raw.get("times", 1), 1) if isinstance(raw, Mapping) else 1
        fault = normalise(raw)
        expanded.extend(copy.deepcopy(fault) for _ in range(max(1, times)))
    return expanded


# --------------------------------------------------------------------------------------------
# Batches and files
# --------------------------------------------------------------------------------------------


class BatchRejected(Exception):
    """A batch submission the emulator refuses (answered with ``status``, 400 by default)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class BatchSettings:
    """Scripted behaviour of the emulated batch API (read when a batch finishes).

    Attributes:
        polls: status polls (get/retrieve) answered "running" before the batch is final;
            0 = final at the first poll. A new batch always reports its pending state first.
        outcome: ``succeeded``; ``failed`` (the whole batch fails with ``failure_message`` and
            no results; Anthropic, which has no failed state, ends with every item errored);
            ``expired`` (the batch ends expired; ``unprocessed_ids``, or else a deterministic
            ``unprocessed_fraction`` of the items, stay unprocessed, the others are answered).
        error_ids, error_fraction: items answered with a per-item error ``error_code`` /
            ``error_message`` (the fraction is a deterministic choice by hash of the custom id).
        item_faults: custom id -> content fault (``{"kind": "safety"}``, ``"empty"``,
            ``"truncated"``, ``"hallucinated_gene"`` ...) applied to that item's answer.
        drop_ids: items left out of the results (to test missing-result detection).
        extra_ids: results for custom ids that were never submitted (unknown ids).
        shuffle: return results in a deterministic shuffled order instead of input order.
        max_requests, max_bytes: submission limits answering 400 (None = the provider's real
            limits; bytes are the serialised input: request body or input file).
        enqueued_token_limit: OpenAI's per-model limit of tokens enqueued in open batches
            (None = no limit). A batch whose estimated tokens (:func:`estimated_tokens`), with
            those of the model's other open batches, exceed it is created, then fails at its
            first poll with ``errors`` code ``token_limit_exceeded`` and no results, as OpenAI
            does.
    """

    polls: int = 0
    outcome: str = "succeeded"
    failure_message: str = "Batch failed: the input could not be processed (emulated failure)."
    unprocessed_ids: list[str] = field(default_factory=list)
    unprocessed_fraction: float = 1.0
    error_ids: list[str] = field(default_factory=list)
    error_fraction: float = 0.0
    error_code: int = 500
    error_message: str = "Internal error while processing the request (emulated item error)."
    item_faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    drop_ids: list[str] = field(default_factory=list)
    extra_ids: list[str] = field(default_factory=list)
    shuffle: bool = False
    max_requests: int | None = None
    max_bytes: int | None = None
    enqueued_token_limit: int | None = None

    def update(self, **changes: Any) -> None:
        """Set the given settings, validated.

        Raises:
            ValueError, TypeError: unknown setting or invalid value (nothing is changed then).
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(
                f"unknown batch setting(s) {unknown}; expected some of {sorted(known)}"
            )
        trial = copy.deepcopy(self)
        for name, value in changes.items():
            setattr(trial, name, value)
        trial._validate()
        for f in fields(self):
            setattr(self, f.name, getattr(trial, f.name))

    def _validate(self) -> None:
        self.polls = int(self.polls)
        if self.polls < 0:
            raise ValueError("polls must be >= 0")
        if self.outcome not in BATCH_OUTCOMES:
            raise ValueError(f"outcome must be one of {list(BATCH_OUTCOMES)}, got {self.outcome!r}")
        for name in ("unprocessed_fraction", "error_fraction"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
            setattr(self, name, value)
        self.error_code = int(self.error_code)
        if not 400 <= self.error_code <= 599:
            raise ValueError(f"error_code must be an HTTP error code, got {self.error_code}")
        for name in ("unprocessed_ids", "error_ids", "drop_ids", "extra_ids"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise TypeError(f"{name} must be a list of custom ids")
            setattr(self, name, [str(item) for item in value])
        if not isinstance(self.item_faults, Mapping):
            raise TypeError("item_faults must map custom ids to content faults")
        faults: dict[str, dict[str, Any]] = {}
        for custom_id, raw in self.item_faults.items():
            fault = normalise_fault({"kind": raw} if isinstance(raw, str) else raw)
            if fault["kind"] not in CONTENT_FAULT_KINDS:
                raise ValueError(
                    f"item fault {fault['kind']!r} is not a content fault; expected one of "
                    f"{sorted(CONTENT_FAULT_KINDS)}"
                )
            faults[str(custom_id)] = fault
        self.item_faults = faults
        self.shuffle = bool(self.shuffle)
        for name in ("max_requests", "max_bytes", "enqueued_token_limit"):
            value = getattr(self, name)
            if value is not None:
                if int(value) < 1:
                    raise ValueError(f"{name} must be >= 1 or None")
                setattr(self, name, int(value))

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-ready data."""
        return copy.deepcopy(asdict(self))


@dataclass
class BatchItem:
    """One submitted request: its custom id, the provider-native request body and model.

    ``metadata`` is echoed back with the result where the provider does so (Gemini).
    """

    custom_id: str
    body: dict[str, Any]
    model: str
    metadata: dict[str, Any] | None = None


@dataclass
class ItemOutcome:
    """The result of one item: ``kind`` is ok | error | expired | cancelled.

    ``payload`` is the provider's response JSON for ``ok``; ``code``/``message`` for errors.
    """

    custom_id: str
    kind: str
    payload: Any = None
    code: int = 0
    message: str = ""
    metadata: dict[str, Any] | None = None


@dataclass
class EmuBatch:
    """A batch held by an emulator. ``state`` is a normalised state (pending, running, succeeded,
    failed, cancelled, expired); ``extra`` holds provider fields (input file, metadata...)."""

    id: str
    tag: str
    model: str
    items: list[BatchItem]
    size_bytes: int
    created: float
    source: str = "inline"
    extra: dict[str, Any] = field(default_factory=dict)
    state: str = "pending"
    polls: int = 0
    started: float | None = None
    cancel_requested: float | None = None
    ended: float | None = None
    error: str = ""
    error_code: int = 0
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[ItemOutcome] | None = None

    @property
    def final(self) -> bool:
        """True once the batch reached a final state."""
        return self.state in FINAL_STATES

    def count(self, kind: str) -> int:
        """Number of item outcomes of ``kind`` (0 before the batch ends)."""
        return sum(1 for outcome in self.outcomes or () if outcome.kind == kind)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description for the control API."""
        return {
            "id": self.id,
            "tag": self.tag,
            "model": self.model,
            "state": self.state,
            "source": self.source,
            "requests": len(self.items),
            "bytes": self.size_bytes,
            "polls": self.polls,
            "created": self.created,
            "ended": self.ended,
            "error": self.error,
            "counts": {kind: self.count(kind) for kind in ("ok", "error", "expired", "cancelled")},
        }


@dataclass
class EmuFile:
    """A stored file (batch input or output): ``id`` as the provider names it, raw ``data``."""

    id: str
    filename: str
    mime_type: str
    purpose: str
    data: bytes
    created: float


def estimated_tokens(item: BatchItem) -> int:
    """Tokens one batch request counts against an enqueued-token limit: its body's JSON length
    / 4 (prompt) plus its ``max_tokens`` / ``max_completion_tokens`` (output), as OpenAI
    counts the prompt and the maximum answer."""
    body = item.body
    answer = as_int(body.get("max_completion_tokens") or body.get("max_tokens"), 0)
    return len(json.dumps(body)) // 4 + max(0, answer)


def pick_fraction(ids: Sequence[str], fraction: float, salt: str) -> set[str]:
    """A deterministic ``round(fraction * len(ids))`` subset of ``ids``, chosen by hash."""
    count = round(fraction * len(ids))
    if count <= 0:
        return set()
    ranked = sorted(ids, key=lambda cid: hashlib.sha256(f"{salt}:{cid}".encode()).hexdigest())
    return set(ranked[:count])


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class EmulatorServer:
    """Base class of the provider emulators: a server on a background thread with scripted
    realtime faults, rate limit, logs, batches, files and the ``/_control`` API.

    Args:
        host: interface to bind (``127.0.0.1``).
        port: TCP port; 0 picks a free one (read it back from :attr:`url`).
        latency: default delay in seconds before every realtime answer.
        rpm: server-side limit on realtime calls, requests per ``window`` seconds (None =
            unlimited); excess requests get 429 as the vendor answers it
            (:meth:`rate_limit_reply`).
        window: length of the rate-limit window in seconds (60 = requests per minute).
        rate_mode: ``bucket`` (default: a token bucket of ``burst`` requests refilled at
            ``rpm / window`` per second, as providers enforce) or ``window`` (a moving window).
        burst: bucket size in requests (default ``min(2, rpm)``); unused by ``window``.
        api_key: when set, requests with another key are refused as the vendor does; requests
            without any key are always refused.
        batch_settings: initial :class:`BatchSettings` (also what :meth:`reset` restores).

    Subclasses set :attr:`provider`, :attr:`default_max_requests`, :attr:`default_max_bytes` and
    implement :meth:`handle`, :meth:`error_body`, :meth:`check_key` and
    :meth:`batch_item_payload` (optionally :meth:`batch_finished` and :meth:`control_id`).
    Use as a context manager or call :meth:`start` / :meth:`stop`.
    All public methods are thread-safe.
    """

    provider: ClassVar[str] = "provider"
    #: Real submission limits of the vendor (requests per batch, bytes of serialised input).
    default_max_requests: ClassVar[int | None] = None
    default_max_bytes: ClassVar[int | None] = None
    #: Default messages of status faults, by HTTP code.
    default_messages: ClassVar[dict[int, str]] = {}
    rate_limit_message: ClassVar[str] = "Rate limit exceeded; retry later."
    #: whether a 429 names the limit (x-ratelimit-limit-requests, Gemini's QuotaFailure); set
    #: False on an instance to emulate a provider that does not say (clients must learn it)
    report_limit: bool = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        rpm: int | None = None,
        window: float = 60.0,
        rate_mode: str = "bucket",
        burst: int | None = None,
        api_key: str | None = None,
        batch_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self._initial: tuple[float, int | None, float, str, int | None] = (
            float(latency),
            rpm,
            float(window),
            rate_mode,
            burst,
        )
        self._latency = float(latency)
        self._rpm: int | None = rpm
        self._window = float(window)
        self._rate_mode = rate_mode
        self._burst = burst
        self._limit: ServerLimit | None = self._new_limit()
        self._lock = threading.Lock()
        self._faults: deque[dict[str, Any]] = deque()
        self._log: list[dict[str, Any]] = []
        self._api_log: list[dict[str, Any]] = []
        # Batch state has its own (re-entrant) lock: finishing a big batch builds many answers
        # and must not hold up realtime calls.
        self._batch_lock = threading.RLock()
        self._initial_batch_settings = BatchSettings()
        self._initial_batch_settings.update(**dict(batch_settings or {}))
        self._batch_settings = copy.deepcopy(self._initial_batch_settings)
        self._batches: dict[str, EmuBatch] = {}
        self._batch_faults: deque[dict[str, Any]] = deque()
        self._submissions: list[dict[str, Any]] = []
        self._files: dict[str, EmuFile] = {}
        self._uploads: dict[str, dict[str, Any]] = {}
        self._prefix = uuid.uuid4().hex[:8]
        self._counter = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self. Idempotent.

        Raises:
            OSError: the port cannot be bound.
        """
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
            name=f"{self.provider}-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("%s emulator listening on %s", self.provider, self.url)
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

    def __enter__(self) -> Self:
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
        """Base URL, e.g. ``http://127.0.0.1:54321`` (what ``LLM_BASE_URL`` points at)."""
        return f"http://{self.host}:{self.port}"

    # -- realtime configuration and faults ----------------------------------------------------

    def configure(
        self,
        *,
        latency: float | None = None,
        rpm: Any = _UNCHANGED,
        window: float | None = None,
        rate_mode: str | None = None,
        burst: Any = _UNCHANGED,
    ) -> dict[str, Any]:
        """Change default latency (s), rate limit (``rpm``; None = off), window (s), rate mode
        (``bucket`` | ``window``) or bucket size (``burst`` requests; None = the default). The
        limit starts afresh (a full bucket, an empty window).

        Returns the current ``{"latency", "rpm", "window", "rate_mode", "burst"}``.

        Raises:
            ValueError: an unknown rate mode, rpm or burst below 1 (nothing is changed then).
        """
        with self._lock:
            new_rpm = self._rpm if rpm is _UNCHANGED else (None if rpm is None else int(rpm))
            new_window = self._window if window is None else max(0.001, float(window))
            new_mode = self._rate_mode if rate_mode is None else str(rate_mode)
            new_burst = (
                self._burst if burst is _UNCHANGED else (None if burst is None else int(burst))
            )
            if new_rpm is not None:
                ServerLimit(new_rpm, new_window, new_mode, new_burst)  # validates
            elif new_mode not in ("bucket", "window"):
                raise ValueError(f"rate mode must be bucket or window, got {new_mode!r}")
            if latency is not None:
                self._latency = max(0.0, float(latency))
            self._rpm, self._window, self._rate_mode, self._burst = (
                new_rpm,
                new_window,
                new_mode,
                new_burst,
            )
            self._limit = self._new_limit()
            return self._config_locked()

    def _new_limit(self) -> ServerLimit | None:
        if not self._rpm:
            return None
        return ServerLimit(self._rpm, self._window, self._rate_mode, self._burst)

    def _config_locked(self) -> dict[str, Any]:
        return {
            "latency": self._latency,
            "rpm": self._rpm,
            "window": self._window,
            "rate_mode": self._rate_mode,
            "burst": self._limit.burst if self._limit is not None else self._burst,
        }

    def config(self) -> dict[str, Any]:
        """Current ``{"latency": s, "rpm": n or None, "window": s, "rate_mode": "bucket" |
        "window", "burst": requests or None}``."""
        with self._lock:
            return self._config_locked()

    def add_fault(self, kind: str, target: str = "any", *, times: int = 1, **params: Any) -> None:
        """Queue ``times`` copies of one realtime fault (see :data:`FAULT_KINDS` for params).

        Raises:
            ValueError: invalid fault.
        """
        default_target = "judge" if kind == "verdict" and target == "any" else target
        self.add_faults([{"kind": kind, "target": default_target, **params}] * max(1, times))

    def add_faults(self, faults: Iterable[Mapping[str, Any]]) -> None:
        """Queue realtime faults in order (FIFO); each may carry ``times``. All are validated
        before any is queued.

        Raises:
            ValueError: any invalid fault (nothing is queued then).
        """
        expanded = _expand(faults, normalise_fault)
        with self._lock:
            self._faults.extend(expanded)

    def pending_faults(self) -> list[dict[str, Any]]:
        """Realtime faults not yet consumed, in order."""
        with self._lock:
            return copy.deepcopy(list(self._faults))

    def clear_faults(self) -> None:
        """Drop every pending realtime fault."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Clear faults, logs, the rate window, batches, files and batch settings; restore the
        start-up configuration."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._api_log.clear()
            (
                self._latency,
                self._rpm,
                self._window,
                self._rate_mode,
                self._burst,
            ) = self._initial
            self._limit = self._new_limit()
        with self._batch_lock:
            self._batch_settings = copy.deepcopy(self._initial_batch_settings)
            self._batches.clear()
            self._batch_faults.clear()
            self._submissions.clear()
            self._files.clear()
            self._uploads.clear()

    def request_log(self, target: str | None = None) -> list[dict[str, Any]]:
        """Copies of logged realtime generation requests, in arrival order.

        Each entry: ``seq``, ``monotonic`` and ``wall`` (arrival, seconds), ``method``, ``path``,
        ``model``, ``target`` (generate | judge | None for unreadable bodies), ``status`` (HTTP
        status answered; None while in flight), ``fault`` (kind applied or None),
        ``finish_reason``, ``duration`` (seconds until answered), and for readable bodies the
        prompt received: ``user``, ``system`` and ``prompt_tokens`` (the usage answered).
        Batch and file calls are in :meth:`api_log` instead.
        """
        with self._lock:
            entries = [dict(entry) for entry in self._log]
        if target is not None:
            entries = [entry for entry in entries if entry.get("target") == target]
        return entries

    def api_log(self) -> list[dict[str, Any]]:
        """Every provider API call (realtime, batch, files; not ``/_control``), in arrival
        order: ``{"seq", "wall", "method", "path", "status"}``."""
        with self._lock:
            return [dict(entry) for entry in self._api_log]

    @property
    def latency(self) -> float:
        """Default delay before every realtime answer, seconds."""
        with self._lock:
            return self._latency

    # -- batch configuration, faults and inspection --------------------------------------------

    def configure_batches(self, *, reset: bool = False, **settings: Any) -> dict[str, Any]:
        """Change the scripted batch behaviour (see :class:`BatchSettings`); ``reset`` first
        restores the start-up settings. Returns the current settings.

        Raises:
            ValueError, TypeError: unknown setting or invalid value (nothing changes then).
        """
        with self._batch_lock:
            current = copy.deepcopy(self._initial_batch_settings if reset else self._batch_settings)
            current.update(**settings)
            self._batch_settings = current
            return current.as_dict()

    def batch_settings(self) -> dict[str, Any]:
        """The current :class:`BatchSettings` as a dict."""
        with self._batch_lock:
            return self._batch_settings.as_dict()

    def add_batch_faults(self, faults: Iterable[Mapping[str, Any]]) -> None:
        """Queue batch-endpoint faults (see :data:`BATCH_FAULT_KINDS`), FIFO per ``op``.

        Raises:
            ValueError: any invalid fault (nothing is queued then).
        """
        expanded = _expand(faults, normalise_batch_fault)
        with self._batch_lock:
            self._batch_faults.extend(expanded)

    def add_batch_fault(self, kind: str, op: str = "any", *, times: int = 1, **params: Any) -> None:
        """Queue ``times`` copies of one batch-endpoint fault.

        Raises:
            ValueError: invalid fault.
        """
        self.add_batch_faults([{"kind": kind, "op": op, **params}] * max(1, times))

    def pending_batch_faults(self) -> list[dict[str, Any]]:
        """Batch-endpoint faults not yet consumed, in order."""
        with self._batch_lock:
            return copy.deepcopy(list(self._batch_faults))

    def clear_batch_faults(self) -> None:
        """Drop every pending batch-endpoint fault."""
        with self._batch_lock:
            self._batch_faults.clear()

    def batch_submissions(self) -> list[dict[str, Any]]:
        """Every batch creation attempt, in order: ``{"seq", "wall", "batch_id" (None when
        rejected), "tag" (display name / metadata tag; "" on Anthropic), "requests", "bytes",
        "accepted", "status", "reason"}``. Count ``accepted`` entries to assert how many batches
        were really created."""
        with self._batch_lock:
            return copy.deepcopy(self._submissions)

    def batches(self) -> list[dict[str, Any]]:
        """Summaries of the stored batches, oldest first (see :meth:`EmuBatch.summary`)."""
        with self._batch_lock:
            return [batch.summary() for batch in self._batches.values()]

    def batch(self, batch_id: str) -> EmuBatch:
        """The stored batch ``batch_id`` (a live object; read it, do not change it).

        Raises:
            KeyError: unknown id.
        """
        with self._batch_lock:
            return self._batches[batch_id]

    def finish_batches(self, batch_id: str | None = None) -> list[str]:
        """Bring one batch (or every unfinished one) to its final state now, as scripted by the
        current settings; returns the ids finished.

        Raises:
            KeyError: unknown ``batch_id``.
        """
        with self._batch_lock:
            targets = [self._batches[batch_id]] if batch_id else list(self._batches.values())
            finished = []
            for batch in targets:
                if not batch.final:
                    self._finalise(batch)
                    finished.append(batch.id)
            return finished

    def file(self, file_id: str) -> EmuFile:
        """A stored file (batch input or output).

        Raises:
            KeyError: unknown id.
        """
        with self._batch_lock:
            return self._files[file_id]

    # -- hooks for subclasses ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        """Answer one provider API request (everything but ``/_control``)."""
        raise NotImplementedError

    def error_body(self, code: int, message: str, *, retry_delay: float | None = None) -> Any:
        """The vendor's JSON error envelope for HTTP ``code``."""
        raise NotImplementedError

    def check_key(self, request: Request) -> Reply | None:
        """None when the request carries an acceptable API key, else the vendor's refusal."""
        raise NotImplementedError

    def batch_item_payload(self, item: BatchItem, fault: Mapping[str, Any] | None) -> Any:
        """The vendor's success response body for one batch item (same as realtime)."""
        raise NotImplementedError

    def control_id(self, custom_id: str) -> str:
        """The id by which batch settings (``error_ids``, ``item_faults`` ...) name a submitted
        custom id. Default: the custom id itself."""
        return custom_id

    def batch_finished(self, batch: EmuBatch) -> None:
        """Called (under the batch lock) when ``batch`` reaches its final state; e.g. to write
        output files. Default: nothing."""

    def rate_limit_reply(self, decision: Decision) -> Reply:
        """The 429 answer to a request over the rate limit. Default: the vendor's error body
        with :attr:`rate_limit_message` and a ``Retry-After`` of whole seconds (rounded up, as
        HTTP's delta-seconds are). Subclasses add what their vendor sends (headers, the delay in
        the message or body)."""
        return self.error_reply(
            429, self.rate_limit_message, retry_after=max(1, math.ceil(decision.wait))
        )

    # -- helpers for subclasses ----------------------------------------------------------------

    def error_reply(
        self,
        code: int,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        retry_delay: float | None = None,
    ) -> Reply:
        """An error :class:`Reply` in the vendor's shape, with Retry-After when given."""
        text = message or self.default_messages.get(code, f"Error {code}")
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = (
                str(int(retry_after)) if float(retry_after).is_integer() else f"{retry_after:g}"
            )
        return Reply(code, self.error_body(code, text, retry_delay=retry_delay), headers=headers)

    def dispatch(self, request: Request) -> Reply:
        """Log an API call, answer it with :meth:`handle`; unexpected errors answer 500."""
        with self._lock:
            entry = {
                "seq": len(self._api_log) + 1,
                "wall": time.time(),
                "method": request.method,
                "path": request.path,
                "status": None,
            }
            self._api_log.append(entry)
        try:
            reply = self.handle(request)
        except Exception as error:
            logger.exception(
                "%s emulator failed on %s %s", self.provider, request.method, request.path
            )
            reply = self.error_reply(500, f"emulator error: {type(error).__name__}: {error}")
        with self._lock:
            entry["status"] = reply.status
        return reply

    def serve_realtime(
        self,
        request: Request,
        *,
        model: str,
        schema_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None],
        prompt_of: Callable[[Mapping[str, Any]], tuple[str, str]],
        answer: Callable[[Mapping[str, Any], Mapping[str, Any] | None], tuple[Any, str | None]],
    ) -> Reply:
        """The shared realtime flow: log, parse, authenticate, rate-limit, apply the next
        matching fault, then answer.

        Args:
            request: the HTTP request (body: the vendor's generation request JSON).
            model: the model named by the path or body.
            schema_of: body -> output schema (tells judge requests from generate requests).
            prompt_of: body -> (user text, system text), logged with the request (``user``,
                ``system``) with the prompt token count the answer reports (``prompt_tokens``).
            answer: (body, fault or None) -> (response JSON, finish reason for the log).
        """
        entry = self._record(
            {
                "monotonic": time.monotonic(),
                "wall": time.time(),
                "method": request.method,
                "path": request.path,
                "model": model,
                "target": None,
                "status": None,
                "fault": None,
                "finish_reason": None,
                "duration": None,
            }
        )
        try:
            body = request.json()
            if not isinstance(body, Mapping):
                raise ValueError("request body must be a JSON object")
        except ValueError as error:
            self._finish(entry, 400)
            return self.error_reply(400, f"Invalid JSON payload received. {error}")
        target = schema_target(schema_of(body))
        user_text, system_text = prompt_of(body)
        with self._lock:
            entry["target"] = target
            entry["user"], entry["system"] = user_text, system_text
            entry["prompt_tokens"] = prompt_tokens_of(user_text, system_text)
            if not entry["model"]:
                entry["model"] = str(body.get("model") or "")

        denied = self.check_key(request)
        if denied is not None:
            self._finish(entry, denied.status)
            return denied

        refused = self._admit(time.monotonic())
        if refused is not None:
            self._finish(entry, 429, fault="rate_limit")
            return self.rate_limit_reply(refused)

        fault = self._take_fault(target)
        kind = fault["kind"] if fault else None
        delay = self.latency + (float(fault["seconds"]) if fault and kind == "latency" else 0.0)
        self._sleep(delay)

        if fault and kind == "status":
            code = int(fault["code"])
            self._finish(entry, code, fault="status")
            return self.error_reply(
                code,
                str(fault.get("message") or "") or None,
                retry_after=(
                    as_float(fault["retry_after"], 1.0)
                    if fault.get("retry_after") is not None
                    else None
                ),
                retry_delay=(
                    as_float(fault["retry_delay"], 1.0)
                    if fault.get("retry_delay") is not None
                    else None
                ),
            )
        if fault and kind == "timeout":
            self._sleep(float(fault["seconds"]))

        payload, finish_reason = answer(body, fault)
        self._finish(entry, 200, fault=kind, finish_reason=finish_reason)
        return Reply(200, payload)

    def batch_op(self, op: str, action: Callable[[], Reply]) -> Reply:
        """Run one batch-endpoint operation through the next matching batch fault, if any.

        Status faults answer an error instead (after performing the operation when the fault
        has ``commit``); timeout faults perform it and answer late; latency faults delay it.
        """
        fault = self._take_batch_fault(op)
        if fault is None:
            return action()
        kind = fault["kind"]
        if kind == "latency":
            self._sleep(float(fault["seconds"]))
            return action()
        if kind == "timeout":
            reply = action()
            self._sleep(float(fault["seconds"]))
            return reply
        if fault.get("commit"):
            action()
        return self.error_reply(
            int(fault["code"]),
            str(fault.get("message") or "") or None,
            retry_after=(
                as_float(fault["retry_after"], 1.0)
                if fault.get("retry_after") is not None
                else None
            ),
        )

    def new_id(self) -> str:
        """A fresh id suffix, unique across emulator instances (``<8 hex><4 digits>``)."""
        with self._batch_lock:
            self._counter += 1
            return f"{self._prefix}{self._counter:04d}"

    def create_batch(
        self,
        *,
        batch_id: str,
        tag: str,
        model: str,
        items: list[BatchItem],
        size_bytes: int,
        source: str = "inline",
        extra: Mapping[str, Any] | None = None,
        validation_errors: list[dict[str, Any]] | None = None,
        default_max_bytes: int | None = None,
    ) -> EmuBatch:
        """Store a new batch after checking the submission limits; log the submission.

        ``default_max_bytes`` overrides the class default for this submission (e.g. Gemini's
        inline limit); a ``max_bytes`` batch setting overrides both.

        Raises:
            BatchRejected: no requests, or more requests or bytes than allowed (status 400).
        """
        with self._batch_lock:
            settings = self._batch_settings
            max_requests = settings.max_requests or self.default_max_requests
            max_bytes = settings.max_bytes or default_max_bytes or self.default_max_bytes
            reason = ""
            if not items and not validation_errors:
                reason = "The batch has no requests."
            elif max_requests is not None and len(items) > max_requests:
                reason = (
                    f"Batch has {len(items)} requests; at most {max_requests} are allowed "
                    "per batch."
                )
            elif max_bytes is not None and size_bytes > max_bytes:
                reason = (
                    f"Batch input is {size_bytes} bytes; at most {max_bytes} bytes are allowed."
                )
            record = {
                "seq": len(self._submissions) + 1,
                "wall": time.time(),
                "batch_id": None if reason else batch_id,
                "tag": tag,
                "requests": len(items),
                "bytes": size_bytes,
                "accepted": not reason,
                "status": 400 if reason else 200,
                "reason": reason,
            }
            self._submissions.append(record)
            if reason:
                raise BatchRejected(reason)
            batch = EmuBatch(
                id=batch_id,
                tag=tag,
                model=model,
                items=items,
                size_bytes=size_bytes,
                created=time.time(),
                source=source,
                extra=dict(extra or {}),
                validation_errors=list(validation_errors or []),
            )
            self._batches[batch_id] = batch
            return batch

    def poll_batch(self, batch_id: str) -> EmuBatch:
        """One status poll: advances pending -> running -> final as scripted by ``polls``.

        Raises:
            KeyError: unknown id.
        """
        with self._batch_lock:
            batch = self._batches[batch_id]
            if batch.final:
                return batch
            batch.polls += 1
            if batch.polls == 1 and self._over_enqueued_limit(batch):
                return batch
            if (
                batch.cancel_requested is not None
                or batch.validation_errors
                or batch.polls > self._batch_settings.polls
            ):
                self._finalise(batch)
            else:
                batch.state = "running"
                batch.started = batch.started or time.time()
            return batch

    def peek_batch(self, batch_id: str) -> EmuBatch:
        """The batch without advancing it (for list and results calls).

        Raises:
            KeyError: unknown id.
        """
        with self._batch_lock:
            return self._batches[batch_id]

    def list_batches(self) -> list[EmuBatch]:
        """Stored batches, newest first, without advancing them."""
        with self._batch_lock:
            return list(reversed(self._batches.values()))

    def cancel_batch(self, batch_id: str) -> EmuBatch:
        """Request cancellation: an unfinished batch ends ``cancelled`` at its next poll with
        every item cancelled; a finished batch is unchanged.

        Raises:
            KeyError: unknown id.
        """
        with self._batch_lock:
            batch = self._batches[batch_id]
            if not batch.final and batch.cancel_requested is None:
                batch.cancel_requested = time.time()
            return batch

    def delete_batch(self, batch_id: str) -> None:
        """Forget a batch.

        Raises:
            KeyError: unknown id.
        """
        with self._batch_lock:
            del self._batches[batch_id]

    def store_file(self, file: EmuFile) -> EmuFile:
        """Keep ``file`` under its id."""
        with self._batch_lock:
            self._files[file.id] = file
            return file

    def find_file(self, file_id: str) -> EmuFile | None:
        """The stored file ``file_id`` or None."""
        with self._batch_lock:
            return self._files.get(file_id)

    def list_files(self) -> list[EmuFile]:
        """Stored files, newest first."""
        with self._batch_lock:
            return list(reversed(self._files.values()))

    def delete_file(self, file_id: str) -> bool:
        """Forget a file; False when unknown."""
        with self._batch_lock:
            return self._files.pop(file_id, None) is not None

    # -- internals -----------------------------------------------------------------------------

    def _over_enqueued_limit(self, batch: EmuBatch) -> bool:
        """Fail ``batch`` (``token_limit_exceeded``, no results) when its tokens and those of
        the model's other open batches exceed the enqueued-token limit (batch lock held)."""
        limit = self._batch_settings.enqueued_token_limit
        if limit is None:
            return False
        mine = sum(estimated_tokens(item) for item in batch.items)
        others = sum(
            estimated_tokens(item)
            for other in self._batches.values()
            if other is not batch and other.model == batch.model and not other.final
            for item in other.items
        )
        if mine + others <= limit:
            return False
        batch.state = "failed"
        batch.error = (
            f"Enqueued token limit reached for {batch.model} in organization org-emulated. "
            f"Limit: {limit} enqueued tokens. Please try again once some in_progress batches "
            "have been completed."
        )
        batch.error_code = 429
        batch.extra["error_code_name"] = "token_limit_exceeded"
        batch.outcomes = []
        batch.ended = time.time()
        self.batch_finished(batch)
        return True

    def _finalise(self, batch: EmuBatch) -> None:
        """Compute the item outcomes and the final state of ``batch`` (batch lock held)."""
        settings = self._batch_settings
        now = time.time()
        batch.started = batch.started or now
        ids = [self.control_id(item.custom_id) for item in batch.items]
        outcomes: list[ItemOutcome] = []
        if batch.validation_errors:
            batch.state = "failed"
            batch.error = "; ".join(str(e.get("message", e)) for e in batch.validation_errors)
        elif batch.cancel_requested is not None:
            outcomes = [
                ItemOutcome(item.custom_id, "cancelled", metadata=item.metadata)
                for item in batch.items
            ]
            batch.state = "cancelled"
        elif settings.outcome == "failed":
            batch.state = "failed"
            batch.error = settings.failure_message
            batch.error_code = 500
        else:
            unprocessed: set[str] = set()
            if settings.outcome == "expired":
                if settings.unprocessed_ids:
                    unprocessed = set(settings.unprocessed_ids) & set(ids)
                else:
                    unprocessed = pick_fraction(ids, settings.unprocessed_fraction, batch.id)
            errors = (set(settings.error_ids) & set(ids)) | pick_fraction(
                ids, settings.error_fraction, batch.id + ":errors"
            )
            dropped = set(settings.drop_ids)
            for item, key in zip(batch.items, ids, strict=True):
                cid = item.custom_id
                if key in dropped:
                    continue
                if key in unprocessed:
                    outcomes.append(ItemOutcome(cid, "expired", metadata=item.metadata))
                elif key in errors:
                    outcomes.append(
                        ItemOutcome(
                            cid,
                            "error",
                            code=settings.error_code,
                            message=settings.error_message,
                            metadata=item.metadata,
                        )
                    )
                else:
                    payload = self.batch_item_payload(item, settings.item_faults.get(key))
                    outcomes.append(ItemOutcome(cid, "ok", payload, metadata=item.metadata))
            if batch.items:
                template = batch.items[0]
                for extra_id in settings.extra_ids:
                    metadata = {"key": extra_id} if template.metadata is not None else None
                    payload = self.batch_item_payload(template, None)
                    outcomes.append(ItemOutcome(extra_id, "ok", payload, metadata=metadata))
            if settings.shuffle:
                random.Random(batch.id).shuffle(outcomes)
            batch.state = "expired" if settings.outcome == "expired" else "succeeded"
        batch.outcomes = outcomes
        batch.ended = now
        self.batch_finished(batch)

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

    def _admit(self, now: float) -> Decision | None:
        """None when the request fits the rate limit, else the refusal."""
        with self._lock:
            if self._limit is None:
                return None
            decision = self._limit.admit(now)
            return None if decision.admitted else decision

    def _take_fault(self, target: str) -> dict[str, Any] | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if _fault_matches(fault, target):
                    del self._faults[i]
                    return fault
        return None

    def _take_batch_fault(self, op: str) -> dict[str, Any] | None:
        with self._batch_lock:
            for i, fault in enumerate(self._batch_faults):
                if fault["op"] in ("any", op):
                    del self._batch_faults[i]
                    return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- control API ---------------------------------------------------------------------------

    def control(self, request: Request) -> Reply:
        """Answer a ``/_control/*`` request (see the module docstring)."""
        try:
            payload = request.json()
        except ValueError as error:
            return self.error_reply(400, f"invalid JSON: {error}")
        try:
            return self._control(request, payload)
        except KeyError as error:
            return self.error_reply(404, f"unknown id {error}")
        except (ValueError, TypeError) as error:
            return self.error_reply(400, str(error))

    def _control(self, request: Request, payload: Any) -> Reply:
        method, path = request.method, request.path
        if method == "GET" and path == "/_control/log":
            return Reply(200, {"requests": self.request_log(request.arg("target"))})
        if method == "GET" and path == "/_control/api_log":
            return Reply(200, {"requests": self.api_log()})
        if path in ("/_control/config", "/_control/health") and method == "GET":
            return Reply(200, {"ok": True, "url": self.url, **self.config()})
        if path == "/_control/faults":
            if method == "GET":
                return Reply(200, {"pending": self.pending_faults()})
            if method == "DELETE":
                self.clear_faults()
                return Reply(200, {"pending": []})
            if method == "POST":
                faults, replace = _fault_list(payload)
                if replace:
                    self.clear_faults()
                self.add_faults(faults)
                return Reply(200, {"pending": self.pending_faults()})
        if method == "POST" and path == "/_control/reset":
            self.reset()
            return Reply(200, {"ok": True})
        if method == "POST" and path == "/_control/config":
            payload = payload or {}
            if not isinstance(payload, Mapping):
                raise ValueError("expected {latency, rpm, window, rate_mode, burst}")
            kwargs: dict[str, Any] = {
                "latency": payload.get("latency"),
                "window": payload.get("window"),
                "rate_mode": payload.get("rate_mode"),
            }
            for name in ("rpm", "burst"):
                if name in payload:
                    kwargs[name] = payload[name]
            return Reply(200, self.configure(**kwargs))
        if method == "GET" and path == "/_control/batches":
            return Reply(200, {"batches": self.batches(), "submissions": self.batch_submissions()})
        if path == "/_control/batches/config":
            if method == "GET":
                return Reply(200, self.batch_settings())
            if method == "POST":
                settings = dict(payload or {})
                reset = bool(settings.pop("reset", False))
                return Reply(200, self.configure_batches(reset=reset, **settings))
        if method == "POST" and path == "/_control/batches/finish":
            batch_id = (payload or {}).get("batch_id") if isinstance(payload, Mapping) else None
            return Reply(200, {"finished": self.finish_batches(batch_id)})
        if path == "/_control/batches/faults":
            if method == "GET":
                return Reply(200, {"pending": self.pending_batch_faults()})
            if method == "DELETE":
                self.clear_batch_faults()
                return Reply(200, {"pending": []})
            if method == "POST":
                faults, replace = _fault_list(payload)
                if replace:
                    self.clear_batch_faults()
                self.add_batch_faults(faults)
                return Reply(200, {"pending": self.pending_batch_faults()})
        return self.error_reply(404, f"Unknown control path {method} {path}")


def _fault_list(payload: Any) -> tuple[list[Any], bool]:
    """(faults, replace) from a fault object, a list, or ``{"faults": [...], "replace"}``."""
    replace = False
    if isinstance(payload, Mapping) and "faults" in payload:
        replace = bool(payload.get("replace"))
        faults = payload["faults"]
    else:
        faults = payload
    if isinstance(faults, Mapping):
        faults = [faults]
    if not isinstance(faults, list):
        raise ValueError("expected a fault object, a list of faults or {faults: [...]}")
    return faults, replace


# --------------------------------------------------------------------------------------------
# Control client
# --------------------------------------------------------------------------------------------


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
        """Queue realtime faults; returns the pending list."""
        answer = self._call("POST", "/_control/faults", {"faults": faults, "replace": replace})
        return list(answer["pending"])

    def pending_faults(self) -> list[dict[str, Any]]:
        """Realtime faults not yet consumed."""
        return list(self._call("GET", "/_control/faults")["pending"])

    def log(self, target: str | None = None) -> list[dict[str, Any]]:
        """The realtime request log (see :meth:`EmulatorServer.request_log`)."""
        suffix = f"?target={target}" if target else ""
        return list(self._call("GET", "/_control/log" + suffix)["requests"])

    def api_log(self) -> list[dict[str, Any]]:
        """Every API call (see :meth:`EmulatorServer.api_log`)."""
        return list(self._call("GET", "/_control/api_log")["requests"])

    def reset(self) -> None:
        """Clear faults, logs, rate window, batches, files and batch settings."""
        self._call("POST", "/_control/reset", {})

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set ``latency`` (s), ``rpm`` (None = off), ``window`` (s), ``rate_mode`` (bucket |
        window) and/or ``burst`` (requests); returns the config."""
        return dict(self._call("POST", "/_control/config", settings))

    def configure_batches(self, *, reset: bool = False, **settings: Any) -> dict[str, Any]:
        """Change the batch behaviour (see :class:`BatchSettings`); returns the settings."""
        return dict(self._call("POST", "/_control/batches/config", {**settings, "reset": reset}))

    def batch_settings(self) -> dict[str, Any]:
        """The current batch settings."""
        return dict(self._call("GET", "/_control/batches/config"))

    def batches(self) -> list[dict[str, Any]]:
        """Summaries of the stored batches."""
        return list(self._call("GET", "/_control/batches")["batches"])

    def submissions(self) -> list[dict[str, Any]]:
        """The batch submission log (see :meth:`EmulatorServer.batch_submissions`)."""
        return list(self._call("GET", "/_control/batches")["submissions"])

    def finish_batches(self, batch_id: str | None = None) -> list[str]:
        """Finish one batch, or all unfinished ones, now; returns the ids finished."""
        payload = {"batch_id": batch_id} if batch_id else {}
        return list(self._call("POST", "/_control/batches/finish", payload)["finished"])

    def add_batch_faults(
        self, faults: list[Mapping[str, Any]], *, replace: bool = False
    ) -> list[dict[str, Any]]:
        """Queue batch-endpoint faults; returns the pending list."""
        answer = self._call(
            "POST", "/_control/batches/faults", {"faults": faults, "replace": replace}
        )
        return list(answer["pending"])
