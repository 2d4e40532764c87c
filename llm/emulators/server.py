"""The base class of the provider emulators: :class:`EmulatorServer`, a real HTTP server on a
background thread that speaks one vendor's REST protocol (``gemini.py``, ``openai.py``,
``anthropic.py`` next to this module), so the official SDKs are exercised end to end (see
``/work/shared/docs/provider-wire-reference.md``).

It joins the two halves every emulator has, :class:`~llm.emulators.realtime.RealtimeScript`
(latency, rate limit, realtime faults, call logs) and :class:`~llm.emulators.batch_store.BatchStore`
(batches, files, batch settings and faults), to the HTTP plumbing
(:mod:`llm.emulators.transport`) and the ``/_control`` API (:mod:`llm.emulators.control`), and
runs the flows they share: a realtime call (log, parse, authenticate, rate-limit, fault, answer)
and a batch-endpoint call (through the next batch fault).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Self

from llm.emulators.answers import prompt_tokens_of
from llm.emulators.batch_store import BatchStore
from llm.emulators.control import control_reply
from llm.emulators.ratelimit import Decision
from llm.emulators.realtime import RealtimeScript
from llm.emulators.schema import as_float, schema_target
from llm.emulators.transport import EmulatorHandler, EmulatorHTTPServer, Reply, Request

logger = logging.getLogger(__name__)


class EmulatorServer(RealtimeScript, BatchStore):
    """Base class of the provider emulators: a server on a background thread with scripted
    realtime faults, rate limit, logs, batches, files and the ``/_control`` API.

    Args:
        host: interface to bind (``127.0.0.1``).
        port: TCP port; 0 picks a free one (read it back from :attr:`url`).
        latency: default delay in seconds before every realtime answer.
        rpm: server-side limit on realtime calls, requests per ``window`` seconds (None =
            unlimited); excess requests get 429 as the vendor answers it
            (:meth:`rate_limit_reply`).
        window: length of the rate-limit window in seconds (60 = requests per minute).
        rate_mode: ``bucket`` (default: a token bucket of ``burst`` requests refilled at
            ``rpm / window`` per second, as providers enforce) or ``window`` (a moving window).
        burst: bucket size in requests (default ``min(2, rpm)``); unused by ``window``.
        api_key: when set, requests with another key are refused as the vendor does; requests
            without any key are always refused.
        batch_settings: initial :class:`~llm.emulators.batches.BatchSettings` (also what
            :meth:`reset` restores).

    Subclasses set :attr:`provider`, :attr:`default_max_requests`, :attr:`default_max_bytes` and
    implement :meth:`handle`, :meth:`error_body`, :meth:`check_key` and
    :meth:`batch_item_payload` (optionally :meth:`batch_finished` and :meth:`control_id`).
    Use as a context manager or call :meth:`start` / :meth:`stop`.
    All public methods are thread-safe.
    """

    provider: ClassVar[str] = "provider"
    default_messages: ClassVar[dict[int, str]] = {}
    rate_limit_message: ClassVar[str] = "Rate limit exceeded; retry later."
    #: whether a 429 names the limit (x-ratelimit-limit-requests, Gemini's QuotaFailure); set
    #: False on an instance to emulate a provider that does not say (clients must learn it)
    report_limit: bool = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        rpm: int | None = None,
        window: float = 60.0,
        rate_mode: str = "bucket",
        burst: int | None = None,
        api_key: str | None = None,
        batch_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        RealtimeScript.__init__(
            self, latency=latency, rpm=rpm, window=window, rate_mode=rate_mode, burst=burst
        )
        BatchStore.__init__(self, batch_settings)
        self._stopping = threading.Event()
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self. Idempotent.

        Raises:
            OSError: the port cannot be bound.
        """
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        server = EmulatorHTTPServer((self.host, self.port), EmulatorHandler)
        server.emulator = self
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.provider}-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("%s emulator listening on %s", self.provider, self.url)
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close the socket. Idempotent."""
        server, self._server = self._server, None
        self._stopping.set()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (what ``LLM_BASE_URL`` points at)."""
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Clear faults, logs, the rate window, batches, files and batch settings; restore the
        start-up configuration."""
        self._reset_realtime()
        self._reset_batches()

    # -- hooks for subclasses ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        """Answer one provider API request (everything but ``/_control``)."""
        raise NotImplementedError

    def error_body(self, code: int, message: str, *, retry_delay: float | None = None) -> Any:
        """The vendor's JSON error envelope for HTTP ``code``."""
        raise NotImplementedError

    def check_key(self, request: Request) -> Reply | None:
        """None when the request carries an acceptable API key, else the vendor's refusal."""
        raise NotImplementedError

    def rate_limit_reply(self, decision: Decision) -> Reply:
        """The 429 answer to a request over the rate limit. Default: the vendor's error body
        with :attr:`rate_limit_message` and a ``Retry-After`` of whole seconds (rounded up, as
        HTTP's delta-seconds are). Subclasses add what their vendor sends (headers, the delay in
        the message or body)."""
        return self.error_reply(
            429, self.rate_limit_message, retry_after=max(1, math.ceil(decision.wait))
        )

    # -- helpers for subclasses ----------------------------------------------------------------

    def key_refusal(
        self, key: str, *, missing: tuple[int, str], wrong: tuple[int, str]
    ) -> Reply | None:
        """The vendor's refusal of a request's API key, or None when it is acceptable.

        Args:
            key: the key the request carries ("" for none).
            missing: (HTTP code, message) answering a request without a key.
            wrong: (HTTP code, message) answering a key other than :attr:`api_key`, when set.
        """
        if not key:
            return self.error_reply(*missing)
        if self.api_key is not None and key != self.api_key:
            return self.error_reply(*wrong)
        return None

    def error_reply(
        self,
        code: int,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        retry_delay: float | None = None,
    ) -> Reply:
        """An error :class:`Reply` in the vendor's shape, with Retry-After when given."""
        text = message or self.default_messages.get(code, f"Error {code}")
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = (
                str(int(retry_after)) if float(retry_after).is_integer() else f"{retry_after:g}"
            )
        return Reply(code, self.error_body(code, text, retry_delay=retry_delay), headers=headers)

    def dispatch(self, request: Request) -> Reply:
        """Log an API call, answer it with :meth:`handle`; unexpected errors answer 500."""
        with self._lock:
            entry = {
                "seq": len(self._api_log) + 1,
                "wall": time.time(),
                "method": request.method,
                "path": request.path,
                "status": None,
            }
            self._api_log.append(entry)
        try:
            reply = self.handle(request)
        except Exception as error:
            logger.exception(
                "%s emulator failed on %s %s", self.provider, request.method, request.path
            )
            reply = self.error_reply(500, f"emulator error: {type(error).__name__}: {error}")
        with self._lock:
            entry["status"] = reply.status
        return reply

    def serve_realtime(
        self,
        request: Request,
        *,
        model: str,
        schema_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None],
        prompt_of: Callable[[Mapping[str, Any]], tuple[str, str]],
        answer: Callable[[Mapping[str, Any], Mapping[str, Any] | None], tuple[Any, str | None]],
    ) -> Reply:
        """The shared realtime flow: log, parse, authenticate, rate-limit, apply the next
        matching fault, then answer.

        Args:
            request: the HTTP request (body: the vendor's generation request JSON).
            model: the model named by the path or body.
            schema_of: body -> output schema (tells judge requests from generate requests).
            prompt_of: body -> (user text, system text), logged with the request (``user``,
                ``system``) with the prompt token count the answer reports (``prompt_tokens``).
            answer: (body, fault or None) -> (response JSON, finish reason for the log).
        """
        entry = self._record(
            {
                "monotonic": time.monotonic(),
                "wall": time.time(),
                "method": request.method,
                "path": request.path,
                "model": model,
                "target": None,
                "status": None,
                "fault": None,
                "finish_reason": None,
                "duration": None,
            }
        )
        try:
            body = request.json()
            if not isinstance(body, Mapping):
                raise ValueError("request body must be a JSON object")
        except ValueError as error:
            self._finish(entry, 400)
            return self.error_reply(400, f"Invalid JSON payload received. {error}")
        target = schema_target(schema_of(body))
        user_text, system_text = prompt_of(body)
        with self._lock:
            entry["target"] = target
            entry["user"], entry["system"] = user_text, system_text
            entry["prompt_tokens"] = prompt_tokens_of(user_text, system_text)
            if not entry["model"]:
                entry["model"] = str(body.get("model") or "")

        denied = self.check_key(request)
        if denied is not None:
            self._finish(entry, denied.status)
            return denied

        refused = self._admit(time.monotonic())
        if refused is not None:
            self._finish(entry, 429, fault="rate_limit")
            return self.rate_limit_reply(refused)

        fault = self._take_fault(target)
        kind = fault["kind"] if fault else None
        delay = self.latency + (float(fault["seconds"]) if fault and kind == "latency" else 0.0)
        self._sleep(delay)

        if fault and kind == "status":
            code = int(fault["code"])
            self._finish(entry, code, fault="status")
            return self.error_reply(
                code,
                str(fault.get("message") or "") or None,
                retry_after=_seconds(fault, "retry_after"),
                retry_delay=_seconds(fault, "retry_delay"),
            )
        if fault and kind == "timeout":
            self._sleep(float(fault["seconds"]))

        payload, finish_reason = answer(body, fault)
        self._finish(entry, 200, fault=kind, finish_reason=finish_reason)
        return Reply(200, payload)

    def batch_op(self, op: str, action: Callable[[], Reply]) -> Reply:
        """Run one batch-endpoint operation through the next matching batch fault, if any.

        Status faults answer an error instead (after performing the operation when the fault
        has ``commit``); timeout faults perform it and answer late; latency faults delay it.
        """
        fault = self._take_batch_fault(op)
        if fault is None:
            return action()
        kind = fault["kind"]
        if kind == "latency":
            self._sleep(float(fault["seconds"]))
            return action()
        if kind == "timeout":
            reply = action()
            self._sleep(float(fault["seconds"]))
            return reply
        if fault.get("commit"):
            action()
        return self.error_reply(
            int(fault["code"]),
            str(fault.get("message") or "") or None,
            retry_after=_seconds(fault, "retry_after"),
        )

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- control API ---------------------------------------------------------------------------

    def control(self, request: Request) -> Reply:
        """Answer a ``/_control/*`` request (see :mod:`llm.emulators.control`)."""
        return control_reply(self, request)


def _seconds(fault: Mapping[str, Any], key: str) -> float | None:
    """A fault's optional delay parameter in seconds (1.0 when not a number), None when unset."""
    return as_float(fault[key], 1.0) if fault.get(key) is not None else None
