"""Run report pages: figure, cards, badges, HPO acknowledgement, access rules."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse

from clustering.models import ClusteringRun, RunStatus
from llm.models import ClusterSummary
from llm.reports.figures import ClusterMark, cluster_bars_svg, nice_ticks
from tests.support.review_data import (
    GO_LICENCE,
    HPO_LICENCE,
    ReviewData,
    review_data_build,
    staff_user_create,
)

DB = pytest.mark.django_db


@pytest.fixture
def data() -> ReviewData:
    return review_data_build()


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(staff_user_create("curator"))
    return client


def _report(client: Client, run: ClusteringRun, **params: str) -> str:
    response = client.get(reverse("reports:run", args=[run.pk]), params)
    assert response.status_code == 200
    return response.content.decode()


def _card(html: str, number: int) -> str:
    """The HTML of one cluster card."""
    match = re.search(rf'<article class="card[^"]*" id="cluster-{number}".*?</article>', html, re.S)
    assert match, f"no card for cluster {number}"
    return match.group(0)


@DB
def test_staff_report_has_header_figure_cards_and_hpo_acknowledgement(
    staff_client: Client, data: ReviewData
) -> None:
    html = _report(staff_client, data.run)
    # header: dataset, release, params, status, totals
    assert "NDD genes x HPO phenotypes" in html
    assert 'id="dataset-release">HPO 2025-11-24 (hpo3 1.5.1)<' in html
    assert "resolution <b>1.0</b>" in html and "k <b>15</b>" in html
    assert 'class="badge run-succeeded"' in html
    totals = re.search(r'id="job-totals".*?</p>', html, re.S)
    assert totals is not None
    assert [int(v) for v in re.findall(r'class="v">(\d+)<', totals.group(0))] == [4, 2, 1, 0, 1]
    # figure: one mark per cluster, coloured by status
    svg = re.search(r"<svg.*?</svg>", html, re.S)
    assert svg is not None
    assert svg.group(0).count('class="cluster-mark') == 4
    for status in ("validated", "pending", "rejected", "none"):
        assert f'class="cluster-mark status-{status}"' in svg.group(0)
    # the HPO acknowledgement: the dataset's own licence text
    assert 'id="licence-notice"' in html and HPO_LICENCE in html
    # cards: every summary's text is visible to staff, with badges carrying the summary id
    for key, summary in data.summaries.items():
        card = _card(html, summary.cluster.number)  # type: ignore[union-attr]
        assert summary.summary_text in card
        assert f'class="badge status-{key}" id="summary-{summary.pk}-status"' in card
        assert f'data-summary-id="{summary.pk}"' in card
    assert 'class="badge verdict-low_confidence"' in _card(html, 2)
    assert "no summary" in _card(html, 4) and "No summary yet." in _card(html, 4)
    assert "awaiting review" not in html


@DB
def test_cards_show_non_redundant_terms_with_fdr_and_capped_members(
    staff_client: Client, data: ReviewData
) -> None:
    html = _report(staff_client, data.run)
    card = _card(html, 1)
    # "Seizure" is the parent of listed descendants: pruned; the descendants show with FDR
    assert "HP:0001250" not in card
    assert "Focal-onset seizure" in card and "FDR 3e-18" in card
    assert "Global developmental delay" in card and "FDR 2e-09" in card
    assert 'class="small quality"' in card and "Derived confidence" in card
    assert "SCN1A" in card and "14 members" in card
    big = _card(html, 4)
    assert big.count('<span class="gene">') == 40 and "+15 more" in big
    assert "Autistic behavior" in big


@DB
def test_curator_lock_is_shown(staff_client: Client, data: ReviewData) -> None:
    from llm.services.review import summary_status_set

    user = User.objects.get(username="curator")
    summary = data.summaries["pending"]
    summary_status_set(summary_id=summary.pk, status="validated", user=user)
    card = _card(_report(staff_client, data.run), 2)
    assert f'class="badge status-validated" id="summary-{summary.pk}-status"' in card
    assert 'data-role="lock"' in card and "curator-locked" in card


@DB
@override_settings(API_ANONYMOUS_READ=True)
def test_anonymous_readers_see_only_validated_text(client: Client, data: ReviewData) -> None:
    html = _report(client, data.run)
    s = data.summaries
    assert s["validated"].summary_text in html
    assert s["pending"].summary_text not in html
    assert s["rejected"].summary_text not in html
    assert "Judge reasoning for cluster 2" not in html
    assert html.count("Summary awaiting review.") == 1
    assert "awaiting review" in _card(html, 2)
    # a rejected summary is never described as awaiting review
    assert "awaiting review" not in _card(html, 3)
    assert "Summary rejected in review; not shown." in _card(html, 3)
    # badges, terms and members are still shown; no admin links, no token figures
    assert f'id="summary-{s["pending"].pk}-status"' in html
    assert "Microcephaly" in _card(html, 2)
    assert "/admin/llm/clustersummary/" not in html
    assert "input + " not in html
    # a signed-in non-staff user reads like an anonymous one
    client.force_login(User.objects.create_user("reader", password="pw-reader-1"))
    assert s["pending"].summary_text not in _report(client, data.run)


@DB
@override_settings(API_ANONYMOUS_READ=False)
def test_without_anonymous_read_only_staff_may_read(client: Client, data: ReviewData) -> None:
    for url in (reverse("reports:run", args=[data.run.pk]), reverse("reports:index")):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(User.objects.create_user("reader", password="pw-reader-1"))
    assert client.get(reverse("reports:run", args=[data.run.pk])).status_code == 403
    client.force_login(staff_user_create("curator"))
    assert client.get(reverse("reports:run", args=[data.run.pk])).status_code == 200


@DB
def test_functional_run_has_no_hpo_notice_but_its_licence(
    staff_client: Client, data: ReviewData
) -> None:
    html = _report(staff_client, data.go_run)
    assert 'id="licence-notice"' in html
    assert "Human Phenotype Ontology" not in html
    assert GO_LICENCE in html
    assert "Synaptic vesicle pathway" in html
    assert html.count('class="cluster-mark') == 1


@DB
def test_cached_summary_of_an_earlier_run_shows_on_a_new_run(
    staff_client: Client, data: ReviewData
) -> None:
    """Summaries are found by composition: a rerun's identical cluster shows the old summary."""
    from clustering.models import Cluster

    rerun = ClusteringRun.objects.create(
        dataset=data.hpo, cluster_type="phenotype", params=data.run.params, status="succeeded"
    )
    old = data.clusters[0]
    Cluster.objects.create(
        run=rerun,
        number=1,
        size=old.size,
        members=old.members,
        composition_hash=old.composition_hash,
    )
    html = _report(staff_client, rerun)
    assert data.summaries["validated"].summary_text in html
    assert "Not summarised yet." in html


@DB
def test_status_filter_and_index(staff_client: Client, data: ReviewData) -> None:
    html = _report(staff_client, data.run, status="pending")
    assert 'id="cluster-2"' in html and 'id="cluster-1"' not in html
    # the figure still shows every cluster; bars of cards not listed link to the unfiltered page
    assert html.count('class="cluster-mark') == 4
    assert 'href="?page=1#cluster-1"' in html and 'href="#cluster-2"' in html
    index = staff_client.get(reverse("reports:index"))
    assert index.status_code == 200
    text = index.content.decode()
    for run in (data.run, data.go_run):
        assert reverse("reports:run", args=[run.pk]) in text
    assert "4 total · 2 succeeded · 1 rejected" in text


@DB
def test_unknown_run_is_404_and_post_is_refused(staff_client: Client, data: ReviewData) -> None:
    assert staff_client.get(reverse("reports:run", args=[999999])).status_code == 404
    assert staff_client.post(reverse("reports:run", args=[data.run.pk])).status_code == 405


@DB
def test_report_queries_do_not_grow_with_clusters(
    staff_client: Client, data: ReviewData, django_assert_max_num_queries: object
) -> None:
    from clustering.models import Cluster

    for number in range(5, 45):
        Cluster.objects.create(
            run=data.run,
            number=number,
            size=10,
            members=[{"id": f"X{number}_{i}", "symbol": f"X{number}_{i}"} for i in range(10)],
            composition_hash=f"{number:064d}",
        )
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        html = _report(staff_client, data.run)
    assert html.count('class="cluster-mark') == 44
    assert ClusterSummary.objects.count() == 4


def test_figure_escapes_text_and_handles_edge_cases() -> None:
    empty = cluster_bars_svg([])
    assert "cluster-mark" not in empty and "No clusters" in empty
    svg = cluster_bars_svg(
        [ClusterMark(number=1, size=3, status="weird", label="<script>x</script>", href="#a&b")],
        title='a "title" <b>',
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'status-none"' in svg and 'href="#a&amp;b"' in svg
    assert "&quot;title&quot;" in svg
    many = cluster_bars_svg(
        [ClusterMark(number=i, size=i % 50 + 1, status="pending") for i in range(10_000)]
    )
    assert many.count('class="cluster-mark') == 10_000
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(14) == [0, 5, 10, 15]
    assert nice_ticks(55) == [0, 20, 40, 60]
    assert nice_ticks(100)[-1] >= 100


@DB
def test_run_status_badge_for_a_running_run(staff_client: Client, data: ReviewData) -> None:
    data.run.status = RunStatus.RUNNING
    data.run.progress_current, data.run.progress_total = 2, 5
    data.run.progress_message = "Leiden clustering"
    data.run.save()
    html = _report(staff_client, data.run)
    assert 'class="badge run-running"' in html and "Leiden clustering" in html


@DB
def test_cancelled_runs_are_labelled_cancelled_and_cards_show_the_date(
    staff_client: Client, data: ReviewData
) -> None:
    from clustering.models import ClusteringRun, RunStatus
    from llm.models import GenerationJob, JobStatus

    cancelled = ClusteringRun.objects.create(
        dataset=data.hpo, cluster_type="phenotype", status=RunStatus.CANCELLED
    )
    GenerationJob.objects.create(
        run=cancelled, provider="extractive", model="extractive-v1", judge_model="x",
        status=JobStatus.FAILED, message="clustering run did not succeed: cancelled",
    )  # fmt: skip
    text = staff_client.get(reverse("reports:index")).content.decode()
    row = text[text.index(f'data-run-id="{cancelled.pk}"') :].split("</tr>")[0]
    assert "cancelled" in row and "job failed" not in row
    card = _card(_report(staff_client, data.run), 1)
    generated = data.summaries["validated"].generated_at.strftime("%Y-%m-%d")
    assert f"generated {generated}" in card and 'class="generated"' in card
