"""Who may trigger provider calls or overrides, endpoint by endpoint (REST API and admin).

tests/llm/api/test_security.py already sends every API write anonymously and checks that nothing
changed and nothing was enqueued. Added here:

* the list of write operations in the OpenAPI schema is exactly the matrix below, so a new
  write endpoint cannot slip past these tests;
* every write endpoint, as a non-staff user without permissions (token and session with a valid
  CSRF token, so only the permission can be the reason for refusal) and, for the staff-only
  ones, as a user who may manage runs: refused, no row created or changed, nothing enqueued;
* the same payloads succeed for staff (the refusals are about who asks, not what is asked);
* the token endpoint writes nothing for invalid credentials (including injection-shaped ones);
* a staff browser session still needs the CSRF token for an override or a regeneration;
* the admin: every action and review decision, posted anonymously or by a non-staff user who
  even holds the change permissions, changes nothing and enqueues nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clustering.models import ClusteringRun, RunStatus
from llm.models import (
    GenerationJob,
    JobStatus,
    LLMCall,
)
from tests.security import snapshot
from tests.support.world import World, assert_error_shape, build_world, make_user

pytestmark = [pytest.mark.security, pytest.mark.django_db]

CSRF_TOKEN = "k" * 32

#: (method, path template, who may, a payload that succeeds for staff). "manage": staff or the
#: permission clustering.add_clusteringrun; "staff": staff only.
WRITES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "post",
        "/api/runs/",
        "manage",
        {"dataset": "demo-genes", "force": True, "provider": "gemini"},
    ),
    ("post", "/api/runs/{run}/rerun/", "manage", {"force": True, "provider": "gemini"}),
    ("post", "/api/runs/{run}/cancel/", "manage", {}),
    ("post", "/api/jobs/{job}/cancel/", "manage", {}),
    (
        "patch",
        "/api/summaries/{summary}/",
        "staff",
        {"validation_status": "validated", "note": "ok"},
    ),
    ("post", "/api/summaries/{summary}/regenerate/", "staff", {"provider": "gemini"}),
]
#: Operations that write and are open to anyone by design.
OPEN_WRITES = {("post", "/api/auth/token/")}
#: Schema path templates of the matrix' paths.
SCHEMA_PATHS = {
    "/api/runs/": "/api/runs/",
    "/api/runs/{run}/rerun/": "/api/runs/{id}/rerun/",
    "/api/runs/{run}/cancel/": "/api/runs/{id}/cancel/",
    "/api/jobs/{job}/cancel/": "/api/jobs/{id}/cancel/",
    "/api/summaries/{summary}/": "/api/summaries/{id}/",
    "/api/summaries/{summary}/regenerate/": "/api/summaries/{id}/regenerate/",
}


@pytest.fixture(autouse=True)
def _setup(settings: Any) -> Iterator[None]:
    """Fresh throttle counters; a configured gemini key, so the payloads are valid."""
    settings.GEMINI_API_KEY = "test-key-not-secret"
    settings.LLM_PROVIDER = "extractive"
    cache.clear()
    yield
    cache.clear()


def _path(template: str, world: World) -> str:
    return template.format(run=world.run.pk, job=world.job.pk, summary=world.pending.pk)


def _token_client(user: User) -> APIClient:
    """A client authenticated by ``Authorization: Token`` (a token made beforehand)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _session_client(user: User) -> APIClient:
    """A logged-in browser session that sends a valid CSRF token with every request."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["csrftoken"] = CSRF_TOKEN
    client.credentials(HTTP_X_CSRFTOKEN=CSRF_TOKEN)
    return client


def _callers(who: str) -> list[tuple[str, Callable[[], APIClient], int]]:
    """(name, client factory, expected status) of the signed-in callers who must be refused
    (anonymous callers: tests/llm/api/test_security.py)."""
    callers: list[tuple[str, Callable[[], APIClient], int]] = [
        ("plain-token", lambda: _token_client(make_user("plain", "plain-t")), 403),
        ("plain-session", lambda: _session_client(make_user("plain", "plain-s")), 403),
    ]
    if who == "staff":
        callers += [
            ("runner-token", lambda: _token_client(make_user("runner", "runner-t")), 403),
            ("runner-session", lambda: _session_client(make_user("runner", "runner-s")), 403),
        ]
    return callers


def test_the_matrix_covers_every_write_operation_of_the_schema() -> None:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    writes = {
        (method, path)
        for path, operations in paths.items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    }
    expected = {(method, SCHEMA_PATHS[template]) for method, template, _, _ in WRITES}
    assert writes == expected | OPEN_WRITES


@pytest.mark.parametrize(
    ("method", "template", "who", "payload"), WRITES, ids=[f"{m} {t}" for m, t, _, _ in WRITES]
)
def test_refused_for_callers_without_the_right_and_nothing_happens(
    method: str,
    template: str,
    who: str,
    payload: dict[str, Any],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    world = build_world()
    ClusteringRun.objects.filter(pk=world.run.pk).update(status=RunStatus.RUNNING)
    path = _path(template, world)
    for name, factory, expected in _callers(who):
        client = factory()
        before = snapshot()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = getattr(client, method)(path, payload, format="json")
        assert response.status_code == expected, (name, response.status_code, response.content)
        assert_error_shape(response.json())
        assert callbacks == [], name  # nothing enqueued, so no provider call can follow
        assert snapshot() == before, name


@pytest.mark.parametrize(
    ("method", "template", "who", "payload"), WRITES, ids=[f"{m} {t}" for m, t, _, _ in WRITES]
)
def test_the_same_requests_succeed_for_staff(
    method: str,
    template: str,
    who: str,
    payload: dict[str, Any],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    world = build_world()
    if template.endswith("/rerun/") or template == "/api/runs/":
        # no start or rerun while a run of the dataset is summarising
        GenerationJob.objects.filter(pk=world.job.pk).update(status=JobStatus.SUCCEEDED)
    client = _token_client(make_user("staff"))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = getattr(client, method)(_path(template, world), payload, format="json")
    assert response.status_code in (200, 202), response.content
    if response.status_code == 202:
        assert len(callbacks) >= 1  # the work that would call a provider is enqueued
    assert LLMCall.objects.count() == len(world.calls)  # but nothing was called in the request


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"username": "plain", "password": "wrong"},
        {"username": "nobody", "password": "pw-plain"},
        {"username": "plain"},
        {"username": ["plain"], "password": {"$ne": ""}},
        {"username": "plain' OR '1'='1", "password": "' OR '1'='1"},
    ],
)
def test_the_token_endpoint_writes_nothing_without_valid_credentials(
    payload: dict[str, Any], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    build_world()
    make_user("plain")
    before = snapshot()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = APIClient().post("/api/auth/token/", payload, format="json")
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert callbacks == []
    assert snapshot() == before


def test_staff_session_needs_csrf_for_overrides() -> None:
    world = build_world()
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("staff"))
    before = snapshot()
    response = client.patch(
        f"/api/summaries/{world.pending.pk}/", {"validation_status": "validated"}, format="json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    response = client.post(f"/api/summaries/{world.pending.pk}/regenerate/", {}, format="json")
    assert response.status_code == 403
    assert snapshot() == before


# --- the admin --------------------------------------------------------------------------------

SUMMARY_ACTIONS = ["validate", "reject", "mark_pending", "regenerate"]
RUN_ACTIONS = ["rerun", "cancel"]
REVIEW_DECISIONS = ["validated", "rejected", "pending", "regenerate"]


def _admin_callers() -> Iterator[tuple[str, Client]]:
    """Anonymous, a plain user and a non-staff user holding every change permission."""
    yield "anonymous", Client()
    plain = Client()
    plain.force_login(User.objects.create_user("reader", password="pw-reader-1"))
    yield "plain", plain
    holder = User.objects.create_user("holder", password="pw-holder-1")
    for app_label, codename in [
        ("llm", "change_clustersummary"),
        ("clustering", "change_clusteringrun"),
        ("clustering", "add_clusteringrun"),
    ]:
        holder.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    with_perms = Client()
    with_perms.force_login(holder)
    yield "non-staff-with-permissions", with_perms


def test_admin_actions_and_review_are_refused_to_non_staff(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    world = build_world()
    ClusteringRun.objects.filter(pk=world.run.pk).update(status=RunStatus.RUNNING)
    summaries = [str(s.pk) for s in (world.validated, world.pending, world.rejected)]
    posts: list[tuple[str, dict[str, Any]]] = [
        (
            reverse("admin:llm_clustersummary_changelist"),
            {"action": action, "_selected_action": summaries, "index": "0"},
        )
        for action in SUMMARY_ACTIONS
    ]
    posts += [
        (
            reverse("admin:clustering_clusteringrun_changelist"),
            {"action": action, "_selected_action": [str(world.run.pk)], "index": "0"},
        )
        for action in RUN_ACTIONS
    ]
    posts += [
        (
            reverse("admin:llm_clustersummary_review", args=[world.pending.pk]),
            {"decision": decision, "note": "by someone who may not"},
        )
        for decision in REVIEW_DECISIONS
    ]
    before = snapshot()
    for name, client in _admin_callers():
        for url, data in posts:
            with django_capture_on_commit_callbacks(execute=False) as callbacks:
                response = client.post(url, data)
            # the admin sends whoever is not active staff to its login page
            assert response.status_code == 302, (name, url, data)
            assert reverse("admin:login") in response["Location"], (name, url)
            assert callbacks == [], (name, url, data)
            assert snapshot() == before, (name, url, data)
