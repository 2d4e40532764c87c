"""Authentication, permissions and throttling: no anonymous request can write anything or cause
a provider call; reads follow API_ANONYMOUS_READ; tokens and sessions work; writes are throttled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clustering.models import ClusteringRun, RunStatus
from llm.models import (
    ClusterSummary,
    GenerationJob,
    LLMCall,
    SummaryTask,
    ValidationEvent,
)
from tests.support.world import World, assert_error_shape, build_world, client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _write_requests(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    """Every write the API offers, with a payload that would succeed for staff."""
    run, summary, job = world.run.pk, world.pending.pk, world.job.pk
    return [
        ("post", "/api/runs/", {"dataset": "demo-genes", "force": True, "provider": "gemini"}),
        ("post", "/api/runs/", {"dataset": "hpo-ndd"}),
        ("post", f"/api/runs/{run}/rerun/", {"force": True, "provider": "gemini"}),
        ("post", f"/api/runs/{run}/cancel/", {}),
        ("patch", f"/api/summaries/{summary}/", {"validation_status": "validated"}),
        ("post", f"/api/summaries/{summary}/regenerate/", {"provider": "gemini"}),
        ("post", f"/api/jobs/{job}/cancel/", {}),
        ("put", f"/api/summaries/{summary}/", {"validation_status": "validated"}),
        ("delete", f"/api/summaries/{summary}/", {}),
        ("delete", f"/api/runs/{run}/", {}),
        ("post", "/api/summaries/", {"summary_text": "x"}),
        ("post", "/api/calls/", {}),
    ]


def _snapshot() -> dict[str, Any]:
    return {
        "runs": list(ClusteringRun.objects.order_by("pk").values_list("pk", "status")),
        "jobs": list(GenerationJob.objects.order_by("pk").values_list("pk", "status")),
        "tasks": SummaryTask.objects.count(),
        "calls": LLMCall.objects.count(),
        "events": ValidationEvent.objects.count(),
        "summaries": list(
            ClusterSummary.objects.order_by("pk").values_list(
                "pk", "validation_status", "human_locked"
            )
        ),
    }


@pytest.mark.parametrize("anonymous_read", [True, False])
def test_anonymous_writes_change_nothing_and_call_no_provider(
    settings, anonymous_read: bool, django_capture_on_commit_callbacks
) -> None:
    settings.API_ANONYMOUS_READ = anonymous_read
    world = build_world()
    ClusteringRun.objects.filter(pk=world.run.pk).update(status=RunStatus.RUNNING)
    before = _snapshot()
    client = client_for(None)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for method, path, payload in _write_requests(world):
            response = getattr(client, method)(path, payload, format="json")
            assert response.status_code in (401, 403, 405), (method, path, response.status_code)
            assert_error_shape(response.json())
            if response.status_code == 401:
                assert response["WWW-Authenticate"] == "Token"
    assert callbacks == []  # nothing was enqueued
    assert _snapshot() == before
    assert not LLMCall.objects.exclude(pk__in=[c.pk for c in world.calls]).exists()


def test_anonymous_writes_with_a_bad_token_or_without_csrf_change_nothing() -> None:
    world = build_world()
    before = _snapshot()
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = bad_token.post("/api/runs/", {"dataset": "demo-genes"}, format="json")
    assert response.status_code == 401
    assert_error_shape(response.json(), code="authentication_failed")
    # a logged-in browser session must send the CSRF token
    make_user("runner")
    session = APIClient(enforce_csrf_checks=True)
    assert session.login(username="runner", password="pw-runner")
    response = session.post("/api/runs/", {"dataset": "demo-genes"}, format="json")
    assert response.status_code == 403
    assert_error_shape(response.json(), code="permission_denied")
    assert "CSRF" in response.json()["detail"]
    response = session.post(f"/api/runs/{world.run.pk}/cancel/")
    assert response.status_code == 403
    assert _snapshot() == before


READ_PATHS = [
    "/api/runs/",
    "/api/runs/{run}/",
    "/api/runs/{run}/clusters/",
    "/api/clusters/{cluster}/",
    "/api/summaries/",
    "/api/summaries/{summary}/",
    "/api/jobs/",
    "/api/jobs/{job}/",
]


def _read_paths(world: World) -> list[str]:
    values = {
        "run": world.run.pk,
        "cluster": world.clusters[0].pk,
        "summary": world.validated.pk,
        "job": world.job.pk,
    }
    return [p.format(**values) for p in READ_PATHS]


def test_anonymous_reads_when_allowed(settings) -> None:
    settings.API_ANONYMOUS_READ = True
    world = build_world()
    client = client_for(None)
    for path in _read_paths(world):
        assert client.get(path).status_code == 200, path


def test_anonymous_reads_refused_when_not_allowed(settings) -> None:
    settings.API_ANONYMOUS_READ = False
    world = build_world()
    client = client_for(None)
    for path in _read_paths(world):
        response = client.get(path)
        assert response.status_code == 401, path
        assert_error_shape(response.json(), code="not_authenticated")
    signed_in = client_for(make_user("plain"))
    for path in _read_paths(world):
        assert signed_in.get(path).status_code == 200, path


def test_token_authentication() -> None:
    world = build_world()
    make_user("runner")
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"username": "runner", "password": "pw-runner"}, format="json"
    )
    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(user__username="runner").key == key
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(f"/api/summaries/{world.pending.pk}/").status_code == 200
    response = client.post(f"/api/runs/{world.run.pk}/cancel/")
    assert response.status_code == 200


def test_token_with_wrong_password() -> None:
    make_user("plain")
    response = APIClient().post(
        "/api/auth/token/", {"username": "plain", "password": "guess"}, format="json"
    )
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert "non_field_errors" in response.json()["errors"]
    assert not Token.objects.exists()


def test_writes_are_throttled(settings) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"write": "2/minute", "anon": "1000/minute"},
    }
    world = build_world()
    client = client_for(make_user("runner"))
    for _ in range(2):
        assert client.post(f"/api/runs/{world.run.pk}/cancel/").status_code == 200
    response = client.post(f"/api/runs/{world.run.pk}/cancel/")
    assert response.status_code == 429
    assert_error_shape(response.json(), code="throttled")
    assert int(response["Retry-After"]) > 0
    # reads are not counted against the write rate
    assert client.get(f"/api/runs/{world.run.pk}/").status_code == 200
    # another user has a budget of their own
    other = client_for(make_user("runner", "runner2"))
    assert other.post(f"/api/runs/{world.run.pk}/cancel/").status_code == 200


def test_anonymous_reads_are_throttled(settings) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"write": "60/minute", "anon": "3/minute"},
    }
    build_world()
    client = client_for(None)
    for _ in range(3):
        assert client.get("/api/summaries/").status_code == 200
    response = client.get("/api/summaries/")
    assert response.status_code == 429
    assert_error_shape(response.json(), code="throttled")
    assert client_for(make_user("plain")).get("/api/summaries/").status_code == 200
