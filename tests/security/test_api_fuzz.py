"""Schemathesis against the app's own OpenAPI schema: no generated request gets a 5xx.

The schema is loaded in-process from the WSGI application (``/api/schema/``) and every operation
is fuzzed with schema-conforming (positive) and schema-violating (negative) requests, with
generated path ids and with ids of rows that exist (so payloads reach the views' logic), as an
anonymous visitor, a plain user and staff (``Authorization: Token``). The check is schemathesis'
``not_a_server_error`` for every response.

No provider can be called: the provider is the offline ``extractive`` one, and the test runs in
the test's transaction, where nothing is ever committed, so no task is enqueued; the anonymous
pass is also checked to schedule nothing and write no ``LLMCall``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

from clustering.models import ClusteringRun
from config.wsgi import application
from llm.models import ClusterSummary, GenerationJob, LLMCall, SummaryTask, ValidationEvent
from tests.security.schema_cases import send_every_operation
from tests.support.world import World, build_world, make_user

pytestmark = [pytest.mark.security, pytest.mark.django_db]

#: per operation, mode (positive / negative) and path ids (generated / existing): up to 24
#: requests per operation and role
EXAMPLES_PER_OPERATION = 6
ROLES = ("anonymous", "plain", "staff")


@pytest.fixture
def in_test_transaction() -> Iterator[None]:
    """Keep the test's database connection across WSGI requests.

    Django's WSGI handler closes "obsolete" connections at the start and end of every request
    (``close_old_connections``), which inside the test transaction would drop it; Django's own
    test client disconnects the same signals while it runs a request.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api(settings: Any, in_test_transaction: None) -> Any:
    """The OpenAPI schema of the running app, loaded through its WSGI application, with
    throttling out of the way and the offline provider."""
    settings.LLM_PROVIDER = "extractive"
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"write": "100000/minute", "anon": "100000/minute"},
    }
    cache.clear()
    return schemathesis.openapi.from_wsgi("/api/schema/", application)


def _existing_ids(world: World, path: str) -> dict[str, Any]:
    """Path parameters naming rows that exist, for ``path`` (an OpenAPI path template)."""
    if "{run_pk}" in path:
        return {"run_pk": world.run.pk}
    if "{id}" not in path:
        return {}
    ids = {
        "/api/runs/": world.run.pk,
        "/api/summaries/": world.pending.pk,
        "/api/jobs/": world.job.pk,
        "/api/calls/": world.calls[0].pk,
        "/api/clusters/": world.clusters[0].pk,
    }
    for prefix, pk in ids.items():
        if path.startswith(prefix):
            return {"id": pk}
    return {}


def _failure_line(label: str, status: int, error: BaseException, curl: str) -> str:
    """One line per failure, with the curl command that replays it."""
    return f"{label} -> {status}: {curl}"


def _fuzz_all(
    api: Any, *, headers: dict[str, str], world: World, seen: Counter[tuple[str, int]]
) -> list[str]:
    """Fuzz every operation of the schema (no 5xx); the failures found."""
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    return send_every_operation(
        operations,
        path_parameters=functools.partial(_existing_ids, world),
        headers=headers,
        seen=seen,
        checks=[not_a_server_error],
        max_examples=EXAMPLES_PER_OPERATION,
        describe=_failure_line,
    )


def _headers_for(role: str) -> dict[str, str]:
    """The Authorization header of a fresh user of ``role`` (none for anonymous)."""
    if role == "anonymous":
        return {}
    user = make_user(role, f"{role}-fuzz")
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def _row_counts() -> dict[str, int]:
    """Rows of everything a write could create."""
    models: list[Any] = [
        ClusteringRun,
        GenerationJob,
        SummaryTask,
        LLMCall,
        ValidationEvent,
        ClusterSummary,
    ]
    return {model.__name__: model.objects.count() for model in models}


@pytest.mark.parametrize("role", ROLES)
def test_no_generated_request_gets_a_server_error(
    api: Any,
    role: str,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    world = build_world()
    headers = _headers_for(role)
    before = _row_counts()
    seen: Counter[tuple[str, int]] = Counter()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        failures = _fuzz_all(api, headers=headers, world=world, seen=seen)
    assert failures == [], "\n".join(failures)
    after = _row_counts()
    assert after["LLMCall"] == before["LLMCall"]  # no provider was called
    succeeded = {label for (label, status), _ in seen.items() if 200 <= status < 300}
    writes = {label for label, _ in seen if not label.startswith("GET ")}
    assert "GET /api/runs/{id}/" in succeeded  # the requests reached the views
    if role == "staff":
        # the fuzzer got through to the writes: past authentication and permissions to the
        # payload checks of overrides and regenerations, and through cancellations
        reached = {label for label, status in seen if status not in (401, 403, 404)}
        assert {
            "PATCH /api/summaries/{id}/",
            "POST /api/summaries/{id}/regenerate/",
            "POST /api/runs/",
            "POST /api/runs/{id}/rerun/",
        } <= reached
        assert {"POST /api/jobs/{id}/cancel/", "POST /api/runs/{id}/cancel/"} <= succeeded
        assert "GET /api/calls/" in succeeded
    else:
        # neither anonymous visitors nor users without permissions changed anything or
        # scheduled anything that could call a provider
        assert not succeeded & writes, succeeded & writes
        assert "GET /api/calls/" not in succeeded
        assert after == before
        assert callbacks == []
