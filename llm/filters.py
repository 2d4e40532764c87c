"""Query-string filters of the REST API (django-filter).

Summaries: ``validation_status``, ``judge_verdict``, ``cluster_type``, ``tag`` (exact tag),
``gene`` (exact member symbol), ``model``, ``provider``, ``dataset`` (slug), ``is_current``
(default true: history rows only on request). Runs: ``dataset``, ``cluster_type``, ``status``.
Jobs: ``run``, ``scope``, ``status``. Provider calls: ``kind``, ``status``, ``provider``,
``model``, ``job``. Matching of symbols and tags ignores case.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from clustering.models import ClusteringRun, ClusterType, RunStatus
from llm.models import (
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    ProviderBatch,
    ValidationStatus,
    Verdict,
)
from llm.selectors import summaries_with_member, summaries_with_tag


class StrictFilterSet(django_filters.FilterSet):
    """A filter set that refuses an empty value for a typed filter (choice, number, boolean) and
    a boolean other than true/false: ``?status=`` or ``?is_current=maybe`` is a 400 naming the
    filter, as the schema (enums without "", type boolean) says, rather than silently no
    filter. An empty text filter (``?gene=``) still means no filter."""

    def is_valid(self) -> bool:
        valid = bool(super().is_valid())
        for name, flt in self.filters.items():
            if isinstance(flt, django_filters.CharFilter) or name not in self.data:
                continue
            value = str(self.data.get(name, "")).strip()
            booleans = {"true", "false", "True", "False", "1", "0"}
            if isinstance(flt, django_filters.BooleanFilter) and value and value not in booleans:
                # django-filter would read anything else as "unknown" and not filter
                self.form.add_error(name, f"must be true or false, got {value[:20]!r}")
                valid = False
                continue
            if not value and name not in self.form.errors:
                expected = (
                    "one of " + ", ".join(str(choice) for choice, _ in flt.extra["choices"])
                    if isinstance(flt, django_filters.ChoiceFilter)
                    else "a value"
                )
                self.form.add_error(name, f"must be {expected}, not empty")
                valid = False
        return valid


class SummaryFilter(StrictFilterSet):
    """Filters of ``GET /api/summaries/``."""

    validation_status = django_filters.ChoiceFilter(choices=ValidationStatus.choices)
    judge_verdict = django_filters.ChoiceFilter(choices=Verdict.choices)
    cluster_type = django_filters.ChoiceFilter(choices=ClusterType.choices)
    tag = django_filters.CharFilter(method="filter_tag", help_text="Exact tag, any case.")
    gene = django_filters.CharFilter(
        method="filter_gene", help_text="Exact member symbol, any case (e.g. SCN1A)."
    )
    model = django_filters.CharFilter(field_name="model")
    provider = django_filters.CharFilter(field_name="provider")
    dataset = django_filters.CharFilter(field_name="dataset__slug", help_text="Dataset slug.")
    is_current = django_filters.BooleanFilter(
        help_text="Current summaries (default) or, with false, superseded history rows."
    )

    class Meta:
        model = ClusterSummary
        fields = [
            "validation_status",
            "judge_verdict",
            "cluster_type",
            "tag",
            "gene",
            "model",
            "provider",
            "dataset",
            "is_current",
        ]

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        if data is not None and "is_current" not in data:
            data = data.copy()
            data["is_current"] = "true"
        super().__init__(data, *args, **kwargs)

    def filter_tag(
        self, queryset: QuerySet[ClusterSummary], name: str, value: str
    ) -> QuerySet[ClusterSummary]:
        return summaries_with_tag(queryset, tag=value) if value else queryset

    def filter_gene(
        self, queryset: QuerySet[ClusterSummary], name: str, value: str
    ) -> QuerySet[ClusterSummary]:
        return summaries_with_member(queryset, symbol=value) if value else queryset


class RunFilter(StrictFilterSet):
    """Filters of ``GET /api/runs/``."""

    dataset = django_filters.CharFilter(field_name="dataset__slug", help_text="Dataset slug.")
    cluster_type = django_filters.ChoiceFilter(choices=ClusterType.choices)
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)

    class Meta:
        model = ClusteringRun
        fields = ["dataset", "cluster_type", "status"]


class JobFilter(StrictFilterSet):
    """Filters of ``GET /api/jobs/``."""

    run = django_filters.NumberFilter(field_name="run_id")
    scope = django_filters.ChoiceFilter(choices=GenerationJob.Scope.choices)
    status = django_filters.ChoiceFilter(choices=JobStatus.choices)

    class Meta:
        model = GenerationJob
        fields = ["run", "scope", "status"]


class LLMCallFilter(StrictFilterSet):
    """Filters of ``GET /api/calls/``."""

    kind = django_filters.ChoiceFilter(choices=LLMCall.Kind.choices)
    status = django_filters.ChoiceFilter(choices=LLMCall.Status.choices)
    provider = django_filters.CharFilter(field_name="provider")
    model = django_filters.CharFilter(field_name="model")
    job = django_filters.NumberFilter(field_name="job_id")

    class Meta:
        model = LLMCall
        fields = ["kind", "status", "provider", "model", "job"]


class ProviderBatchFilter(StrictFilterSet):
    """Filters of ``GET /api/batches/``."""

    state = django_filters.ChoiceFilter(choices=ProviderBatch.State.choices)
    kind = django_filters.CharFilter(field_name="kind")
    provider = django_filters.CharFilter(field_name="provider")
    job = django_filters.NumberFilter(field_name="job_id")

    class Meta:
        model = ProviderBatch
        fields = ["state", "kind", "provider", "job"]
