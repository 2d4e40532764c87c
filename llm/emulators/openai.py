"""A local OpenAI API server (chat completions, files, batches) for tests and benchmarks.

A real HTTP server speaking the routes the ``openai`` SDK uses (base URL ``{url}/v1``; see
``/work/shared/docs/provider-wire-reference.md``):

    POST /v1/chat/completions                      realtime, ``response_format`` json_schema
    POST /v1/files (multipart: file, purpose)      GET /v1/files   GET|DELETE /v1/files/{id}
    GET  /v1/files/{id}/content                    raw bytes (batch input, output, errors)
    POST /v1/batches                               {input_file_id, endpoint, completion_window,
                                                    metadata}
    GET  /v1/batches?limit&after   GET /v1/batches/{id}   POST /v1/batches/{id}/cancel

Answers come from the shared schema-driven builder (the ``json_schema.schema`` of the request's
``response_format`` filled from the prompt's ``<cluster_data>`` block), so the same prompt gets
the same content here as on the Gemini and Anthropic emulators, in realtime and in batches.
Realtime faults, batch behaviour, batch-endpoint faults, logs and the ``/_control`` API are the
shared ones of :class:`~llm.emulators.server.EmulatorServer`.

Batch specifics as OpenAI: a new batch is ``validating``; its input lines are checked when it is
first polled (a bad line or a duplicate ``custom_id`` fails the batch with ``errors``); output
lines ``{"id", "custom_id", "response": {"status_code": 200, "body": chat.completion}, "error":
null}`` go to ``output_file_id``; per-item errors (``response.status_code`` >= 400) and
expired/cancelled items (``error.code`` ``batch_expired`` / ``batch_cancelled``) to
``error_file_id``. Limits default to OpenAI's (50,000 requests, 200 MB input file) and answer 400
at ``batches.create``.

Usage::

    with OpenAIEmulator() as emu:
        provider = OpenAIProvider(api_key="k", base_url=emu.url)
        emu.configure_batches(polls=2, shuffle=True, error_ids=["c3"])
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from llm.emulators.batches import BatchItem, BatchRejected, EmuBatch, EmuFile
from llm.emulators.openai_wire import chat_completion, chat_schema, chat_texts
from llm.emulators.ratelimit import Decision, go_duration
from llm.emulators.schema import as_int
from llm.emulators.server import EmulatorServer
from llm.emulators.transport import Reply, Request, parse_multipart, short_hash

#: The one batch endpoint emulated.
CHAT_ENDPOINT = "/v1/chat/completions"

_BATCH_RE = re.compile(r"^/v1/batches/([^/]+)(/cancel)?$")
_FILE_RE = re.compile(r"^/v1/files/([^/]+)(/content)?$")
#: What OpenAI lists in pages: batches and files.
_Row = TypeVar("_Row", EmuBatch, EmuFile)
_STATUS = {
    "pending": "validating",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
}
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def _line_problem(row: Any, number: int, endpoint: str, seen: set[str]) -> tuple[str, str] | None:
    """(error code, message) for a bad batch input line, None for a good one."""
    if isinstance(row, Mapping) and "__error__" in row:
        code, message = row["__error__"]
        return str(code), str(message)
    if not isinstance(row, Mapping) or not isinstance(row.get("body"), Mapping):
        return "invalid_request", f"Line {number} has no request body."
    custom_id = row.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", f"Line {number} has no custom_id."
    if custom_id in seen:
        return (
            "duplicate_custom_id",
            f"The custom_id for this request is a duplicate of another request: {custom_id}",
        )
    if row.get("method") != "POST" or row.get("url") != endpoint:
        return (
            "invalid_url",
            f"Line {number}: method/url must be POST {endpoint}, "
            f"got {row.get('method')} {row.get('url')}.",
        )
    return None


class OpenAIEmulator(EmulatorServer):
    """An OpenAI server on a background thread: chat completions, files and batches.

    Args: as :class:`~llm.emulators.server.EmulatorServer` (host, port, latency, rpm,
    window, api_key). A request without ``Authorization: Bearer <key>`` gets 401, as does a
    wrong key when ``api_key`` is set.
    """

    provider = "openai"
    default_max_requests: ClassVar[int | None] = 50_000
    default_max_bytes: ClassVar[int | None] = 200 * 1000 * 1000
    rate_limit_message = (
        "Rate limit reached for requests per min (RPM). Please try again in a moment."
    )
    default_messages: ClassVar[dict[int, str]] = {
        400: "Invalid request.",
        401: "Incorrect API key provided.",
        403: "Country, region, or territory not supported.",
        404: "The model does not exist or you do not have access to it.",
        429: "Rate limit reached for requests. Please try again later.",
        500: "The server had an error while processing your request. Sorry about that!",
        503: "The engine is currently overloaded, please try again later.",
    }

    # -- EmulatorServer hooks ------------------------------------------------------------------

    def rate_limit_reply(self, decision: Decision) -> Reply:
        """429 as OpenAI answers it: ``rate_limit_exceeded`` whose message ends "Please try
        again in 150ms." (Go duration), ``Retry-After`` in whole seconds and the
        ``x-ratelimit-{limit,remaining,reset}-requests`` headers (reset as a Go duration)."""
        message = (
            f"Rate limit reached for requests per min (RPM): Limit {decision.limit}, Used "
            f"{decision.limit}, Requested 1. Please try again in {go_duration(decision.wait)}. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        )
        reply = self.error_reply(429, message, retry_after=max(1, math.ceil(decision.wait)))
        reply.headers.update(
            {
                "x-ratelimit-remaining-requests": str(decision.remaining),
                "x-ratelimit-reset-requests": go_duration(decision.wait),
            }
        )
        if self.report_limit:
            reply.headers["x-ratelimit-limit-requests"] = str(decision.limit)
        return reply

    def error_body(self, code: int, message: str, *, retry_delay: float | None = None) -> Any:
        """``{"error": {"message", "type", "param", "code"}}``."""
        kind, error_code = _ERROR_TYPES.get(
            code, ("server_error" if code >= 500 else "invalid_request_error", None)
        )
        return {"error": {"message": message, "type": kind, "param": None, "code": error_code}}

    def check_key(self, request: Request) -> Reply | None:
        """``Authorization: Bearer <key>``: missing or wrong -> 401."""
        return self.key_refusal(
            request.bearer(),
            missing=(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ),
            wrong=(401, "Incorrect API key provided."),
        )

    def batch_item_payload(self, item: BatchItem, fault: Mapping[str, Any] | None) -> Any:
        """The chat.completion for one batch line's body."""
        return chat_completion(item.body, fault)

    def batch_finished(self, batch: EmuBatch) -> None:
        """Write the output file (successes) and the error file (item errors, expired and
        cancelled items) of a finished batch."""
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for outcome in batch.outcomes or []:
            line_id = f"batch_req_{short_hash([batch.id, outcome.custom_id])}"
            request_id = f"req_{short_hash([batch.id, outcome.custom_id, 'request'])}"
            if outcome.kind == "ok":
                response = {"status_code": 200, "request_id": request_id, "body": outcome.payload}
                output.append(
                    {"id": line_id, "custom_id": outcome.custom_id, "response": response}
                    | {"error": None}
                )
            elif outcome.kind == "error":
                response = {
                    "status_code": outcome.code,
                    "request_id": request_id,
                    "body": self.error_body(outcome.code, outcome.message),
                }
                errors.append(
                    {"id": line_id, "custom_id": outcome.custom_id, "response": response}
                    | {"error": None}
                )
            else:
                code, message = (
                    (
                        "batch_expired",
                        "This request could not be executed before the completion window expired.",
                    )
                    if outcome.kind == "expired"
                    else ("batch_cancelled", "This request was cancelled before it ran.")
                )
                errors.append(
                    {
                        "id": line_id,
                        "custom_id": outcome.custom_id,
                        "response": None,
                        "error": {"code": code, "message": message},
                    }
                )
        for key, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
                file_id = f"file-{self.new_id()}"
                name = f"{batch.id}_{key.split('_')[0]}.jsonl"
                self.store_file(
                    EmuFile(
                        file_id,
                        name,
                        "application/jsonl",
                        "batch_output",
                        data.encode(),
                        time.time(),
                    )
                )
                batch.extra[key] = file_id

    def handle(self, request: Request) -> Reply:
        """Route one OpenAI API call."""
        method, path = request.method, request.path
        if method == "POST" and path == "/v1/chat/completions":
            return self.serve_realtime(
                request,
                model="",
                schema_of=lambda body: chat_schema(body)[0],
                prompt_of=chat_texts,
                answer=self._answer,
            )
        denied = self.check_key(request)
        if denied is not None:
            return denied
        if path == "/v1/files":
            if method == "POST":
                return self.batch_op("upload", lambda: self._upload(request))
            if method == "GET":
                return self.batch_op("list", lambda: self._list_files(request))
        if match := _FILE_RE.match(path):
            file_id = match.group(1)
            if method == "GET" and match.group(2):
                return self.batch_op("download", lambda: self._content(file_id))
            if method == "GET":
                return self.batch_op("get", lambda: self._file_info(file_id))
            if method == "DELETE":
                return self.batch_op("cancel", lambda: self._delete_file(file_id))
        if path == "/v1/batches":
            if method == "POST":
                return self.batch_op("create", lambda: self._create(request))
            if method == "GET":
                return self.batch_op("list", lambda: self._list(request))
        if match := _BATCH_RE.match(path):
            batch_id = match.group(1)
            if method == "GET" and not match.group(2):
                return self.batch_op("get", lambda: self._batch_reply(batch_id, self.poll_batch))
            if method == "POST" and match.group(2):
                return self.batch_op(
                    "cancel", lambda: self._batch_reply(batch_id, self.cancel_batch)
                )
        return self.error_reply(404, f"Invalid URL ({method} {path})")

    # -- realtime ------------------------------------------------------------------------------

    def _answer(
        self, body: Mapping[str, Any], fault: Mapping[str, Any] | None
    ) -> tuple[Any, str | None]:
        completion = chat_completion(body, fault)
        return completion, completion["choices"][0]["finish_reason"]

    # -- files ---------------------------------------------------------------------------------

    def _file_json(self, stored: EmuFile) -> dict[str, Any]:
        return {
            "id": stored.id,
            "object": "file",
            "bytes": len(stored.data),
            "created_at": int(stored.created),
            "filename": stored.filename,
            "purpose": stored.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def _upload(self, request: Request) -> Reply:
        try:
            parts = parse_multipart(request.header("Content-Type"), request.body)
        except ValueError as error:
            return self.error_reply(400, f"Invalid multipart upload: {error}")
        if "file" not in parts or "purpose" not in parts:
            return self.error_reply(400, "Missing required parameters: 'file' and 'purpose'.")
        filename, data = parts["file"]
        purpose = parts["purpose"][1].decode("utf-8", "replace").strip()
        stored = self.store_file(
            EmuFile(
                f"file-{self.new_id()}",
                filename or "upload.jsonl",
                "application/jsonl",
                purpose,
                data,
                time.time(),
            )
        )
        return Reply(200, self._file_json(stored))

    def _list_files(self, request: Request) -> Reply:
        """``GET /v1/files?purpose&limit&after&order``: newest first by default (``order=asc``
        oldest first), at most ``limit`` (10,000) a page, ``has_more`` while more."""
        stored = self.list_files()
        if request.arg("order") == "asc":
            stored.reverse()
        purpose = request.arg("purpose")
        if purpose:
            stored = [f for f in stored if f.purpose == purpose]
        limit = max(1, min(as_int(request.arg("limit"), 10_000), 10_000))
        return _cursor_page(stored, request.arg("after"), limit, self._file_json)

    def _file_info(self, file_id: str) -> Reply:
        stored = self.find_file(file_id)
        if stored is None:
            return self.error_reply(404, f"No such File object: {file_id}")
        return Reply(200, self._file_json(stored))

    def _content(self, file_id: str) -> Reply:
        stored = self.find_file(file_id)
        if stored is None:
            return self.error_reply(404, f"No such File object: {file_id}")
        return Reply(200, raw=stored.data, content_type="application/octet-stream")

    def _delete_file(self, file_id: str) -> Reply:
        if not self.delete_file(file_id):
            return self.error_reply(404, f"No such File object: {file_id}")
        return Reply(200, {"id": file_id, "object": "file", "deleted": True})

    # -- batches -------------------------------------------------------------------------------

    def _create(self, request: Request) -> Reply:
        try:
            body = request.json()
            if not isinstance(body, Mapping):
                raise ValueError("request body must be a JSON object")
        except ValueError as error:
            return self.error_reply(400, f"We could not parse the JSON body: {error}")
        file_id = str(body.get("input_file_id") or "")
        endpoint = str(body.get("endpoint") or "")
        metadata = body.get("metadata") or {}
        if endpoint != CHAT_ENDPOINT:
            return self.error_reply(
                400, f"Unsupported endpoint {endpoint!r} (emulated: {CHAT_ENDPOINT})."
            )
        if body.get("completion_window") != "24h":
            return self.error_reply(400, "completion_window must be '24h'.")
        if not isinstance(metadata, Mapping):
            return self.error_reply(400, "metadata must be an object of strings.")
        stored = self.find_file(file_id)
        if stored is None:
            return self.error_reply(404, f"No such File object: {file_id}")
        if stored.purpose != "batch":
            return self.error_reply(400, f"File {file_id} was not uploaded with purpose 'batch'.")
        items, errors = self._parse_input(stored.data, endpoint)
        try:
            batch = self.create_batch(
                batch_id=f"batch_{self.new_id()}",
                tag=str(metadata.get("tag") or ""),
                model=items[0].model if items else "",
                items=items,
                size_bytes=len(stored.data),
                source="file",
                extra={
                    "metadata": dict(metadata),
                    "input_file_id": file_id,
                    "endpoint": endpoint,
                },
                validation_errors=errors,
            )
        except BatchRejected as rejected:
            return self.error_reply(rejected.status, rejected.message)
        return Reply(200, self._batch_json(batch))

    @staticmethod
    def _parse_input(data: bytes, endpoint: str) -> tuple[list[BatchItem], list[dict[str, Any]]]:
        """Items of an input file and the problems found (one per bad line)."""
        items: list[BatchItem] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                row = {"__error__": ("invalid_json_line", f"Line {number} is not JSON: {error}")}
            problem = _line_problem(row, number, endpoint, seen)
            if problem is not None:
                code, message = problem
                errors.append({"code": code, "line": number, "message": message, "param": None})
                continue
            seen.add(row["custom_id"])
            body = dict(row["body"])
            items.append(BatchItem(row["custom_id"], body, str(body.get("model") or "")))
        return items, errors

    def _batch_json(self, batch: EmuBatch) -> dict[str, Any]:
        """The ``batch`` object (timestamps are Unix seconds)."""
        status = _STATUS[batch.state]
        if batch.cancel_requested is not None and not batch.final:
            status = "cancelling"

        def stamp(wall: float | None) -> int | None:
            return None if wall is None else int(wall)

        errors = None
        if batch.validation_errors:
            errors = {"object": "list", "data": batch.validation_errors}
        elif batch.state == "failed":
            code = batch.extra.get("error_code_name") or "batch_failed"
            failure = {"code": code, "line": None, "message": batch.error, "param": None}
            errors = {"object": "list", "data": [failure]}
        failed = batch.count("error") + batch.count("expired") + batch.count("cancelled")
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.extra.get("endpoint", CHAT_ENDPOINT),
            "model": batch.model or None,
            "errors": errors,
            "input_file_id": batch.extra.get("input_file_id", ""),
            "completion_window": "24h",
            "status": status,
            "output_file_id": batch.extra.get("output_file_id"),
            "error_file_id": batch.extra.get("error_file_id"),
            "created_at": int(batch.created),
            "in_progress_at": stamp(batch.started),
            "expires_at": int(batch.created) + 24 * 3600,
            "finalizing_at": stamp(batch.ended if batch.state == "succeeded" else None),
            "completed_at": stamp(batch.ended if batch.state == "succeeded" else None),
            "failed_at": stamp(batch.ended if batch.state == "failed" else None),
            "expired_at": stamp(batch.ended if batch.state == "expired" else None),
            "cancelling_at": stamp(batch.cancel_requested),
            "cancelled_at": stamp(batch.ended if batch.state == "cancelled" else None),
            "request_counts": {
                "total": len(batch.items),
                "completed": batch.count("ok"),
                "failed": failed,
            },
            "metadata": batch.extra.get("metadata") or None,
        }

    def _batch_reply(self, batch_id: str, step: Callable[[str], EmuBatch]) -> Reply:
        """The batch JSON after ``step`` (a status poll or a cancel request); 404 for an unknown
        id."""
        try:
            return Reply(200, self._batch_json(step(batch_id)))
        except KeyError:
            return self.error_reply(404, f"No batch found with id '{batch_id}'.")

    def _list(self, request: Request) -> Reply:
        limit = max(1, min(as_int(request.arg("limit"), 20), 100))
        return _cursor_page(self.list_batches(), request.arg("after"), limit, self._batch_json)


def _cursor_page(
    rows: Sequence[_Row], after: str | None, limit: int, to_json: Callable[[_Row], dict[str, Any]]
) -> Reply:
    """One page of an OpenAI list: up to ``limit`` of ``rows`` after the one whose id is
    ``after`` (none when it is unknown), as ``{"object": "list", "data", "first_id", "last_id",
    "has_more"}``."""
    start = 0
    if after:
        ids = [row.id for row in rows]
        start = ids.index(after) + 1 if after in ids else len(ids)
    page = rows[start : start + limit]
    return Reply(
        200,
        {
            "object": "list",
            "data": [to_json(row) for row in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": start + limit < len(rows),
        },
    )
