"""CSRF protection holds on the admin: a staff browser session cannot be made to validate,
regenerate, rerun or cancel anything by a forged cross-site POST.

The client enforces CSRF checks as a real browser session does. Without the token every POST is
refused with 403 and changes nothing; with the token taken from the admin page the same POST
works (so the refusal is about the missing token, nothing else).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from clustering.models import ClusteringRun, RunStatus
from llm.models import ClusterSummary, GenerationJob, JobStatus, ValidationEvent, ValidationStatus
from tests.security import snapshot
from tests.support.world import build_world

pytestmark = [pytest.mark.security, pytest.mark.django_db]

SUMMARY_CHANGELIST = "admin:llm_clustersummary_changelist"
RUN_CHANGELIST = "admin:clustering_clusteringrun_changelist"


@pytest.fixture
def curator() -> User:
    """A staff superuser who may run every admin action."""
    return User.objects.create_superuser("curator", "curator@example.org", "pw-curator-1")


@pytest.fixture
def browser(curator: User) -> Client:
    """The curator's logged-in browser session, with CSRF checks enforced."""
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("admin:login"))
    response = client.post(
        reverse("admin:login"),
        {
            "username": "curator",
            "password": "pw-curator-1",
            "next": "/admin/",
            "csrfmiddlewaretoken": page.context["csrf_token"],
        },
    )
    assert response.status_code == 302, response.content[:500]
    return client


def _token_from(client: Client, url: str) -> str:
    """The CSRF token of the admin page at ``url`` (as the browser would post it back)."""
    response = client.get(url)
    assert response.status_code == 200
    token = str(response.context["csrf_token"])
    assert token and token in response.content.decode()
    return token


def test_login_form_refuses_a_post_without_csrf(curator: User) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("admin:login"), {"username": "curator", "password": "pw-curator-1"}
    )
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_validate_action_without_token_is_refused_and_with_token_works(
    browser: Client, curator: User
) -> None:
    world = build_world()
    url = reverse(SUMMARY_CHANGELIST)
    action = {"action": "validate", "_selected_action": [str(world.pending.pk)], "index": "0"}
    before = snapshot()
    response = browser.post(url, action)
    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert snapshot() == before
    # a forged token (right shape, wrong value) fails the same way
    browser.cookies["csrftoken"] = "f" * 32
    response = browser.post(url, {**action, "csrfmiddlewaretoken": "a" * 32})
    assert response.status_code == 403
    assert snapshot() == before

    token = _token_from(browser, url)
    response = browser.post(url, {**action, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    summary = ClusterSummary.objects.get(pk=world.pending.pk)
    assert summary.validation_status == ValidationStatus.VALIDATED and summary.human_locked
    event = ValidationEvent.objects.filter(summary=summary).latest("id")
    assert event.user == curator and event.to_status == ValidationStatus.VALIDATED


@pytest.mark.parametrize("decision", ["validated", "regenerate"])
def test_review_form_without_token_is_refused_and_with_token_works(
    browser: Client, decision: str, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    world = build_world()
    url = reverse("admin:llm_clustersummary_review", args=[world.pending.pk])
    before = snapshot()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser.post(url, {"decision": decision, "note": "forged"})
    assert response.status_code == 403
    assert callbacks == []
    assert snapshot() == before

    token = _token_from(
        browser, reverse("admin:llm_clustersummary_change", args=[world.pending.pk])
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser.post(
            url, {"decision": decision, "note": "checked", "csrfmiddlewaretoken": token}
        )
    assert response.status_code == 302
    assert snapshot() != before
    if decision == "regenerate":
        assert len(callbacks) == 1  # the regeneration job is enqueued after commit
        assert GenerationJob.objects.filter(scope=GenerationJob.Scope.CLUSTERS).count() == 1


@pytest.mark.parametrize("action", ["rerun", "cancel", "regenerate"])
def test_pipeline_actions_without_token_enqueue_nothing(
    browser: Client, action: str, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    world = build_world()
    GenerationJob.objects.filter(pk=world.job.pk).update(status=JobStatus.SUCCEEDED)
    if action == "cancel":
        ClusteringRun.objects.filter(pk=world.run.pk).update(status=RunStatus.RUNNING)
    url = reverse(SUMMARY_CHANGELIST if action == "regenerate" else RUN_CHANGELIST)
    selected = world.rejected.pk if action == "regenerate" else world.run.pk
    data = {"action": action, "_selected_action": [str(selected)], "index": "0"}
    before = snapshot()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser.post(url, data)
    assert response.status_code == 403
    assert callbacks == []
    assert snapshot() == before

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = browser.post(url, {**data, "csrfmiddlewaretoken": _token_from(browser, url)})
    assert response.status_code == 302
    assert snapshot() != before
    if action != "cancel":
        assert callbacks  # a run or a regeneration was enqueued
