"""One way to wait in a test: poll a condition until it holds or a deadline passes.

Tests wait on observable state (a row's status, an emulator's log), never on a fixed sleep, and
their deadlines are generous so that they hold on a fully loaded 2-core machine; a deadline that
passes fails with what was awaited and, where given, the context (log tails, row states).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    context: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and
    return that value (checked once more at the deadline).

    Args:
        predicate: the condition; its truthy result is returned.
        timeout: seconds to wait at most.
        what: what is awaited, for the failure message.
        interval: seconds between calls.
        context: called on failure for extra detail (log tails, states).

    Raises:
        AssertionError: ``predicate`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"{what}: not reached within {timeout:g} s{extra}")
        time.sleep(interval)
