"""What the SDK-backed providers (Gemini, OpenAI, Anthropic) share.

- Error classification: :func:`is_transient_status` (HTTP status), :func:`parse_retry_after` and
  :func:`retry_after_from_headers` (seconds to wait), and :class:`SdkProvider`, the base class
  with the key check, key redaction of every error message, the call guard that turns each SDK
  exception into a classified :class:`ProviderError`, and the validation of an answer's text.
- Batch items: :func:`batch_item_error` and :func:`unknown_custom_id` (failed items, classified
  like realtime errors). The other batch helpers (checks before sending, result lines, pagers,
  matching a listed batch) are in :mod:`llm.providers.batch_support`.

What differs by vendor (request bodies, reading a response, batch states, how a batch is found
again) stays in each provider's module.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from llm.providers.base import ProviderError, ProviderRequest, ProviderResult, T, redact
from llm.providers.batch import BatchItemResult, BatchStatus, ProviderFile
from llm.providers.batch_support import batch_check, guarded_iter
from llm.providers.parsing import parse_structured
from llm.providers.ratelimit_hints import RateLimitHint

R = TypeVar("R")
ResponseT = TypeVar("ResponseT")

#: HTTP statuses worth retrying: rate limited, request timeout, server-side failures.
TRANSIENT_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})

#: gRPC codes (google.rpc.Code) worth retrying, as found in Gemini batch item errors:
#: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE.
TRANSIENT_RPC_CODES = frozenset({4, 8, 10, 13, 14})

#: Token counts of one answer, as ProviderError and ProviderResult take them.
Tokens = Mapping[str, int]


# --------------------------------------------------------------------------------------------
# Error classification
# --------------------------------------------------------------------------------------------


def is_transient_status(code: int | None) -> bool:
    """True for HTTP statuses worth retrying: 408, 429 and every 5xx (including 529)."""
    return code is not None and (code in TRANSIENT_STATUS_CODES or code >= 500)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value.

    Accepts delta-seconds (``"7"``, ``"1.5"``) or an HTTP date; returns None when absent or
    unparseable, never a negative number.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def retry_after_from_headers(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` response headers, or None."""
    if headers is None:
        return None
    try:
        milliseconds = headers.get("retry-after-ms")
        header = headers.get("retry-after")
    except (AttributeError, TypeError):
        return None
    if isinstance(milliseconds, str):
        try:
            value = float(milliseconds)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000.0
    return parse_retry_after(header if isinstance(header, str) else None)


def batch_item_error(
    vendor: str,
    custom_id: str,
    message: str,
    *,
    code: int | None = None,
    transient: bool | None = None,
    secrets: Sequence[str] = (),
) -> BatchItemResult:
    """A failed batch item: an ``api_error`` whose transience follows ``code`` unless given.

    ``code`` may be an HTTP status or a gRPC code (< 100, Gemini); keys in ``message`` are
    redacted.
    """
    if transient is None:
        if code is None:
            transient = False
        elif code < 100:
            transient = code in TRANSIENT_RPC_CODES
        else:
            transient = is_transient_status(code)
    label = f" ({code})" if code is not None else ""
    error = ProviderError(
        redact(f"{vendor} batch item {custom_id!r} failed{label}: {message}", list(secrets)),
        transient=transient,
        kind="api_error",
        status_code=code if code is not None and code >= 100 else None,
    )
    return BatchItemResult(custom_id=custom_id, result=None, error=error)


def unknown_custom_id(vendor: str, custom_id: str) -> BatchItemResult:
    """The result for an item whose custom id the caller did not submit (permanent)."""
    return batch_item_error(
        vendor,
        custom_id,
        "unknown custom_id: not among the requests this batch was asked to match",
        transient=False,
    )


# --------------------------------------------------------------------------------------------
# The shared part of a provider
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SdkExceptions:
    """A vendor SDK's exception families, tried in this order by :meth:`SdkProvider._guard`.

    Attributes:
        status: an HTTP answer with an error status (classified by ``_status_error``).
        timeout: the call took longer than the provider's timeout (checked before
            ``connection``: SDK timeouts are often connection errors too).
        connection: the request could not be sent or the answer not received.
        unreadable: the SDK could not read the answer.
        timeout_names_exception: name the timeout exception's class in the message.
    """

    status: type[Exception]
    timeout: tuple[type[BaseException], ...]
    connection: tuple[type[BaseException], ...]
    unreadable: tuple[type[BaseException], ...]
    timeout_names_exception: bool = False


def stainless_exceptions(sdk: ModuleType) -> SdkExceptions:
    """The exception families of a Stainless-generated SDK (``openai``, ``anthropic``): both
    name them alike (``APIStatusError``, ``APITimeoutError`` ...)."""
    return SdkExceptions(
        status=sdk.APIStatusError,
        timeout=(sdk.APITimeoutError,),
        connection=(sdk.APIConnectionError,),
        unreadable=(sdk.APIResponseValidationError,),
    )


class SdkProvider(ABC, Generic[ResponseT]):
    """Base of the providers that call a vendor SDK; ``ResponseT`` is the SDK's answer type.

    Holds the API key (never logged, redacted from every message), the endpoint and timeout
    and the batch limits; subclasses set :attr:`vendor`, :attr:`key_variable` and
    :attr:`sdk_exceptions`, build their client and implement :meth:`_status_error`,
    :meth:`_interpret` and :meth:`batch_request_bytes`.

    Raises:
        ProviderError: ``kind="api_error"``, permanent, when ``api_key`` is empty.
    """

    #: The vendor's name in messages ("Gemini").
    vendor: ClassVar[str]
    #: The setting that holds the key ("GEMINI_API_KEY").
    key_variable: ClassVar[str]
    sdk_exceptions: ClassVar[SdkExceptions]
    #: The vendor's batch limits, the defaults of ``max_requests_per_batch`` (requests) and
    #: ``max_bytes_per_batch`` (bytes of the serialised input).
    max_requests_default: ClassVar[int]
    max_bytes_default: ClassVar[int]

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        *,
        max_requests_per_batch: int | None = None,
        max_bytes_per_batch: int | None = None,
    ) -> None:
        if not api_key:
            raise ProviderError(
                f"{self.vendor} API key is not set ({self.key_variable})",
                transient=False,
                kind="api_error",
            )
        self._api_key = api_key
        self.base_url = base_url or None
        self.timeout = float(timeout)
        self.max_requests_per_batch = int(
            self.max_requests_default if max_requests_per_batch is None else max_requests_per_batch
        )
        self.max_bytes_per_batch = int(
            self.max_bytes_default if max_bytes_per_batch is None else max_bytes_per_batch
        )
        self._client = self._client_build()

    @abstractmethod
    def _client_build(self) -> Any:
        """The vendor SDK's client for this key, endpoint and timeout, with the SDK's own
        retries off (the pipeline owns retries and the shared rate)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, timeout={self.timeout})"

    # -- errors --------------------------------------------------------------------------------

    def _error(self, message: str, **kwargs: Any) -> ProviderError:
        """A ProviderError whose message has the key (and anything key-shaped) redacted."""
        return ProviderError(redact(message, [self._api_key]), **kwargs)

    @abstractmethod
    def _status_error(self, error: Any) -> ProviderError:
        """The ProviderError of the SDK's HTTP status exception (see :meth:`_http_error`)."""

    def _http_error(
        self,
        code: int | None,
        qualifier: str | None,
        detail: str,
        retry_after: Callable[[], float | None],
        *,
        hint: Callable[[], RateLimitHint] | None = None,
        permanent: bool = False,
    ) -> ProviderError:
        """An HTTP error answer: ``"<Vendor> API error <code> [<qualifier>]: <detail>"``,
        transient for 408, 429 and 5xx (unless ``permanent``: e.g. OpenAI's 429
        ``insufficient_quota``), with ``retry_after()`` seconds (asked only then). A transient
        429 is ``rate_limited``; its wait and the provider's limit come from ``hint()`` when
        given (see :func:`llm.providers.ratelimit_hints.rate_limit_hint`)."""
        transient = is_transient_status(code) and not permanent
        label = f"{code} {qualifier}" if qualifier else f"{code}"
        wait = retry_after() if transient else None
        limit: int | None = None
        rate_limited = transient and code == 429
        if rate_limited and hint is not None:
            told = hint()
            wait = told.retry_after if told.retry_after is not None else wait
            limit = told.limit_per_minute
        return self._error(
            f"{self.vendor} API error {label}: {detail}",
            transient=transient,
            retry_after=wait,
            kind="api_error",
            status_code=code,
            rate_limited=rate_limited,
            provider_limit=limit,
        )

    def _guard(self, call: Callable[[], R]) -> R:
        """Run one SDK call; raise a classified ProviderError for every transport or HTTP
        failure (no vendor exception leaks, and none is chained: it holds the request and its
        credentials headers).
        """
        sdk = self.sdk_exceptions
        failure: ProviderError | None = None
        try:
            return call()
        except sdk.status as error:
            failure = self._status_error(error)
        except sdk.timeout as error:
            named = f" ({type(error).__name__})" if sdk.timeout_names_exception else ""
            failure = self._error(
                f"{self.vendor} request timed out after {self.timeout:g} s{named}",
                transient=True,
                kind="timeout",
            )
        except sdk.connection as error:
            failure = self._error(
                f"{self.vendor} connection failed ({type(error).__name__}: {error})",
                transient=True,
                kind="api_error",
            )
        except sdk.unreadable as error:
            failure = self._error(
                f"{self.vendor} returned an unreadable response: {error}",
                transient=True,
                kind="api_error",
            )
        except Exception as error:
            # The contract: no vendor exception leaks past a provider. Only the SDK call is
            # wrapped, so this cannot hide bugs in our own response handling.
            failure = self._error(
                f"{self.vendor} SDK call failed unexpectedly ({type(error).__name__}: {error})",
                transient=False,
                kind="api_error",
            )
        # Raised outside the except blocks on purpose: the SDK exception (which holds the HTTP
        # request and its key header) must not travel along as __context__.
        raise failure

    # -- answers -------------------------------------------------------------------------------

    def _timed(
        self, call: Callable[[], ResponseT], request: ProviderRequest[T]
    ) -> ProviderResult[T]:
        """Run one realtime call through the guard and interpret its answer, timed."""
        started = time.perf_counter()
        response = self._guard(call)
        latency = time.perf_counter() - started
        return self._interpret(
            response,
            request.output_class,
            model=request.model,
            max_output_tokens=request.max_output_tokens,
            latency=latency,
        )

    @abstractmethod
    def _interpret(
        self,
        response: ResponseT,
        output_class: type[T],
        *,
        model: str,
        max_output_tokens: int | None,
        latency: float,
    ) -> ProviderResult[T]:
        """Turn one answer (realtime or batch item) into a validated result.

        Raises:
            ProviderError: blocked, refused, truncated, empty or invalid answers.
        """

    def _answer_error(
        self, message: str, *, kind: str, tokens: Tokens, raw_text: str = ""
    ) -> ProviderError:
        """A permanent failure of one answer, with its token counts and text."""
        return self._error(message, transient=False, kind=kind, raw_text=raw_text, **tokens)

    def _truncated_error(
        self,
        max_output_tokens: int | None,
        *,
        raw_text: str,
        tokens: Tokens,
        reason: str = "",
        what: str = "JSON",
    ) -> ProviderError:
        """An answer cut at the output token budget (``validation_failed``)."""
        budget = f" ({max_output_tokens} output tokens allowed)" if max_output_tokens else ""
        return self._answer_error(
            f"{self.vendor} output truncated at max tokens{budget}{reason}; "
            f"the {what} is incomplete",
            kind="validation_failed",
            raw_text=raw_text,
            tokens=tokens,
        )

    def _empty_error(self, reason_name: str, reason: str, tokens: Tokens) -> ProviderError:
        """An answer without text (``api_error``); ``reason_name`` is "finish reason" or the
        like."""
        return self._answer_error(
            f"{self.vendor} returned an empty answer ({reason_name} {reason or 'none'})",
            kind="api_error",
            tokens=tokens,
        )

    def _validated(
        self,
        text: str,
        output_class: type[T],
        *,
        tokens: Tokens,
        latency: float,
        model_version: str,
        finish_reason: str,
    ) -> ProviderResult[T]:
        """The result of an answer ``text`` valid for ``output_class`` (see
        :func:`parse_structured`).

        Raises:
            ProviderError: ``validation_failed``, permanent, with the text and token counts.
        """
        invalid: ProviderError | None = None
        try:
            parsed = parse_structured(text, output_class)
        except ProviderError as error:
            invalid = error
        if invalid is not None:
            raise self._answer_error(
                invalid.message, kind="validation_failed", raw_text=text, tokens=tokens
            )
        return ProviderResult(
            parsed=parsed,
            raw_text=text,
            input_tokens=tokens["input_tokens"],
            output_tokens=tokens["output_tokens"],
            latency_seconds=latency,
            model_version=model_version,
            finish_reason=finish_reason,
        )

    # -- batch ---------------------------------------------------------------------------------

    @abstractmethod
    def batch_request_bytes(self, request: ProviderRequest[BaseModel]) -> int:
        """Size in bytes of one request as it would be serialised into the batch input."""

    @abstractmethod
    def batch_create(
        self, requests: Sequence[ProviderRequest[BaseModel]], *, display_name: str
    ) -> BatchStatus:
        """Create one batch; the batch as the provider answered the creation (id, state)."""

    def batch_submit(
        self, requests: Sequence[ProviderRequest[BaseModel]], *, display_name: str
    ) -> str:
        """Create one batch (:meth:`batch_create`) and return its id. Not idempotent: store
        ``display_name`` first and use ``batch_find`` after a crash."""
        return self.batch_create(requests, display_name=display_name).batch_id

    def batch_files(self, batch_id: str) -> list[str]:
        """Ids of the files held for the batch (none: a provider without file storage)."""
        return []

    def file_delete(self, file_id: str) -> bool:
        """Delete a stored file (a provider without file storage knows none: False)."""
        return False

    def files_list(self) -> Iterator[ProviderFile]:
        """Stored files (a provider without file storage has none)."""
        return iter(())

    def _batch_check(
        self,
        requests: Sequence[ProviderRequest[Any]],
        *,
        custom_id_pattern: re.Pattern[str] | None = None,
        custom_id_rule: str = "",
    ) -> list[int]:
        """:func:`batch_check` against this provider's limits; the requests' sizes."""
        return batch_check(
            self.vendor,
            requests,
            max_requests=self.max_requests_per_batch,
            max_bytes=self.max_bytes_per_batch,
            size_of=self.batch_request_bytes,
            custom_id_pattern=custom_id_pattern,
            custom_id_rule=custom_id_rule,
        )

    def _batch_error(self, state: str, error: str) -> str:
        """A batch's error text, redacted; a failed batch without a reason says so."""
        if state == "failed" and not error:
            error = f"{self.vendor} reported the batch as failed without a reason"
        return redact(error, [self._api_key])

    def _pages(self, list_call: Callable[[], Iterable[R]]) -> Iterator[R]:
        """Every item of a paged SDK listing, each page fetched through the guard."""
        return guarded_iter(self._guard(list_call), self._guard)

    def _require_ended(self, batch_id: str, raw_state: str, *, ended: bool) -> None:
        """Raise a transient ProviderError unless the batch has ended (results exist then)."""
        if not ended:
            raise self._error(
                f"{self.vendor} batch {batch_id} is {raw_state}; results exist once it has ended",
                transient=True,
            )

    def _answered_item(
        self, custom_id: str, response: ResponseT, output_class: type[BaseModel], model: str
    ) -> BatchItemResult:
        """A batch item with an answer: its validated result, or the ProviderError why not."""
        try:
            result = self._interpret(
                response, output_class, model=model, max_output_tokens=None, latency=0.0
            )
        except ProviderError as error:
            return BatchItemResult(custom_id=custom_id, result=None, error=error)
        return BatchItemResult(custom_id=custom_id, result=result, error=None)
