"""Summaries: list with filters, search and pagination; detail with the audit trail; the
curator's status override (staff, audited, locked) and regeneration (staff)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from llm.models import (
    ClusterSummary,
    GenerationJob,
    LLMCall,
    SummaryTask,
    ValidationEvent,
    ValidationStatus,
    Verdict,
)
from tests.support.world import assert_error_shape, build_world, client_for, make_summary, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return sorted(row["id"] for row in response.json()["results"])


def test_list_shows_current_summaries_to_users() -> None:
    world = build_world()
    client = client_for(make_user("plain"))
    assert _ids(client.get("/api/summaries/")) == sorted(
        [world.validated.pk, world.pending.pk, world.rejected.pk]
    )
    assert _ids(client.get("/api/summaries/?is_current=false")) == [world.history.pk]


def test_anonymous_list_shows_validated_summaries_only() -> None:
    world = build_world()
    client = client_for(None)
    assert _ids(client.get("/api/summaries/")) == [world.validated.pk]
    assert _ids(client.get("/api/summaries/?validation_status=pending")) == []
    assert _ids(client.get("/api/summaries/?is_current=false")) == [world.history.pk]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("validation_status=pending", ["pending"]),
        ("validation_status=rejected", ["rejected"]),
        ("judge_verdict=accept", ["validated"]),
        ("judge_verdict=low_confidence", ["pending"]),
        ("cluster_type=functional", ["validated", "pending", "rejected"]),
        ("cluster_type=phenotype", []),
        ("tag=chromatin", ["pending", "rejected"]),
        ("tag=CHROMATIN", ["pending", "rejected"]),
        ("tag=chrom", []),  # tags match whole
        ("model=gemini-2.5-flash", ["pending"]),
        ("provider=extractive", ["validated", "rejected"]),
        ("dataset=demo-genes", ["validated", "pending", "rejected"]),
        ("dataset=hpo-ndd", []),
        ("gene=MECP2", ["pending"]),
        ("gene=mecp2", ["pending"]),
        ("gene=SCN", []),  # a gene matches a whole symbol
        ("search=SCN", ["validated"]),  # search matches within symbols
        ("search=chromatin", ["rejected"]),  # and the summary text
        ("search=rett transcriptional", ["pending"]),  # every word must match
        ("search=nothing-like-this", []),
        ("tag=chromatin&validation_status=rejected", ["rejected"]),
    ],
)
def test_filters_and_search(query: str, expected: list[str]) -> None:
    world = build_world()
    by_name = {"validated": world.validated, "pending": world.pending, "rejected": world.rejected}
    response = client_for(make_user("plain")).get(f"/api/summaries/?{query}")
    assert _ids(response) == sorted(by_name[name].pk for name in expected)


def test_a_bad_filter_value_is_a_field_error() -> None:
    build_world()
    response = client_for(make_user("plain")).get("/api/summaries/?validation_status=maybe")
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert "validation_status" in response.json()["errors"]


def test_pagination() -> None:
    world = build_world()
    for i in range(55):
        make_summary(
            dataset=world.dataset,
            cluster=None,
            composition_hash=f"page{i:060d}",
            status=ValidationStatus.VALIDATED,
            verdict=Verdict.ACCEPT,
            text=f"summary {i}",
            members=["A1", "B2"],
            tags=["bulk"],
        )
    client = client_for(None)
    first = client.get("/api/summaries/?tag=bulk").json()
    assert first["count"] == 55
    assert len(first["results"]) == 50
    assert first["previous"] is None
    assert "page=2" in first["next"]
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 5
    assert second["next"] is None
    seen = {r["id"] for r in first["results"]} | {r["id"] for r in second["results"]}
    assert len(seen) == 55
    out_of_range = client.get("/api/summaries/?page=9")
    assert out_of_range.status_code == 404
    assert_error_shape(out_of_range.json(), code="not_found")


def test_ordering() -> None:
    world = build_world()
    rows = client_for(make_user("plain")).get("/api/summaries/?ordering=id").json()["results"]
    assert [r["id"] for r in rows] == sorted(
        [world.validated.pk, world.pending.pk, world.rejected.pk]
    )


def test_detail_with_audit_trail() -> None:
    world = build_world()
    staff = make_user("staff", "curator")
    ValidationEvent.objects.create(
        summary=world.validated,
        source=ValidationEvent.Source.JUDGE,
        from_status="pending",
        to_status="validated",
        note="judge accepted",
    )
    ValidationEvent.objects.create(
        summary=world.validated,
        user=staff,
        source=ValidationEvent.Source.HUMAN,
        from_status="validated",
        to_status="validated",
        note="checked by hand",
    )
    body = client_for(make_user("plain")).get(f"/api/summaries/{world.validated.pk}/").json()
    assert body["judge_reasoning"] == "judged accept"
    assert body["judge_scores"] == {"grounding": 4}
    assert body["cost_usd"] == "0.001000"
    assert body["dataset_release"] == "2025-11-24"
    assert body["dataset_licence"].startswith("Demo annotations (2025-11-24)")
    assert [e["source"] for e in body["events"]] == ["judge", "human"]
    assert body["events"][1]["user"] == "curator"
    assert body["events"][1]["note"] == "checked by hand"
    # anonymous readers see the trail but not the curators' names
    anonymous = client_for(None).get(f"/api/summaries/{world.validated.pk}/").json()
    assert [e["user"] for e in anonymous["events"]] == [None, None]


def test_history_rows_have_a_detail_too() -> None:
    world = build_world()
    body = client_for(None).get(f"/api/summaries/{world.history.pk}/").json()
    assert body["is_current"] is False
    assert body["summary_text"] == "An older sodium channel summary."


def test_anonymous_detail_of_an_unvalidated_summary_is_404() -> None:
    world = build_world()
    for summary in (world.pending, world.rejected):
        response = client_for(None).get(f"/api/summaries/{summary.pk}/")
        assert response.status_code == 404
        assert_error_shape(response.json(), code="not_found")
    response = client_for(make_user("plain")).get(f"/api/summaries/{world.pending.pk}/")
    assert response.status_code == 200


# --- the curator's override -------------------------------------------------------------------


def test_staff_override_is_audited_and_locked() -> None:
    world = build_world()
    staff = make_user("staff", "curator")
    response = client_for(staff).patch(
        f"/api/summaries/{world.pending.pk}/",
        {"validation_status": "validated", "note": "reviewed against OMIM"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["validation_status"] == "validated"
    assert body["human_locked"] is True
    assert body["validated_by"] == "curator"
    assert body["validated_at"]
    assert body["events"][-1]["note"] == "reviewed against OMIM"
    summary = ClusterSummary.objects.get(pk=world.pending.pk)
    assert summary.validation_status == ValidationStatus.VALIDATED
    assert summary.human_locked is True
    assert summary.validated_by == staff
    event = ValidationEvent.objects.get(summary=summary)
    assert (event.user, event.source, event.from_status, event.to_status, event.note) == (
        staff,
        ValidationEvent.Source.HUMAN,
        "pending",
        "validated",
        "reviewed against OMIM",
    )
    assert event.created_at is not None
    # now public
    assert client_for(None).get(f"/api/summaries/{summary.pk}/").status_code == 200


def test_override_without_note_and_to_rejected() -> None:
    world = build_world()
    response = client_for(make_user("staff")).patch(
        f"/api/summaries/{world.validated.pk}/", {"validation_status": "rejected"}, format="json"
    )
    assert response.status_code == 200
    event = ValidationEvent.objects.get(summary=world.validated)
    assert (event.from_status, event.to_status, event.note) == ("validated", "rejected", "")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"validation_status": "approved"}, "validation_status"),
        ({}, "validation_status"),
        ({"validation_status": "validated", "note": "x" * 2001}, "note"),
        ({"validation_status": "validated", "summary_text": "better text"}, "summary_text"),
    ],
)
def test_override_bad_payload(payload: dict, field: str) -> None:
    world = build_world()
    response = client_for(make_user("staff")).patch(
        f"/api/summaries/{world.pending.pk}/", payload, format="json"
    )
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert field in response.json()["errors"]
    summary = ClusterSummary.objects.get(pk=world.pending.pk)
    assert summary.validation_status == ValidationStatus.PENDING
    assert not summary.human_locked
    assert not ValidationEvent.objects.exists()


@pytest.mark.parametrize("kind", ["plain", "runner"])
def test_override_needs_staff(kind: str) -> None:
    world = build_world()
    response = client_for(make_user(kind)).patch(
        f"/api/summaries/{world.pending.pk}/", {"validation_status": "validated"}, format="json"
    )
    assert response.status_code == 403
    assert_error_shape(response.json(), code="permission_denied")
    assert not ValidationEvent.objects.exists()


def test_override_unknown_summary_is_404_and_put_is_405() -> None:
    world = build_world()
    client = client_for(make_user("staff"))
    response = client.patch("/api/summaries/777777/", {"validation_status": "validated"})
    assert response.status_code == 404
    response = client.put(
        f"/api/summaries/{world.pending.pk}/", {"validation_status": "validated"}, format="json"
    )
    assert response.status_code == 405
    assert_error_shape(response.json(), code="method_not_allowed")


# --- regeneration -----------------------------------------------------------------------------


def test_staff_regenerate_returns_202_with_the_job(django_capture_on_commit_callbacks) -> None:
    world = build_world()
    world.rejected.human_locked = True
    world.rejected.save(update_fields=["human_locked"])
    staff = make_user("staff", "curator")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(staff).post(
            f"/api/summaries/{world.rejected.pk}/regenerate/", {}, format="json"
        )
    assert response.status_code == 202, response.json()
    body = response.json()
    job = GenerationJob.objects.get(pk=body["id"])
    assert job.scope == GenerationJob.Scope.CLUSTERS
    assert job.force is True
    assert job.requested_by == staff
    assert body["requested_by"] == "curator"
    assert response["Location"] == body["url"]
    assert body["url"].endswith(f"/api/jobs/{job.pk}/")
    assert SummaryTask.objects.get(job=job).cluster == world.clusters[2]
    assert len(callbacks) == 1
    world.rejected.refresh_from_db()
    assert world.rejected.human_locked is False
    assert ValidationEvent.objects.filter(summary=world.rejected, user=staff).count() == 1
    assert not LLMCall.objects.filter(job=job).exists()  # nothing called before commit


def test_regenerate_with_a_provider_and_errors() -> None:
    world = build_world()
    client = client_for(make_user("staff"))
    response = client.post(
        f"/api/summaries/{world.pending.pk}/regenerate/", {"provider": "gemini"}, format="json"
    )
    assert response.status_code == 202
    assert response.json()["provider"] == "gemini"
    response = client.post(
        f"/api/summaries/{world.pending.pk}/regenerate/", {"provider": "nope"}, format="json"
    )
    assert response.status_code == 400
    assert "provider" in response.json()["errors"]
    orphan = world.history
    orphan.cluster = None
    orphan.save(update_fields=["cluster"])
    response = client.post(f"/api/summaries/{orphan.pk}/regenerate/", {}, format="json")
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert "summary" in response.json()["errors"]


@pytest.mark.parametrize("kind", ["plain", "runner"])
def test_regenerate_needs_staff(kind: str) -> None:
    world = build_world()
    jobs = GenerationJob.objects.count()
    response = client_for(make_user(kind)).post(
        f"/api/summaries/{world.pending.pk}/regenerate/", {}, format="json"
    )
    assert response.status_code == 403
    assert GenerationJob.objects.count() == jobs
