"""What the batch implementations share: the checks before a batch is sent
(:func:`batch_check`), reading result lines (:func:`decode_row`), paging SDK listings and
result streams through a provider's guard (:func:`guarded_iter`), and matching a listed batch to
the one submitted after a lost answer (:func:`batch_matches`, :func:`first_named`).

Used by :mod:`llm.providers.common` (the shared provider base) and the gemini, openai and
anthropic providers; plain functions, no SDK imports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from llm.providers.base import ProviderError, ProviderRequest
from llm.providers.batch import BatchStatus

R = TypeVar("R")


def batch_check(
    vendor: str,
    requests: Sequence[ProviderRequest[Any]],
    *,
    max_requests: int,
    max_bytes: int,
    size_of: Callable[[ProviderRequest[Any]], int],
    custom_id_pattern: re.Pattern[str] | None = None,
    custom_id_rule: str = "",
) -> list[int]:
    """Validate a batch before anything is sent; return each request's serialised size (bytes).

    Checks: at least one request; at most ``max_requests``; every ``custom_id`` non-empty,
    unique and (when given) matching ``custom_id_pattern``; total size at most ``max_bytes``.

    Raises:
        ProviderError: ``api_error``, permanent, naming the rule broken (split oversize sets by
            ``max_requests_per_batch`` / ``max_bytes_per_batch``).
    """

    def refuse(message: str) -> ProviderError:
        return ProviderError(f"{vendor} batch rejected: {message}", transient=False)

    if not requests:
        raise refuse("it has no requests")
    if len(requests) > max_requests:
        raise refuse(
            f"{len(requests)} requests exceed the limit of {max_requests} per batch; "
            "split the set into several batches"
        )
    seen: set[str] = set()
    for index, request in enumerate(requests):
        custom_id = request.custom_id
        if not custom_id:
            raise refuse(f"request {index} has no custom_id (results are matched by it)")
        if custom_id_pattern is not None and not custom_id_pattern.fullmatch(custom_id):
            raise refuse(f"custom_id {custom_id!r} is invalid: {custom_id_rule}")
        if custom_id in seen:
            raise refuse(f"custom_id {custom_id!r} is used twice; custom ids must be unique")
        seen.add(custom_id)
    sizes = [size_of(request) for request in requests]
    total = sum(sizes)
    if total > max_bytes:
        raise refuse(
            f"the serialised input is {total} bytes, over the limit of {max_bytes} bytes; "
            "split the set into several batches"
        )
    return sizes


def guarded_iter(iterable: Iterable[R], guard: Callable[[Callable[[], Any]], Any]) -> Iterator[R]:
    """Iterate an SDK pager or stream, running each step through ``guard`` (a provider's
    call wrapper that turns SDK exceptions into classified ProviderErrors)."""
    iterator = guard(lambda: iter(iterable))
    sentinel: Any = object()
    while True:
        item = guard(lambda: next(iterator, sentinel))
        if item is sentinel:
            return
        yield item


def decode_row(line: str | bytes) -> dict[str, Any] | str:
    """One JSONL result line as a JSON object, or the reason it is not one (a string)."""
    try:
        value = json.loads(line)
    except ValueError as error:
        return f"unreadable result line ({error})"
    return value if isinstance(value, dict) else "result line is not an object"


def as_utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware datetime (naive means UTC, as Django stores it)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def batch_matches(
    status: BatchStatus,
    display_name: str,
    *,
    request_count: int | None = None,
    created_after: datetime | None = None,
    exclude_ids: Collection[str] = (),
) -> bool:
    """Whether ``status`` may be the batch submitted as ``display_name``: same name, not an
    excluded id, and, where the provider reports them, the same request count (0 = not
    reported yet, e.g. a batch still validating) and created no earlier than ``created_after``.
    """
    if status.display_name != display_name or status.batch_id in exclude_ids:
        return False
    if (
        request_count is not None
        and status.request_count
        and status.request_count != (request_count)
    ):
        return False
    after = as_utc(created_after)
    created = as_utc(status.created_at)
    return not (after is not None and created is not None and created < after)


def first_named(
    statuses: Iterable[BatchStatus],
    display_name: str,
    *,
    request_count: int | None = None,
    created_after: datetime | None = None,
    exclude_ids: Collection[str] = (),
) -> BatchStatus | None:
    """The first status (listings are newest first) that :func:`batch_matches`."""
    for status in statuses:
        if batch_matches(
            status,
            display_name,
            request_count=request_count,
            created_after=created_after,
            exclude_ids=exclude_ids,
        ):
            return status
    return None
