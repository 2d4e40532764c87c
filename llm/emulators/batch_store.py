"""The emulated batch API's state: the batches, files and upload sessions an emulator holds, its
scripted batch behaviour (:class:`~llm.emulators.batches.BatchSettings`), the FIFO of
batch-endpoint faults and the submission log. :class:`BatchStore` is that half of
:class:`~llm.emulators.server.EmulatorServer`; the vendor's emulator turns its batches into the
vendor's JSON.
"""

from __future__ import annotations

import copy
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from llm.emulators.batches import (
    BatchItem,
    BatchRejected,
    BatchSettings,
    EmuBatch,
    EmuFile,
    ItemOutcome,
    estimated_tokens,
    pick_fraction,
)
from llm.emulators.faults import expand_faults, normalise_batch_fault


class BatchStore:
    """Batches, files, batch settings, batch-endpoint faults and the submission log, under one
    re-entrant lock of their own: finishing a big batch builds many answers and must not hold
    up realtime calls. All public methods are thread-safe.

    Args:
        batch_settings: initial :class:`~llm.emulators.batches.BatchSettings` (also what a reset
            restores).

    Subclasses implement :meth:`batch_item_payload` (optionally :meth:`batch_finished` and
    :meth:`control_id`) and set :attr:`default_max_requests` and :attr:`default_max_bytes`.

    Raises:
        ValueError, TypeError: an unknown batch setting or invalid value.
    """

    #: Real submission limits of the vendor (requests per batch, bytes of serialised input).
    default_max_requests: ClassVar[int | None] = None
    default_max_bytes: ClassVar[int | None] = None

    def __init__(self, batch_settings: Mapping[str, Any] | None = None) -> None:
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

    def _reset_batches(self) -> None:
        """Forget batches, files, uploads, batch faults and submissions; restore the start-up
        batch settings."""
        with self._batch_lock:
            self._batch_settings = copy.deepcopy(self._initial_batch_settings)
            self._batches.clear()
            self._batch_faults.clear()
            self._submissions.clear()
            self._files.clear()
            self._uploads.clear()

    # -- batch configuration, faults and inspection --------------------------------------------

    def configure_batches(self, *, reset: bool = False, **settings: Any) -> dict[str, Any]:
        """Change the scripted batch behaviour (see
        :class:`~llm.emulators.batches.BatchSettings`); ``reset`` first restores the start-up
        settings. Returns the current settings.

        Raises:
            ValueError, TypeError: unknown setting or invalid value (nothing changes then).
        """
        with self._batch_lock:
            current = copy.deepcopy(self._initial_batch_settings if reset else self._batch_settings)
            current.update(**settings)
            self._batch_settings = current
            return current.as_dict()

    def batch_settings(self) -> dict[str, Any]:
        """The current :class:`~llm.emulators.batches.BatchSettings` as a dict."""
        with self._batch_lock:
            return self._batch_settings.as_dict()

    def add_batch_faults(self, faults: Iterable[Mapping[str, Any]]) -> None:
        """Queue batch-endpoint faults (see :data:`~llm.emulators.faults.BATCH_FAULT_KINDS`),
        FIFO per ``op``.

        Raises:
            ValueError: any invalid fault (nothing is queued then).
        """
        expanded = expand_faults(faults, normalise_batch_fault)
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
        """Summaries of the stored batches, oldest first (see
        :meth:`~llm.emulators.batches.EmuBatch.summary`)."""
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

    # -- operations for subclasses -------------------------------------------------------------

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

    def _take_batch_fault(self, op: str) -> dict[str, Any] | None:
        with self._batch_lock:
            for i, fault in enumerate(self._batch_faults):
                if fault["op"] in ("any", op):
                    del self._batch_faults[i]
                    return fault
        return None
