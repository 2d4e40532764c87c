"""The curators' review desk: summaries with status and verdict badges, filters, search, a
detail page with content, cluster enrichment, judge reasoning and audit trail, and review
actions (what it shows: :mod:`llm.admin.summary_display`).

Nobody edits a summary's fields by hand: every status change goes through
``summary_status_set`` (which writes a ``ValidationEvent`` with the acting user and locks the
status against reruns) and regeneration through ``summary_regenerate``. Both need the change
permission on cluster summaries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
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
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.views.decorators.http import require_POST

from clustering.admin import ActionsOnlyAdmin, badge
from clustering.models import Dataset
from clustering.selectors import cluster_display_terms, dataset_licence_notice
from llm.admin.summary_display import QUICK_VIEW_TERMS, SummaryDisplay
from llm.models import ClusterSummary, ValidationEvent, ValidationStatus
from llm.services.review import ReviewError, summary_regenerate, summary_status_set

#: Tags offered by the tag filter (the most used ones; any tag works in the URL).
TAGS_OFFERED = 25


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


@admin.register(ClusterSummary)
class ClusterSummaryAdmin(SummaryDisplay, ActionsOnlyAdmin):
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
