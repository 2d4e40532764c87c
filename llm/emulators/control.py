"""The ``/_control`` API every emulator answers (JSON in and out), and :class:`EmulatorControl`,
its client, to script an emulator running in another process (``manage.py provider_emulator``)::

    GET    /_control/health | /_control/config      {"ok", "url", "latency", "rpm", "window",
                                                     "rate_mode", "burst"}
    POST   /_control/config                         {latency?, rpm?, window?, rate_mode?, burst?}
    GET    /_control/log?target=generate|judge      {"requests": [...]}   realtime calls
    GET    /_control/api_log                        {"requests": [...]}   every API call
    GET    /_control/faults                         {"pending": [...]}
    POST   /_control/faults                         fault | [faults] | {"faults": [...], "replace"}
    DELETE /_control/faults
    POST   /_control/reset                          faults, logs, batches, files, settings
    GET    /_control/batches                        {"batches": [...], "submissions": [...]}
    GET    /_control/batches/config                 the BatchSettings as JSON
    POST   /_control/batches/config                 {setting: value, ..., "reset"?: bool}
    POST   /_control/batches/finish                 {"batch_id"?}: finish now (all if omitted)
    GET    /_control/batches/faults                 {"pending": [...]}
    POST   /_control/batches/faults                 fault | [faults] (see BATCH_FAULT_KINDS)
    DELETE /_control/batches/faults

Realtime faults are described in :data:`~llm.emulators.faults.FAULT_KINDS`, batch settings in
:class:`~llm.emulators.batches.BatchSettings`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from llm.emulators.transport import Reply, Request

if TYPE_CHECKING:
    from llm.emulators.server import EmulatorServer

#: The methods of a fault queue endpoint: list, replace or add to, clear.
_QUEUE_METHODS = ("GET", "POST", "DELETE")


def control_reply(emulator: EmulatorServer, request: Request) -> Reply:
    """Answer a ``/_control/*`` request to ``emulator`` (see the module docstring): unknown
    ids answer 404, invalid JSON, settings or faults 400, in the emulator's error shape."""
    try:
        payload = request.json()
    except ValueError as error:
        return emulator.error_reply(400, f"invalid JSON: {error}")
    try:
        return _control(emulator, request, payload)
    except KeyError as error:
        return emulator.error_reply(404, f"unknown id {error}")
    except (ValueError, TypeError) as error:
        return emulator.error_reply(400, str(error))


def _control(emulator: EmulatorServer, request: Request, payload: Any) -> Reply:
    method, path = request.method, request.path
    if method == "GET" and path == "/_control/log":
        return Reply(200, {"requests": emulator.request_log(request.arg("target"))})
    if method == "GET" and path == "/_control/api_log":
        return Reply(200, {"requests": emulator.api_log()})
    if path in ("/_control/config", "/_control/health") and method == "GET":
        return Reply(200, {"ok": True, "url": emulator.url, **emulator.config()})
    if path == "/_control/faults" and method in _QUEUE_METHODS:
        return _fault_queue(
            method,
            payload,
            pending=emulator.pending_faults,
            clear=emulator.clear_faults,
            add=emulator.add_faults,
        )
    if method == "POST" and path == "/_control/reset":
        emulator.reset()
        return Reply(200, {"ok": True})
    if method == "POST" and path == "/_control/config":
        payload = payload or {}
        if not isinstance(payload, Mapping):
            raise ValueError("expected {latency, rpm, window, rate_mode, burst}")
        kwargs: dict[str, Any] = {
            "latency": payload.get("latency"),
            "window": payload.get("window"),
            "rate_mode": payload.get("rate_mode"),
        }
        for name in ("rpm", "burst"):
            if name in payload:
                kwargs[name] = payload[name]
        return Reply(200, emulator.configure(**kwargs))
    if method == "GET" and path == "/_control/batches":
        return Reply(
            200, {"batches": emulator.batches(), "submissions": emulator.batch_submissions()}
        )
    if path == "/_control/batches/config":
        if method == "GET":
            return Reply(200, emulator.batch_settings())
        if method == "POST":
            settings = dict(payload or {})
            reset = bool(settings.pop("reset", False))
            return Reply(200, emulator.configure_batches(reset=reset, **settings))
    if method == "POST" and path == "/_control/batches/finish":
        batch_id = (payload or {}).get("batch_id") if isinstance(payload, Mapping) else None
        return Reply(200, {"finished": emulator.finish_batches(batch_id)})
    if path == "/_control/batches/faults" and method in _QUEUE_METHODS:
        return _fault_queue(
            method,
            payload,
            pending=emulator.pending_batch_faults,
            clear=emulator.clear_batch_faults,
            add=emulator.add_batch_faults,
        )
    return emulator.error_reply(404, f"Unknown control path {method} {path}")


def _fault_queue(
    method: str,
    payload: Any,
    *,
    pending: Callable[[], list[dict[str, Any]]],
    clear: Callable[[], None],
    add: Callable[[Iterable[Mapping[str, Any]]], None],
) -> Reply:
    """GET, DELETE or POST on a fault queue (realtime or batch-endpoint): answer the faults
    still pending after the call."""
    if method == "DELETE":
        clear()
        return Reply(200, {"pending": []})
    if method == "POST":
        faults, replace = _fault_list(payload)
        if replace:
            clear()
        add(faults)
    return Reply(200, {"pending": pending()})


def _fault_list(payload: Any) -> tuple[list[Any], bool]:
    """(faults, replace) from a fault object, a list, or ``{"faults": [...], "replace"}``."""
    replace = False
    if isinstance(payload, Mapping) and "faults" in payload:
        replace = bool(payload.get("replace"))
        faults = payload["faults"]
    else:
        faults = payload
    if isinstance(faults, Mapping):
        faults = [faults]
    if not isinstance(faults, list):
        raise ValueError("expected a fault object, a list of faults or {faults: [...]}")
    return faults, replace


class EmulatorControl:
    """Drive an emulator running in another process through its ``/_control`` endpoints.

    Args:
        url: the emulator's base URL (what it printed at start-up).
        timeout: seconds per control request.

    Raises (from every method):
        RuntimeError: the emulator answered with an error (message included).
        OSError: the emulator is unreachable.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            body = error.read().decode("utf-8", "replace")
            message = f"emulator control {method} {path} failed: {error.code} {body}"
            raise RuntimeError(message) from None

    def add_faults(
        self, faults: list[Mapping[str, Any]], *, replace: bool = False
    ) -> list[dict[str, Any]]:
        """Queue realtime faults; returns the pending list."""
        answer = self._call("POST", "/_control/faults", {"faults": faults, "replace": replace})
        return list(answer["pending"])

    def pending_faults(self) -> list[dict[str, Any]]:
        """Realtime faults not yet consumed."""
        return list(self._call("GET", "/_control/faults")["pending"])

    def log(self, target: str | None = None) -> list[dict[str, Any]]:
        """The realtime request log (see :meth:`EmulatorServer.request_log`)."""
        suffix = f"?target={target}" if target else ""
        return list(self._call("GET", "/_control/log" + suffix)["requests"])

    def api_log(self) -> list[dict[str, Any]]:
        """Every API call (see :meth:`EmulatorServer.api_log`)."""
        return list(self._call("GET", "/_control/api_log")["requests"])

    def reset(self) -> None:
        """Clear faults, logs, rate window, batches, files and batch settings."""
        self._call("POST", "/_control/reset", {})

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set ``latency`` (s), ``rpm`` (None = off), ``window`` (s), ``rate_mode`` (bucket |
        window) and/or ``burst`` (requests); returns the config."""
        return dict(self._call("POST", "/_control/config", settings))

    def configure_batches(self, *, reset: bool = False, **settings: Any) -> dict[str, Any]:
        """Change the batch behaviour (see :class:`~llm.emulators.batches.BatchSettings`);
        returns the settings."""
        return dict(self._call("POST", "/_control/batches/config", {**settings, "reset": reset}))

    def batch_settings(self) -> dict[str, Any]:
        """The current batch settings."""
        return dict(self._call("GET", "/_control/batches/config"))

    def batches(self) -> list[dict[str, Any]]:
        """Summaries of the stored batches."""
        return list(self._call("GET", "/_control/batches")["batches"])

    def submissions(self) -> list[dict[str, Any]]:
        """The batch submission log (see :meth:`EmulatorServer.batch_submissions`)."""
        return list(self._call("GET", "/_control/batches")["submissions"])

    def finish_batches(self, batch_id: str | None = None) -> list[str]:
        """Finish one batch, or all unfinished ones, now; returns the ids finished."""
        payload = {"batch_id": batch_id} if batch_id else {}
        return list(self._call("POST", "/_control/batches/finish", payload)["finished"])

    def add_batch_faults(
        self, faults: list[Mapping[str, Any]], *, replace: bool = False
    ) -> list[dict[str, Any]]:
        """Queue batch-endpoint faults; returns the pending list."""
        answer = self._call(
            "POST", "/_control/batches/faults", {"faults": faults, "replace": replace}
        )
        return list(answer["pending"])
