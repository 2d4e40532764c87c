"""Runs: list, detail (stage, progress, totals, tokens, cost), create, rerun (409), cancel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from clustering.models import ClusteringRun, RunStatus
from llm.models import GenerationJob, JobStatus
from tests.support.world import World, assert_error_shape, build_world, client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def idle_world() -> World:
    """The world with its job finished: no run of demo-genes is active."""
    world = build_world()
    GenerationJob.objects.filter(pk=world.job.pk).update(status=JobStatus.SUCCEEDED)
    return world


def test_list_and_detail_show_job_progress_totals_tokens_and_cost() -> None:
    world = build_world()
    client = client_for(make_user("plain"))

    listing = client.get("/api/runs/")
    assert listing.status_code == 200
    assert listing.json()["count"] == 1
    row = listing.json()["results"][0]
    assert row["id"] == world.run.pk
    assert row["dataset"] == {"slug": "demo-genes", "name": "Demo genes", "release": "2025-11-24"}

    detail = client.get(f"/api/runs/{world.run.pk}/").json()
    assert detail["status"] == "succeeded"
    assert detail["stage"] == "summarising"
    assert detail["progress"] == {
        "current": 15,
        "total": 47,
        "message": "Generating 15/47 clusters - cluster 7",
    }
    assert detail["totals"] == {
        "total": 47,
        "succeeded": 12,
        "failed": 1,
        "skipped": 1,
        "rejected": 1,
    }
    assert detail["tokens"] == {"input": 1234, "output": 567}
    assert detail["cost_usd"] == "0.012345"
    assert detail["job"]["id"] == world.job.pk
    assert detail["job"]["url"].endswith(f"/api/jobs/{world.job.pk}/")
    assert detail["cluster_count"] == 3
    assert detail["clusters_url"].endswith(f"/api/runs/{world.run.pk}/clusters/")
    assert detail["params"]["k"] == 15


def test_progress_is_the_runs_while_clustering_and_without_a_job() -> None:
    world = build_world()
    GenerationJob.objects.all().delete()
    ClusteringRun.objects.filter(pk=world.run.pk).update(
        status=RunStatus.RUNNING,
        progress_current=3,
        progress_total=7,
        progress_message="Leiden clustering",
        error="",
    )
    detail = client_for(None).get(f"/api/runs/{world.run.pk}/").json()
    assert detail["stage"] == "clustering"
    assert detail["progress"] == {"current": 3, "total": 7, "message": "Leiden clustering"}
    assert detail["totals"] == {
        "total": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
        "rejected": 0,
    }
    assert detail["job"] is None
    assert detail["cost_usd"] == "0.000000"


def test_a_failed_run_shows_the_first_line_of_its_error_only() -> None:
    world = build_world()
    ClusteringRun.objects.filter(pk=world.run.pk).update(
        status=RunStatus.FAILED, error="EmptyDatasetError: no rows\nTraceback (most recent...)"
    )
    detail = client_for(None).get(f"/api/runs/{world.run.pk}/").json()
    assert detail["stage"] == "failed"
    assert detail["error"] == "EmptyDatasetError: no rows"


def test_run_and_job_show_how_often_the_reconciler_re_drove_them() -> None:
    world = build_world()
    ClusteringRun.objects.filter(pk=world.run.pk).update(attempts=2, redrives=1)
    GenerationJob.objects.filter(pk=world.job.pk).update(redrives=3)
    staff = client_for(make_user("staff"))
    detail = staff.get(f"/api/runs/{world.run.pk}/").json()
    assert (detail["attempts"], detail["redrives"]) == (2, 1)
    assert staff.get(f"/api/jobs/{world.job.pk}/").json()["redrives"] == 3


def test_finished_job_gives_the_final_stage() -> None:
    world = build_world()
    GenerationJob.objects.filter(pk=world.job.pk).update(
        status=JobStatus.SUCCEEDED, progress_message="Done: 44 succeeded"
    )
    detail = client_for(None).get(f"/api/runs/{world.run.pk}/").json()
    assert detail["stage"] == "succeeded"
    assert detail["progress"]["message"] == "Done: 44 succeeded"


def test_list_filters_and_ordering() -> None:
    world = build_world()
    other = ClusteringRun.objects.create(
        dataset=world.dataset, cluster_type="phenotype", params={}, status=RunStatus.FAILED
    )
    client = client_for(make_user("plain"))
    ids = [r["id"] for r in client.get("/api/runs/?status=failed").json()["results"]]
    assert ids == [other.pk]
    ids = [r["id"] for r in client.get("/api/runs/?cluster_type=functional").json()["results"]]
    assert ids == [world.run.pk]
    assert client.get("/api/runs/?dataset=nope").json()["count"] == 0
    ids = [r["id"] for r in client.get("/api/runs/?ordering=id").json()["results"]]
    assert ids == [world.run.pk, other.pk]
    bad = client.get("/api/runs/?status=sideways")
    assert bad.status_code == 400
    assert_error_shape(bad.json(), code="invalid")
    assert "status" in bad.json()["errors"]


def test_unknown_run_is_a_json_404() -> None:
    response = client_for(make_user("plain")).get("/api/runs/999999/")
    assert response.status_code == 404
    assert_error_shape(response.json(), code="not_found")


# --- create -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["runner", "staff"])
def test_create_returns_202_with_the_run_and_enqueues_after_commit(
    kind: str, django_capture_on_commit_callbacks
) -> None:
    idle_world()
    client = client_for(make_user(kind))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/api/runs/",
            {"dataset": "demo-genes", "params": {"k": 5, "resolution": 0.5}, "force": True},
            format="json",
        )
    assert response.status_code == 202, response.json()
    body = response.json()
    run = ClusteringRun.objects.get(pk=body["id"])
    assert run.status == RunStatus.PENDING
    assert run.cluster_type == "functional"  # the dataset's kind
    assert run.params["k"] == 5 and run.params["resolution"] == 0.5
    assert body["stage"] == "pending" and body["job"] is None
    assert response["Location"] == body["url"]
    assert body["url"].endswith(f"/api/runs/{run.pk}/")
    assert len(callbacks) == 1  # the pipeline chain, sent only once the run is committed


def test_create_accepts_cluster_type_and_provider() -> None:
    idle_world()
    response = client_for(make_user("runner")).post(
        "/api/runs/",
        {"dataset": "demo-genes", "cluster_type": "functional", "provider": "extractive"},
        format="json",
    )
    assert response.status_code == 202
    assert response.json()["cluster_type"] == "functional"


def test_create_refuses_a_cluster_type_other_than_the_datasets_kind() -> None:
    idle_world()
    response = client_for(make_user("runner")).post(
        "/api/runs/", {"dataset": "demo-genes", "cluster_type": "phenotype"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert_error_shape(body, code="invalid")
    assert list(body["errors"]) == ["cluster_type"]
    assert "functional" in body["errors"]["cluster_type"][0]
    assert ClusteringRun.objects.count() == 1


def test_create_while_a_run_is_active_is_409_with_its_id() -> None:
    world = build_world()  # its job is still running
    response = client_for(make_user("runner")).post(
        "/api/runs/", {"dataset": "demo-genes"}, format="json"
    )
    assert response.status_code == 409
    body = response.json()
    assert_error_shape(body, code="conflict")
    assert body["active_run"] == world.run.pk
    assert ClusteringRun.objects.count() == 1


def test_create_needs_the_permission() -> None:
    build_world()
    response = client_for(make_user("plain")).post(
        "/api/runs/", {"dataset": "demo-genes"}, format="json"
    )
    assert response.status_code == 403
    assert_error_shape(response.json(), code="permission_denied")
    assert ClusteringRun.objects.count() == 1


def test_create_unknown_dataset_is_a_field_error() -> None:
    response = client_for(make_user("runner")).post(
        "/api/runs/", {"dataset": "no-such-data"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert_error_shape(body, code="invalid")
    assert list(body["errors"]) == ["dataset"]
    assert "no-such-data" in body["errors"]["dataset"][0]
    assert ClusteringRun.objects.count() == 0


def test_create_bad_parameters_are_reported_per_parameter() -> None:
    build_world()
    response = client_for(make_user("runner")).post(
        "/api/runs/",
        {"dataset": "demo-genes", "params": {"k": 1, "resolution": -2, "colour": "red"}},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert_error_shape(body, code="invalid")
    # from_dict reports unknown keys first; the ranges follow once the keys are known
    assert set(body["errors"]) == {"params.colour"}
    response = client_for(make_user("runner", "r2")).post(
        "/api/runs/", {"dataset": "demo-genes", "params": {"k": 1, "resolution": -2}}, format="json"
    )
    assert set(response.json()["errors"]) == {"params.k", "params.resolution"}
    assert ClusteringRun.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "dataset"),
        ({"dataset": "demo-genes", "cluster_type": "genomic"}, "cluster_type"),
        ({"dataset": "demo-genes", "provider": "hal9000"}, "provider"),
        ({"dataset": "demo-genes", "params": [1, 2]}, "params"),
        ({"dataset": "demo-genes", "force": "maybe"}, "force"),
        ({"dataset": "demo-genes", "priority": 1}, "priority"),
    ],
)
def test_create_bad_payloads_name_the_field(payload: dict, field: str) -> None:
    build_world()
    response = client_for(make_user("runner")).post("/api/runs/", payload, format="json")
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert field in response.json()["errors"]
    assert ClusteringRun.objects.count() == 1


# --- rerun and cancel -------------------------------------------------------------------------


def test_rerun_starts_a_new_run_with_the_same_parameters() -> None:
    world = build_world()
    GenerationJob.objects.filter(pk=world.job.pk).update(status=JobStatus.SUCCEEDED)
    response = client_for(make_user("runner")).post(
        f"/api/runs/{world.run.pk}/rerun/", {}, format="json"
    )
    assert response.status_code == 202, response.json()
    new = ClusteringRun.objects.get(pk=response.json()["id"])
    assert new.pk != world.run.pk
    assert (new.dataset_id, new.cluster_type, new.params) == (
        world.run.dataset_id,
        world.run.cluster_type,
        world.run.params,
    )


def test_rerun_while_a_run_is_active_is_409() -> None:
    world = build_world()  # its job is still running
    response = client_for(make_user("staff")).post(
        f"/api/runs/{world.run.pk}/rerun/", {"force": True}, format="json"
    )
    assert response.status_code == 409
    body = response.json()
    assert_error_shape(body, code="conflict")
    assert f"Run {world.run.pk}" in body["detail"]
    assert body["active_run"] == world.run.pk
    assert ClusteringRun.objects.count() == 1


def test_rerun_of_unknown_run_is_404_and_plain_users_may_not() -> None:
    world = build_world()
    response = client_for(make_user("runner")).post("/api/runs/999999/rerun/", {}, format="json")
    assert response.status_code == 404
    assert_error_shape(response.json(), code="not_found")
    response = client_for(make_user("plain")).post(
        f"/api/runs/{world.run.pk}/rerun/", {}, format="json"
    )
    assert response.status_code == 403


def test_cancel_ends_the_run_and_its_job() -> None:
    world = build_world()
    ClusteringRun.objects.filter(pk=world.run.pk).update(status=RunStatus.RUNNING)
    response = client_for(make_user("runner")).post(f"/api/runs/{world.run.pk}/cancel/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["stage"] == "cancelled"
    assert body["job"]["status"] == "cancelled"
    world.job.refresh_from_db()
    assert world.job.status == JobStatus.CANCELLED


def test_cancel_needs_the_permission() -> None:
    world = build_world()
    response = client_for(make_user("plain")).post(f"/api/runs/{world.run.pk}/cancel/")
    assert response.status_code == 403
    world.job.refresh_from_db()
    assert world.job.status == JobStatus.RUNNING


def test_put_and_delete_are_not_allowed() -> None:
    world = build_world()
    client = client_for(make_user("staff"))
    for method in (client.put, client.delete, client.patch):
        response = method(f"/api/runs/{world.run.pk}/", {}, format="json")
        assert response.status_code == 405
        assert_error_shape(response.json(), code="method_not_allowed")
