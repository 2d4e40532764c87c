"""Provider calls (staff only, filters) and generation jobs (read, cancel)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from llm.models import GenerationJob, JobStatus
from tests.support.world import assert_error_shape, build_world, client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_staff_read_the_call_log() -> None:
    world = build_world()
    response = client_for(make_user("staff")).get("/api/calls/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    row = next(r for r in body["results"] if r["id"] == world.calls[2].pk)
    assert row["status"] == "api_error"
    assert row["error_message"] == "503 from provider"
    assert row["job"] == world.job.pk
    detail = client_for(make_user("staff", "s2")).get(f"/api/calls/{world.calls[0].pk}/")
    assert detail.status_code == 200
    assert detail.json()["input_tokens"] == 100


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kind=generate", [0, 2]),
        ("kind=judge", [1]),
        ("status=success", [0, 1]),
        ("status=api_error", [2]),
        ("provider=gemini", [2]),
        ("model=extractive-v1", [0, 1]),
        ("job={job}", [0, 1, 2]),
        ("job=999999", []),
        ("kind=generate&provider=extractive", [0]),
    ],
)
def test_call_filters(query: str, expected: list[int]) -> None:
    world = build_world()
    response = client_for(make_user("staff")).get(f"/api/calls/?{query.format(job=world.job.pk)}")
    assert response.status_code == 200
    assert sorted(r["id"] for r in response.json()["results"]) == sorted(
        world.calls[i].pk for i in expected
    )


def test_bad_call_filter_is_a_field_error() -> None:
    build_world()
    response = client_for(make_user("staff")).get("/api/calls/?kind=poem")
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert "kind" in response.json()["errors"]


@pytest.mark.parametrize("kind", [None, "plain", "runner"])
def test_only_staff_read_calls(kind: str | None) -> None:
    world = build_world()
    client = client_for(make_user(kind) if kind else None)
    for path in ("/api/calls/", f"/api/calls/{world.calls[0].pk}/"):
        response = client.get(path)
        assert response.status_code == (401 if kind is None else 403)
        assert_error_shape(response.json())


def test_calls_are_read_only() -> None:
    world = build_world()
    client = client_for(make_user("staff"))
    assert client.post("/api/calls/", {}, format="json").status_code == 405
    assert client.delete(f"/api/calls/{world.calls[0].pk}/").status_code == 405


def test_jobs_list_detail_and_filters() -> None:
    world = build_world()
    client = client_for(make_user("plain"))
    body = client.get(f"/api/jobs/{world.job.pk}/").json()
    assert body["scope"] == "run"
    assert body["progress"]["message"] == "Generating 15/47 clusters - cluster 7"
    assert body["totals"]["total"] == 47
    assert body["tokens"] == {"input": 1234, "output": 567}
    assert body["run_url"].endswith(f"/api/runs/{world.run.pk}/")
    assert client.get(f"/api/jobs/?run={world.run.pk}").json()["count"] == 1
    assert client.get("/api/jobs/?scope=clusters").json()["count"] == 0
    assert client.get("/api/jobs/?status=running").json()["count"] == 1


def test_job_cancel_needs_the_permission() -> None:
    world = build_world()
    response = client_for(make_user("plain")).post(f"/api/jobs/{world.job.pk}/cancel/")
    assert response.status_code == 403
    response = client_for(make_user("runner")).post(f"/api/jobs/{world.job.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert GenerationJob.objects.get(pk=world.job.pk).status == JobStatus.CANCELLED
