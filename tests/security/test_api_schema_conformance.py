"""Schemathesis with every check (``--checks all``) against the app's own OpenAPI schema, for
anonymous visitors, readers and staff: no 5xx and no schema violation (status codes, content
types, headers and bodies as documented; schema-violating requests refused; documented
authentication honoured; unsupported methods answered 405).

``positive_data_acceptance`` expects 400 too: a schema-valid ``POST /api/runs/`` can still name
a dataset that does not exist or a ``k`` above that dataset's entities, which no static schema
can express (the 400 is documented, with the field it is about).

Requests go to the WSGI application in the test's transaction (see ``test_api_fuzz``): nothing
is committed, no task is enqueued, no provider is called.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config._auth import AuthConfig

from llm.models import LLMCall
from tests.security.schema_cases import send_every_operation
from tests.security.test_api_fuzz import _existing_ids, _headers_for, api, in_test_transaction
from tests.support.world import World, build_world

__all__ = ["api", "in_test_transaction"]  # fixtures used below

pytestmark = [pytest.mark.security, pytest.mark.django_db]

#: per operation, mode and path ids; ``SCHEMATHESIS_EXAMPLES`` raises it for a deeper search
EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "4"))
ROLES = ("anonymous", "reader", "staff")


def _all_checks() -> list[Callable[..., Any]]:
    load_all_checks()
    return list(CHECKS.get_all())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " | ".join(line.strip() for line in text[:6] if line.strip())


def _failure_text(label: str, status: int, error: BaseException, curl: str) -> str:
    """The failure with the first lines of what the checks said, and the curl command that
    replays it."""
    return f"{label} -> {status}: {_first_line(error)}\n    {curl}"


def _check_all(api: Any, world: World, headers: dict[str, str]) -> tuple[list[str], Counter]:
    seen: Counter[tuple[str, int]] = Counter()
    failures = send_every_operation(
        [result.ok() for result in api.get_all_operations()],
        path_parameters=functools.partial(_existing_ids, world),
        headers=headers,
        seen=seen,
        checks=_all_checks(),
        max_examples=EXAMPLES_PER_OPERATION,
        describe=_failure_text,
    )
    return failures, seen


@pytest.mark.parametrize("role", ROLES)
def test_every_check_passes_for_every_role(
    api: Any, role: str, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    api.config.checks.positive_data_acceptance.expected_statuses = [
        "2xx",
        "400",
        "401",
        "403",
        "404",
        "409",
        "429",
    ]
    world = build_world()
    token = _headers_for("plain" if role == "reader" else role).get("Authorization")
    if token is not None:
        # the role's token as schemathesis' configured credential for the tokenAuth scheme:
        # requests carry it, and ignored_auth probes each operation without it and with an
        # invalid one (a token passed as a plain header would count as "generated" and, sent
        # beside a generated session cookie, look like accepted invalid credentials)
        api.config.auth = AuthConfig(openapi={"tokenAuth": {"api_key": token}})
    headers: dict[str, str] = {}
    calls = LLMCall.objects.count()
    with django_capture_on_commit_callbacks(execute=False):
        failures, seen = _check_all(api, world, headers)
    reached = {label for (label, code), _ in seen.items() if 200 <= code < 300}
    if role == "staff":  # the credential was applied: staff-only operations succeeded
        assert {"GET /api/calls/", "POST /api/runs/{id}/cancel/"} <= reached, reached
    else:
        assert "GET /api/calls/" not in reached
    if failures:
        pytest.fail(f"{len(failures)} failures:\n" + "\n".join(failures), pytrace=False)
    assert not [key for key in seen if key[1] >= 500]
    assert LLMCall.objects.count() == calls
