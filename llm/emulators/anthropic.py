"""A local Anthropic Messages API server (messages and message batches) for tests and benchmarks.

A real HTTP server speaking the routes the ``anthropic`` SDK uses (base URL = the emulator root;
paths include ``/v1``; see ``/work/shared/docs/provider-wire-reference.md``):

    POST   /v1/messages                                 realtime (forced tool or text)
    POST   /v1/messages/batches                         {"requests": [{"custom_id", "params"}]}
    GET    /v1/messages/batches?limit&after_id&before_id   newest first
    GET    /v1/messages/batches/{id}     POST /v1/messages/batches/{id}/cancel
    DELETE /v1/messages/batches/{id}
    GET    /v1/messages/batches/{id}/results            JSONL, via the absolute ``results_url``

Answers come from the shared schema-driven builder: with ``tools`` and a ``tool_choice`` naming a
tool (or ``any``), the answer is a ``tool_use`` block whose ``input`` is built from that tool's
``input_schema``; without tools it is plain summary text. The same prompt gets the same content
here as on the Gemini and OpenAI emulators, in realtime and in batches.

Content faults in Anthropic terms: ``fenced`` and ``truncated`` answer with a text block instead
of the tool call (``end_turn``), ``max_tokens`` stops with ``stop_reason: max_tokens``, ``empty``
has no content blocks, ``safety`` stops with ``stop_reason: refusal``. Status faults use
Anthropic's error envelope (``{"type": "error", "error": {"type", "message"}}``; 529
``overloaded_error``).

Batches: ``custom_id`` must match ``^[a-zA-Z0-9_-]{1,64}$`` and be unique, else 400. A batch is
``in_progress`` (``canceling`` after a cancel request) until it ``ended``; results are unordered
lines ``{"custom_id", "result": {"type": "succeeded" | "errored" | "canceled" | "expired"}}``.
Anthropic batches have no failed state: the scripted ``failed`` outcome ends the batch with every
item errored. Limits default to Anthropic's (100,000 requests, 256 MB) and answer 400.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from llm.emulators.anthropic_wire import error_type, forced_tool, message_response, message_texts
from llm.emulators.batches import BatchItem, BatchRejected, EmuBatch, ItemOutcome
from llm.emulators.ratelimit import Decision
from llm.emulators.schema import as_int
from llm.emulators.server import EmulatorServer
from llm.emulators.transport import Reply, Request, iso_time

#: Custom ids Anthropic accepts.
CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

_BATCH_RE = re.compile(r"^/v1/messages/batches/([^/]+)(/cancel|/results)?$")
# A custom id carrying the provider's batch tag: 10 hex digits and "-" before the caller's id.
_TAGGED_ID_RE = re.compile(r"[0-9a-f]{10}-(.+)", re.DOTALL)


def _result_line(outcome: ItemOutcome) -> dict[str, Any]:
    if outcome.kind == "ok":
        result: dict[str, Any] = {"type": "succeeded", "message": outcome.payload}
    elif outcome.kind == "error":
        error = {"type": error_type(outcome.code), "message": outcome.message}
        result = {"type": "errored", "error": {"type": "error", "error": error}}
    elif outcome.kind == "expired":
        result = {"type": "expired"}
    else:
        result = {"type": "canceled"}
    return {"custom_id": outcome.custom_id, "result": result}


class AnthropicEmulator(EmulatorServer):
    """An Anthropic server on a background thread: messages and message batches.

    Args: as :class:`~llm.emulators.server.EmulatorServer` (host, port, latency, rpm,
    window, api_key). The key is read from ``x-api-key`` or ``Authorization: Bearer`` (the SDK
    2.x sends the latter); a missing or (when ``api_key`` is set) wrong key gets 401.
    """

    provider = "anthropic"
    default_max_requests: ClassVar[int | None] = 100_000
    default_max_bytes: ClassVar[int | None] = 256 * 1000 * 1000
    rate_limit_message = "Number of request tokens has exceeded your per-minute rate limit."
    default_messages: ClassVar[dict[int, str]] = {
        400: "Invalid request.",
        401: "invalid x-api-key",
        403: "Your API key does not have permission to use the specified resource.",
        404: "The requested resource could not be found.",
        429: "Number of requests has exceeded your rate limit.",
        500: "An unexpected error has occurred internal to Anthropic's systems.",
        529: "Overloaded",
    }

    # -- EmulatorServer hooks ------------------------------------------------------------------

    def rate_limit_reply(self, decision: Decision) -> Reply:
        """429 ``rate_limit_error`` as Anthropic answers it: ``retry-after`` in whole seconds
        and ``anthropic-ratelimit-requests-{limit,remaining,reset}`` (reset: RFC 3339 time at
        which the limit is whole again, millisecond precision)."""
        message = (
            "This request would exceed the rate limit for your organization of "
            f"{decision.limit} requests per minute. For details, refer to: "
            "https://docs.claude.com/en/api/rate-limits."
        )
        reply = self.error_reply(429, message, retry_after=max(1, math.ceil(decision.wait)))
        reset = datetime.now(UTC) + timedelta(seconds=decision.wait)
        if self.report_limit:
            reply.headers["anthropic-ratelimit-requests-limit"] = str(decision.limit)
        reply.headers.update(
            {
                "anthropic-ratelimit-requests-remaining": str(decision.remaining),
                "anthropic-ratelimit-requests-reset": reset.isoformat(
                    timespec="milliseconds"
                ).replace("+00:00", "Z"),
            }
        )
        return reply

    def error_body(self, code: int, message: str, *, retry_delay: float | None = None) -> Any:
        """``{"type": "error", "error": {"type", "message"}}``."""
        return {"type": "error", "error": {"type": error_type(code), "message": message}}

    def check_key(self, request: Request) -> Reply | None:
        """``x-api-key`` or ``Authorization: Bearer``: missing or wrong -> 401."""
        return self.key_refusal(
            request.header("x-api-key") or request.bearer(),
            missing=(401, "x-api-key header is required"),
            wrong=(401, "invalid x-api-key"),
        )

    def batch_item_payload(self, item: BatchItem, fault: Mapping[str, Any] | None) -> Any:
        """The message for one batch request's ``params``."""
        return message_response(item.body, fault)

    def control_id(self, custom_id: str) -> str:
        """Batch settings name items by the caller's custom id: the 11-character batch tag
        that :class:`~llm.providers.anthropic.AnthropicProvider` prefixes is ignored."""
        match = _TAGGED_ID_RE.fullmatch(custom_id)
        return match.group(1) if match else custom_id

    def batch_finished(self, batch: EmuBatch) -> None:
        """Anthropic has no failed batches: a scripted failure errors every item."""
        if batch.state == "failed":
            batch.outcomes = [
                ItemOutcome(item.custom_id, "error", code=500, message=batch.error)
                for item in batch.items
            ]

    def handle(self, request: Request) -> Reply:
        """Route one Anthropic API call."""
        method, path = request.method, request.path
        if method == "POST" and path == "/v1/messages":
            return self.serve_realtime(
                request,
                model="",
                schema_of=self._schema_of,
                prompt_of=message_texts,
                answer=self._answer,
            )
        denied = self.check_key(request)
        if denied is not None:
            return denied
        if path == "/v1/messages/batches":
            if method == "POST":
                return self.batch_op("create", lambda: self._create(request))
            if method == "GET":
                return self.batch_op("list", lambda: self._list(request))
        if match := _BATCH_RE.match(path):
            batch_id, action = match.group(1), match.group(2)
            if method == "GET" and not action:
                return self.batch_op("get", lambda: self._batch_reply(batch_id, self.poll_batch))
            if method == "POST" and action == "/cancel":
                return self.batch_op(
                    "cancel", lambda: self._batch_reply(batch_id, self.cancel_batch)
                )
            if method == "GET" and action == "/results":
                return self.batch_op("results", lambda: self._results(batch_id))
            if method == "DELETE" and not action:
                return self.batch_op("cancel", lambda: self._delete(batch_id))
        return self.error_reply(404, f"Not found: {method} {path}")

    # -- realtime ------------------------------------------------------------------------------

    @staticmethod
    def _schema_of(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        tool = forced_tool(body)
        schema = tool.get("input_schema") if tool else None
        return schema if isinstance(schema, Mapping) else None

    def _answer(
        self, body: Mapping[str, Any], fault: Mapping[str, Any] | None
    ) -> tuple[Any, str | None]:
        message = message_response(body, fault)
        return message, message["stop_reason"]

    # -- batches -------------------------------------------------------------------------------

    def _create(self, request: Request) -> Reply:
        try:
            body = request.json()
            if not isinstance(body, Mapping) or not isinstance(body.get("requests"), list):
                raise ValueError('expected {"requests": [...]}')
        except ValueError as error:
            return self.error_reply(400, f"Invalid request body: {error}")
        items: list[BatchItem] = []
        seen: set[str] = set()
        for index, entry in enumerate(body["requests"]):
            entry = entry if isinstance(entry, Mapping) else {}
            custom_id = entry.get("custom_id")
            params = entry.get("params")
            if not isinstance(custom_id, str) or not CUSTOM_ID_RE.match(custom_id):
                return self.error_reply(
                    400,
                    f"requests.{index}.custom_id: String should match pattern "
                    f"'^[a-zA-Z0-9_-]{{1,64}}$' (got {custom_id!r})",
                )
            if custom_id in seen:
                return self.error_reply(
                    400, f"requests.{index}.custom_id: duplicate custom_id {custom_id!r}"
                )
            if not isinstance(params, Mapping) or not all(
                key in params for key in ("model", "max_tokens", "messages")
            ):
                return self.error_reply(
                    400, f"requests.{index}.params: model, max_tokens and messages are required"
                )
            seen.add(custom_id)
            items.append(BatchItem(custom_id, dict(params), str(params["model"])))
        try:
            batch = self.create_batch(
                batch_id=f"msgbatch_{self.new_id()}",
                tag="",
                model=items[0].model if items else "",
                items=items,
                size_bytes=len(request.body),
            )
        except BatchRejected as rejected:
            return self.error_reply(rejected.status, rejected.message)
        return Reply(200, self._batch_json(batch))

    def _batch_json(self, batch: EmuBatch) -> dict[str, Any]:
        if batch.final:
            status = "ended"
        elif batch.cancel_requested is not None:
            status = "canceling"
        else:
            status = "in_progress"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {
                "processing": 0 if batch.final else len(batch.items),
                "succeeded": batch.count("ok"),
                "errored": batch.count("error"),
                "canceled": batch.count("cancelled"),
                "expired": batch.count("expired"),
            },
            "ended_at": iso_time(batch.ended),
            "created_at": iso_time(batch.created),
            "expires_at": iso_time(batch.created + 24 * 3600),
            "archived_at": None,
            "cancel_initiated_at": iso_time(batch.cancel_requested),
            "results_url": (
                f"{self.url}/v1/messages/batches/{batch.id}/results" if batch.final else None
            ),
        }

    def _batch_reply(self, batch_id: str, step: Callable[[str], EmuBatch]) -> Reply:
        """The batch JSON after ``step`` (a status poll or a cancel request); 404 for an unknown
        id."""
        try:
            return Reply(200, self._batch_json(step(batch_id)))
        except KeyError:
            return self.error_reply(404, f"No message batch with id {batch_id}.")

    def _delete(self, batch_id: str) -> Reply:
        try:
            batch = self.peek_batch(batch_id)
            if not batch.final:
                return self.error_reply(400, "A batch must have ended before it can be deleted.")
            self.delete_batch(batch_id)
        except KeyError:
            return self.error_reply(404, f"No message batch with id {batch_id}.")
        return Reply(200, {"id": batch_id, "type": "message_batch_deleted"})

    def _results(self, batch_id: str) -> Reply:
        try:
            batch = self.peek_batch(batch_id)
        except KeyError:
            return self.error_reply(404, f"No message batch with id {batch_id}.")
        if not batch.final:
            return self.error_reply(
                404, f"Results for batch {batch_id} are not available until it has ended."
            )
        data = "".join(
            json.dumps(_result_line(outcome), ensure_ascii=False) + "\n"
            for outcome in batch.outcomes or []
        ).encode("utf-8")
        return Reply(200, raw=data, content_type="application/binary")

    def _list(self, request: Request) -> Reply:
        batches = self.list_batches()
        ids = [batch.id for batch in batches]
        limit = max(1, min(as_int(request.arg("limit"), 20), 1000))
        after, before = request.arg("after_id"), request.arg("before_id")
        if before:
            end = ids.index(before) if before in ids else 0
            page = batches[max(0, end - limit) : end]
            has_more = end - limit > 0
        else:
            start = ids.index(after) + 1 if after and after in ids else (len(ids) if after else 0)
            page = batches[start : start + limit]
            has_more = start + limit < len(batches)
        return Reply(
            200,
            {
                "data": [self._batch_json(batch) for batch in page],
                "has_more": has_more,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            },
        )
