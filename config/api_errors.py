"""One error shape for every response of the REST API under /api/.

Every error, whatever raised it, is answered as JSON::

    {"detail": "one readable sentence", "code": "machine_code", "errors": {"field": ["message"]}}

``errors`` maps a request field to its messages for 400 responses about the payload (a nested
field is dotted, ``params.k``; problems not tied to one field are under ``non_field_errors``)
and is ``{}`` otherwise; a 409 about an active run adds ``"active_run": <id>``. ``code`` is
DRF's error code (``invalid``, ``not_authenticated``,
``permission_denied``, ``not_found``, ``method_not_allowed``, ``throttled``, ``conflict``,
``request_too_large``, ``parse_error``, ``server_error`` ...).

The views of the API use :class:`UniformErrorsMixin`, which installs the handler per view, so
the shape does not depend on ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``; setting that to
``"config.api_errors.api_exception_handler"`` extends it to any other DRF view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    ObjectDoesNotExist,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

NON_FIELD_KEY = "non_field_errors"


class Conflict(exceptions.APIException):
    """409: the request conflicts with the current state (e.g. a run is still active)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"

    def __init__(self, detail: str | None = None, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        #: members added to the error body, e.g. ``{"active_run": 12}``
        self.extra = dict(extra or {})


class RequestTooLarge(exceptions.APIException):
    """413: the request body is larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self, limit: int | None = None) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if limit is None else limit
        super().__init__(
            f"The request body is larger than the limit of {limit} bytes "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE)."
        )


def error_body(detail: str, code: str, errors: Mapping[str, list[str]] | None = None) -> dict:
    """The JSON body of an error response: ``{"detail", "code", "errors"}``."""
    return {"detail": detail, "code": code, "errors": dict(errors or {})}


def _flatten(detail: Any, prefix: str, out: dict[str, list[str]]) -> None:
    """Collect DRF validation details into ``field -> [messages]`` with dotted nested keys."""
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == api_settings.NON_FIELD_ERRORS_KEY and prefix:
                name = prefix
            _flatten(value, name, out)
    elif isinstance(detail, list | tuple):
        for index, item in enumerate(detail):
            if isinstance(item, Mapping | list | tuple):
                _flatten(item, f"{prefix}.{index}" if prefix else str(index), out)
            else:
                out.setdefault(prefix or NON_FIELD_KEY, []).append(str(item))
    else:
        out.setdefault(prefix or NON_FIELD_KEY, []).append(str(detail))


def validation_errors(detail: Any) -> dict[str, list[str]]:
    """``field -> [messages]`` of a ``ValidationError.detail`` (dict, list or string)."""
    out: dict[str, list[str]] = {}
    _flatten(detail, "", out)
    if not out:
        out[NON_FIELD_KEY] = ["Invalid input."]
    return out


def _validation_summary(errors: Mapping[str, list[str]]) -> str:
    parts = [
        message if field == NON_FIELD_KEY else f"{field}: {message}"
        for field, messages in errors.items()
        for message in messages
    ]
    text = "; ".join(parts)
    return text if len(text) <= 500 else text[:497] + "..."


def _first_code(codes: Any) -> str:
    if isinstance(codes, str):
        return codes
    if isinstance(codes, Mapping):
        codes = list(codes.values())
    for item in codes or []:
        found = _first_code(item)
        if found:
            return found
    return "error"


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """DRF exception handler producing ``{"detail", "code", "errors"}`` for every exception.

    Maps Django's ``Http404``/``ObjectDoesNotExist`` to 404, ``PermissionDenied`` to 403,
    ``RequestDataTooBig`` to 413, other ``SuspiciousOperation`` to 400, DRF's exceptions to their
    own status, and anything else to a logged 500 whose body reveals nothing of the exception.
    Keeps ``WWW-Authenticate`` (401) and ``Retry-After`` (429) headers.
    """
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, TooManyFieldsSent):
        exc = exceptions.ValidationError(
            {NON_FIELD_KEY: ["The request has too many fields (DATA_UPLOAD_MAX_NUMBER_FIELDS)."]}
        )
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError("The request could not be processed.")

    if not isinstance(exc, exceptions.APIException):
        view = context.get("view")
        logger.error(
            "unhandled error in API view %s",
            type(view).__name__ if view is not None else "?",
            exc_info=exc,
        )
        set_rollback()
        return Response(
            error_body("A server error occurred.", "server_error"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    headers: dict[str, str] = {}
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = f"{int(wait)}"

    if isinstance(exc, exceptions.ValidationError):
        errors = validation_errors(exc.detail)
        body = error_body(_validation_summary(errors), "invalid", errors)
    else:
        detail = exc.detail
        if isinstance(detail, list | dict):
            errors = validation_errors(detail)
            body = error_body(_validation_summary(errors), _first_code(exc.get_codes()), errors)
        else:
            body = error_body(str(detail), _first_code(exc.get_codes()))
    body.update(getattr(exc, "extra", None) or {})
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


class UniformErrorsMixin:
    """For API views: the uniform error handler, the body size limit and a 401 challenge.

    * every exception goes through :func:`api_exception_handler`;
    * a body whose ``Content-Length`` exceeds ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is refused with 413
      before it is read (DRF's JSON parser reads the raw stream, which Django does not limit);
    * unauthenticated requests get 401 with ``WWW-Authenticate: Token`` (DRF would answer 403
      because session authentication, listed first, has no challenge).
    """

    def get_exception_handler(self) -> Callable[[Exception, Mapping[str, Any]], Response]:
        return api_exception_handler

    def get_authenticate_header(self, request: Request) -> str | None:
        for authenticator in self.get_authenticators():  # type: ignore[attr-defined]
            header = authenticator.authenticate_header(request)
            if header:
                return str(header)
        return None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None:
            raw = request.META.get("CONTENT_LENGTH") or request.META.get("HTTP_CONTENT_LENGTH")
            try:
                length = int(raw or 0)
            except (TypeError, ValueError):
                length = 0
            if length > limit:
                raise RequestTooLarge(limit)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """JSON 404 for any path under /api/ that no route matches (Django would answer HTML), for
    every method: CSRF-exempt, since it changes nothing, so an unsafe method on an unrouted path
    or a bad id gets this answer and not Django's HTML "CSRF verification failed" page.

    Hints at the trailing slash when the path with one exists.
    """
    detail = "Not found."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            detail = f"Not found. Did you mean {request.path}/ (with a trailing slash)?"
    return JsonResponse(error_body(detail, "not_found"), status=status.HTTP_404_NOT_FOUND)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: under /api/ the API's JSON 403; elsewhere Django's own page."""
    if request.path.startswith("/api/") or request.path == "/api":
        return JsonResponse(
            error_body(f"CSRF Failed: {reason}" if reason else "CSRF Failed.", "permission_denied"),
            status=status.HTTP_403_FORBIDDEN,
        )
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason=reason)


def safe_methods_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a read-only page under /api/ (schema, docs): other methods get the API's JSON 405
    with ``Allow`` rather than the page's own renderer (YAML, HTML)."""

    @csrf_exempt
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            response = JsonResponse(
                error_body(f'Method "{request.method}" not allowed.', "method_not_allowed"),
                status=status.HTTP_405_METHOD_NOT_ALLOWED,
            )
            response["Allow"] = "GET, HEAD, OPTIONS"
            return response
        return view(request, *args, **kwargs)

    return wrapped
