"""HTTP plumbing of the emulators: the :class:`Request` and :class:`Reply` they see, the threaded
HTTP/1.1 server and its handler (``/_control/*`` to the control API, everything else to the
emulator), multipart parsing, and the stable ids and timestamps their JSON carries."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from llm.emulators.schema import as_int

if TYPE_CHECKING:
    from llm.emulators.server import EmulatorServer

logger = logging.getLogger(__name__)


@dataclass
class Request:
    """One HTTP request as the emulators see it.

    ``path`` has no query string; ``query`` maps names to value lists; ``body`` is the raw bytes
    (chunked transfer decoded).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes

    def json(self) -> Any:
        """The decoded JSON body, None when empty.

        Raises:
            ValueError: the body is not UTF-8 JSON.
        """
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str:
        """A request header ("" when absent)."""
        return str(self.headers.get(name) or "")

    def bearer(self) -> str:
        """The token of an ``Authorization: Bearer <token>`` header ("" without one)."""
        header = self.header("Authorization")
        return header[7:].strip() if header.lower().startswith("bearer ") else ""


@dataclass
class Reply:
    """An HTTP answer: a JSON ``payload`` or ``raw`` bytes, with extra headers."""

    status: int
    payload: Any = None
    raw: bytes | None = None
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """The threaded HTTP server of one emulator (``request_queue_size`` is its listen backlog)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    emulator: EmulatorServer


class EmulatorHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler: ``/_control/*`` to the control API, everything else to the emulator."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every answer on loopback.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(f"{self.server.emulator.provider} emulator: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if "chunked" in str(self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = as_int(self.headers.get("Content-Length"), 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        emulator = self.server.emulator
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except (ValueError, OSError) as error:
            self._send(emulator.error_reply(400, f"unreadable request body: {error}"))
            return
        request = Request(method, split.path, parse_qs(split.query), self.headers, body)
        if split.path.startswith("/_control/"):
            reply = emulator.control(request)
        else:
            reply = emulator.dispatch(request)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.raw is not None:
            data = reply.raw
        else:
            data = json.dumps(reply.payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client gave up (e.g. a timeout fault); nothing to answer to.
            self.close_connection = True


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """The parts of a ``multipart/form-data`` body: field name -> (filename or "", bytes).

    Raises:
        ValueError: not a multipart body.
    """
    if "multipart/form-data" not in content_type.lower():
        raise ValueError(f"expected multipart/form-data, got {content_type or 'no content type'}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        parts[str(name)] = (part.get_filename() or "", data)
    return parts


def short_hash(value: Any, length: int = 24) -> str:
    """A stable hex digest of a JSON-serialisable value (for deterministic response ids)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def iso_time(wall: float | None) -> str | None:
    """RFC 3339 UTC timestamp of a ``time.time()`` value (None stays None)."""
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
