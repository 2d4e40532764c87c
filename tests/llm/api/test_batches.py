"""`GET /api/batches/`: the provider batch log, staff only, with filters."""

from __future__ import annotations

import pytest

from llm.models import ProviderBatch
from tests.support.world import assert_error_shape, build_world, client_for, make_user

pytestmark = pytest.mark.django_db


def _batches() -> tuple[ProviderBatch, ProviderBatch]:
    world = build_world()
    done = ProviderBatch.objects.create(
        job=world.job,
        provider="gemini",
        model="gemini-2.5-flash",
        kind="generate",
        display_name="clustersum-j1-generate-r1-c0",
        provider_batch_id="batches/abc",
        state=ProviderBatch.State.COLLECTED,
        request_count=3,
        completed_count=3,
    )
    open_ = ProviderBatch.objects.create(
        job=world.job,
        provider="gemini",
        model="gemini-2.5-flash",
        kind="judge",
        display_name="clustersum-j1-judge-r1-c0",
        provider_batch_id="batches/def",
        state=ProviderBatch.State.RUNNING,
        request_count=3,
    )
    return done, open_


def test_staff_lists_and_filters_batches() -> None:
    done, open_ = _batches()
    client = client_for(make_user("staff"))
    body = client.get("/api/batches/").json()
    assert body["count"] == 2
    assert {row["display_name"] for row in body["results"]} == {
        done.display_name,
        open_.display_name,
    }
    running = client.get("/api/batches/", {"state": "running"}).json()
    assert [row["id"] for row in running["results"]] == [open_.pk]
    judge = client.get("/api/batches/", {"kind": "judge"}).json()
    assert [row["id"] for row in judge["results"]] == [open_.pk]
    detail = client.get(f"/api/batches/{done.pk}/").json()
    assert (detail["provider_batch_id"], detail["request_count"]) == ("batches/abc", 3)


@pytest.mark.parametrize("kind", [None, "plain", "runner"])
def test_batches_are_staff_only(kind: str | None) -> None:
    _batches()
    user = make_user(kind) if kind else None
    response = client_for(user).get("/api/batches/")
    assert response.status_code in (401, 403)
    assert_error_shape(response.json())


def test_bad_filter_value_is_a_field_error() -> None:
    _batches()
    response = client_for(make_user("staff")).get("/api/batches/", {"state": "nonsense"})
    assert response.status_code == 400
    assert "state" in response.json()["errors"]
