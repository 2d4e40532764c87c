"""Each dataset shows its own licence notice, taken from its licence field and never from
matching text: the built-in go-ndd dataset (whose source names hpo-ndd) shows the Gene
Ontology CC BY 4.0 notice in the admin, the report and the API, and not the HPO notice."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from clustering.datasets.hpo import HPO_NOTICE
from clustering.models import ClusteringRun, Dataset, RunStatus
from clustering.services import dataset_get
from tests.support.review_data import PARAMS, _cluster, _summary, staff_user_create

pytestmark = pytest.mark.django_db

GO_NOTICE = "Gene Ontology: CC BY 4.0 (geneontology.org); WikiPathways: CC0"
HPO_SENTENCE = HPO_NOTICE.split(" ({release}")[
    0
]  # "This service uses the Human Phenotype Ontology"


@pytest.fixture
def staff(client: Client) -> Client:
    client.force_login(staff_user_create("curator"))
    return client


def _run_with_summary(dataset: Dataset) -> ClusteringRun:
    run = ClusteringRun.objects.create(
        dataset=dataset, cluster_type=dataset.kind, params=PARAMS, status=RunStatus.SUCCEEDED
    )
    cluster = _cluster(run, 1, [f"GENE{i}" for i in range(12)])
    _summary(cluster, text="Synaptic picture.", status="validated", verdict="accept", tags=["x"])
    return run


def test_builtin_go_ndd_shows_the_gene_ontology_notice_not_the_hpo_one(staff: Client) -> None:
    go = dataset_get(slug="go-ndd")
    assert "hpo-ndd" in go.source  # the text that used to be matched
    run = _run_with_summary(go)
    cluster = run.clusters.get()
    pages = {
        "dataset": reverse("admin:clustering_dataset_change", args=[go.pk]),
        "cluster": reverse("admin:clustering_cluster_change", args=[cluster.pk]),
        "summaries": reverse("admin:llm_clustersummary_changelist"),
        "report": reverse("reports:run", args=[run.pk]),
    }
    for name, url in pages.items():
        html = staff.get(url).content.decode()
        assert GO_NOTICE in html, name
        assert HPO_SENTENCE not in html, name
    api = staff.get(f"/api/clusters/{cluster.pk}/").json()
    assert api["dataset"]["licence"] == go.licence and GO_NOTICE in go.licence
    assert GO_NOTICE in api["summary"]["dataset_licence"]


def test_builtin_hpo_ndd_shows_the_hpo_acknowledgement_with_its_release(staff: Client) -> None:
    hpo = dataset_get(slug="hpo-ndd")
    run = _run_with_summary(hpo)
    html = staff.get(reverse("reports:run", args=[run.pk])).content.decode()
    assert f"{HPO_SENTENCE} ({hpo.release};" in html and 'id="licence-notice"' in html
    html = staff.get(reverse("admin:clustering_dataset_change", args=[hpo.pk])).content.decode()
    assert HPO_SENTENCE in html and GO_NOTICE not in html


def test_a_dataset_without_licence_text_shows_none_whatever_its_name_says(staff: Client) -> None:
    """An imported dataset named after the HPO gets no notice that its licence field does not
    hold (the operator passes --licence to dataset_import)."""
    named = Dataset.objects.create(
        slug="my-hpo-genes", name="HPO genes", kind="phenotype", source="HPO annotations"
    )
    run = _run_with_summary(named)
    html = staff.get(reverse("reports:run", args=[run.pk])).content.decode()
    assert HPO_SENTENCE not in html and 'id="licence-notice"' not in html
    assert "No licence text recorded for this dataset." in html
    html = staff.get(reverse("admin:clustering_dataset_change", args=[named.pk])).content.decode()
    assert "no licence text recorded" in html
