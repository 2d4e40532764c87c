"""Scripted faults of the emulators: the realtime fault kinds (:data:`FAULT_KINDS`), applied FIFO
per target (generate | judge | any), and the batch-endpoint fault kinds
(:data:`BATCH_FAULT_KINDS`), applied FIFO per operation; their validation and defaults."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from llm.emulators.schema import as_float, as_int

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

#: | cancel | upload | download | any):
#:   status {code, message, retry_after, commit}: answer with an error; with ``commit`` the
#:          operation still takes effect (e.g. the batch is created but its answer is lost).
#:   timeout {seconds=10}: perform the operation, then answer only after ``seconds``.
#:   latency {seconds}: extra delay, then perform the operation normally.
BATCH_FAULT_KINDS = frozenset({"status", "timeout", "latency"})
BATCH_OPS = frozenset({"create", "get", "list", "results", "cancel", "upload", "download", "any"})

DEFAULT_FAKE_GENE = "FAKEGENE1"
DEFAULT_FAKE_PATHWAY = "Imaginary Neuronal Signaling Pathway WP99999"


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


def fault_matches(fault: Mapping[str, Any], target: str) -> bool:
    """True when a normalised realtime fault applies to a request of ``target`` (generate |
    judge); verdict faults apply to judge requests only."""
    if fault["kind"] == "verdict" and target != "judge":
        return False
    return fault["target"] in ("any", target)


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


def expand_faults(
    faults: Iterable[Mapping[str, Any]], normalise: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Validate every fault and repeat each ``times`` times (nothing is queued on error)."""
    expanded: list[dict[str, Any]] = []
    for raw in faults:
        times = as_int(raw.get("times", 1), 1) if isinstance(raw, Mapping) else 1
        fault = normalise(raw)
        expanded.extend(copy.deepcopy(fault) for _ in range(max(1, times)))
    return expanded
