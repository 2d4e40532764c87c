"""The curators' review desk: summaries with status and verdict badges, filters, search, a
detail page with content, cluster enrichment, judge reasoning and audit trail, and review
actions; jobs, tasks and provider calls are read-only.

Nobody edits a summary's fields by hand: every status change goes through
``summary_status_set`` (which writes a ``ValidationEvent`` with the acting user and locks the
status against reruns) and regeneration through ``summary_regenerate``. Both need the change
permission on cluster summaries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.views.decorators.http import require_POST

from clustering.admin import (
    ActionsOnlyAdmin,
    ReadOnlyAdmin,
    acknowledgement_html,
    badge,
    cluster_quality_html,
)
from clustering.domain.stability import stability_band
from clustering.models import Cluster, Dataset, TermEnrichment
from clustering.selectors import cluster_display_terms, dataset_licence_notice

from . import schedule_admin  # noqa: F401  (re-registers the beat schedules' admin)
from .models import (
    BatchItem,
    ClusterSummary,
    Deployment,
    GenerationJob,
    LLMCall,
    ProviderBatch,
    SummaryTask,
    ValidationEvent,
    ValidationStatus,
)
from .services.review import ReviewError, summary_regenerate, summary_status_set

#: Enrichment terms shown on a summary's page.
DETAIL_TERMS = 15
#: Tags offered by the tag filter (the most used ones; any tag works in the URL).
TAGS_OFFERED = 25

#: Content keys shown on a summary's page, in order, with their labels (functional and
#: phenotype summaries share some; absent keys are skipped).
CONTENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("key_themes", "Key themes"),
    ("key_phenotype_themes", "Phenotype themes"),
    ("pathways", "Pathways"),
    ("clinical_pattern", "Clinical pattern"),
    ("clinical_relevance", "Clinical relevance"),
    ("syndromicity", "Syndromicity"),
    ("syndrome_hints", "Syndrome hints"),
    ("inheritance_patterns", "Inheritance"),
    ("notably_absent", "Notably absent"),
    ("tags", "Tags"),
    ("data_quality_note", "Data quality note"),
)

_MUTED = "color:#59636e"


def _short(value: Any, limit: int = 200) -> str:
    """A correction's value as one line: lists joined, long text cut."""
    text = value if isinstance(value, str) else ", ".join(str(v) for v in value or []) or "-"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def status_badge_html(obj: ClusterSummary) -> SafeString:
    """Status badge (``badge status-<status>``, ``data-summary-id``) plus a lock badge when a
    curator set the status."""
    status = badge(
        f"status-{obj.validation_status}",
        obj.validation_status,
        data_summary_id=obj.pk,
        data_role="status",
    )
    if not obj.human_locked:
        return status
    lock = badge(
        "lock",
        "locked",
        data_summary_id=obj.pk,
        data_role="lock",
        title="status set by a curator; reruns of this composition keep it",
    )
    return format_html("{} {}", status, lock)


def verdict_badge_html(obj: ClusterSummary) -> SafeString:
    """Judge verdict badge (``badge verdict-<verdict>``) or a dash when not judged."""
    if not obj.judge_verdict:
        return format_html('<span style="{}">{}</span>', _MUTED, "not judged")
    return badge(
        f"verdict-{obj.judge_verdict}",
        obj.get_judge_verdict_display(),
        data_summary_id=obj.pk,
        data_role="verdict",
    )


def _chips(values: Iterable[Any], *, mono: bool = False) -> SafeString:
    style = (
        "display:inline-block;margin:0 4px 4px 0;padding:0 6px;border:1px solid #d1d9e0;"
        "border-radius:4px;font-size:12px"
    )
    if mono:
        style += ";font-family:monospace"
    return format_html_join("", '<span style="{}">{}</span>', ((style, str(v)) for v in values))


def _table(rows: list[tuple[str, SafeString]]) -> SafeString:
    body = format_html_join(
        "",
        '<tr><th style="width:11em;padding:4px 10px 4px 0;vertical-align:top;{}">{}</th>'
        '<td style="padding:4px 0">{}</td></tr>',
        ((_MUTED, label, value) for label, value in rows),
    )
    return format_html('<table style="width:100%;border:0">{}</table>', body)


class TagListFilter(admin.SimpleListFilter):
    """Filter by one tag of the summary's ``tags`` list (the most used tags are offered)."""

    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        counts: Counter[str] = Counter()
        for tags in ClusterSummary.objects.values_list("tags", flat=True).iterator():
            counts.update(t for t in tags or [] if isinstance(t, str))
        return [(tag, f"{tag} ({n})") for tag, n in counts.most_common(TAGS_OFFERED)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if connections[queryset.db].features.supports_json_field_contains:
            return queryset.filter(tags__contains=[value])
        # SQLite has no JSON containment: match the quoted element in the JSON text
        return queryset.filter(tags__icontains=json.dumps(value))


class ValidationEventInline(admin.TabularInline):
    """The audit trail of a summary: every status change, by whom, from and to, with the note."""

    model = ValidationEvent
    fields = ("created_at", "source", "user", "transition", "note")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name = "audit event"
    verbose_name_plural = "audit trail"

    @admin.display(description="change")
    def transition(self, obj: ValidationEvent) -> SafeString:
        before = (
            badge(f"status-{obj.from_status}", obj.from_status)
            if obj.from_status
            else format_html("{}", "—")
        )
        return format_html("{} → {}", before, badge(f"status-{obj.to_status}", obj.to_status))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # whoever may see the summary may see its audit trail
        return request.user.has_perm("llm.view_clustersummary") or request.user.has_perm(
            "llm.change_clustersummary"
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


#: The extractive label, shown as a chip on the list instead of repeated in every excerpt.
_EXTRACTIVE_PREFIX = "[Extractive summary, no LLM] "
#: Evidence terms prefetched per listed summary (the list shows 2, the quick view all).
QUICK_VIEW_TERMS = 5
QUICK_VIEW_MEMBERS = 40


class ReviewActionForm(ActionForm):
    """The admin's action bar with a note that goes into every audit entry of a bulk action."""

    note = forms.CharField(
        required=False,
        max_length=2000,
        label="Note",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "note for the audit trail"}),
    )


class SummaryChangeList(ChangeList):
    """The review list; after the page is chosen, each summary on it gets its cluster's first
    evidence terms (``_evidence``) with one query for the whole page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        summaries = list(self.result_list)
        clusters = [s.cluster for s in summaries if s.cluster is not None]
        terms = cluster_display_terms(clusters=clusters, limit=QUICK_VIEW_TERMS)
        for summary in summaries:
            summary._evidence = terms.get(summary.cluster_id, []) if summary.cluster_id else []


def _first_sentence(summary: ClusterSummary) -> tuple[str, bool]:
    """(the summary's distinctive first sentence, whether it is an extractive summary)."""
    text = summary.summary_text or str((summary.content or {}).get("summary", ""))
    extractive = text.startswith(_EXTRACTIVE_PREFIX)
    text = text.removeprefix(_EXTRACTIVE_PREFIX)
    first = text.split(". ")[0].strip()
    if not first:
        themes = (summary.content or {}).get("key_themes") or (summary.content or {}).get(
            "key_phenotype_themes"
        )
        first = "; ".join(str(t) for t in themes or [])
    return first, extractive


@admin.register(ClusterSummary)
class ClusterSummaryAdmin(ActionsOnlyAdmin):
    """Summaries for review; statuses change only through the actions and the review form."""

    list_display = (
        "id",
        "cluster_short",
        "excerpt",
        "evidence",
        "quality",
        "review_state",
        "review",
    )
    list_display_links = ("id",)
    action_form = ReviewActionForm

    class Media:
        css = {"all": ("llm/review.css",)}

    list_filter = (
        "validation_status",
        "judge_verdict",
        "cluster_type",
        TagListFilter,
        "model",
        "human_locked",
        "is_current",
        "dataset",
    )
    list_select_related = ("dataset", "cluster", "cluster__run")
    search_fields = ("summary_text", "judge_reasoning", "=composition_hash")
    search_help_text = (
        "Gene symbols (every word must be a member, e.g. SCN1A SCN2A) or words of the summary "
        "or judge reasoning."
    )
    list_per_page = 50
    actions = ["validate", "reject", "mark_pending", "regenerate"]
    inlines = [ValidationEventInline]
    fieldsets = (
        (
            "Review state",
            {"fields": ("status", "verdict", "lock", "validated_by", "validated_at")},
        ),
        ("Summary", {"fields": ("content_display", "confidence_display")}),
        (
            "Cluster",
            {
                "fields": (
                    "cluster_ref",
                    "dataset",
                    "acknowledgement",
                    "cluster_quality",
                    "member_list",
                    "top_terms",
                    "depleted_terms",
                )
            },
        ),
        ("Judge", {"fields": ("judge_display", "corrections_display")}),
        (
            "Provenance",
            {
                "classes": ("collapse",),
                "fields": (
                    "provider",
                    "model",
                    "prompt_version",
                    "generated_at",
                    "attempts",
                    "input_tokens",
                    "output_tokens",
                    "cost_usd",
                    "cluster_type",
                    "composition_hash",
                    "is_current",
                    "validation_failures",
                ),
            },
        ),
    )

    # --- list columns and detail fields -------------------------------------------------------

    @admin.display(description="status", ordering="validation_status")
    def status(self, obj: ClusterSummary) -> SafeString:
        return status_badge_html(obj)

    @admin.display(description="judge", ordering="judge_verdict")
    def verdict(self, obj: ClusterSummary) -> SafeString:
        return verdict_badge_html(obj)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SummaryChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClusterSummary]:
        return (
            super()
            .get_queryset(request)
            .select_related("dataset", "cluster", "cluster__run", "validated_by")
            .prefetch_related(
                Prefetch(
                    "events",
                    queryset=ValidationEvent.objects.select_related("user").order_by("id"),
                )
            )
        )

    @admin.display(description="summary")
    def excerpt(self, obj: ClusterSummary) -> SafeString:
        first, extractive = _first_sentence(obj)
        return format_html(
            '<a class="excerpt" href="{}" style="display:inline-block">{}</a>'
            '<div class="provenance" style="{}">{}{} · {}</div>',
            reverse("admin:llm_clustersummary_change", args=[obj.pk]),
            Truncator(first).chars(220) or "(empty)",
            _MUTED,
            obj.model,
            " (extractive, no LLM)" if extractive else "",
            obj.generated_at.strftime("%Y-%m-%d"),
        )

    @admin.display(description="evidence")
    def evidence(self, obj: ClusterSummary) -> SafeString:
        terms = getattr(obj, "_evidence", [])[:2]
        if not terms:
            return format_html('<span style="{}">-</span>', _MUTED)
        return format_html_join(
            "",
            '<div class="evidence-term" style="white-space:nowrap;max-width:22em;overflow:hidden;'
            'text-overflow:ellipsis" title="{0}">{0} <span style="{1}">{2}</span></div>',
            ((t.term_name, _MUTED, f"FDR {t.fdr:.0e}") for t in terms),
        )

    @admin.display(description="confidence · stability", ordering="cluster__stability")
    def quality(self, obj: ClusterSummary) -> SafeString:
        cluster = obj.cluster
        level = obj.derived_confidence or (cluster.derived_confidence if cluster else "")
        stability = cluster.stability if cluster is not None else None
        return format_html(
            '{} <span style="{}" title="{}">{}</span>',
            badge(f"confidence-{level or 'none'}", level or "-", data_role="confidence"),
            _MUTED,
            stability_band(stability),
            "-" if stability is None else f"{stability:.2f}",
        )

    @admin.display(description="status · judge", ordering="validation_status")
    def review_state(self, obj: ClusterSummary) -> SafeString:
        return format_html(
            '<div style="white-space:nowrap">{}</div><div style="margin-top:3px">{}</div>',
            status_badge_html(obj),
            verdict_badge_html(obj),
        )

    @admin.display(description="model · date", ordering="generated_at")
    def model_and_date(self, obj: ClusterSummary) -> SafeString:
        return format_html(
            '{}<div style="{}">{}</div>', obj.model, _MUTED, obj.generated_at.strftime("%Y-%m-%d")
        )

    @admin.display(description="review")
    def review(self, obj: ClusterSummary) -> SafeString:
        """The row's one-click review buttons (pending rows) and its quick view."""
        return format_html("{}{}", self.review_buttons(obj), self.quick_view(obj))

    def review_buttons(self, obj: ClusterSummary) -> SafeString:
        """One-click validate / reject for pending rows: submit buttons of the list's own form
        (it carries the CSRF token) aimed at the review URL, which records an audit event."""
        if obj.validation_status != ValidationStatus.PENDING:
            return SafeString("")
        target = reverse("admin:llm_clustersummary_review", args=[obj.pk]) + "?next=list"
        return format_html(
            '<button type="submit" class="button review-validate" formaction="{0}" '
            'name="decision" value="validated" data-summary-id="{1}">Validate</button> '
            '<button type="submit" class="button review-reject" formaction="{0}" '
            'name="decision" value="rejected" data-summary-id="{1}">Reject</button><br>',
            target,
            obj.pk,
        )

    def quick_view(self, obj: ClusterSummary) -> SafeString:
        """Members, evidence, the judge's reasoning and the audit trail, in a collapsible
        block of the row (no page change)."""
        members = obj.members or []
        shown = members[:QUICK_VIEW_MEMBERS]
        more = len(members) - len(shown)
        terms = getattr(obj, "_evidence", [])
        events = list(obj.events.all())
        return format_html(
            '<details class="quick-view" data-summary-id="{}"><summary>view</summary>'
            '<div class="quick-view-body" style="max-width:40em;white-space:normal">'
            "<div><b>Members</b> ({}): {}{}</div>"
            "<div><b>Evidence</b><ol>{}</ol></div>"
            '<div><b>Judge</b> {}: <span class="judge-reasoning">{}</span></div>'
            '<div><b>Audit trail</b><ul class="audit">{}</ul></div></div></details>',
            obj.pk,
            len(members),
            ", ".join(str(m) for m in shown),
            f" and {more} more" if more > 0 else "",
            format_html_join(
                "",
                "<li>{} <span style='{}'>({}/{} members, FDR {})</span></li>",
                (
                    (
                        t.term_name,
                        _MUTED,
                        t.overlap,
                        obj.cluster.size if obj.cluster else "?",
                        f"{t.fdr:.1e}",
                    )
                    for t in terms
                ),
            )
            or SafeString("<li>none</li>"),
            obj.get_judge_verdict_display() or "no verdict",
            Truncator(obj.judge_reasoning or "").chars(600) or "-",
            format_html_join(
                "",
                "<li>{} · {} · {} &rarr; {}{}</li>",
                (
                    (
                        e.created_at.strftime("%Y-%m-%d %H:%M"),
                        e.user.get_username() if e.user else e.source,
                        e.from_status or "-",
                        e.to_status,
                        format_html(": {}", Truncator(e.note).chars(200)) if e.note else "",
                    )
                    for e in events
                ),
            )
            or SafeString("<li>none</li>"),
        )

    @admin.display(description="cluster")
    def cluster_ref(self, obj: ClusterSummary) -> SafeString:
        cluster = obj.cluster
        if cluster is None:
            return format_html('<span style="{}">{}</span>', _MUTED, "deleted")
        return format_html(
            '<a href="{}">run {} · cluster {}</a> <span style="{}">({} members)</span>',
            reverse("reports:run", args=[cluster.run_id]) + f"#cluster-{cluster.number}",
            cluster.run_id,
            cluster.number,
            _MUTED,
            cluster.size,
        )

    @admin.display(description="cluster", ordering="cluster__run_id")
    def cluster_short(self, obj: ClusterSummary) -> SafeString:
        cluster = obj.cluster
        if cluster is None:
            return format_html('<span style="{}">{}</span>', _MUTED, "deleted")
        return format_html(
            '<a href="{}" style="white-space:nowrap">#{} · {} genes</a>'
            '<div style="{};white-space:nowrap">run {} · {}</div>',
            reverse("reports:run", args=[cluster.run_id]) + f"#cluster-{cluster.number}",
            cluster.number,
            cluster.size,
            _MUTED,
            cluster.run_id,
            obj.dataset.slug if obj.dataset else obj.cluster_type,
        )

    @admin.display(description="lock")
    def lock(self, obj: ClusterSummary) -> SafeString:
        if obj.human_locked:
            who = obj.validated_by.get_username() if obj.validated_by else "a curator"
            return format_html(
                "{} set by {}: reruns of this composition keep this status",
                badge("lock", "locked", data_summary_id=obj.pk, data_role="lock"),
                who,
            )
        return format_html(
            '<span style="{}">{}</span>',
            _MUTED,
            "not locked: the status comes from the judge; a forced regeneration may replace it",
        )

    @admin.display(description="content")
    def content_display(self, obj: ClusterSummary) -> SafeString:
        content = obj.content or {}
        text = obj.summary_text or str(content.get("summary", ""))
        rows: list[tuple[str, SafeString]] = []
        for key, label in CONTENT_FIELDS:
            value = content.get(key)
            if key == "tags" and not value:
                value = obj.tags
            if value in (None, "", []):
                continue
            if isinstance(value, list):
                rows.append((label, _chips(value)))
            else:
                rows.append((label, format_html("{}", value)))
        return format_html(
            '<div class="summary-content" style="max-width:60em">'
            '<p style="font-size:14px;line-height:1.5;margin:0 0 10px">{}</p>{}</div>',
            text or "(no summary text)",
            _table(rows),
        )

    @admin.display(description="confidence")
    def confidence_display(self, obj: ClusterSummary) -> str:
        return (
            f"model says {obj.confidence or 'n/a'}; "
            f"from the enrichment {obj.derived_confidence or 'n/a'}"
        )

    @admin.display(description="members")
    def member_list(self, obj: ClusterSummary) -> SafeString:
        members = obj.members or []
        return format_html(
            '<div style="margin-bottom:4px;{}">{} members</div>{}',
            _MUTED,
            len(members),
            _chips(members, mono=True),
        )

    def _cluster_for(self, obj: ClusterSummary) -> Cluster | None:
        if obj.cluster is not None:
            return obj.cluster
        # the writing cluster was deleted: any cluster with the same composition has the terms
        return (
            Cluster.objects.filter(
                composition_hash=obj.composition_hash, run__cluster_type=obj.cluster_type
            )
            .order_by("-run_id")
            .first()
        )

    def _term_table(self, cluster: Cluster, direction: str) -> SafeString:
        terms = TermEnrichment.objects.filter(
            cluster=cluster, direction=direction, evidence_rank__isnull=False
        ).order_by("evidence_rank", "fdr", "category", "term_id")[:DETAIL_TERMS]
        if not terms:  # a cluster stored before evidence selection: lowest FDRs
            terms = TermEnrichment.objects.filter(cluster=cluster, direction=direction).order_by(
                "fdr", "term_id"
            )[:DETAIL_TERMS]
        cell = "padding:3px 10px 3px 0;border-bottom:1px solid rgba(128,128,128,.2)"
        rows = format_html_join(
            "",
            '<tr class="term-row"><td style="{0}">{1}</td><td style="{0}"><code>{2}</code></td>'
            '<td style="{0}">{3}</td><td style="{0};text-align:right">{4}/{5} ({6})</td>'
            '<td style="{0};text-align:right">{7}</td><td style="{0};text-align:right">{8}</td>'
            '<td style="{0};text-align:right">{9}</td><td style="{0};text-align:right">{10}</td>'
            "</tr>",
            (
                (
                    cell,
                    t.category,
                    t.term_id,
                    t.term_name,
                    t.overlap,
                    cluster.size,
                    f"{t.overlap / cluster.size:.0%}" if cluster.size else "-",
                    t.term_size,
                    f"{t.fdr:.2g}",
                    f"{t.fold_enrichment:.1f}",
                    t.represents or "-",
                )
                for t in terms
            ),
        )
        if not rows:
            return format_html(
                '<span style="{}">{}</span>', _MUTED, f"no {direction} term at FDR < 0.05"
            )
        head = (
            "<tr><th>category</th><th>term</th><th>name</th><th>in cluster</th>"
            "<th>in dataset</th><th>FDR</th><th>fold</th><th>stands for</th></tr>"
        )
        return format_html(
            '<table class="enrichment-terms {}" style="border-collapse:collapse">{}{}</table>',
            direction,
            SafeString(head),
            rows,
        )

    @admin.display(description=f"evidence: first {DETAIL_TERMS} non-redundant enriched terms")
    def top_terms(self, obj: ClusterSummary) -> SafeString:
        cluster = self._cluster_for(obj)
        if cluster is None:
            return format_html('<span style="{}">{}</span>', _MUTED, "no cluster left")
        return self._term_table(cluster, "enriched")

    @admin.display(description="depleted terms (under-represented)")
    def depleted_terms(self, obj: ClusterSummary) -> SafeString:
        cluster = self._cluster_for(obj)
        if cluster is None:
            return format_html('<span style="{}">{}</span>', _MUTED, "no cluster left")
        return self._term_table(cluster, "depleted")

    @admin.display(description="cluster quality")
    def cluster_quality(self, obj: ClusterSummary) -> SafeString:
        cluster = self._cluster_for(obj)
        if cluster is None:
            return format_html('<span style="{}">{}</span>', _MUTED, "no cluster left")
        return cluster_quality_html(cluster)

    @admin.display(description="judge corrections applied")
    def corrections_display(self, obj: ClusterSummary) -> SafeString:
        if not obj.corrections:
            return format_html('<span style="{}">{}</span>', _MUTED, "none")
        return format_html(
            '<ul class="corrections">{}</ul>',
            format_html_join(
                "",
                "<li><b>{}</b>: <s>{}</s> &rarr; {}</li>",
                (
                    (c.get("field", ""), _short(c.get("before")), _short(c.get("after")))
                    for c in obj.corrections
                ),
            ),
        )

    @admin.display(description="data source")
    def acknowledgement(self, obj: ClusterSummary) -> SafeString:
        return acknowledgement_html(obj.dataset)

    @admin.display(description="verdict, reasoning and scores")
    def judge_display(self, obj: ClusterSummary) -> SafeString:
        scores = obj.judge_scores or {}
        score_rows = format_html_join(
            "",
            '<tr><td style="padding:2px 12px 2px 0">{}</td><td style="color:{}">{}</td></tr>',
            (
                (
                    key.replace("_", " "),
                    "#1a7f37" if value is True else "#cf222e" if value is False else "inherit",
                    "yes" if value is True else "no" if value is False else str(value),
                )
                for key, value in scores.items()
                if key != "rubric"
            ),
        )
        rubric = scores.get("rubric")
        if isinstance(rubric, dict):
            score_rows = format_html(
                "{}<tr><td>rubric</td><td>{}</td></tr>",
                score_rows,
                ", ".join(f"{k.replace('_', ' ')} {v}/2" for k, v in rubric.items()),
            )
        failures = obj.validation_failures or []
        return format_html(
            '<div style="max-width:60em">{} <span style="{}">{} {}</span>'
            '<p class="judge-reasoning" style="margin:8px 0">{}</p>'
            '<table style="border:0">{}</table>{}</div>',
            verdict_badge_html(obj),
            _MUTED,
            obj.judge_model or "",
            obj.judge_prompt_version or "",
            obj.judge_reasoning or "No reasoning recorded.",
            score_rows,
            format_html(
                '<p style="{}">Validation failures of earlier attempts: {}</p>',
                _MUTED,
                "; ".join(str(f) for f in failures),
            )
            if failures
            else "",
        )

    # --- search -------------------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ClusterSummary], search_term: str
    ) -> tuple[QuerySet[ClusterSummary], bool]:
        """Text search (summary, reasoning, exact hash) OR gene-symbol search: every word is a
        member symbol (case-insensitive, whole symbol: "SCN1A" does not match "SCN1AB")."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        words = search_term.split()
        if not words:
            return found, may_have_duplicates
        genes = Q()
        for word in words:
            genes &= Q(members__icontains=json.dumps(word))
        return found | queryset.filter(genes), may_have_duplicates

    # --- list page ----------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list, with the licence notice of every dataset that has summaries (each
        dataset's own licence field)."""
        notices = [
            (dataset, dataset_licence_notice(dataset))
            for dataset in Dataset.objects.filter(summaries__isnull=False).distinct()
        ]
        context = {**(extra_context or {}), "licence_notices": [n for n in notices if n[1]]}
        return super().changelist_view(request, extra_context=context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The read-only detail page, with a review form for users who may change statuses."""
        context = {
            **(extra_context or {}),
            "can_review": self.can_act(request),
            "review_choices": [
                ("validated", "Validate"),
                ("rejected", "Reject"),
                ("pending", "Mark pending"),
                ("regenerate", "Regenerate"),
            ],
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

    # --- review form and actions --------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        review: Callable[..., HttpResponse] = self.admin_site.admin_view(
            require_POST(self.review_view)
        )
        own = [path("<path:object_id>/review/", review, name="llm_clustersummary_review")]
        return own + super().get_urls()

    def review_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST ``decision`` (validated | rejected | pending | regenerate) and an optional
        ``note`` for one summary; redirects back to its page with a message."""
        if not self.can_act(request):
            raise PermissionDenied
        summary = self.get_object(request, unquote(object_id))
        if summary is None:
            raise Http404("no such summary")
        decision = request.POST.get("decision", "")
        note = request.POST.get("note", "").strip()
        try:
            if decision == "regenerate":
                job = summary_regenerate(summary_id=summary.pk, user=request.user)
                self.message_user(
                    request,
                    f"Regeneration of summary {summary.pk} queued (job {job.pk}).",
                    messages.SUCCESS,
                )
            elif decision in ValidationStatus.values:
                summary_status_set(
                    summary_id=summary.pk, status=decision, user=request.user, note=note
                )
                self.message_user(
                    request,
                    f"Summary {summary.pk} is now {decision}; the status is locked.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, "Choose a review decision.", messages.ERROR)
        except ReviewError as exc:
            self.message_user(request, f"Not changed: {exc.message}", messages.ERROR)
        if request.GET.get("next") == "list":
            back = request.META.get("HTTP_REFERER", "")
            if not url_has_allowed_host_and_scheme(
                back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            ) or not back.split("?")[0].endswith(reverse("admin:llm_clustersummary_changelist")):
                back = reverse("admin:llm_clustersummary_changelist")
            return HttpResponseRedirect(back)
        return HttpResponseRedirect(reverse("admin:llm_clustersummary_change", args=[summary.pk]))

    def _set_status(
        self, request: HttpRequest, queryset: QuerySet[ClusterSummary], status: str
    ) -> None:
        ids = list(queryset.order_by("id").values_list("pk", flat=True))
        note = request.POST.get("note", "").strip()
        try:
            for summary_id in ids:
                summary_status_set(
                    summary_id=summary_id, status=status, user=request.user, note=note
                )
        except ReviewError as exc:
            self.message_user(request, f"Not changed: {exc.message}", messages.ERROR)
            return
        noted = f' with the note "{Truncator(note).chars(60)}"' if note else ""
        self.message_user(
            request,
            f"{len(ids)} summar{'y' if len(ids) == 1 else 'ies'} set to {status} by "
            f"{request.user.get_username()}{noted}; locked against reruns.",
            messages.SUCCESS,
        )

    @admin.action(description="Validate selected summaries", permissions=["change"])
    def validate(self, request: HttpRequest, queryset: QuerySet[ClusterSummary]) -> None:
        """Set the selected summaries validated (audited, locked)."""
        self._set_status(request, queryset, ValidationStatus.VALIDATED)

    @admin.action(description="Reject selected summaries", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[ClusterSummary]) -> None:
        """Set the selected summaries rejected (audited, locked)."""
        self._set_status(request, queryset, ValidationStatus.REJECTED)

    @admin.action(description="Mark selected summaries pending", permissions=["change"])
    def mark_pending(self, request: HttpRequest, queryset: QuerySet[ClusterSummary]) -> None:
        """Set the selected summaries back to pending (audited, locked)."""
        self._set_status(request, queryset, ValidationStatus.PENDING)

    @admin.action(description="Regenerate selected summaries", permissions=["change"])
    def regenerate(self, request: HttpRequest, queryset: QuerySet[ClusterSummary]) -> None:
        """Queue a forced regeneration of each selected summary (lifts its lock)."""
        jobs: list[int] = []
        for summary_id in queryset.order_by("id").values_list("pk", flat=True):
            try:
                jobs.append(summary_regenerate(summary_id=summary_id, user=request.user).pk)
            except ReviewError as exc:
                self.message_user(
                    request, f"Summary {summary_id} not regenerated: {exc.message}", messages.ERROR
                )
        if jobs:
            self.message_user(
                request,
                f"Regeneration queued for {len(jobs)} summar{'y' if len(jobs) == 1 else 'ies'} "
                f"(jobs {', '.join(map(str, jobs))}).",
                messages.SUCCESS,
            )


@admin.register(GenerationJob)
class GenerationJobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "run",
        "scope",
        "status",
        "provider",
        "model",
        "total",
        "succeeded",
        "rejected",
        "failed",
        "skipped",
        "cost_usd",
        "unknown_outcome",
        "redrives",
        "progress_message",
    )
    list_filter = ("status", "scope", "provider", "mode")

    @admin.display(description="unknown outcome")
    def unknown_outcome(self, job: GenerationJob) -> str:
        """Calls whose worker died in flight and their projected cost (in the job's cost)."""
        if not job.unknown_calls:
            return "-"
        return f"{job.unknown_calls} call(s), ${job.unknown_cost_usd:.6f} projected (in cost)"


@admin.register(SummaryTask)
class SummaryTaskAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "job",
        "cluster",
        "state",
        "attempts",
        "deliveries",
        "redrives",
        "last_error",
        "updated_at",
    )
    list_filter = ("state",)


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "provider",
        "model",
        "status",
        "attempt",
        "try_number",
        "input_tokens",
        "output_tokens",
        "latency_seconds",
        "cost_usd",
        "projected_cost_usd",
        "created_at",
    )
    list_filter = ("kind", "status", "provider", "model")


class BatchItemInline(admin.TabularInline):
    model = BatchItem
    fields = ("custom_id", "task", "kind", "attempt", "state", "error")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


@admin.register(ProviderBatch)
class ProviderBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "job",
        "provider",
        "kind",
        "round",
        "state",
        "provider_state",
        "request_count",
        "completed_count",
        "failed_count",
        "submitted_at",
        "finished_at",
    )
    list_filter = ("state", "provider", "kind")
    search_fields = ("display_name", "provider_batch_id")
    inlines = [BatchItemInline]


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    """This deployment's instance id, which batch display names and custom ids carry (created
    on first use; listing it here creates it if no batch has yet)."""

    list_display = ("instance_id", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Deployment]:
        from .services.deployment import deployment_identity

        deployment_identity()
        return super().get_queryset(request)
