"""Admin for datasets, clusters and enrichment (read-only rows), and the admin building blocks
the ``llm`` app's admin uses too: badges, the dataset acknowledgement, the cluster quality
table, the read-only and actions-only base classes.

Rows are written by the pipeline, never by hand: no admin here can add, edit or delete them.
Clustering runs are registered by :mod:`llm.admin.runs`: their admin shows each run's
summarisation and its actions (rerun, cancel) start and stop summaries.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.forms.utils import flatatt
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from clustering.domain.stability import stability_band

from .models import Cluster, Dataset, TermEnrichment
from .selectors import dataset_licence_notice

#: (background, text, border) per badge class; the same class names style the report page.
BADGE_COLOURS: dict[str, tuple[str, str, str]] = {
    "status-validated": ("#1a7f37", "#ffffff", "#1a7f37"),
    "status-pending": ("#d29922", "#1f2328", "#d29922"),
    "status-rejected": ("#cf222e", "#ffffff", "#cf222e"),
    "status-none": ("#eaeef2", "#59636e", "#d1d9e0"),
    "verdict-accept": ("#dafbe1", "#116329", "#aceebb"),
    "verdict-low_confidence": ("#fff8c5", "#7d4e00", "#f5e0a0"),
    "verdict-reject": ("#ffebe9", "#a40e26", "#ffcecb"),
    "lock": ("#ddf4ff", "#0a3069", "#b6e3ff"),
    "run-pending": ("#0969da", "#ffffff", "#0969da"),
    "run-running": ("#0969da", "#ffffff", "#0969da"),
    "run-succeeded": ("#1a7f37", "#ffffff", "#1a7f37"),
    "run-failed": ("#cf222e", "#ffffff", "#cf222e"),
    "run-cancelled": ("#6e7781", "#ffffff", "#6e7781"),
    "confidence-high": ("#dafbe1", "#116329", "#4ac26b"),
    "confidence-medium": ("#fff8c5", "#7d4e00", "#d4a72c"),
    "confidence-low": ("#ffebe9", "#a40e26", "#ff8182"),
}


def badge(css_class: str, label: str, **attrs: Any) -> SafeString:
    """A coloured pill: ``<span class="badge <css_class>" ...>label</span>`` with inline colours
    (the admin has no stylesheet of ours) and extra HTML attributes, e.g. ``data_summary_id=3``
    becomes ``data-summary-id="3"``. Everything is escaped."""
    bg, fg, border = BADGE_COLOURS.get(css_class, ("#eaeef2", "#1f2328", "#d1d9e0"))
    extra = flatatt({k.replace("_", "-"): str(v) for k, v in attrs.items() if v is not None})
    return format_html(
        '<span class="badge {}"{} style="display:inline-block;padding:1px 9px;'
        "border-radius:999px;font-size:11px;font-weight:600;line-height:18px;white-space:nowrap;"
        'background:{};color:{};border:1px solid {}">{}</span>',
        css_class,
        extra,
        bg,
        fg,
        border,
        label,
    )


def acknowledgement_html(dataset: Dataset | None) -> SafeString:
    """The dataset's release and its own licence notice as a highlighted block (the HPO
    datasets' notice is the HPO acknowledgement the HPO asks for wherever its content is
    displayed; go-ndd's is the Gene Ontology and WikiPathways licences)."""
    if dataset is None:
        return format_html("{}", "—")
    return format_html(
        '<div class="licence-notice" style="border-left:4px solid #0969da;'
        'padding:6px 10px;background:rgba(9,105,218,.08)"><strong>{}</strong> · release {}'
        "<br>{}</div>",
        dataset.name or dataset.slug,
        dataset.release or "not recorded",
        dataset_licence_notice(dataset) or "no licence text recorded",
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewing only: rows are written by the pipeline, never by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ActionsOnlyAdmin(admin.ModelAdmin):
    """Read-only rows whose state changes only through admin actions that call services.

    The model's change permission is honoured at list level (so actions declared with
    ``permissions=["change"]`` are offered to users who hold it) and refused for a single
    object, which makes every change page a read-only view that cannot be posted.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def can_act(self, request: HttpRequest) -> bool:
        """The user holds the model's change permission (may run the review actions)."""
        return super().has_change_permission(request)


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ("slug", "name", "kind", "builtin", "release", "entity_count", "term_count")
    list_filter = ("kind", "builtin")
    search_fields = ("slug", "name")
    readonly_fields = ("acknowledgement",)

    @admin.display(description="release and licence")
    def acknowledgement(self, obj: Dataset) -> SafeString:
        return acknowledgement_html(obj)


def cluster_quality_html(cluster: Cluster) -> SafeString:
    """Derived confidence, stability, specificity, modularity z, signature members, inheritance
    and syndromicity of a cluster, as one small table."""
    muted = "color:#59636e"
    stability = (
        f"{cluster.stability:.2f} ({stability_band(cluster.stability)})"
        if cluster.stability is not None
        else "not measured"
    )
    traits = cluster.traits or {}
    modes = [
        f"{m.get('abbreviation') or m.get('name')} {m.get('share', 0):.0%}"
        + (f" ({m['direction']})" if m.get("direction") else "")
        for m in (traits.get("inheritance") or {}).get("modes", [])
        if m.get("supported")
    ]
    syndromicity = traits.get("syndromicity") or {}
    rows = [
        ("derived confidence", cluster.derived_confidence or "-"),
        ("stability (subsample Jaccard)", stability),
        (
            "specificity (Dice of the best term)",
            f"{cluster.specificity:.2f} ({cluster.specificity_term})"
            if cluster.specificity is not None
            else "-",
        ),
        (
            "modularity z (rewired graphs)",
            f"{cluster.modularity_z:.1f}" if cluster.modularity_z is not None else "-",
        ),
        (
            "signature members",
            ", ".join(m["symbol"] for m in (cluster.signature_members or [])[:10]) or "-",
        ),
        ("inheritance (supported modes)", ", ".join(modes) or "-"),
        (
            "syndromicity",
            f"{syndromicity.get('call', '-')}: {syndromicity.get('isolated_share', 0):.0%} "
            f"NDD-predominant (dataset {syndromicity.get('dataset_isolated_share', 0):.0%})"
            if syndromicity
            else "-",
        ),
    ]
    return format_html(
        '<table class="cluster-quality" style="border:0">{}</table>',
        format_html_join(
            "",
            '<tr><td style="padding:2px 12px 2px 0;{}">{}</td><td>{}</td></tr>',
            ((muted, label, value) for label, value in rows),
        ),
    )


class TermEnrichmentInline(admin.TabularInline):
    model = TermEnrichment
    fields = (
        "direction",
        "evidence_rank",
        "category",
        "term_id",
        "term_name",
        "overlap",
        "term_size",
        "fdr",
        "fold_enrichment",
        "represents",
        "hidden_by",
    )
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("direction", "evidence_rank", "fdr")


@admin.register(Cluster)
class ClusterAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "run",
        "number",
        "size",
        "derived_confidence",
        "stability",
        "composition_hash",
    )
    list_filter = ("run__dataset", "run__cluster_type", "derived_confidence")
    search_fields = ("composition_hash", "members__icontains")
    readonly_fields = ("quality_display", "member_list", "acknowledgement")
    inlines = [TermEnrichmentInline]

    @admin.display(description="quality")
    def quality_display(self, obj: Cluster) -> SafeString:
        return cluster_quality_html(obj)

    @admin.display(description="member symbols")
    def member_list(self, obj: Cluster) -> SafeString:
        return format_html_join(" ", "<code>{}</code>", ((s,) for s in obj.member_symbols))

    @admin.display(description="data source")
    def acknowledgement(self, obj: Cluster) -> SafeString:
        return acknowledgement_html(obj.run.dataset)


@admin.register(TermEnrichment)
class TermEnrichmentAdmin(ReadOnlyAdmin):
    list_display = ("cluster", "category", "term_id", "term_name", "overlap", "fdr")
    list_filter = ("category",)
    search_fields = ("term_id", "term_name")
