"""What the review desk shows of a summary: the status and verdict badges, the list's columns
(excerpt, evidence, quality, one-click review buttons and quick view) and the detail page's
fields (content, cluster enrichment, judge reasoning and scores, corrections).

:class:`SummaryDisplay` holds them as admin display methods; :class:`llm.admin.review.
ClusterSummaryAdmin` mixes it in and adds what curators can do. Every value is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from clustering.admin import acknowledgement_html, badge, cluster_quality_html
from clustering.domain.stability import stability_band
from clustering.models import Cluster, TermEnrichment
from clustering.selectors import evidence_terms
from llm.models import ClusterSummary, ValidationStatus

#: Enrichment terms shown on a summary's page.
DETAIL_TERMS = 15

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


#: The extractive label, shown as a chip on the list instead of repeated in every excerpt.
_EXTRACTIVE_PREFIX = "[Extractive summary, no LLM] "
#: Evidence terms prefetched per listed summary (the list shows 2, the quick view all).
QUICK_VIEW_TERMS = 5
QUICK_VIEW_MEMBERS = 40


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


class SummaryDisplay:
    """The list columns and detail fields of :class:`llm.admin.review.ClusterSummaryAdmin`
    (admin display methods, looked up by name from its ``list_display`` and ``fieldsets``)."""

    @admin.display(description="status", ordering="validation_status")
    def status(self, obj: ClusterSummary) -> SafeString:
        return status_badge_html(obj)

    @admin.display(description="judge", ordering="judge_verdict")
    def verdict(self, obj: ClusterSummary) -> SafeString:
        return verdict_badge_html(obj)

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
        terms = evidence_terms(cluster=cluster, direction=direction)[:DETAIL_TERMS]
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
