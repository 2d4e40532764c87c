"""Clusters: a run's cluster list and a cluster's detail (members, enrichment with FDR, the
current summary, dataset release and licence), and what anonymous readers see of them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clustering.models import Cluster
from tests.support.world import assert_error_shape, build_world, client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_run_cluster_list_with_top_terms_and_summaries() -> None:
    world = build_world()
    response = client_for(make_user("plain")).get(f"/api/runs/{world.run.pk}/clusters/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    rows = body["results"]
    assert [r["number"] for r in rows] == [1, 2, 3]
    first = rows[0]
    assert first["member_symbols"] == ["SCN1A", "SCN2A", "KCNQ2", "CACNA1A"]
    assert first["cluster_type"] == "functional"
    assert len(first["top_terms"]) == 3
    assert first["top_terms"][0]["term_id"] == "GO:1000000"  # smallest FDR first
    assert first["summary"]["id"] == world.validated.pk  # the current row, not the history
    assert rows[1]["summary"]["validation_status"] == "pending"
    assert rows[2]["summary"]["validation_status"] == "rejected"
    assert first["url"].endswith(f"/api/clusters/{world.clusters[0].pk}/")


def test_run_cluster_list_takes_a_fixed_number_of_queries() -> None:
    world = build_world()
    client = client_for(make_user("plain"))
    client.get(f"/api/runs/{world.run.pk}/clusters/")  # warm up (user, content types)
    with CaptureQueriesContext(connection) as few:
        client.get(f"/api/runs/{world.run.pk}/clusters/")
    for n in range(4, 30):
        Cluster.objects.create(
            run=world.run,
            number=n,
            size=2,
            members=[{"id": "a", "symbol": "A"}, {"id": "b", "symbol": "B"}],
            composition_hash=f"{n:064x}",
        )
    with CaptureQueriesContext(connection) as many:
        client.get(f"/api/runs/{world.run.pk}/clusters/")
    assert len(many) == len(few)


def test_anonymous_readers_see_only_validated_summaries_in_cluster_lists() -> None:
    world = build_world()
    rows = client_for(None).get(f"/api/runs/{world.run.pk}/clusters/").json()["results"]
    assert rows[0]["summary"]["id"] == world.validated.pk
    assert rows[1]["summary"] is None
    assert rows[2]["summary"] is None


def test_cluster_ordering_by_size() -> None:
    world = build_world()
    rows = (
        client_for(None).get(f"/api/runs/{world.run.pk}/clusters/?ordering=-size").json()["results"]
    )
    assert [r["size"] for r in rows] == [4, 3, 3]


def test_clusters_of_unknown_run_is_404() -> None:
    response = client_for(make_user("plain")).get("/api/runs/424242/clusters/")
    assert response.status_code == 404
    assert_error_shape(response.json(), code="not_found")


def test_cluster_detail() -> None:
    world = build_world()
    cluster = world.clusters[0]
    response = client_for(make_user("plain")).get(f"/api/clusters/{cluster.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["members"][0] == {"id": "ID:SCN1A", "symbol": "SCN1A"}
    assert body["size"] == 4
    assert body["composition_hash"] == cluster.composition_hash
    assert len(body["terms"]) == 4
    term = body["terms"][0]
    assert term["term_id"] == "GO:1000000"
    assert term["fdr"] == pytest.approx(1e-7)
    assert term["p_value"] == pytest.approx(1e-8)
    assert term["overlap_members"] == ["SCN1A", "SCN2A", "KCNQ2"]
    assert body["dataset"]["release"] == "2025-11-24"
    assert body["dataset"]["licence"].startswith("Demo annotations (2025-11-24)")
    summary = body["summary"]
    assert summary["id"] == world.validated.pk
    assert summary["judge_verdict"] == "accept"
    assert summary["judge_reasoning"] == "judged accept"
    assert summary["validation_status"] == "validated"
    assert summary["derived_confidence"] == "high"
    assert summary["confidence"] == "medium"
    assert summary["model"] == "extractive-v1"
    assert summary["prompt_version"] == "functional-v1"
    assert summary["generated_at"]
    assert summary["content"]["summary"].startswith("Voltage-gated")
    assert body["run_url"].endswith(f"/api/runs/{world.run.pk}/")


def test_cluster_detail_hides_unvalidated_summaries_from_anonymous_readers() -> None:
    world = build_world()
    anonymous = client_for(None).get(f"/api/clusters/{world.clusters[1].pk}/").json()
    assert anonymous["summary"] is None
    assert anonymous["terms"]  # the statistics stay public
    assert anonymous["dataset"]["licence"]
    signed_in = client_for(make_user("plain")).get(f"/api/clusters/{world.clusters[1].pk}/")
    assert signed_in.json()["summary"]["validation_status"] == "pending"


def test_unloaded_builtin_licence_does_not_show_a_placeholder() -> None:
    world = build_world()
    world.dataset.release = ""
    world.dataset.save(update_fields=["release"])
    body = client_for(None).get(f"/api/clusters/{world.clusters[0].pk}/").json()
    assert "{release}" not in body["dataset"]["licence"]


def test_unknown_cluster_is_404() -> None:
    response = client_for(None).get("/api/clusters/987654/")
    assert response.status_code == 404
    assert_error_shape(response.json(), code="not_found")


def test_a_clustered_run_serves_its_evidence_depletion_and_quality(tmp_path) -> None:
    from clustering.services import clustering_run_create, clustering_run_execute, dataset_import
    from tests.conftest import planted_rows

    rows = planted_rows(groups=3, size=12)
    path = tmp_path / "planted.csv"
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug="planted-api", kind="functional")
    run = clustering_run_create(dataset_slug="planted-api", params={"k": 5, "min_cluster_size": 5})
    run = clustering_run_execute(run_id=run.pk)
    client = client_for(make_user("plain"))
    body = client.get(f"/api/runs/{run.pk}/").json()
    assert body["evidence_method"]["categories"] == {"CAT": "jaccard"}
    assert body["quality"]["stability_repeats"] == 10
    listing = client.get(f"/api/runs/{run.pk}/clusters/").json()["results"]
    assert all(row["derived_confidence"] in ("high", "medium", "low") for row in listing)
    assert all(0 <= row["stability"] <= 1 for row in listing)
    first = listing[0]
    assert [t["evidence_rank"] for t in first["top_terms"]] == sorted(
        t["evidence_rank"] for t in first["top_terms"]
    )
    detail = client.get(f"/api/clusters/{first['id']}/").json()
    cluster = Cluster.objects.get(pk=first["id"])
    shown = cluster.terms.filter(direction="enriched", evidence_rank__isnull=False)
    assert [t["term_id"] for t in detail["evidence"]] == [
        t.term_id for t in shown.order_by("evidence_rank", "fdr")
    ]
    assert all(t["represents"] >= 1 and t["hidden_by"] == "" for t in detail["evidence"])
    hidden = [t for t in detail["terms"] if t["evidence_rank"] is None]
    assert all(t["hidden_by"] and t["represents"] == 0 for t in hidden)
    assert all(0 < t["coverage"] <= 1 for t in detail["evidence"])
    assert {t["direction"] for t in detail["depleted"]} <= {"depleted"}
    assert len(detail["signature_members"]) == 10 and detail["specificity"] > 0
