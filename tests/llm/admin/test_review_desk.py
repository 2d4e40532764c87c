"""The review desk in the Django admin: lists, filters, search, detail, actions, permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from clustering.domain.params import ClusteringParams
from clustering.models import ClusteringRun, RunStatus
from llm.models import ClusterSummary, GenerationJob, JobStatus, ValidationEvent
from tests.support.review_data import (
    GO_LICENCE,
    HPO_LICENCE,
    ReviewData,
    review_data_build,
    staff_user_create,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:llm_clustersummary_changelist"


@pytest.fixture
def data() -> ReviewData:
    return review_data_build()


@pytest.fixture
def curator() -> User:
    return staff_user_create("curator")


@pytest.fixture
def staff_client(client: Client, curator: User) -> Client:
    client.force_login(curator)
    return client


def _listed(client: Client, **params: str) -> set[int]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {s.pk for s in response.context["cl"].result_list}


def _act(client: Client, action: str, ids: list[int], url: str = CHANGELIST) -> Any:
    return client.post(
        reverse(url),
        {"action": action, "_selected_action": [str(i) for i in ids], "index": "0"},
        follow=True,
    )


# --- list, filters, search ------------------------------------------------------------------


def test_list_shows_status_and_verdict_badges_lock_and_licence_notice(
    staff_client: Client, data: ReviewData, curator: User
) -> None:
    from llm.services.review import summary_status_set

    summary_status_set(summary_id=data.summaries["rejected"].pk, status="rejected", user=curator)
    html = staff_client.get(reverse(CHANGELIST)).content.decode()
    pending = data.summaries["pending"].pk
    assert f'class="badge status-pending" data-role="status" data-summary-id="{pending}"' in html
    assert 'class="badge status-validated"' in html
    assert 'class="badge verdict-low_confidence"' in html
    assert "low confidence" in html
    rejected = data.summaries["rejected"].pk
    assert f'class="badge lock" data-role="lock" data-summary-id="{rejected}"' in html
    assert html.count('class="badge lock"') == 1
    assert "background:#1a7f37" in html  # coloured
    assert "licence-notice" in html and HPO_LICENCE in html  # the HPO dataset's own licence
    assert "HPO 2025-11-24" in html


def test_filters_by_status_verdict_type_tag_model_and_lock(
    staff_client: Client, data: ReviewData, curator: User
) -> None:
    s = data.summaries
    go = data.go_summary
    assert go is not None
    assert _listed(staff_client, validation_status__exact="pending") == {s["pending"].pk}
    assert _listed(staff_client, validation_status__exact="validated") == {
        s["validated"].pk,
        go.pk,
    }
    assert _listed(staff_client, judge_verdict__exact="reject") == {s["rejected"].pk}
    assert _listed(staff_client, cluster_type__exact="functional") == {go.pk}
    assert _listed(staff_client, tag="epilepsy") == {s["validated"].pk}
    assert _listed(staff_client, tag="intellectual disability") == {s["pending"].pk}
    assert _listed(staff_client, model__exact="gemini-2.5-pro") == {s["pending"].pk}
    # the tag filter offers the tags in use
    response = staff_client.get(reverse(CHANGELIST))
    assert "?tag=epilepsy" in response.content.decode()

    from llm.services.review import summary_status_set

    summary_status_set(summary_id=s["pending"].pk, status="pending", user=curator)
    assert _listed(staff_client, human_locked__exact="1") == {s["pending"].pk}


def test_search_by_gene_symbol_and_text(staff_client: Client, data: ReviewData) -> None:
    s = data.summaries
    # whole symbols only: SCN1A is in cluster 1, SCN1AB (cluster 2) must not match
    assert _listed(staff_client, q="SCN1A") == {s["validated"].pk}
    assert _listed(staff_client, q="scn1a") == {s["validated"].pk}
    assert _listed(staff_client, q="SCN1AB") == {s["pending"].pk}
    assert _listed(staff_client, q="SCN1A KCNQ2") == {s["validated"].pk}
    assert _listed(staff_client, q="SCN1A GENE2_3") == set()  # no cluster has both
    assert _listed(staff_client, q="microcephaly") == {s["pending"].pk}
    assert _listed(staff_client, q="synaptic transmission") == {data.go_summary.pk}  # type: ignore[union-attr]
    assert _listed(staff_client, q="no such thing") == set()


# --- detail page ------------------------------------------------------------------------------


def test_detail_shows_content_members_terms_judge_audit_and_licence(
    staff_client: Client, data: ReviewData
) -> None:
    summary = data.summaries["validated"]
    url = reverse("admin:llm_clustersummary_change", args=[summary.pk])
    response = staff_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert summary.summary_text in html
    assert "Dravet syndrome" in html and "Early-onset epileptic encephalopathy." in html
    assert "SYNGAP1" in html and "14 members" in html
    # the evidence: "Seizure" (FDR 1e-20) is hidden behind its descendants
    assert "Focal-onset seizure" in html and "3e-18" in html and "1e-20" not in html
    assert html.count('class="term-row"') == 3
    assert 'class="cluster-quality"' in html and "derived confidence" in html
    assert "Depleted terms" in html and "Judge corrections applied" in html
    assert "Judge reasoning for cluster 1" in html
    assert "is grounded" in html and "judge-v1" in html
    assert HPO_LICENCE in html
    # audit trail inline with the judge's event
    assert "audit trail" in html.lower() and "judge verdict accept" in html
    # read-only: no save buttons, no editable inputs; curators get the review form instead
    assert 'name="_save"' not in html
    assert 'name="summary_text"' not in html
    assert 'id="review-form"' in html and 'value="validated"' in html


def test_nobody_edits_adds_or_deletes_summaries(staff_client: Client, data: ReviewData) -> None:
    summary = data.summaries["pending"]
    change = reverse("admin:llm_clustersummary_change", args=[summary.pk])
    assert staff_client.get(reverse("admin:llm_clustersummary_add")).status_code == 403
    assert staff_client.post(change, {"summary_text": "hacked"}).status_code == 403
    delete = reverse("admin:llm_clustersummary_delete", args=[summary.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert _act(staff_client, "delete_selected", [summary.pk]).status_code == 200
    summary.refresh_from_db()
    assert summary.summary_text.startswith("Pending clinical picture")
    assert ClusterSummary.objects.filter(pk=summary.pk).exists()


# --- actions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status"),
    [("validate", "validated"), ("reject", "rejected"), ("mark_pending", "pending")],
)
def test_bulk_status_actions_write_events_with_the_acting_user_and_lock(
    staff_client: Client, data: ReviewData, curator: User, action: str, status: str
) -> None:
    chosen = [data.summaries["pending"], data.summaries["rejected"], data.summaries["validated"]]
    before = {s.pk: s.validation_status for s in chosen}
    response = _act(staff_client, action, [s.pk for s in chosen])
    assert response.status_code == 200
    assert f"3 summaries set to {status} by curator" in response.content.decode()
    for summary in chosen:
        summary.refresh_from_db()
        assert summary.validation_status == status
        assert summary.human_locked
        assert summary.validated_by == curator
        event = ValidationEvent.objects.filter(summary=summary).latest("id")
        assert event.user == curator
        assert event.source == ValidationEvent.Source.HUMAN
        assert (event.from_status, event.to_status) == (before[summary.pk], status)
    # the untouched summary keeps its state and gains no event
    go = data.go_summary
    assert go is not None
    assert ValidationEvent.objects.filter(summary=go).count() == 1


def test_regenerate_action_queues_a_forced_job_and_lifts_the_lock(
    staff_client: Client,
    data: ReviewData,
    curator: User,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    from llm.services.review import summary_status_set

    summary = data.summaries["rejected"]
    summary_status_set(summary_id=summary.pk, status="rejected", user=curator)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _act(staff_client, "regenerate", [summary.pk])
    assert "Regeneration queued for 1 summary" in response.content.decode()
    assert len(callbacks) == 1  # enqueued after commit (not run here: no provider call)
    job = GenerationJob.objects.get(scope=GenerationJob.Scope.CLUSTERS)
    assert job.force and job.requested_by == curator and job.run_id == data.run.pk
    assert list(job.tasks.values_list("cluster_id", flat=True)) == [summary.cluster_id]
    summary.refresh_from_db()
    assert not summary.human_locked
    assert ValidationEvent.objects.filter(
        summary=summary, user=curator, note__contains="lock lifted"
    ).exists()


def test_review_form_on_the_detail_page_records_the_note(
    staff_client: Client, data: ReviewData, curator: User
) -> None:
    summary = data.summaries["pending"]
    url = reverse("admin:llm_clustersummary_review", args=[summary.pk])
    response = staff_client.post(url, {"decision": "rejected", "note": "names a non-member"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:llm_clustersummary_change", args=[summary.pk])
    summary.refresh_from_db()
    assert summary.validation_status == "rejected" and summary.human_locked
    event = ValidationEvent.objects.filter(summary=summary).latest("id")
    assert (event.user, event.note, event.to_status) == (curator, "names a non-member", "rejected")
    page = staff_client.get(response["Location"]).content.decode()
    assert "names a non-member" in page and "curator" in page
    # an unknown decision changes nothing; GET is not allowed
    staff_client.post(url, {"decision": "delete"})
    assert ValidationEvent.objects.filter(summary=summary).count() == 2
    assert staff_client.get(url).status_code == 405


# --- permissions ------------------------------------------------------------------------------


def test_non_staff_users_cannot_reach_the_admin_or_change_statuses(
    client: Client, data: ReviewData
) -> None:
    user = User.objects.create_user("reader", password="pw-reader-1")
    client.force_login(user)
    summary = data.summaries["pending"]
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.post(
        reverse(CHANGELIST),
        {"action": "validate", "_selected_action": [str(summary.pk)], "index": "0"},
    )
    client.post(
        reverse("admin:llm_clustersummary_review", args=[summary.pk]), {"decision": "validated"}
    )
    client.logout()
    client.post(
        reverse(CHANGELIST),
        {"action": "validate", "_selected_action": [str(summary.pk)], "index": "0"},
    )
    summary.refresh_from_db()
    assert summary.validation_status == "pending" and not summary.human_locked
    assert ValidationEvent.objects.filter(summary=summary).count() == 1


def test_staff_without_change_permission_can_only_look(client: Client, data: ReviewData) -> None:
    viewer = staff_user_create(
        "viewer",
        superuser=False,
        perms=("llm.view_clustersummary", "clustering.view_clusteringrun"),
    )
    client.force_login(viewer)
    summary = data.summaries["pending"]
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert 'name="action"' not in response.content.decode()  # no actions offered
    detail = client.get(reverse("admin:llm_clustersummary_change", args=[summary.pk]))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert 'id="review-form"' not in html
    assert "judge verdict low_confidence" in html  # the audit trail is visible to viewers
    _act(client, "validate", [summary.pk])
    review = reverse("admin:llm_clustersummary_review", args=[summary.pk])
    assert client.post(review, {"decision": "validated"}).status_code == 403
    summary.refresh_from_db()
    assert summary.validation_status == "pending" and not summary.human_locked
    run_list = client.get(reverse("admin:clustering_clusteringrun_changelist"))
    assert run_list.status_code == 200 and 'name="action"' not in run_list.content.decode()


def test_staff_with_change_permission_only_can_run_the_actions(
    client: Client, data: ReviewData
) -> None:
    curator = staff_user_create(
        "desk", superuser=False, perms=("llm.view_clustersummary", "llm.change_clustersummary")
    )
    client.force_login(curator)
    summary = data.summaries["pending"]
    _act(client, "validate", [summary.pk])
    summary.refresh_from_db()
    assert summary.validation_status == "validated" and summary.validated_by == curator


# --- runs -------------------------------------------------------------------------------------


def test_run_list_shows_status_progress_and_totals(staff_client: Client, data: ReviewData) -> None:
    data.run.status = RunStatus.RUNNING
    data.run.progress_current, data.run.progress_total = 3, 5
    data.run.progress_message = "Leiden"
    data.run.save()
    html = staff_client.get(reverse("admin:clustering_clusteringrun_changelist")).content.decode()
    assert 'class="badge run-running"' in html
    assert '<progress value="3" max="5"' in html and "Leiden" in html
    assert "<b>4</b> total" in html
    for figure in ("2 succeeded", "1 rejected", "0 failed", "1 skipped"):
        assert figure in html
    assert reverse("reports:run", args=[data.run.pk]) in html
    detail = staff_client.get(reverse("admin:clustering_clusteringrun_change", args=[data.run.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert HPO_LICENCE in detail.content.decode()


def test_rerun_action_starts_a_run_and_reports_an_active_run_conflict(
    staff_client: Client,
    data: ReviewData,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    url = "admin:clustering_clusteringrun_changelist"
    with django_capture_on_commit_callbacks(execute=False):
        response = _act(staff_client, "rerun", [data.run.pk], url=url)
    new = ClusteringRun.objects.exclude(pk__in=[data.run.pk, data.go_run.pk]).get()
    # the same parameters (completed with the defaults of parameters added since)
    assert new.dataset == data.hpo
    assert new.params == ClusteringParams.from_dict(data.run.params).to_dict()
    assert new.status == RunStatus.PENDING
    assert f"Started run {new.pk} (from run {data.run.pk})" in response.content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        response = _act(staff_client, "rerun", [data.run.pk], url=url)
    html = response.content.decode()
    assert f"Run {data.run.pk} was not rerun: run {new.pk}" in html
    assert "still active" in html
    assert ClusteringRun.objects.count() == 3


def test_cancel_action_cancels_an_active_run_and_its_job(
    staff_client: Client, data: ReviewData
) -> None:
    data.run.status = RunStatus.RUNNING
    data.run.save()
    job = data.job
    assert job is not None
    job.status = JobStatus.RUNNING
    job.save()
    response = _act(
        staff_client,
        "cancel",
        [data.run.pk, data.go_run.pk],
        url="admin:clustering_clusteringrun_changelist",
    )
    assert f"Cancelled 1 run(s): {data.run.pk}" in response.content.decode()
    data.run.refresh_from_db()
    job.refresh_from_db()
    assert data.run.status == RunStatus.CANCELLED and job.status == JobStatus.CANCELLED
    data.go_run.refresh_from_db()
    assert data.go_run.status == RunStatus.SUCCEEDED


# --- the rest stays read-only -----------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["clustering_dataset", "clustering_cluster", "llm_generationjob", "llm_llmcall"]
)
def test_datasets_clusters_jobs_and_calls_are_read_only(
    staff_client: Client, data: ReviewData, model: str
) -> None:
    assert staff_client.get(reverse(f"admin:{model}_changelist")).status_code == 200
    assert staff_client.get(reverse(f"admin:{model}_add")).status_code == 403


def test_cluster_and_dataset_pages_show_their_datasets_own_licence(
    staff_client: Client, data: ReviewData
) -> None:
    cluster = data.clusters[0]
    html = staff_client.get(
        reverse("admin:clustering_cluster_change", args=[cluster.pk])
    ).content.decode()
    assert "licence-notice" in html and HPO_LICENCE in html
    assert 'name="_save"' not in html
    html = staff_client.get(
        reverse("admin:clustering_dataset_change", args=[data.go.pk])
    ).content.decode()
    assert "licence-notice" in html and GO_LICENCE in html
    assert "Human Phenotype Ontology" not in html


# --- review desk triage: distinctive rows, one-click review, notes, quick view -----------


def _row(html: str, summary_id: int) -> str:
    """The list row of a summary."""
    marker = f'value="{summary_id}"'
    start = html.rindex("<tr", 0, html.index(marker))
    return html[start : html.index("</tr>", start)]


def test_rows_tell_summaries_apart(staff_client: Client, data: ReviewData) -> None:
    html = staff_client.get(reverse(CHANGELIST)).content.decode()
    first = _row(html, data.summaries["validated"].pk)
    # the first sentence, the cluster's number and size, evidence, confidence, model and date
    assert "Validated clinical picture: early-onset seizures with developmental delay" in first
    assert "#1" in first and "14 genes" in first
    assert "Focal-onset seizure" in first and "Global developmental delay" in first
    assert "Seizure <" not in first  # hidden behind its descendants
    assert 'data-role="confidence"' in first
    assert data.summaries["validated"].generated_at.strftime("%Y-%m-%d") in first
    # only pending rows offer one-click review
    assert "review-validate" not in first
    pending = _row(html, data.summaries["pending"].pk)
    assert "review-validate" in pending and "review-reject" in pending
    assert 'formaction="/admin/llm/clustersummary/' in pending
    # the quick view: members, evidence, judge reasoning and audit trail in the row
    assert '<details class="quick-view"' in first
    assert "SCN1A" in first and "Judge reasoning for cluster 1" in first
    assert 'name="note"' in html  # the bulk actions' note


def test_one_click_validate_is_a_csrf_protected_audited_post(
    data: ReviewData, curator: User
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(curator)
    listing = client.get(reverse(CHANGELIST))
    token = listing.cookies["csrftoken"].value
    summary = data.summaries["pending"]
    url = reverse("admin:llm_clustersummary_review", args=[summary.pk]) + "?next=list"
    refused = client.post(url, {"decision": "validated"})
    assert refused.status_code == 403
    summary.refresh_from_db()
    assert summary.validation_status == "pending"
    done = client.post(
        url,
        {"decision": "validated", "csrfmiddlewaretoken": token},
        HTTP_REFERER="http://testserver" + reverse(CHANGELIST) + "?validation_status=pending",
    )
    assert done.status_code == 302
    assert done["Location"].endswith(reverse(CHANGELIST) + "?validation_status=pending")
    summary.refresh_from_db()
    assert (summary.validation_status, summary.human_locked) == ("validated", True)
    event = summary.events.order_by("id").last()
    assert event is not None and event.user == curator and event.to_status == "validated"
    # an outside referrer is never followed
    other = data.summaries["validated"]
    away = client.post(
        reverse("admin:llm_clustersummary_review", args=[other.pk]) + "?next=list",
        {"decision": "pending", "csrfmiddlewaretoken": token},
        HTTP_REFERER="https://evil.example/admin/llm/clustersummary/",
    )
    assert away["Location"] == reverse(CHANGELIST)


def test_bulk_actions_write_the_note_into_every_audit_entry(
    staff_client: Client, data: ReviewData
) -> None:
    ids = [data.summaries["pending"].pk, data.summaries["validated"].pk]
    response = staff_client.post(
        reverse(CHANGELIST),
        {
            "action": "reject",
            "_selected_action": [str(i) for i in ids],
            "index": "0",
            "note": "Checked against OMIM: not a coherent entity.",
        },
        follow=True,
    )
    assert "with the note &quot;Checked against OMIM" in response.content.decode()
    for summary_id in ids:
        event = ValidationEvent.objects.filter(summary_id=summary_id).order_by("id").last()
        assert event is not None and event.to_status == "rejected"
        assert event.note == "Checked against OMIM: not a coherent entity."


def test_list_queries_do_not_grow_with_rows(staff_client: Client, data: ReviewData) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        response = staff_client.get(reverse(CHANGELIST), {"validation_status": "pending"})
    assert len(response.context["cl"].result_list) == 1
    with CaptureQueriesContext(connection) as all_rows:
        response = staff_client.get(reverse(CHANGELIST))
    assert len(response.context["cl"].result_list) >= 4
    assert len(all_rows) <= len(one), [q["sql"][:80] for q in all_rows.captured_queries]
