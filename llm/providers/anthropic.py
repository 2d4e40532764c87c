"""Anthropic provider, realtime and batch, through the official ``anthropic`` SDK.

Realtime: one ``messages.create`` call per request. Structured output uses a single forced tool
(``tools=[{"name", "description", "input_schema": <pydantic JSON schema>}]``, ``tool_choice={"type":
"tool", "name"}``): the API returns the answer as the tool call's already-parsed ``input``, which
is more robust than asking for JSON text. The input (or, if the model answered in text instead,
the text) is validated by :func:`parse_structured`. Every failure becomes a
:class:`ProviderError`: 408/429/5xx/529, timeouts and connection failures are transient with
``retry_after`` from the response headers; other 4xx are permanent; a ``max_tokens`` (or context
window) stop is ``validation_failed``; a ``refusal`` stop is ``blocked``; an answer with neither a
tool call nor text is an ``api_error``. The client is built with ``max_retries=0``.

Batch (:class:`~llm.providers.batch.BatchProvider`): ``messages.batches.create(requests=[{
"custom_id", "params"}])``; results stream from ``messages.batches.results`` (JSONL, unordered)
and are matched by custom id; succeeded / errored / canceled / expired items are classified.
Limits: 100,000 requests or 256 MB per batch.

Finding a batch again (``batch_find``): Anthropic batches carry no metadata and no name, and a
batch's requests cannot be read back; only its results, once it has ended, show custom ids. So
every submitted ``custom_id`` is prefixed with a tag derived from the display name
(``sha256(display_name)[:10] + "-"``, stripped again from results, which is why our custom ids
may have at most 53 characters). :meth:`AnthropicProvider.batch_find` then:

1. returns the id this process submitted under that name, if any (exact);
2. lists batches newest first and, for each ended batch, reads the first result line: a custom
   id carrying the tag identifies the batch exactly;
3. in-progress batches cannot be identified yet. Those the caller rules out (``exclude_ids``:
   batch ids already recorded for other work; ``request_count``: a different size;
   ``created_after``: created before our submission could have happened) are skipped; if any
   other in-progress batch remains, the answer is unknown and a *transient* ProviderError says
   so (retry after those batches end, within 24 h), because answering "not found" could make the
   caller submit, and pay for, the same batch twice. None means "certainly not submitted".

The caller should still store the batch id as soon as :meth:`batch_submit` returns it, and call
``batch_find`` only for a submission that may have happened without its id being stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import anthropic
from anthropic import Anthropic
from pydantic import BaseModel

from llm.providers.base import ProviderError, ProviderRequest, ProviderResult, T
from llm.providers.batch import BatchItemResult, BatchStatus
from llm.providers.batch_support import guarded_iter
from llm.providers.common import (
    SdkExceptions,
    SdkProvider,
    batch_item_error,
    retry_after_from_headers,
    stainless_exceptions,
    unknown_custom_id,
)
from llm.providers.ratelimit_hints import rate_limit_hint

MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 256 * 1000 * 1000
#: Our custom ids: Anthropic allows 64 characters of [a-zA-Z0-9_-]; 11 carry the batch tag.
TAG_PREFIX_LENGTH = 11
MAX_CUSTOM_ID_LENGTH = 64 - TAG_PREFIX_LENGTH
CUSTOM_ID_RE = re.compile(rf"[a-zA-Z0-9_-]{{1,{MAX_CUSTOM_ID_LENGTH}}}")
_PREFIXED_RE = re.compile(r"([0-9a-f]{10})-(.+)", re.DOTALL)
#: Error types of errored batch items that may succeed when retried.
TRANSIENT_ERROR_TYPES = frozenset(
    {"api_error", "overloaded_error", "rate_limit_error", "timeout_error"}
)
#: Stop reasons meaning the answer was cut before it was complete.
TRUNCATED_STOP_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})

# display name -> batch id of batches this process submitted (bounded, most recent kept).
_SUBMITTED: OrderedDict[str, str] = OrderedDict()
_SUBMITTED_LOCK = threading.Lock()
_SUBMITTED_MAX = 4096


def tag_prefix(display_name: str) -> str:
    """The 11-character custom-id prefix that marks a batch as ``display_name``'s."""
    return hashlib.sha256(display_name.encode("utf-8")).hexdigest()[:10] + "-"


def strip_tag(custom_id: str) -> str:
    """A result's custom id without our tag prefix (unchanged when it has none)."""
    match = _PREFIXED_RE.fullmatch(custom_id)
    return match.group(2) if match else custom_id


def tool_for(output_class: type[BaseModel]) -> dict[str, Any]:
    """The single tool whose input is an ``output_class`` object (name, description,
    ``input_schema`` = the pydantic JSON schema)."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", output_class.__name__)[:64] or "answer"
    doc = " ".join((inspect.getdoc(output_class) or "").split())
    description = f"Record the answer as a {output_class.__name__} object. {doc}".strip()
    return {
        "name": name,
        "description": description[:1024],
        "input_schema": output_class.model_json_schema(),
    }


def _remember(display_name: str, batch_id: str) -> None:
    with _SUBMITTED_LOCK:
        _SUBMITTED[display_name] = batch_id
        _SUBMITTED.move_to_end(display_name)
        while len(_SUBMITTED) > _SUBMITTED_MAX:
            _SUBMITTED.popitem(last=False)


def _total(counts: Any) -> int:
    return sum(
        int(getattr(counts, name, 0) or 0)
        for name in ("processing", "succeeded", "errored", "canceled", "expired")
    )


class AnthropicProvider(SdkProvider[Any]):
    """Anthropic messages with structured output (one forced tool), realtime and batch.

    Args:
        api_key: Anthropic API key (from the environment; never logged, never in errors).
        base_url: endpoint root without ``/v1`` (e.g. an emulator ``http://127.0.0.1:PORT``);
            None = Anthropic's (or ``ANTHROPIC_BASE_URL``).
        timeout: seconds one call may take before it fails with ``kind="timeout"``.
        max_requests_per_batch, max_bytes_per_batch: limits :meth:`batch_submit` enforces and
            callers split by (requests; bytes of the serialised request body).

    Raises:
        ProviderError: ``kind="api_error"``, permanent, when ``api_key`` is empty.
    """

    name = "anthropic"
    vendor: ClassVar[str] = "Anthropic"
    key_variable: ClassVar[str] = "ANTHROPIC_API_KEY"
    sdk_exceptions: ClassVar[SdkExceptions] = stainless_exceptions(anthropic)
    max_requests_default: ClassVar[int] = MAX_BATCH_REQUESTS
    max_bytes_default: ClassVar[int] = MAX_BATCH_BYTES
    _client: Anthropic

    def _client_build(self) -> Anthropic:
        return Anthropic(
            api_key=self._api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout
        )

    # -- errors --------------------------------------------------------------------------------

    def _status_error(self, error: anthropic.APIStatusError) -> ProviderError:
        headers = error.response.headers
        detail = getattr(error, "api_message", None) or error.message
        return self._http_error(
            int(error.status_code),
            getattr(error, "type", None),
            detail,
            lambda: retry_after_from_headers(headers),
            hint=lambda: rate_limit_hint(headers, detail),
        )

    # -- realtime ------------------------------------------------------------------------------

    def _params(self, request: ProviderRequest[Any]) -> dict[str, Any]:
        """The messages body of one request (the same for realtime and batch ``params``).

        ``request.temperature`` is not sent: the Messages API of this SDK generation has no
        sampling parameters (the SDK refuses ``temperature``).
        """
        tool = tool_for(request.output_class)
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_output_tokens,
            "messages": [{"role": "user", "content": request.user_prompt}],
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": tool["name"]},
        }
        if request.system_prompt:
            params["system"] = request.system_prompt
        return params

    def generate(self, request: ProviderRequest[T]) -> ProviderResult[T]:
        """Run one structured-output request.

        Returns:
            ProviderResult with the validated ``request.output_class`` instance, the raw text
            (the tool input as JSON), input tokens (cache writes and reads included) and output
            tokens, latency in seconds, the model reported and the stop reason (``tool_use``).

        Raises:
            ProviderError: ``api_error`` (HTTP errors: 408/429/5xx/529 and connection failures
                transient with ``retry_after``; other 4xx permanent; also an empty answer),
                ``timeout`` (transient), ``blocked`` (``refusal`` stop; permanent),
                ``validation_failed`` (``max_tokens`` stop, or output not valid for the output
                class; permanent).
        """
        params = self._params(request)
        return self._timed(lambda: self._client.messages.create(**params), request)

    def _interpret(
        self,
        message: Any,
        output_class: type[T],
        *,
        model: str,
        max_output_tokens: int | None,
        latency: float,
    ) -> ProviderResult[T]:
        """Turn one ``Message`` (realtime or batch item) into a validated result.

        Raises:
            ProviderError: refused, truncated, empty or invalid answers.
        """
        usage = message.usage
        input_tokens = int(getattr(usage, "input_tokens", 0) or 0)
        input_tokens += int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        input_tokens += int(getattr(usage, "cache_read_input_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
        tokens = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        stop_reason = str(message.stop_reason or "")
        tool_name = tool_for(output_class)["name"]
        blocks = list(message.content or [])
        tool_input = next(
            (
                getattr(block, "input", None)
                for block in blocks
                if getattr(block, "type", "") == "tool_use"
                and getattr(block, "name", "") == tool_name
            ),
            None,
        )
        if tool_input is not None:
            text = json.dumps(tool_input, ensure_ascii=False)
        else:
            text = "".join(
                str(getattr(block, "text", "") or "")
                for block in blocks
                if getattr(block, "type", "") == "text"
            )
        if stop_reason == "refusal":
            raise self._answer_error(
                "Anthropic refused to answer (stop reason refusal)",
                kind="blocked",
                raw_text=text,
                tokens=tokens,
            )
        if stop_reason in TRUNCATED_STOP_REASONS:
            raise self._truncated_error(
                max_output_tokens,
                raw_text=text,
                tokens=tokens,
                reason=f" (stop reason {stop_reason})",
                what="answer",
            )
        if tool_input is None and not text.strip():
            raise self._empty_error("stop reason", stop_reason, tokens)
        return self._validated(
            text,
            output_class,
            tokens=tokens,
            latency=latency,
            model_version=str(message.model or model),
            finish_reason=stop_reason,
        )

    # -- batch: submission ---------------------------------------------------------------------

    def _batch_entry(self, request: ProviderRequest[Any], prefix: str) -> dict[str, Any]:
        return {"custom_id": prefix + request.custom_id, "params": self._params(request)}

    def batch_request_bytes(self, request: ProviderRequest[BaseModel]) -> int:
        """Bytes of one request in the batch body (tag prefix and a separator included).

        Compact JSON with non-ASCII escaped: never less than what the SDK sends.
        """
        entry = self._batch_entry(request, "x" * TAG_PREFIX_LENGTH)
        return len(json.dumps(entry, separators=(",", ":")).encode("utf-8")) + 1

    def batch_create(
        self, requests: Sequence[ProviderRequest[BaseModel]], *, display_name: str
    ) -> BatchStatus:
        """Create one message batch; returns it as created (id ``msgbatch_...``).

        Every custom id is sent as ``tag_prefix(display_name) + custom_id`` (see the module
        docstring); results give the caller's custom ids back. Not idempotent.

        Raises:
            ProviderError: invalid custom ids (1-53 characters of letters, digits, ``_``, ``-``),
                duplicates, an empty or oversize set, or an empty ``display_name`` (permanent,
                nothing sent); or an HTTP/transport failure of the creation.
        """
        requests = list(requests)
        if not display_name:
            raise ProviderError(
                "Anthropic batch rejected: a display name is needed to find the batch again",
                transient=False,
            )
        self._batch_check(
            requests,
            custom_id_pattern=CUSTOM_ID_RE,
            custom_id_rule=(
                f"use 1 to {MAX_CUSTOM_ID_LENGTH} characters of letters, digits, '_' and '-' "
                f"(Anthropic allows 64; {TAG_PREFIX_LENGTH} carry the batch tag)"
            ),
        )
        prefix = tag_prefix(display_name)
        entries = [self._batch_entry(request, prefix) for request in requests]
        batch = self._guard(lambda: self._client.messages.batches.create(requests=entries))  # type: ignore[arg-type]
        _remember(display_name, batch.id)
        return self._status(batch, display_name)

    # -- batch: status -------------------------------------------------------------------------

    def _status(self, batch: Any, display_name: str = "") -> BatchStatus:
        """Normalised status. Anthropic only says in_progress / canceling / ended; an ended
        batch is ``cancelled`` if a cancel was requested, ``expired`` if items expired,
        ``failed`` if every item errored, else ``succeeded``."""
        counts = batch.request_counts
        total = _total(counts)
        raw_state = str(batch.processing_status)
        error = ""
        if raw_state != "ended":
            state = "running"
        elif batch.cancel_initiated_at is not None:
            state = "cancelled"
        elif int(counts.expired or 0) > 0:
            state = "expired"
        elif total > 0 and int(counts.errored or 0) == total:
            state = "failed"
            error = f"all {total} requests of the batch errored"
        else:
            state = "succeeded"
        return BatchStatus(
            batch_id=batch.id,
            display_name=display_name,
            state=state,
            raw_state=raw_state,
            request_count=total,
            completed=int(counts.succeeded or 0),
            failed=int(counts.errored or 0) + int(counts.canceled or 0) + int(counts.expired or 0),
            error=error,
            created_at=getattr(batch, "created_at", None),
        )

    def batch_get(self, batch_id: str) -> BatchStatus:
        """Poll one batch (``display_name`` is "": Anthropic keeps none).

        Raises:
            ProviderError: unknown id (404, permanent) or a transport failure.
        """
        return self._status(self._guard(lambda: self._client.messages.batches.retrieve(batch_id)))

    def batch_list(self) -> Iterator[BatchStatus]:
        """All batches of this key, newest first, across pages."""
        for batch in self._pages(lambda: self._client.messages.batches.list(limit=100)):
            yield self._status(batch)

    def batch_find(
        self,
        display_name: str,
        *,
        request_count: int | None = None,
        created_after: datetime | None = None,
        exclude_ids: Collection[str] = (),
    ) -> BatchStatus | None:
        """The batch submitted under ``display_name``, or None when certainly none was.

        See the module docstring for the method. ``request_count`` (the size submitted),
        ``created_after`` (safely before the submission attempt, allowing for clock skew
        between us and Anthropic, e.g. the row's creation minus a minute; naive means UTC) and
        ``exclude_ids`` (ids known to belong to other work) only rule batches out, never in.

        Raises:
            ProviderError: transient, when an in-progress batch that may be ours cannot be
                identified yet (retry once it has ended); or a transport failure.
        """
        with _SUBMITTED_LOCK:
            known = _SUBMITTED.get(display_name)
        if known is not None:
            return self._status(
                self._guard(lambda: self._client.messages.batches.retrieve(known)), display_name
            )
        if created_after is not None and created_after.tzinfo is None:
            created_after = created_after.replace(tzinfo=UTC)  # naive = UTC, as Django stores
        prefix = tag_prefix(display_name)
        excluded = set(exclude_ids)
        undecided: list[str] = []
        for batch in self._pages(lambda: self._client.messages.batches.list(limit=100)):
            if created_after is not None and batch.created_at < created_after:
                break  # newest first: every later batch is older still
            if batch.id in excluded:
                continue
            if request_count is not None and _total(batch.request_counts) != request_count:
                continue  # another size: not the batch submitted under this name
            if batch.processing_status == "ended":
                if batch.archived_at is None and self._first_custom_id(batch.id).startswith(prefix):
                    return self._status(batch, display_name)
                continue
            undecided.append(batch.id)
        if undecided:
            raise self._error(
                f"cannot tell yet whether Anthropic batch(es) {', '.join(undecided[:5])} hold "
                f"{display_name!r}: Anthropic batches carry no name and their custom ids are "
                "readable only once they have ended; retry after they end, or rule them out "
                "with request_count / created_after / exclude_ids",
                transient=True,
            )
        return None

    def _first_custom_id(self, batch_id: str) -> str:
        """The custom id on the first result line of an ended batch ("" if none)."""
        with contextlib.ExitStack() as stack:
            decoder = self._guard(lambda: self._client.messages.batches.results(batch_id))
            stack.callback(decoder.close)
            first = self._guard(lambda: next(iter(decoder), None))
        return str(first.custom_id) if first is not None else ""

    def batch_cancel(self, batch_id: str) -> BatchStatus:
        """Ask Anthropic to cancel; returns the state after the request (``canceling``)."""
        return self._status(self._guard(lambda: self._client.messages.batches.cancel(batch_id)))

    # -- batch: results ------------------------------------------------------------------------

    def batch_results(
        self, batch_id: str, output_classes: Mapping[str, type[BaseModel]]
    ) -> Iterator[BatchItemResult]:
        """Stream the results of an ended batch (JSONL, unordered), matched by custom id (our
        tag prefix removed).

        ``errored`` items are ``api_error`` (transient for api/overloaded/rate-limit/timeout
        errors); ``canceled`` and ``expired`` items are transient ``api_error`` (redo them in
        realtime).

        Raises:
            ProviderError: the batch has not ended yet (transient), or a transport failure.
        """
        batch = self._guard(lambda: self._client.messages.batches.retrieve(batch_id))
        status = batch.processing_status
        self._require_ended(batch_id, status, ended=status == "ended")
        with contextlib.ExitStack() as stack:
            decoder = self._guard(lambda: self._client.messages.batches.results(batch_id))
            stack.callback(decoder.close)
            for item in guarded_iter(decoder, self._guard):
                yield self._item(item, output_classes)

    def _item(self, item: Any, output_classes: Mapping[str, type[BaseModel]]) -> BatchItemResult:
        custom_id = strip_tag(str(item.custom_id))
        output_class = output_classes.get(custom_id)
        if output_class is None:
            return unknown_custom_id("Anthropic", custom_id)
        result = item.result
        kind = str(getattr(result, "type", ""))
        if kind == "succeeded":
            model = str(getattr(result.message, "model", "") or "")
            return self._answered_item(custom_id, result.message, output_class, model)
        if kind == "errored":
            inner = getattr(getattr(result, "error", None), "error", None)
            error_type = str(getattr(inner, "type", "") or "error")
            message = str(getattr(inner, "message", "") or "no message")
            return batch_item_error(
                "Anthropic",
                custom_id,
                f"{error_type}: {message}",
                transient=error_type in TRANSIENT_ERROR_TYPES,
                secrets=[self._api_key],
            )
        if kind in ("canceled", "expired"):
            return batch_item_error(
                "Anthropic", custom_id, f"the request was {kind} before it ran", transient=True
            )
        return batch_item_error("Anthropic", custom_id, f"unknown result type {kind!r}")
