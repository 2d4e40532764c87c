"""The emulated batch API's data: the scripted behaviour (:class:`BatchSettings`), a stored batch
(:class:`EmuBatch`) with its items and outcomes, stored files (:class:`EmuFile`), and the
deterministic choices (token estimates, item fractions) the batch store makes from them."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llm.emulators.faults import CONTENT_FAULT_KINDS, normalise_fault
from llm.emulators.schema import as_int

#: Normalised batch states, as in ``llm.providers.batch.BATCH_STATES``.
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "expired"})
BATCH_OUTCOMES = ("succeeded", "failed", "expired")


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
