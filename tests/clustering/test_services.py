"""Services on the database: dataset import, runs, idempotency, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustering.domain.params import InvalidParameters
from clustering.domain.pipeline import TOTAL_STEPS
from clustering.models import Cluster, ClusteringRun, Dataset, DatasetAnnotation, RunStatus
from clustering.services import (
    DatasetImportError,
    UnknownDatasetError,
    clustering_run_create,
    clustering_run_execute,
    dataset_import,
)

pytestmark = pytest.mark.django_db

SMALL_PARAMS = {"k": 5, "min_cluster_size": 5}


def test_import_then_cluster(planted_csv: Path) -> None:
    dataset = dataset_import(path=planted_csv, slug="planted", kind="functional")
    assert (dataset.entity_count, dataset.builtin) == (36, False)
    run = clustering_run_create(dataset_slug="planted", params=SMALL_PARAMS)
    assert run.cluster_type == "functional" and run.status == RunStatus.PENDING
    run = clustering_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    clusters = list(run.clusters.order_by("number"))
    assert len(clusters) == 3
    for cluster in clusters:
        assert cluster.size == 12 == len(cluster.members)
        assert cluster.terms.filter(fdr__lt=0.05).exists()
        groups = {m["id"][:3] for m in cluster.members}
        assert len(groups) == 1
    assert run.modularity and run.modularity > 0.3
    assert {"numpy", "leidenalg", "igraph"} <= set(run.library_versions)
    assert run.timings["total"] > 0
    assert {"stability", "null_model", "enrichment"} <= set(run.timings)
    assert run.progress_current == run.progress_total == TOTAL_STEPS + 1
    # quality figures, evidence and the selection method are stored with the run
    assert run.evidence_method["categories"] == {"CAT": "jaccard"}
    assert run.quality["stability_repeats"] == 10 and run.quality["null_repeats"] == 10
    for cluster in clusters:
        assert cluster.stability is not None and 0 <= cluster.stability <= 1
        assert cluster.derived_confidence in ("high", "medium", "low")
        assert cluster.signature_members and len(cluster.signature_members) == 10
        assert {"id", "symbol", "strength"} == set(cluster.signature_members[0])
        shown = cluster.terms.filter(direction="enriched", evidence_rank__isnull=False)
        assert shown.exists() and shown.filter(evidence_rank=1).count() == 1
        hidden = cluster.terms.filter(direction="enriched", evidence_rank__isnull=True)
        assert all(t.hidden_by and t.represents == 0 for t in hidden)


def test_execute_is_idempotent_and_recovers_a_dead_worker(planted_csv: Path) -> None:
    dataset_import(path=planted_csv, slug="planted", kind="functional")
    run = clustering_run_create(dataset_slug="planted", params=SMALL_PARAMS)
    clustering_run_execute(run_id=run.pk)
    hashes = sorted(Cluster.objects.filter(run=run).values_list("composition_hash", flat=True))
    # a redelivered task finds the run done
    again = clustering_run_execute(run_id=run.pk)
    assert again.attempts == 1
    assert Cluster.objects.filter(run=run).count() == 3
    # a run left "running" by a killed worker is computed again, without duplicates
    second = clustering_run_create(dataset_slug="planted", params=SMALL_PARAMS)
    ClusteringRun.objects.filter(pk=second.pk).update(status=RunStatus.RUNNING, attempts=1)
    second = clustering_run_execute(run_id=second.pk)
    assert second.status == RunStatus.SUCCEEDED and second.attempts == 2
    assert (
        sorted(Cluster.objects.filter(run=second).values_list("composition_hash", flat=True))
        == hashes
    )


def test_a_failing_run_records_the_error(planted_csv: Path) -> None:
    dataset_import(path=planted_csv, slug="planted", kind="functional")
    # no term of the 36 planted entities is on 30 of them: no feature passes the filters
    run = clustering_run_create(
        dataset_slug="planted", params={"min_term_size": 30, "min_cluster_size": 5}
    )
    run = clustering_run_execute(run_id=run.pk)
    assert run.status == RunStatus.FAILED
    assert "NoFeaturesError" in run.error and "min_term_size" in run.error
    assert not Cluster.objects.filter(run=run).exists()


def test_unknown_dataset_and_bad_parameters() -> None:
    with pytest.raises(UnknownDatasetError, match="hpo-ndd"):
        clustering_run_create(dataset_slug="no-such-thing")
    with pytest.raises(InvalidParameters) as info:
        clustering_run_create(dataset_slug="hpo-ndd", params={"k": 1, "resolution": 0})
    assert set(info.value.errors) == {"k", "resolution"}
    with pytest.raises(InvalidParameters):
        clustering_run_create(dataset_slug="hpo-ndd", cluster_type="genomic")
    assert not ClusteringRun.objects.exists()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_reports_every_bad_row_and_imports_nothing(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bad.csv",
        "entity_id,symbol,term_id,term_name,category\n"
        "e1,A,t1,term one,C\n"
        "e2,,t1,term one,C\n"  # line 3: empty symbol
        "e1,B,t2,term two,C\n"  # line 4: e1 had symbol A
        "e3,C,t1,another name,C\n"  # line 5: t1 had another name
        "e4,D,t3\n",  # line 6: too few fields
    )
    with pytest.raises(DatasetImportError) as info:
        dataset_import(path=path, slug="bad", kind="phenotype")
    text = str(info.value)
    for expected in ("line 3: empty symbol", "line 4:", "line 5:", "line 6: expected 5 fields"):
        assert expected in text
    assert not Dataset.objects.filter(slug="bad").exists()
    assert not DatasetAnnotation.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("entity_id,symbol,term_id,term_name,category\n", "no data rows"),
        ("id,symbol,term\n e1,A,t\n", r"missing column\(s\) entity_id"),
        ('entity_id,symbol,term_id,term_name,category\ne1,"A,t1,x,C\n', "line"),
    ],
)
def test_import_rejects_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path, "x.csv", content)
    with pytest.raises(DatasetImportError, match=message):
        dataset_import(path=path, slug="x", kind="phenotype")
    assert not Dataset.objects.exists()


def test_import_tsv_with_reordered_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "ok.tsv",
        "symbol\tentity_id\tcategory\tterm_id\tterm_name\nA\te1\tC\tt1\tone\nB\te2\tC\tt1\tone\n",
    )
    dataset = dataset_import(path=path, slug="ok", kind="phenotype")
    assert (dataset.entity_count, dataset.term_count) == (2, 1)
    assert set(DatasetAnnotation.objects.values_list("symbol", flat=True)) == {"A", "B"}


def test_import_never_touches_an_existing_dataset(planted_csv: Path, tmp_path: Path) -> None:
    dataset_import(path=planted_csv, slug="planted", kind="functional")
    before = DatasetAnnotation.objects.count()
    other = _write(tmp_path, "o.csv", "entity_id,symbol,term_id,term_name,category\ne,S,t,n,C\n")
    with pytest.raises(DatasetImportError, match="already exists"):
        dataset_import(path=other, slug="planted", kind="functional")
    with pytest.raises(DatasetImportError, match="already exists"):
        dataset_import(path=other, slug="hpo-ndd", kind="phenotype")
    with pytest.raises(DatasetImportError, match="--type"):
        dataset_import(path=other, slug="new", kind="genomic")
    assert DatasetAnnotation.objects.count() == before


def test_builtin_hpo_run_end_to_end() -> None:
    # the built-in dataset's loading, clusters, enrichment and counts are under test; stability
    # and the null model (20 more clusterings) are checked on the planted run above and on
    # hpo-ndd by test_evidence_real
    run = clustering_run_create(
        dataset_slug="hpo-ndd", params={"stability_repeats": 0, "null_repeats": 0}
    )
    run = clustering_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    clusters = list(run.clusters.all())
    assert len(clusters) >= 10
    for cluster in clusters:
        assert cluster.terms.filter(fdr__lt=0.05).exists()
    dataset = Dataset.objects.get(slug="hpo-ndd")
    assert "2025-11-24" in dataset.release and "Human Phenotype Ontology" in dataset.licence
    assert 2500 <= dataset.entity_count <= 3500
    clustered = sum(c.size for c in clusters) + len(run.unclustered)
    assert clustered == dataset.entity_count
