"""The send loop of the schemathesis tests (``test_api_fuzz``, ``test_api_schema_conformance``):
every operation of the app's OpenAPI schema, in positive and negative generation mode, with
generated path ids and with ids of rows that exist, each response validated with the caller's
checks; failures come back as text lines, so one run reports all of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

#: (label, response status, the checks' error, a curl command replaying the request) -> the
#: failure's text
Describe = Callable[[str, int, BaseException, str], str]


def send_cases(
    strategy: Any,
    *,
    headers: dict[str, str],
    label: str,
    seen: Counter[tuple[str, int]],
    checks: list[Callable[..., Any]],
    max_examples: int,
    describe: Describe,
) -> list[str]:
    """Send up to ``max_examples`` requests drawn from ``strategy`` with ``headers`` (generate
    phase only, no example database), counting ``(operation, status)`` in ``seen``, and
    validate each response with ``checks``; the failures found, as ``describe`` words them."""
    failures: list[str] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def send(case: Any) -> None:
        response = case.call(headers=headers)
        seen[case.operation.label, response.status_code] += 1
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
            curl = case.as_curl_command(headers=headers)
            failures.append(describe(label, response.status_code, exc, curl))

    send()
    return failures


def send_every_operation(
    operations: Iterable[Any],
    *,
    path_parameters: Callable[[str], dict[str, Any]],
    headers: dict[str, str],
    seen: Counter[tuple[str, int]],
    checks: list[Callable[..., Any]],
    max_examples: int,
    describe: Describe,
) -> list[str]:
    """:func:`send_cases` for every operation, in positive and negative mode, with generated
    path ids and, where ``path_parameters(operation.path)`` names existing rows, with those;
    labels read ``"GET /api/runs/{id}/ [positive, existing ids]"``. The failures found.

    Raises:
        AssertionError: a positive strategy could generate no request at all.
    """
    failures: list[str] = []
    for operation in operations:
        fixed_ids = path_parameters(operation.path)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for fixed in ({}, fixed_ids) if fixed_ids else ({},):
                label = f"{operation.label} [{mode.value}{', existing ids' if fixed else ''}]"
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=fixed or None
                )
                try:
                    failures += send_cases(
                        strategy,
                        headers=headers,
                        label=label,
                        seen=seen,
                        checks=checks,
                        max_examples=max_examples,
                        describe=describe,
                    )
                except Unsatisfiable:
                    # no request can violate the schema here (e.g. negative mode with the only
                    # parameter fixed): nothing to send
                    assert mode is GenerationMode.NEGATIVE, label
    return failures
