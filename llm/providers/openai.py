"""OpenAI provider, realtime and batch, through the official ``openai`` SDK.

Realtime: one ``chat.completions.create`` call per request with structured output
(``response_format={"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``; the
schema is the caller's pydantic class made strict the way the SDK's own ``.parse()`` does it). The
answer text is validated by :func:`parse_structured`. Every failure becomes a
:class:`ProviderError`: 408/429/5xx, timeouts and connection failures are transient with
``retry_after`` from the ``retry-after-ms`` / ``Retry-After`` headers; other 4xx are permanent; a
``length`` stop is ``validation_failed``; a refusal or ``content_filter`` stop is ``blocked``; an
empty answer is an ``api_error``. The client is built with ``max_retries=0``: retries are the
caller's (rate limit and backoff are shared by all workers).

Batch (:class:`~llm.providers.batch.BatchProvider`): the requests are written as JSONL
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`` to a temporary file,
uploaded with ``files.create(purpose="batch")`` and submitted with ``batches.create(...,
metadata={"tag": display_name})``; :meth:`OpenAIProvider.batch_find` lists batches and matches the
tag. Results are streamed line by line from ``output_file_id`` and ``error_file_id``
(``files.with_streaming_response.content``) and matched by ``custom_id``. Limits: 50,000 requests
and 200 MB of input per batch.

``base_url`` is the endpoint root (e.g. ``LLM_BASE_URL`` = an emulator ``http://127.0.0.1:PORT``);
``/v1`` is appended unless already there. ``llm/emulators/openai.py`` speaks the same
protocol locally.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from llm.providers.base import ProviderError, ProviderRequest, ProviderResult, T
from llm.providers.batch import FINAL_BATCH_STATES, BatchItemResult, BatchStatus, ProviderFile
from llm.providers.batch_support import decode_row, first_named, guarded_iter
from llm.providers.common import (
    SdkExceptions,
    SdkProvider,
    batch_item_error,
    retry_after_from_headers,
    stainless_exceptions,
    unknown_custom_id,
)
from llm.providers.ratelimit_hints import rate_limit_hint

CHAT_ENDPOINT: Final = "/v1/chat/completions"
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 200 * 1000 * 1000
#: OpenAI batch metadata values hold at most 512 characters.
MAX_TAG_LENGTH = 512

#: OpenAI batch statuses -> normalised states.
BATCH_STATE_MAP = {
    "validating": "pending",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "running",
    "completed": "succeeded",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
#: Row-level error codes of items that never ran; they can be redone in realtime.
_NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})
#: JSON Schema keywords outside structured outputs' strict subset: with any of them the schema is
#: sent with ``strict: false`` (best effort) and our own validation enforces them.
_NON_STRICT_KEYWORDS = frozenset(
    {
        "minLength",
        "maxLength",
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
    }
)


def _keywords(schema: Any) -> set[str]:
    """Every key used anywhere in a JSON schema (property names excluded)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                for sub in value.values():
                    found |= _keywords(sub)
            else:
                found.add(key)
                found |= _keywords(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _keywords(item)
    return found


def _drop_defaults(schema: Any) -> None:
    """Remove ``default`` keywords (every field is required in strict mode)."""
    if isinstance(schema, dict):
        schema.pop("default", None)
        for key, value in schema.items():
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                for sub in value.values():
                    _drop_defaults(sub)
            else:
                _drop_defaults(value)
    elif isinstance(schema, list):
        for item in schema:
            _drop_defaults(item)


def response_format(output_class: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` for ``output_class``.

    The schema is made strict as the SDK's ``chat.completions.parse`` does (every property
    required, ``additionalProperties: false``, ``$ref`` siblings unravelled), without defaults.
    ``strict`` is True unless the schema uses keywords strict mode does not support (e.g. string
    ``minLength``), in which case the schema is still sent as guidance and the answer is
    validated against the pydantic class afterwards anyway.
    """
    from openai.lib._pydantic import to_strict_json_schema

    schema = copy.deepcopy(to_strict_json_schema(output_class))
    _drop_defaults(schema)
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", output_class.__name__)[:64] or "answer"
    return {
        "type": "json_schema",
        "json_schema": {
            "name": name,
            "schema": schema,
            "strict": not (_keywords(schema) & _NON_STRICT_KEYWORDS),
        },
    }


def batch_state(raw_state: str) -> str:
    """Normalised state of an OpenAI batch status; unknown statuses count as running."""
    return BATCH_STATE_MAP.get(raw_state, "running")


def _v1(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


class OpenAIProvider(SdkProvider[ChatCompletion]):
    """OpenAI chat completions with structured output, realtime and batch.

    Args:
        api_key: OpenAI API key (from the environment; never logged, never in errors).
        base_url: endpoint root (an emulator ``http://127.0.0.1:PORT`` or a compatible server);
            ``/v1`` is appended unless present. None = OpenAI's.
        timeout: seconds one call may take before it fails with ``kind="timeout"``.
        max_requests_per_batch, max_bytes_per_batch: limits :meth:`batch_submit` enforces and
            callers split by (requests; bytes of the JSONL input).

    Raises:
        ProviderError: ``kind="api_error"``, permanent, when ``api_key`` is empty.
    """

    name = "openai"
    vendor: ClassVar[str] = "OpenAI"
    key_variable: ClassVar[str] = "OPENAI_API_KEY"
    sdk_exceptions: ClassVar[SdkExceptions] = stainless_exceptions(openai)
    max_requests_default: ClassVar[int] = MAX_BATCH_REQUESTS
    max_bytes_default: ClassVar[int] = MAX_BATCH_BYTES
    _client: OpenAI

    def _client_build(self) -> OpenAI:
        return OpenAI(
            api_key=self._api_key,
            base_url=_v1(self.base_url) if self.base_url else None,
            max_retries=0,
            timeout=self.timeout,
        )

    # -- errors --------------------------------------------------------------------------------

    def _status_error(self, error: openai.APIStatusError) -> ProviderError:
        code = int(error.status_code)
        body = error.body
        detail = error_code = ""
        if isinstance(body, dict):
            detail = str(body.get("message") or "")
            error_code = str(body.get("code") or "")
        headers = error.response.headers
        return self._http_error(
            code,
            None,
            detail or error.message,
            lambda: retry_after_from_headers(headers),
            hint=lambda: rate_limit_hint(headers, detail or error.message),
            # a 429 for an exhausted balance is not a rate: waiting will not help
            permanent=error_code == "insufficient_quota",
        )

    # -- realtime ------------------------------------------------------------------------------

    def _body(self, request: ProviderRequest[Any]) -> dict[str, Any]:
        """The chat completions body of one request (the same for realtime and batch)."""
        messages: list[dict[str, str]] = []
        if request.system_prompt:
            messages.append({"role": "system", "content": request.system_prompt})
        messages.append({"role": "user", "content": request.user_prompt})
        return {
            "model": request.model,
            "messages": messages,
            "temperature": request.temperature,
            "max_completion_tokens": request.max_output_tokens,
            "response_format": response_format(request.output_class),
        }

    def generate(self, request: ProviderRequest[T]) -> ProviderResult[T]:
        """Run one structured-output request.

        Returns:
            ProviderResult with the validated ``request.output_class`` instance, raw text, input
            (prompt) and output (completion, reasoning included) tokens, latency in seconds, the
            model version reported (e.g. a dated snapshot) and the finish reason (``"stop"``).

        Raises:
            ProviderError: ``api_error`` (HTTP errors: 408/429/5xx and connection failures
                transient with ``retry_after``; other 4xx permanent; also no choices or empty
                content), ``timeout`` (transient), ``blocked`` (refusal or content filter;
                permanent), ``validation_failed`` (``length`` stop, or output not valid for the
                output class; permanent).
        """
        body = self._body(request)
        return self._timed(lambda: self._client.chat.completions.create(**body), request)

    def _interpret(
        self,
        completion: ChatCompletion,
        output_class: type[T],
        *,
        model: str,
        max_output_tokens: int | None,
        latency: float,
    ) -> ProviderResult[T]:
        """Turn one chat.completion (realtime or batch item) into a validated result.

        Raises:
            ProviderError: refused, filtered, truncated, empty or invalid answers.
        """
        usage = completion.usage
        input_tokens = int(usage.prompt_tokens if usage else 0)
        output_tokens = int(usage.completion_tokens if usage else 0)
        tokens = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        if not completion.choices:
            raise self._answer_error(
                "OpenAI returned no choices (empty response)", kind="api_error", tokens=tokens
            )
        choice = completion.choices[0]
        finish_reason = str(choice.finish_reason or "")
        message = choice.message
        text = message.content or ""
        if message.refusal:
            raise self._answer_error(
                f"OpenAI refused to answer: {message.refusal}",
                kind="blocked",
                raw_text=text,
                tokens=tokens,
            )
        if finish_reason == "content_filter":
            raise self._answer_error(
                "OpenAI withheld the answer (finish reason content_filter)",
                kind="blocked",
                raw_text=text,
                tokens=tokens,
            )
        if finish_reason == "length":
            raise self._truncated_error(max_output_tokens, raw_text=text, tokens=tokens)
        if not text.strip():
            raise self._empty_error("finish reason", finish_reason, tokens)
        return self._validated(
            text,
            output_class,
            tokens=tokens,
            latency=latency,
            model_version=completion.model or model,
            finish_reason=finish_reason,
        )

    # -- batch: submission ---------------------------------------------------------------------

    def _batch_line(self, request: ProviderRequest[Any]) -> dict[str, Any]:
        return {
            "custom_id": request.custom_id,
            "method": "POST",
            "url": CHAT_ENDPOINT,
            "body": self._body(request),
        }

    def batch_request_bytes(self, request: ProviderRequest[BaseModel]) -> int:
        """Bytes of one request's JSONL line in the batch input file (newline included)."""
        return len(json.dumps(self._batch_line(request)).encode("utf-8")) + 1

    def batch_create(
        self, requests: Sequence[ProviderRequest[BaseModel]], *, display_name: str
    ) -> BatchStatus:
        """Upload the JSONL input (file name ``<display_name>.jsonl``) and create one batch
        tagged ``metadata.tag = display_name``; returns it as created (id ``batch_...``, state
        ``validating``). Not idempotent: store ``display_name`` first and use
        :meth:`batch_find` after a crash.

        Raises:
            ProviderError: invalid or oversize set, or a tag over 512 characters (permanent,
                nothing sent), or an HTTP/transport failure of the upload or the creation.
        """
        requests = list(requests)
        self._batch_check(requests)
        if not display_name or len(display_name) > MAX_TAG_LENGTH:
            raise ProviderError(
                f"OpenAI batch rejected: the tag must be 1 to {MAX_TAG_LENGTH} characters "
                f"(got {len(display_name)})",
                transient=False,
            )
        filename = re.sub(r"[^a-zA-Z0-9_.-]", "_", display_name)[:100] + ".jsonl"
        with tempfile.TemporaryFile() as handle:
            for request in requests:
                handle.write(json.dumps(self._batch_line(request)).encode("utf-8") + b"\n")
            handle.seek(0)
            uploaded = self._guard(
                lambda: self._client.files.create(
                    file=(filename, handle, "application/jsonl"), purpose="batch"
                )
            )
        batch = self._guard(
            lambda: self._client.batches.create(
                input_file_id=uploaded.id,
                endpoint=CHAT_ENDPOINT,
                completion_window="24h",
                metadata={"tag": display_name},
            )
        )
        return self._status(batch)

    # -- batch: status -------------------------------------------------------------------------

    def _status(self, batch: Any) -> BatchStatus:
        raw_state = str(batch.status)
        state = batch_state(raw_state)
        counts = batch.request_counts
        errors = (batch.errors.data or []) if batch.errors else []
        messages = [
            f"line {item.line}: {item.message}" if item.line else str(item.message)
            for item in errors
        ]
        return BatchStatus(
            batch_id=batch.id,
            display_name=str((batch.metadata or {}).get("tag") or ""),
            state=state,
            raw_state=raw_state,
            request_count=int(counts.total) if counts else 0,
            completed=int(counts.completed) if counts else 0,
            failed=int(counts.failed) if counts else 0,
            error=self._batch_error(state, "; ".join(messages)),
            error_code=next((str(item.code) for item in errors if getattr(item, "code", None)), ""),
            created_at=(
                datetime.fromtimestamp(int(batch.created_at), UTC) if batch.created_at else None
            ),
        )

    def batch_get(self, batch_id: str) -> BatchStatus:
        """Poll one batch.

        Raises:
            ProviderError: unknown id (404, permanent) or a transport failure.
        """
        return self._status(self._guard(lambda: self._client.batches.retrieve(batch_id)))

    def batch_list(self) -> Iterator[BatchStatus]:
        """All batches of this key, newest first, across pages."""
        for batch in self._pages(lambda: self._client.batches.list(limit=100)):
            yield self._status(batch)

    def batch_find(
        self,
        display_name: str,
        *,
        request_count: int | None = None,
        created_after: datetime | None = None,
        exclude_ids: Collection[str] = (),
    ) -> BatchStatus | None:
        """The newest batch whose ``metadata.tag`` is ``display_name`` and that matches the
        request count and creation time (see :func:`~llm.providers.batch_support.batch_matches`), or
        None. The tag is stored with the batch, so a listing finds batches in any state.
        """
        return first_named(
            self.batch_list(),
            display_name,
            request_count=request_count,
            created_after=created_after,
            exclude_ids=exclude_ids,
        )

    def batch_cancel(self, batch_id: str) -> BatchStatus:
        """Ask OpenAI to cancel; returns the state after the request (``cancelling``)."""
        return self._status(self._guard(lambda: self._client.batches.cancel(batch_id)))

    # -- batch: files --------------------------------------------------------------------------

    def batch_files(self, batch_id: str) -> list[str]:
        """The batch's input, output and error file ids (those it has)."""
        batch = self._guard(lambda: self._client.batches.retrieve(batch_id))
        ids = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
        return [file_id for file_id in ids if file_id]

    def file_delete(self, file_id: str) -> bool:
        """``files.delete``; False when OpenAI does not know the file (404).

        Raises:
            ProviderError: a transport failure or another refusal.
        """
        try:
            self._guard(lambda: self._client.files.delete(file_id))
        except ProviderError as error:
            if error.status_code == 404:
                return False
            raise
        return True

    def files_list(self) -> Iterator[ProviderFile]:
        """Every stored file of this key, newest first, across pages (``files.list``)."""
        for stored in self._pages(lambda: self._client.files.list(limit=1000)):
            yield ProviderFile(
                file_id=stored.id,
                name=str(stored.filename or ""),
                size_bytes=int(stored.bytes or 0),
                created_at=(
                    datetime.fromtimestamp(int(stored.created_at), UTC)
                    if stored.created_at
                    else None
                ),
            )

    # -- batch: results ------------------------------------------------------------------------

    def batch_results(
        self, batch_id: str, output_classes: Mapping[str, type[BaseModel]]
    ) -> Iterator[BatchItemResult]:
        """Stream the results of a finished batch from its output file, then its error file,
        line by line, matched by ``custom_id``.

        Per-item HTTP errors are ``api_error`` (transient for 408/429/5xx); expired or cancelled
        items are transient ``api_error`` (redo them in realtime).

        Raises:
            ProviderError: the batch is not finished yet (transient), or a transport failure.
        """
        batch = self._guard(lambda: self._client.batches.retrieve(batch_id))
        self._require_ended(
            batch_id, batch.status, ended=batch_state(batch.status) in FINAL_BATCH_STATES
        )
        model = str(batch.model or "")
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                yield from self._file_results(file_id, output_classes, model)

    def _file_results(
        self, file_id: str, output_classes: Mapping[str, type[BaseModel]], model: str
    ) -> Iterator[BatchItemResult]:
        with contextlib.ExitStack() as stack:
            response = self._guard(
                lambda: stack.enter_context(
                    self._client.files.with_streaming_response.content(file_id)
                )
            )
            for line in guarded_iter(response.iter_lines(), self._guard):
                if line.strip():
                    yield self._line_result(line, output_classes, model)

    def _line_result(
        self, line: str, output_classes: Mapping[str, type[BaseModel]], model: str
    ) -> BatchItemResult:
        row = decode_row(line)
        if isinstance(row, str):
            return batch_item_error("OpenAI", "", row)
        custom_id = str(row.get("custom_id") or "")
        output_class = output_classes.get(custom_id)
        if output_class is None:
            return unknown_custom_id("OpenAI", custom_id)
        row_error = row.get("error")
        response = row.get("response")
        if isinstance(row_error, dict) and row_error:
            code = str(row_error.get("code") or "error")
            message = f"{code}: {row_error.get('message') or 'no message'}"
            return batch_item_error("OpenAI", custom_id, message, transient=code in _NOT_RUN_CODES)
        if not isinstance(response, dict):
            return batch_item_error("OpenAI", custom_id, "result line has no response")
        status = response.get("status_code")
        body = response.get("body")
        if status != 200:
            detail = body.get("error", body) if isinstance(body, dict) else body
            reason = detail.get("message") if isinstance(detail, dict) else detail
            return batch_item_error(
                "OpenAI",
                custom_id,
                str(reason or "no message"),
                code=status if isinstance(status, int) else None,
                secrets=[self._api_key],
            )
        try:
            completion = ChatCompletion.model_validate(body)
        except ValidationError as error:
            return batch_item_error(
                "OpenAI", custom_id, f"unreadable chat completion ({error.error_count()} errors)"
            )
        return self._answered_item(custom_id, completion, output_class, model)
