"""A local Gemini Developer API server for tests and benchmarks, with fault injection and batches.

It is a real HTTP server (stdlib ``ThreadingHTTPServer`` in a background thread) speaking the
Gemini REST protocol exactly as google-genai 3.x sends it (see
``/work/shared/docs/provider-wire-reference.md``), so the real SDK is exercised end to end:

    POST {v}/models/{model}:generateContent          realtime structured output
    POST {v}/models/{model}:batchGenerateContent     create a batch (inline requests or a file)
    GET  {v}/batches?pageSize&pageToken              list (newest first)
    GET  {v}/batches/{id}   POST {v}/batches/{id}:cancel   DELETE {v}/batches/{id}
    POST /upload/{v}/files (resumable start, then the upload URL with "upload, finalize")
    GET  {v}/files/{id}   GET {v}/files/{id}:download?alt=media   DELETE {v}/files/{id}

``{v}`` is ``/v1beta`` (also ``/v1`` and ``/v1alpha``). Answers are schema-valid JSON built from
the request itself by the shared :class:`~llm.emulators.builder.AnswerBuilder`: the
``responseSchema`` (Gemini's OpenAPI subset, as the SDK sends it for a pydantic class) or
``responseJsonSchema`` is walked and filled from the prompt's ``<cluster_data>`` block. The same
request always gets the same answer, in realtime and in a batch.

Realtime faults are scripted FIFO (:meth:`GeminiEmulator.add_fault`, ``POST /_control/faults``,
see :data:`~llm.emulators.faults.FAULT_KINDS`); batches follow the scripted
:class:`~llm.emulators.batches.BatchSettings`
(:meth:`GeminiEmulator.configure_batches`). A batch created from inline requests answers inline
(``output.inlinedResponses``), one created from a file answers with a ``responsesFile`` of JSONL
lines ``{"key", "response"}`` or ``{"key", "error"}``. A failed batch carries the reason in the
operation's top-level ``error``, which the SDK does not map. Unprocessed items of an expired batch
and the items of a cancelled batch are absent from the output.

Usage::

    with GeminiEmulator(latency=0.0) as emu:
        provider = GeminiProvider(api_key="k", base_url=emu.url)
        emu.add_fault("status", code=429, retry_after=7)
        ...
        assert len(emu.request_log()) == 2
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from llm.emulators.batches import BatchItem, BatchRejected, EmuBatch, EmuFile
from llm.emulators.gemini_wire import (
    build_response,
    google_error,
    prompt_text_of,
    response_schema_of,
    retry_info,
)
from llm.emulators.ratelimit import Decision
from llm.emulators.schema import as_int, first_key
from llm.emulators.server import EmulatorServer
from llm.emulators.transport import Reply, Request, iso_time

_VERSION = r"/(v1beta|v1alpha|v1)"
_MODEL_CALL_RE = re.compile(_VERSION + r"/models/([^/:]+):(generateContent|batchGenerateContent)$")
_BATCHES_RE = re.compile(_VERSION + r"/batches$")
_BATCH_RE = re.compile(_VERSION + r"/batches/([^/:]+)(:cancel)?$")
_FILES_RE = re.compile(_VERSION + r"/files$")
_FILE_RE = re.compile(_VERSION + r"/files/([^/:]+)(:download)?$")
_UPLOAD_RE = re.compile(r"/upload" + _VERSION + r"/files$")

#: Real limits: inline requests up to 20 MB, input files up to 2 GB.
INLINE_LIMIT_BYTES = 20 * 1024 * 1024
FILE_LIMIT_BYTES = 2 * 1024 * 1024 * 1024

_STATES = {
    "pending": "BATCH_STATE_PENDING",
    "running": "BATCH_STATE_RUNNING",
    "succeeded": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "cancelled": "BATCH_STATE_CANCELLED",
    "expired": "BATCH_STATE_EXPIRED",
}
# google.rpc.Code numbers (by HTTP status) for an Operation's or a batch item's error.
_RPC_CODES = {400: 3, 403: 7, 404: 5, 429: 8, 500: 13, 503: 14, 504: 4}


def _model_name(model: str) -> str:
    return model if model.startswith("models/") else f"models/{model}"


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class GeminiEmulator(EmulatorServer):
    """A Gemini server on a background thread: generateContent, batches and files.

    Args:
        host: interface to bind (``127.0.0.1``).
        port: TCP port; 0 picks a free one (read it back from :attr:`url`).
        latency: default delay in seconds before every generateContent answer.
        rpm: server-side limit, requests per ``window`` seconds (None = unlimited); excess
            requests get 429 RESOURCE_EXHAUSTED with the wait in a RetryInfo detail.
        window: length of the rate-limit window in seconds (60 = requests per minute).
        rate_mode, burst: ``bucket`` (default; ``burst`` requests, refilled at ``rpm / window``
            per second) or ``window`` (moving window), see
            :class:`~llm.emulators.server.EmulatorServer`.
        api_key: when set, requests with another key get 400 "API key not valid"; requests
            without any key always get 403 PERMISSION_DENIED, as from Google.

    Batch limits default to Gemini's (inline requests 20 MB, input files 2 GB, no request
    count limit); ``configure_batches(max_requests=..., max_bytes=...)`` lowers them.
    Use as a context manager or call :meth:`start` / :meth:`stop`. All methods are thread-safe.
    """

    provider = "gemini"
    default_max_requests: ClassVar[int | None] = None
    default_max_bytes: ClassVar[int | None] = FILE_LIMIT_BYTES
    rate_limit_message = "Resource has been exhausted (e.g. check quota)."
    default_messages: ClassVar[dict[int, str]] = {
        400: "Request contains an invalid argument.",
        401: "Request had invalid authentication credentials.",
        403: "The caller does not have permission.",
        404: "models/unknown is not found for API version v1beta.",
        429: "Resource has been exhausted (e.g. check quota).",
        500: "An internal error has occurred. Please retry or report.",
        503: "The model is overloaded. Please try again later.",
    }

    # -- EmulatorServer hooks ------------------------------------------------------------------

    def rate_limit_reply(self, decision: Decision) -> Reply:
        """429 RESOURCE_EXHAUSTED as the Gemini API answers it: no Retry-After header; the
        wait is the ``google.rpc.RetryInfo`` ``retryDelay`` (a protobuf Duration such as
        ``"1.5s"``) next to a ``QuotaFailure`` naming the per-minute quota and its value."""
        quota = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": (
                            "generativelanguage.googleapis.com/generate_content_requests"
                        ),
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                        "quotaValue": str(decision.limit),
                    }
                ],
            }
        ]
        details = [
            *(quota if self.report_limit else []),
            retry_info(round(max(0.001, decision.wait), 3)),
        ]
        message = (
            "You exceeded your current quota, please check your plan and billing details. "
            f"Please retry in {decision.wait:.6f}s."
        )
        return Reply(429, google_error(429, message, details))

    def error_body(self, code: int, message: str, *, retry_delay: float | None = None) -> Any:
        """``{"error": {"code", "message", "status"[, "details": [RetryInfo]]}}``."""
        details = [retry_info(retry_delay)] if retry_delay is not None else None
        return google_error(code, message, details)

    def check_key(self, request: Request) -> Reply | None:
        """x-goog-api-key header or ``?key=``: missing -> 403, wrong (when set) -> 400."""
        return self.key_refusal(
            request.header("x-goog-api-key") or (request.arg("key") or ""),
            missing=(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity.",
            ),
            wrong=(400, "API key not valid. Please pass a valid API key."),
        )

    def batch_item_payload(self, item: BatchItem, fault: Mapping[str, Any] | None) -> Any:
        """The generateContent response for one batch request."""
        return build_response(item.body, item.model, fault)

    def batch_finished(self, batch: EmuBatch) -> None:
        """A file-sourced batch gets its results as a JSONL ``responsesFile``."""
        if batch.source != "file" or batch.outcomes is None or batch.state == "failed":
            return
        lines = []
        for outcome in batch.outcomes:
            if outcome.kind == "ok":
                lines.append({"key": outcome.custom_id, "response": outcome.payload})
            elif outcome.kind == "error":
                error = {"code": _RPC_CODES.get(outcome.code, 13), "message": outcome.message}
                lines.append({"key": outcome.custom_id, "error": error})
        if not lines:
            return
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        name = f"files/{batch.id.split('/', 1)[1]}-results"
        self.store_file(
            EmuFile(
                name, f"{batch.tag}-results.jsonl", "application/jsonl", "batch", data, time.time()
            )
        )
        batch.extra["responses_file"] = name

    def handle(self, request: Request) -> Reply:
        """Route one Gemini API call."""
        path, method = request.path, request.method
        if method == "POST" and (match := _MODEL_CALL_RE.match(path)):
            model = match.group(2)
            if match.group(3) == "generateContent":
                return self.serve_realtime(
                    request,
                    model=model,
                    schema_of=lambda body: response_schema_of(body)[0],
                    prompt_of=prompt_text_of,
                    answer=lambda body, fault: self._answer(body, model, fault),
                )
            return self._guarded(request, "create", lambda: self._create(request, model))
        if method == "POST" and _UPLOAD_RE.match(path):
            return self._upload(request)
        if method == "GET" and _BATCHES_RE.match(path):
            return self._guarded(request, "list", lambda: self._list(request))
        if match := _BATCH_RE.match(path):
            name = f"batches/{match.group(2)}"
            if method == "GET" and not match.group(3):
                return self._guarded(request, "get", lambda: self._get(name))
            if method == "POST" and match.group(3):
                return self._guarded(request, "cancel", lambda: self._cancel(name))
            if method == "DELETE" and not match.group(3):
                return self._guarded(request, "cancel", lambda: self._delete(name))
        if method == "GET" and _FILES_RE.match(path):
            return self._guarded(request, "list", lambda: self._list_files(request))
        if match := _FILE_RE.match(path):
            name = f"files/{match.group(2)}"
            if method == "GET" and match.group(3):
                return self._guarded(request, "download", lambda: self._download(name))
            if method == "GET":
                return self._guarded(request, "get", lambda: self._file_info(name))
            if method == "DELETE":
                return self._guarded(request, "cancel", lambda: self._delete_file(name))
        return self.error_reply(404, f"Method not found: {method} {path}")

    # -- realtime ------------------------------------------------------------------------------

    def _answer(
        self, body: Mapping[str, Any], model: str, fault: Mapping[str, Any] | None
    ) -> tuple[Any, str | None]:
        response = build_response(body, model, fault)
        candidates = response.get("candidates") or []
        return response, (candidates[0].get("finishReason") if candidates else None)

    # -- batches -------------------------------------------------------------------------------

    def _guarded(self, request: Request, op: str, action: Callable[[], Reply]) -> Reply:
        """Authenticate, then run ``action`` through the batch-endpoint faults of ``op``."""
        denied = self.check_key(request)
        if denied is not None:
            return denied
        return self.batch_op(op, action)

    def _create(self, request: Request, model: str) -> Reply:
        try:
            body = request.json()
            if not isinstance(body, Mapping):
                raise ValueError("request body must be a JSON object")
        except ValueError as error:
            return self.error_reply(400, f"Invalid JSON payload received. {error}")
        batch_spec = body.get("batch", body)
        config = first_key(batch_spec, "inputConfig", "input_config") or {}
        tag = str(first_key(batch_spec, "displayName", "display_name") or "")
        items: list[BatchItem] = []
        errors: list[dict[str, Any]] = []
        file_name = first_key(config, "fileName", "file_name")
        requests = (config.get("requests") or {}).get("requests")
        batch_id = f"batches/{self.new_id()}"
        if file_name:
            stored = self.find_file(str(file_name))
            if stored is None:
                return self.error_reply(400, f"File {file_name} does not exist.")
            source, size, limit = "file", len(stored.data), None
            for number, line in enumerate(stored.data.decode("utf-8", "replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    request_body = row["request"]
                    if not isinstance(request_body, Mapping):
                        raise ValueError("request is not an object")
                except (ValueError, KeyError, TypeError) as error:
                    errors.append({"line": number, "message": f"line {number}: {error}"})
                    continue
                key = str(row.get("key", ""))
                items.append(BatchItem(key, dict(request_body), model, {"key": key}))
        elif isinstance(requests, list):
            source, size, limit = "inline", len(request.body), INLINE_LIMIT_BYTES
            for entry in requests:
                entry = entry if isinstance(entry, Mapping) else {}
                metadata = entry.get("metadata")
                metadata = dict(metadata) if isinstance(metadata, Mapping) else None
                key = str((metadata or {}).get("key", ""))
                items.append(BatchItem(key, dict(entry.get("request") or {}), model, metadata))
        else:
            return self.error_reply(400, "batch.inputConfig needs requests or fileName.")
        try:
            batch = self.create_batch(
                batch_id=batch_id,
                tag=tag,
                model=model,
                items=items,
                size_bytes=size,
                source=source,
                extra={"input_file": str(file_name)} if file_name else None,
                validation_errors=errors,
                default_max_bytes=limit,
            )
        except BatchRejected as rejected:
            return self.error_reply(rejected.status, rejected.message)
        return Reply(200, self._operation(batch))

    def _get(self, name: str) -> Reply:
        try:
            return Reply(200, self._operation(self.poll_batch(name)))
        except KeyError:
            return self.error_reply(404, f"Requested entity was not found: {name}.")

    def _cancel(self, name: str) -> Reply:
        try:
            self.cancel_batch(name)
        except KeyError:
            return self.error_reply(404, f"Requested entity was not found: {name}.")
        return Reply(200, {})

    def _delete(self, name: str) -> Reply:
        try:
            self.delete_batch(name)
        except KeyError:
            return self.error_reply(404, f"Requested entity was not found: {name}.")
        return Reply(200, {})

    def _list(self, request: Request) -> Reply:
        batches = self.list_batches()
        size = max(1, min(as_int(request.arg("pageSize"), 50), 1000))
        start = as_int(request.arg("pageToken"), 0)
        page = batches[start : start + size]
        payload: dict[str, Any] = {"operations": [self._operation(b) for b in page]}
        if start + size < len(batches):
            payload["nextPageToken"] = str(start + size)
        return Reply(200, payload)

    def _operation(self, batch: EmuBatch) -> dict[str, Any]:
        """The long-running Operation JSON of ``batch`` (counts are int64 strings, as Google)."""
        total = len(batch.items)
        ok, failed = batch.count("ok"), batch.count("error")
        pending = 0 if batch.final else total
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "name": batch.id,
            "model": _model_name(batch.model),
            "displayName": batch.tag,
            "createTime": iso_time(batch.created),
            "updateTime": iso_time(batch.ended or batch.started or batch.created),
            "batchStats": {
                "requestCount": str(total),
                "successfulRequestCount": str(ok),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(pending),
            },
            "state": _STATES[batch.state],
        }
        if batch.extra.get("input_file"):
            metadata["inputConfig"] = {"fileName": batch.extra["input_file"]}
        operation: dict[str, Any] = {"name": batch.id, "metadata": metadata, "done": batch.final}
        if batch.ended is not None:
            metadata["endTime"] = iso_time(batch.ended)
        if batch.state == "failed":
            code = 400 if batch.validation_errors else batch.error_code or 500
            operation["error"] = {"code": _RPC_CODES.get(code, 13), "message": batch.error}
        elif batch.final and batch.outcomes is not None and batch.state != "cancelled":
            if batch.source == "file":
                if batch.extra.get("responses_file"):
                    metadata["output"] = {"responsesFile": batch.extra["responses_file"]}
            else:
                responses = []
                for outcome in batch.outcomes:
                    line: dict[str, Any] = {}
                    if outcome.kind == "ok":
                        line["response"] = outcome.payload
                    elif outcome.kind == "error":
                        code = _RPC_CODES.get(outcome.code, 13)
                        line["error"] = {"code": code, "message": outcome.message}
                    else:
                        continue
                    if outcome.metadata is not None:
                        line["metadata"] = outcome.metadata
                    responses.append(line)
                metadata["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
        return operation

    # -- files ---------------------------------------------------------------------------------

    def _upload(self, request: Request) -> Reply:
        """Resumable upload: ``start`` opens a session, ``upload[, finalize]`` sends bytes."""
        command = request.header("X-Goog-Upload-Command").lower()
        upload_id = request.arg("upload_id")
        if upload_id is None:
            denied = self.check_key(request)
            if denied is not None:
                return denied
            if "start" not in command:
                return self.error_reply(400, "Expected X-Goog-Upload-Command: start.")
            try:
                spec = (request.json() or {}).get("file") or {}
            except (ValueError, AttributeError) as error:
                return self.error_reply(400, f"Invalid JSON payload received. {error}")
            session = self.new_id()
            with self._batch_lock:
                self._uploads[session] = {"spec": dict(spec), "data": bytearray()}
            upload_url = f"{self.url}{request.path}?upload_id={session}&upload_protocol=resumable"
            return Reply(
                200,
                {},
                headers={"X-Goog-Upload-URL": upload_url, "X-Goog-Upload-Status": "active"},
            )
        return self.batch_op("upload", lambda: self._upload_chunk(request, str(upload_id), command))

    def _upload_chunk(self, request: Request, upload_id: str, command: str) -> Reply:
        with self._batch_lock:
            session = self._uploads.get(upload_id)
            if session is None:
                return self.error_reply(404, f"Unknown upload session {upload_id}.")
            offset = as_int(request.header("X-Goog-Upload-Offset"), len(session["data"]))
            if offset != len(session["data"]):
                return self.error_reply(400, f"Upload offset {offset} != {len(session['data'])}.")
            session["data"].extend(request.body)
            if "finalize" not in command:
                return Reply(200, {}, headers={"X-Goog-Upload-Status": "active"})
            del self._uploads[upload_id]
        spec = session["spec"]
        name = str(spec.get("name") or f"files/{self.new_id()}")
        name = name if name.startswith("files/") else f"files/{name}"
        mime = str(first_key(spec, "mime_type", "mimeType") or "application/octet-stream")
        display = str(first_key(spec, "display_name", "displayName") or "")
        stored = self.store_file(
            EmuFile(name, display, mime, "upload", bytes(session["data"]), time.time())
        )
        return Reply(
            200,
            {"file": self._file_json(stored, source="UPLOADED")},
            headers={"X-Goog-Upload-Status": "final"},
        )

    def _file_json(self, stored: EmuFile, *, source: str) -> dict[str, Any]:
        file_id = stored.id.split("/", 1)[1]
        return {
            "name": stored.id,
            "displayName": stored.filename,
            "mimeType": stored.mime_type,
            "sizeBytes": str(len(stored.data)),
            "createTime": iso_time(stored.created),
            "updateTime": iso_time(stored.created),
            "expirationTime": iso_time(stored.created + 48 * 3600),
            "sha256Hash": hashlib.sha256(stored.data).hexdigest(),
            "uri": f"{self.url}/v1beta/files/{file_id}",
            "downloadUri": f"{self.url}/v1beta/files/{file_id}:download?alt=media",
            "state": "ACTIVE",
            "source": source,
        }

    def _file_info(self, name: str) -> Reply:
        stored = self.find_file(name)
        if stored is None:
            return self.error_reply(404, f"File {name} does not exist.")
        source = "GENERATED" if stored.purpose == "batch" else "UPLOADED"
        return Reply(200, self._file_json(stored, source=source))

    def _list_files(self, request: Request) -> Reply:
        """``GET files?pageSize&pageToken``: newest first, ``nextPageToken`` while more."""
        stored = self.list_files()
        size = max(1, min(as_int(request.arg("pageSize"), 10), 100))
        start = as_int(request.arg("pageToken"), 0)
        files = [
            self._file_json(f, source="GENERATED" if f.purpose == "batch" else "UPLOADED")
            for f in stored[start : start + size]
        ]
        payload: dict[str, Any] = {"files": files}
        if start + size < len(stored):
            payload["nextPageToken"] = str(start + size)
        return Reply(200, payload)

    def _download(self, name: str) -> Reply:
        stored = self.find_file(name)
        if stored is None:
            return self.error_reply(404, f"File {name} does not exist.")
        return Reply(200, raw=stored.data, content_type=stored.mime_type)

    def _delete_file(self, name: str) -> Reply:
        if not self.delete_file(name):
            return self.error_reply(404, f"File {name} does not exist.")
        return Reply(200, {})
