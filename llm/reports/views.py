"""Run report pages: ``/reports/`` (runs) and ``/reports/runs/<id>/`` (one run, its figure and
its cluster cards). Server-rendered Django templates, no front-end build step.

Access: staff see everything. Anyone else may read when ``settings.API_ANONYMOUS_READ`` is true,
but then only validated summaries show their text (the others say "awaiting review"); enrichment
terms and members are data, not model output, and are always shown. Pages only read: nothing here
can start a provider call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from clustering.domain.stability import stability_band
from clustering.models import Cluster, ClusteringRun
from clustering.selectors import cluster_display_terms, cluster_list, dataset_licence_notice
from llm.models import ClusterSummary, ValidationStatus
from llm.reports.figures import STATUS_ORDER, ClusterMark, cluster_bars_svg
from llm.selectors import run_job, run_list, summary_current_any_status

#: Cluster cards per page of a run report (the figure always shows every cluster).
CARDS_PER_PAGE = 60
#: Members listed on a card; the rest are counted.
MEMBERS_SHOWN = 40
#: Non-redundant enrichment terms listed on a card.
TERMS_SHOWN = 5


def _reader_is_staff(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def _access_denied(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read reports; else the response to send (login redirect for
    anonymous visitors, PermissionDenied for signed-in non-staff)."""
    if _reader_is_staff(request) or settings.API_ANONYMOUS_READ:
        return None
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    raise PermissionDenied("reports are for staff")


@dataclass
class TermRow:
    """An enrichment term as shown on a card."""

    term_id: str
    name: str
    category: str
    fdr: str
    overlap: int
    term_size: int
    fold: str


@dataclass
class ClusterCard:
    """Everything one cluster card shows; ``show_text`` is False when the reader may not see
    the summary's text yet (not validated, non-staff reader)."""

    cluster: Cluster
    status: str
    summary: ClusterSummary | None
    show_text: bool
    text: str = ""
    themes: list[str] = field(default_factory=list)
    pathways: list[str] = field(default_factory=list)
    pattern: str = ""
    note: str = ""
    tags: list[str] = field(default_factory=list)
    terms: list[TermRow] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    members_more: int = 0
    admin_url: str = ""
    stability: str = "not measured"
    depleted: list[str] = field(default_factory=list)


def _status_of(summary: ClusterSummary | None) -> str:
    return summary.validation_status if summary is not None else "none"


def _card(
    cluster: Cluster,
    summary: ClusterSummary | None,
    terms: list[Any],
    *,
    staff: bool,
    depleted: list[Any] | None = None,
) -> ClusterCard:
    status = _status_of(summary)
    show_text = summary is not None and (staff or status == ValidationStatus.VALIDATED)
    symbols = cluster.member_symbols
    card = ClusterCard(
        cluster=cluster,
        status=status,
        summary=summary,
        show_text=show_text,
        members=symbols[:MEMBERS_SHOWN],
        members_more=max(0, len(symbols) - MEMBERS_SHOWN),
        stability=(
            f"{cluster.stability:.2f} ({stability_band(cluster.stability)})"
            if cluster.stability is not None
            else "not measured"
        ),
        depleted=[t.term_name for t in depleted or []],
        terms=[
            TermRow(
                term_id=t.term_id,
                name=t.term_name,
                category=t.category,
                fdr=f"{t.fdr:.2g}",
                overlap=t.overlap,
                term_size=t.term_size,
                fold=f"{t.fold_enrichment:.1f}",
            )
            for t in terms
        ],
    )
    if summary is not None and staff:
        card.admin_url = reverse("admin:llm_clustersummary_change", args=[summary.pk])
    if summary is not None and show_text:
        content = summary.content or {}
        card.text = summary.summary_text or str(content.get("summary", ""))
        card.themes = list(content.get("key_themes") or content.get("key_phenotype_themes") or [])
        card.pathways = list(content.get("pathways") or [])
        card.pattern = str(
            content.get("clinical_pattern") or content.get("clinical_relevance") or ""
        )
        card.note = str(content.get("data_quality_note") or "")
        card.tags = list(summary.tags or content.get("tags") or [])
    return card


@require_GET
def report_index(request: HttpRequest) -> HttpResponse:
    """``GET /reports/``: clustering runs, newest first, 50 per page, with dataset, status,
    cluster count and the summary totals of each run."""
    denied = _access_denied(request)
    if denied is not None:
        return denied
    page = Paginator(run_list(), 50).get_page(request.GET.get("page"))
    rows = [(run, run_job(run=run)) for run in page]
    return render(
        request,
        "llm/reports/report_index.html",
        {"page": page, "rows": rows, "staff": _reader_is_staff(request)},
    )


@require_GET
def run_report(request: HttpRequest, run_id: int) -> HttpResponse:
    """``GET /reports/runs/<id>/``: header (dataset, release, parameters, status, totals), a
    figure of every cluster's size coloured by review status (inline SVG), then one card per
    cluster (summary, badges, top non-redundant terms with FDR, members).

    Query parameters: ``status`` (validated | pending | rejected | none) filters the cards,
    ``page`` pages them (60 per page).
    """
    denied = _access_denied(request)
    if denied is not None:
        return denied
    run = get_object_or_404(ClusteringRun.objects.select_related("dataset"), pk=run_id)
    staff = _reader_is_staff(request)
    clusters = list(cluster_list(run=run))
    for cluster in clusters:
        cluster.run = run  # the summary lookup reads each cluster's type from its run
    summaries = summary_current_any_status(clusters=clusters)
    status_of = {c.pk: _status_of(summaries.get(c.pk)) for c in clusters}

    counts = {s: 0 for s in STATUS_ORDER}
    for status in status_of.values():
        counts[status] += 1
    n = len(clusters) or 1
    legend = [
        {"status": s, "count": counts[s], "percent": 100.0 * counts[s] / n} for s in STATUS_ORDER
    ]

    chosen = request.GET.get("status", "")
    if chosen not in STATUS_ORDER:
        chosen = ""
    listed = [c for c in clusters if not chosen or status_of[c.pk] == chosen]
    page = Paginator(listed, CARDS_PER_PAGE).get_page(request.GET.get("page"))
    page_clusters: list[Cluster] = list(page.object_list)

    # a bar links to its card: on this page, on another page of this view, or unfiltered
    page_of_listed = {c.pk: i // CARDS_PER_PAGE + 1 for i, c in enumerate(listed)}
    page_of_all = {c.pk: i // CARDS_PER_PAGE + 1 for i, c in enumerate(clusters)}
    on_page = {c.pk for c in page_clusters}

    def href(cluster: Cluster) -> str:
        anchor = f"#cluster-{cluster.number}"
        if cluster.pk in on_page:
            return anchor
        if cluster.pk in page_of_listed:
            return f"?status={chosen}&page={page_of_listed[cluster.pk]}{anchor}"
        return f"?page={page_of_all[cluster.pk]}{anchor}"

    marks = [
        ClusterMark(
            number=c.number,
            size=c.size,
            status=status_of[c.pk],
            label=f"Cluster {c.number}: {c.size} members, "
            f"{status_of[c.pk] if status_of[c.pk] != 'none' else 'no summary'}",
            href=href(c),
        )
        for c in clusters
    ]
    terms = cluster_display_terms(clusters=page_clusters, limit=TERMS_SHOWN)
    depleted = cluster_display_terms(clusters=page_clusters, limit=2, direction="depleted")
    cards = [
        _card(
            c,
            summaries.get(c.pk),
            terms.get(c.pk, []),
            staff=staff,
            depleted=depleted.get(c.pk, []),
        )
        for c in page_clusters
    ]
    dataset = run.dataset
    job = run_job(run=run)
    clustered = sum(c.size for c in clusters)
    context = {
        "run": run,
        "dataset": dataset,
        "staff": staff,
        "job": job,
        "params": sorted(run.params.items()),
        "figure": cluster_bars_svg(
            marks, title=f"Run {run.pk}: size of each cluster, coloured by review status"
        ),
        "legend": legend,
        "chosen": chosen,
        "cards": cards,
        "page": page,
        "n_clusters": len(clusters),
        "n_clustered": clustered,
        "n_unclustered": len(run.unclustered or []),
        "licence_notice": dataset_licence_notice(dataset),
        "admin_run_url": reverse("admin:clustering_clusteringrun_change", args=[run.pk])
        if staff
        else "",
    }
    return render(request, "llm/reports/run_report.html", context)
