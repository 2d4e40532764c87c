"""Google Gemini (Developer API) provider, realtime and batch, through the ``google-genai`` SDK.

Realtime: one ``generate_content`` call per request with structured output (``response_schema`` =
the caller's pydantic class). The answer text is validated by :func:`parse_structured` rather than
the SDK's ``.parsed``, which is silently None on invalid or truncated JSON (and never set on batch
responses). Every failure becomes a :class:`ProviderError`; an empty or blocked answer is never
reported as a success.

Batch (:class:`~llm.providers.batch.BatchProvider`, api_version ``v1beta``): requests whose
serialised size fits ``inline_limit_bytes`` (20 MB) are sent inline, each with
``metadata={"key": custom_id}``; larger sets are written to a JSONL file (lines
``{"key", "request"}``), uploaded with ``files.upload`` (explicit ``application/jsonl``) and the
batch is created from the file. ``display_name`` is our tag, so :meth:`GeminiProvider.batch_find`
lists batches and matches it. Results come from the inlined responses or the downloaded responses
file (streamed to a temporary file, then read line by line), matched by ``key`` = custom id, never
by position (responses-file lines through the SDK's public pydantic model,
:func:`response_from_rest`). The batch status is read from the raw operation JSON, because the
SDK maps neither ``batchStats`` nor the reason of a FAILED job nor the input file; that and the
JSONL request serialiser are the two SDK internals used, with google-genai pinned to a tested
range (``tests/llm/providers/test_genai_internals.py`` says what to update when they change).

The wire format (REST JSON to SDK types, JSONL lines, RetryInfo, batch states, times, the
output schema) is in :mod:`llm.providers.gemini_wire`. What the three SDK providers share (key
check and redaction, the call guard, HTTP status classification, answer validation, batch item
errors) is in :mod:`llm.providers.common`, the batch checks and listing helpers in
:mod:`llm.providers.batch_support`. Protocol facts are in
``/work/shared/docs/provider-wire-reference.md``; ``llm/emulators/gemini.py`` speaks the same
protocol locally.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel

from llm.providers.base import ProviderError, ProviderRequest, ProviderResult, T
from llm.providers.batch import FINAL_BATCH_STATES, BatchItemResult, BatchStatus, ProviderFile
from llm.providers.batch_support import batch_matches, decode_row
from llm.providers.common import SdkExceptions, SdkProvider, batch_item_error, unknown_custom_id
from llm.providers.gemini_wire import (
    BLOCKED_FINISH_REASONS,
    TIMEOUT_EXCEPTIONS,
    TRANSPORT_EXCEPTIONS,
    as_count,
    as_time,
    batch_name,
    batch_state,
    enum_value,
    iter_lines,
    output_schema,
    response_from_rest,
    retry_after_from,
)
from llm.providers.ratelimit_hints import rate_limit_hint

#: Inline batch requests must stay under 20 MB; input files may hold up to 2 GB.
INLINE_LIMIT_BYTES = 20 * 1000 * 1000
MAX_BATCH_BYTES = 2 * 1000 * 1000 * 1000
#: No documented request-count limit; a conservative cap keeps one batch's results manageable.
MAX_BATCH_REQUESTS = 100_000


class GeminiProvider(SdkProvider[types.GenerateContentResponse]):
    """Gemini calls with structured output, realtime and batch.

    Args:
        api_key: Gemini Developer API key (from the environment; never logged, never in errors).
        base_url: endpoint root (e.g. an emulator ``http://127.0.0.1:PORT``); None = Google's.
        timeout: seconds one call may take before it fails with ``kind="timeout"``.
        inline_limit_bytes: batches whose serialised requests total at most this many bytes are
            sent inline; larger ones go through an uploaded JSONL file (tests force the file
            path with a tiny value).
        max_requests_per_batch, max_bytes_per_batch: limits :meth:`batch_submit` enforces and
            callers split by (requests; bytes of serialised input).

    Raises:
        ProviderError: ``kind="api_error"``, permanent, when ``api_key`` is empty.
    """

    name = "gemini"
    vendor: ClassVar[str] = "Gemini"
    key_variable: ClassVar[str] = "GEMINI_API_KEY"
    sdk_exceptions: ClassVar[SdkExceptions] = SdkExceptions(
        status=genai_errors.APIError,
        timeout=TIMEOUT_EXCEPTIONS,
        connection=TRANSPORT_EXCEPTIONS,
        unreadable=(genai_errors.UnknownApiResponseError,),
        timeout_names_exception=True,
    )
    max_requests_default: ClassVar[int] = MAX_BATCH_REQUESTS
    max_bytes_default: ClassVar[int] = MAX_BATCH_BYTES
    _client: genai.Client

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        *,
        inline_limit_bytes: int = INLINE_LIMIT_BYTES,
        max_requests_per_batch: int | None = None,
        max_bytes_per_batch: int | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            timeout,
            max_requests_per_batch=max_requests_per_batch,
            max_bytes_per_batch=max_bytes_per_batch,
        )
        self.inline_limit_bytes = int(inline_limit_bytes)

    def _client_build(self) -> genai.Client:
        options: dict[str, Any] = {
            "api_version": "v1beta",
            "timeout": max(1, round(self.timeout * 1000)),
        }
        if self.base_url:
            options["base_url"] = self.base_url
        # vertexai=False pins the Developer API even if GOOGLE_GENAI_USE_VERTEXAI is set.
        return genai.Client(
            api_key=self._api_key, vertexai=False, http_options=types.HttpOptions(**options)
        )

    # -- errors --------------------------------------------------------------------------------

    def _status_error(self, error: genai_errors.APIError) -> ProviderError:
        """Map an SDK ``APIError`` (HTTP status != 200) to a ProviderError; the wait comes from
        Retry-After or the RetryInfo of the error body."""
        code = int(error.code) if isinstance(error.code, int) else None
        headers = getattr(getattr(error, "response", None), "headers", None)
        return self._http_error(
            code,
            error.status or "",
            error.message or str(error),
            lambda: retry_after_from(error),
            hint=lambda: rate_limit_hint(headers, error.message, getattr(error, "details", None)),
        )

    # -- realtime ------------------------------------------------------------------------------

    def _config(self, request: ProviderRequest[Any]) -> types.GenerateContentConfig:
        """The generation config of one request (the same for realtime and batch)."""
        return types.GenerateContentConfig(
            system_instruction=request.system_prompt or None,
            temperature=request.temperature,
            max_output_tokens=request.max_output_tokens,
            response_mime_type="application/json",
            response_schema=output_schema(request.output_class),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )

    def generate(self, request: ProviderRequest[T]) -> ProviderResult[T]:
        """Run one structured-output request.

        Returns:
            ProviderResult with the validated ``request.output_class`` instance, raw text, input
            and output tokens (output includes thinking tokens, which are billed as output),
            latency in seconds, the model version reported (or ``request.model``) and the
            finish reason string (``"STOP"``).

        Raises:
            ProviderError: ``api_error`` (HTTP errors: 429/408/5xx and connection failures are
                transient with ``retry_after`` from Retry-After or RetryInfo; other 4xx permanent;
                also no candidates or empty text), ``timeout`` (transient), ``blocked`` (safety
                or policy finish reason, or a blocked prompt; permanent), ``validation_failed``
                (output cut at max tokens, or not valid for the output class; permanent).
        """
        return self._timed(
            lambda: self._client.models.generate_content(
                model=request.model, contents=request.user_prompt, config=self._config(request)
            ),
            request,
        )

    def _interpret(
        self,
        response: types.GenerateContentResponse,
        output_class: type[T],
        *,
        model: str,
        max_output_tokens: int | None,
        latency: float,
    ) -> ProviderResult[T]:
        """Turn one generateContent response (realtime or batch item) into a validated result.

        Raises:
            ProviderError: blocked, truncated, empty or invalid answers (see :meth:`generate`).
        """
        usage = response.usage_metadata
        input_tokens = int((usage.prompt_token_count if usage else None) or 0)
        output_tokens = int((usage.candidates_token_count if usage else None) or 0)
        output_tokens += int((usage.thoughts_token_count if usage else None) or 0)
        model_version = response.model_version or model
        tokens = {"input_tokens": input_tokens, "output_tokens": output_tokens}

        feedback = response.prompt_feedback
        block_reason = enum_value(feedback.block_reason if feedback else None)
        if block_reason == "BLOCKED_REASON_UNSPECIFIED":
            block_reason = ""
        candidates = response.candidates or []
        if not candidates:
            if block_reason:
                raise self._answer_error(
                    f"Gemini blocked the prompt ({block_reason}); no candidates returned",
                    kind="blocked",
                    tokens=tokens,
                )
            raise self._answer_error(
                "Gemini returned no candidates (empty response)", kind="api_error", tokens=tokens
            )

        candidate = candidates[0]
        finish_reason = enum_value(candidate.finish_reason)
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        text = "".join(part.text for part in parts if part.text and not part.thought)

        if finish_reason in BLOCKED_FINISH_REASONS or block_reason:
            reason = finish_reason if finish_reason in BLOCKED_FINISH_REASONS else block_reason
            raise self._answer_error(
                f"Gemini withheld the answer (finish reason {reason})",
                kind="blocked",
                raw_text=text,
                tokens=tokens,
            )
        if finish_reason == "MAX_TOKENS":
            raise self._truncated_error(max_output_tokens, raw_text=text, tokens=tokens)
        if not text.strip():
            raise self._empty_error("finish reason", finish_reason, tokens)
        return self._validated(
            text,
            output_class,
            tokens=tokens,
            latency=latency,
            model_version=model_version,
            finish_reason=finish_reason,
        )

    # -- batch: submission ---------------------------------------------------------------------

    def _inlined_request(self, request: ProviderRequest[Any]) -> types.InlinedRequest:
        return types.InlinedRequest(
            model=request.model,
            contents=request.user_prompt,
            config=self._config(request),
            metadata={"key": request.custom_id},
        )

    def _rest_request(self, request: ProviderRequest[Any]) -> dict[str, Any]:
        """One request as the SDK serialises it inline: ``{"request": {...}, "metadata"}``.

        Uses the SDK's own converter so the JSONL file path sends exactly what the inline path
        sends (same schema translation of the pydantic class). The SDK has no public serialiser
        for this: the private converter is pinned with google-genai's tested range and checked
        by ``tests/llm/providers/test_genai_internals.py``.
        """
        from google.genai import _common as genai_common
        from google.genai import batches as genai_batches

        converted = genai_batches._InlinedRequest_to_mldev(
            self._client._api_client, self._inlined_request(request)
        )
        return dict(
            genai_common.encode_unserializable_types(genai_common.convert_to_dict(converted))
        )

    def batch_request_bytes(self, request: ProviderRequest[BaseModel]) -> int:
        """Bytes of one request in the batch input (its inline JSON plus a separator).

        Measured as JSON with ``", "``/``": "`` separators and non-ASCII escaped, so never less
        than what the SDK sends inline or what the JSONL input file holds.
        """
        return len(json.dumps(self._rest_request(request)).encode("utf-8")) + 2

    def batch_create(
        self, requests: Sequence[ProviderRequest[BaseModel]], *, display_name: str
    ) -> BatchStatus:
        """Create one batch job; returns it as created (name ``batches/...``, state pending).

        All requests must use the same model (a Gemini batch belongs to one model). Sets whose
        serialised size is at most ``inline_limit_bytes`` go inline; larger ones through an
        uploaded JSONL file. Not idempotent: store ``display_name`` first and use
        :meth:`batch_find` after a crash.

        Raises:
            ProviderError: invalid or oversize set (permanent, nothing sent), several models,
                or an HTTP/transport failure of the upload or the creation.
        """
        requests = list(requests)
        sizes = self._batch_check(requests)
        models = sorted({request.model for request in requests})
        if len(models) != 1:
            raise ProviderError(
                f"Gemini batch rejected: one batch serves one model, got {', '.join(models)}",
                transient=False,
            )
        src: Any
        if sum(sizes) <= self.inline_limit_bytes:
            src = [self._inlined_request(request) for request in requests]
        else:
            src = self._upload_input(requests, display_name)
        job = self._guard(
            lambda: self._client.batches.create(
                model=models[0],
                src=src,
                config=types.CreateBatchJobConfig(display_name=display_name),
            )
        )
        if not job.name:
            raise self._error("Gemini created a batch but returned no name", transient=False)
        return self._job_status(job, display_name=display_name, request_count=len(requests))

    def _job_status(
        self, job: types.BatchJob, *, display_name: str = "", request_count: int = 0
    ) -> BatchStatus:
        """A status from the SDK's ``BatchJob`` (which maps no counts: ``request_count`` is
        the caller's, 0 when unknown)."""
        raw_state = enum_value(job.state) or "JOB_STATE_UNSPECIFIED"
        return BatchStatus(
            batch_id=job.name or "",
            display_name=job.display_name or display_name,
            state=batch_state(raw_state),
            raw_state=raw_state,
            request_count=request_count,
            created_at=job.create_time,
        )

    def _upload_input(self, requests: Sequence[ProviderRequest[Any]], display_name: str) -> str:
        """Write the JSONL input (``{"key", "request"}`` lines) to a temporary file, upload it
        and return its name (``files/...``)."""
        with tempfile.TemporaryFile() as handle:
            for request in requests:
                line = {"key": request.custom_id, "request": self._rest_request(request)["request"]}
                handle.write(json.dumps(line).encode("utf-8") + b"\n")
            handle.seek(0)
            uploaded = self._guard(
                lambda: self._client.files.upload(
                    file=handle,
                    config=types.UploadFileConfig(
                        mime_type="application/jsonl", display_name=f"{display_name}-input"
                    ),
                )
            )
        if not uploaded.name:
            raise self._error(
                "Gemini accepted the input file but returned no name", transient=False
            )
        return uploaded.name

    # -- batch: status -------------------------------------------------------------------------

    def batch_get(self, batch_id: str) -> BatchStatus:
        """Poll one batch, reading the raw operation JSON (state, ``batchStats`` counts and,
        for a failed job, the ``error`` the SDK does not map).

        Raises:
            ProviderError: unknown id (404, permanent) or a transport failure.
        """
        name = batch_name(batch_id)
        return self._status(self._operation(name), name)

    def _operation(self, name: str) -> dict[str, Any]:
        """The raw operation JSON of batch ``name``.

        The SDK's public ``batches.get`` maps neither ``batchStats``, nor the ``error`` of a
        FAILED job, nor the input file: read through the SDK's own (private) request method, so
        auth, base URL, API version and timeouts stay the SDK's. google-genai is pinned to a
        tested range; ``tests/llm/providers/test_genai_internals.py`` fails loudly if this changes.
        """
        response = self._guard(lambda: self._client._api_client.request("get", name, {}, None))
        operation = decode_row(response.body or "{}")
        if not isinstance(operation, dict):
            raise self._error(f"Gemini returned an unreadable batch {name}", transient=True)
        return operation

    # -- batch: files --------------------------------------------------------------------------

    def batch_files(self, batch_id: str) -> list[str]:
        """The batch's uploaded input file and its responses file (those it has; an inline
        batch has neither)."""
        metadata = self._operation(batch_name(batch_id)).get("metadata") or {}
        source = metadata.get("inputConfig") or {}
        output = metadata.get("output") or {}
        names = (source.get("fileName"), output.get("responsesFile"))
        return [str(name) for name in names if name]

    def file_delete(self, file_id: str) -> bool:
        """``files.delete``; False when Gemini does not know the file (404).

        Raises:
            ProviderError: a transport failure or another refusal.
        """
        try:
            self._guard(lambda: self._client.files.delete(name=file_id))
        except ProviderError as error:
            if error.status_code == 404:
                return False
            raise
        return True

    def files_list(self) -> Iterator[ProviderFile]:
        """Every stored file of this key, across pages (``files.list``)."""
        for stored in self._pages(
            lambda: self._client.files.list(config=types.ListFilesConfig(page_size=100))
        ):
            yield ProviderFile(
                file_id=stored.name or "",
                name=stored.display_name or "",
                size_bytes=int(stored.size_bytes or 0),
                created_at=stored.create_time,
            )

    def _status(self, operation: Mapping[str, Any], name: str) -> BatchStatus:
        metadata = operation.get("metadata") or {}
        raw_state = str(metadata.get("state") or "BATCH_STATE_UNSPECIFIED")
        state = batch_state(raw_state)
        stats = metadata.get("batchStats") or {}
        error_info = operation.get("error") or metadata.get("error") or {}
        error = ""
        if isinstance(error_info, Mapping) and error_info:
            error = str(error_info.get("message") or error_info)
        return BatchStatus(
            batch_id=str(operation.get("name") or name),
            display_name=str(metadata.get("displayName") or ""),
            state=state,
            raw_state=raw_state,
            request_count=as_count(stats.get("requestCount")),
            completed=as_count(stats.get("successfulRequestCount")),
            failed=as_count(stats.get("failedRequestCount")),
            error=self._batch_error(state, error),
            created_at=as_time(metadata.get("createTime")),
        )

    def batch_list(self) -> Iterator[BatchStatus]:
        """All batches of this key, newest first, across pages (counts are not listed: 0)."""
        for job in self._pages(
            lambda: self._client.batches.list(config=types.ListBatchJobsConfig(page_size=100))
        ):
            yield self._job_status(job)

    def batch_find(
        self,
        display_name: str,
        *,
        request_count: int | None = None,
        created_after: datetime | None = None,
        exclude_ids: Collection[str] = (),
    ) -> BatchStatus | None:
        """The newest batch whose display name is ``display_name``, created no earlier than
        ``created_after`` and holding ``request_count`` requests (its full status), or None.

        Gemini stores the display name with the job, so a listing finds batches in any state;
        the count is read from each candidate's ``batchStats``.
        """
        for listed in self.batch_list():
            if not batch_matches(
                listed, display_name, created_after=created_after, exclude_ids=exclude_ids
            ):
                continue
            full = self.batch_get(listed.batch_id)
            full = dataclasses.replace(full, created_at=full.created_at or listed.created_at)
            if batch_matches(full, display_name, request_count=request_count):
                return full
        return None

    def batch_cancel(self, batch_id: str) -> BatchStatus:
        """Ask Gemini to cancel; returns the state polled right after."""
        name = batch_name(batch_id)
        self._guard(lambda: self._client.batches.cancel(name=name))
        return self.batch_get(name)

    # -- batch: results ------------------------------------------------------------------------

    def batch_results(
        self, batch_id: str, output_classes: Mapping[str, type[BaseModel]]
    ) -> Iterator[BatchItemResult]:
        """Stream the results of a finished batch, matched by ``metadata.key`` / ``key``.

        Inline batches answer inline; file batches with a responses file, downloaded to a
        temporary file and read line by line. Safety-blocked and empty answers are ``blocked``
        / ``api_error`` items; per-item errors are ``api_error`` (transient for retryable
        codes). A failed, cancelled or expired job without output yields nothing.

        Raises:
            ProviderError: the batch is not finished yet (transient), or a transport failure.
        """
        name = batch_name(batch_id)
        job = self._guard(lambda: self._client.batches.get(name=name))
        raw_state = enum_value(job.state) or "JOB_STATE_UNSPECIFIED"
        self._require_ended(name, raw_state, ended=batch_state(raw_state) in FINAL_BATCH_STATES)
        model = (job.model or "").removeprefix("models/")
        dest = job.dest
        if dest is None:
            return
        if dest.inlined_responses:
            for item in dest.inlined_responses:
                custom_id = str((item.metadata or {}).get("key", ""))
                if item.error is not None or item.response is None:
                    error = item.error
                    yield self._item_error(
                        custom_id,
                        (error.message if error else None) or "no response",
                        error.code if error else None,
                        output_classes,
                    )
                else:
                    yield self._item(custom_id, item.response, output_classes, model)
        elif dest.file_name:
            file_name = dest.file_name
            with tempfile.TemporaryFile() as handle:
                self._guard(lambda: self._client.files.download(file=file_name, destination=handle))
                handle.seek(0)
                for line in iter_lines(handle):
                    yield self._file_item(line, output_classes, model)

    def _file_item(
        self, line: Mapping[str, Any], output_classes: Mapping[str, type[BaseModel]], model: str
    ) -> BatchItemResult:
        custom_id = str(line.get("key") or (line.get("metadata") or {}).get("key") or "")
        if "__invalid__" in line:
            return batch_item_error("Gemini", custom_id, str(line["__invalid__"]))
        error = line.get("error")
        if isinstance(error, Mapping) or not isinstance(line.get("response"), Mapping):
            error = error if isinstance(error, Mapping) else {}
            code = error.get("code")
            return self._item_error(
                custom_id,
                str(error.get("message") or "no response"),
                code if isinstance(code, int) else None,
                output_classes,
            )
        try:
            response = response_from_rest(line["response"])
        except Exception as problem:
            return batch_item_error(
                "Gemini", custom_id, f"unreadable response ({type(problem).__name__}: {problem})"
            )
        return self._item(custom_id, response, output_classes, model)

    def _item(
        self,
        custom_id: str,
        response: types.GenerateContentResponse,
        output_classes: Mapping[str, type[BaseModel]],
        model: str,
    ) -> BatchItemResult:
        output_class = output_classes.get(custom_id)
        if output_class is None:
            return unknown_custom_id("Gemini", custom_id)
        return self._answered_item(custom_id, response, output_class, model)

    def _item_error(
        self,
        custom_id: str,
        message: str,
        code: int | None,
        output_classes: Mapping[str, type[BaseModel]],
    ) -> BatchItemResult:
        if custom_id not in output_classes:
            return unknown_custom_id("Gemini", custom_id)
        return batch_item_error("Gemini", custom_id, message, code=code, secrets=[self._api_key])
