"""The batch contract: submit many requests at once at the batch price, poll, collect by custom_id.

Every batch-capable provider (Gemini, OpenAI, Anthropic) implements :class:`BatchProvider`.
Results are matched by ``custom_id``, never by position; results are streamed so memory does not
grow with the number of requests beyond the results the caller keeps.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

from .base import ProviderError, ProviderRequest, ProviderResult

#: Normalised batch states (each provider maps its own onto these).
BATCH_STATES = ("pending", "running", "succeeded", "failed", "cancelled", "expired")
FINAL_BATCH_STATES = frozenset({"succeeded", "failed", "cancelled", "expired"})


@dataclass(frozen=True)
class BatchStatus:
    """A provider batch as last seen.

    Attributes:
        batch_id: the provider's id (e.g. "batches/abc", "batch_abc", "msgbatch_abc").
        display_name: our deterministic name or metadata tag, when the provider returns it.
        state: one of :data:`BATCH_STATES`.
        raw_state: the provider's own state string.
        request_count, completed, failed: item counts as reported (0 when unknown).
        error: the provider's reason for a failed batch, if any.
        error_code: the provider's machine-readable reason, if it gives one (OpenAI
            ``token_limit_exceeded``: the per-model enqueued-token limit refused the batch).
        created_at: when the provider created the batch (aware), None when not reported.
    """

    batch_id: str
    display_name: str
    state: str
    raw_state: str
    request_count: int = 0
    completed: int = 0
    failed: int = 0
    error: str = ""
    error_code: str = ""
    created_at: datetime | None = None


@dataclass(frozen=True)
class BatchItemResult:
    """One item of a finished batch: ``result`` or ``error``, keyed by ``custom_id``.

    ``error`` is a classified :class:`ProviderError` (``validation_failed`` for broken output,
    ``blocked`` for safety-blocked or empty answers, ``api_error`` for per-item errors, and
    ``expired``/``cancelled`` items as transient api errors so they can be redone in realtime).
    """

    custom_id: str
    result: ProviderResult[Any] | None
    error: ProviderError | None


@dataclass(frozen=True)
class ProviderFile:
    """A file held by the provider's file storage (OpenAI files, Gemini files).

    ``name`` is the file name (OpenAI) or display name (Gemini) as the provider lists it,
    ``size_bytes`` its size in bytes, ``created_at`` when it was stored (None if not reported).
    """

    file_id: str
    name: str
    size_bytes: int = 0
    created_at: datetime | None = None


class BatchProvider(Protocol):
    """A provider with a batch API.

    ``max_requests_per_batch`` and ``max_bytes_per_batch`` are the provider's limits (requests,
    bytes of the serialised input); callers split larger sets into several batches.
    """

    name: str
    max_requests_per_batch: int
    max_bytes_per_batch: int

    def batch_request_bytes(self, request: ProviderRequest[BaseModel]) -> int:
        """Size in bytes of one request as it would be serialised into the batch input."""
        ...

    def batch_submit(
        self, requests: Sequence[ProviderRequest[BaseModel]], *, display_name: str
    ) -> str:
        """Submit one batch (each request carries a unique ``custom_id``); return its id.

        ``display_name`` is our deterministic tag, stored with the batch so that
        :meth:`batch_find` can find it after a crash. Not idempotent on the provider side.

        Raises:
            ProviderError: rejected (e.g. oversize: transient=False) or a transport failure.
        """
        ...

    def batch_create(
        self, requests: Sequence[ProviderRequest[BaseModel]], *, display_name: str
    ) -> BatchStatus:
        """As :meth:`batch_submit`, returning the batch as the provider answered the creation
        (its id and its first state, e.g. ``validating``)."""
        ...

    def batch_find(
        self,
        display_name: str,
        *,
        request_count: int | None = None,
        created_after: datetime | None = None,
        exclude_ids: Collection[str] = (),
    ) -> BatchStatus | None:
        """The batch whose display name or metadata tag is ``display_name``, if it exists.

        ``request_count`` (the number of requests submitted), ``created_after`` (safely before
        the submission attempt, e.g. the row's creation minus a minute of clock skew; naive
        means UTC) and ``exclude_ids`` (ids known to belong to other work) only rule batches
        out, where the provider reports them: a batch of another size, or created before the
        row was written, is never adopted.
        """
        ...

    def batch_get(self, batch_id: str) -> BatchStatus:
        """Poll one batch.

        Raises:
            ProviderError: unknown id (transient=False) or a transport failure.
        """
        ...

    def batch_results(
        self, batch_id: str, output_classes: Mapping[str, type[BaseModel]]
    ) -> Iterator[BatchItemResult]:
        """Stream the results of a finished batch, validated against ``output_classes[custom_id]``.

        Items whose custom_id is not in ``output_classes`` are yielded with an ``api_error``
        ("unknown custom_id") so the caller can report them; missing items are the caller's to
        detect (it knows what it submitted).
        """
        ...

    def batch_cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to cancel; returns the state after the request."""
        ...

    def batch_list(self) -> Iterator[BatchStatus]:
        """All batches the provider knows for this key, newest first, across pages."""
        ...

    def batch_files(self, batch_id: str) -> list[str]:
        """Ids of the files the provider holds for one batch (uploaded input, results and error
        files); [] for a provider without file storage (Anthropic) or an inline batch."""
        ...

    def file_delete(self, file_id: str) -> bool:
        """Delete one stored file; False when the provider does not know it (any more).

        Raises:
            ProviderError: a transport failure or another refusal.
        """
        ...

    def files_list(self) -> Iterator[ProviderFile]:
        """Every file the provider stores for this key, newest first, across pages."""
        ...
