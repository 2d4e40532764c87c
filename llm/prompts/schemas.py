"""Pydantic v2 output models: what a generation or judge call must return.

These classes are handed to providers as ``ProviderRequest.output_class``; a provider turns them
into the vendor's structured-output schema (e.g. Gemini ``response_schema``). To stay portable the
models use only plain types, ``Literal`` enums, ``str | None`` and ``min_length``/``max_length`` on
lists: no regex patterns, no numeric bounds, no ``additionalProperties`` tricks, no recursion.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Confidence = Literal["high", "medium", "low"]
Syndromicity = Literal["syndromic", "non_syndromic", "mixed", "unclear"]
Verdict = Literal["accept", "low_confidence", "reject"]

#: Order of confidence levels, lowest first (for comparisons).
CONFIDENCE_ORDER: tuple[Confidence, ...] = ("low", "medium", "high")


class FunctionalSummary(BaseModel):
    """Summary of a functional (GO / pathway) cluster.

    ``key_themes`` holds 3-5 short biological themes, ``tags`` 3-7 lowercase keywords,
    ``pathways`` names copied verbatim from the cluster's pathway-category enrichment terms (may be
    empty), ``clinical_relevance`` one or two sentences or None, ``confidence`` the model's own
    assessment of how well the enrichment supports the summary.
    """

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(
        description="2-4 sentences describing the shared biology, grounded in the enrichment terms."
    )
    key_themes: list[str] = Field(
        min_length=3, max_length=5, description="3-5 short biological themes."
    )
    pathways: list[str] = Field(
        description="Pathway names copied verbatim from the pathway enrichment terms; may be empty."
    )
    tags: list[str] = Field(min_length=3, max_length=7, description="3-7 short lowercase keywords.")
    clinical_relevance: str | None = Field(
        default=None, description="Clinical relevance in 1-2 sentences, or null if unclear."
    )
    confidence: Confidence = Field(
        description="How strongly the enrichment supports this summary: high, medium or low."
    )


class PhenotypeSummary(BaseModel):
    """Summary of a phenotype (HPO) cluster, in clinical language without gene names.

    ``key_phenotype_themes`` 1-5 phenotype themes; ``notably_absent`` phenotype areas one would
    expect but that are not enriched (may be empty); ``clinical_pattern`` one sentence;
    ``syndrome_hints`` and ``inheritance_patterns`` may be empty; ``syndromicity`` one of
    syndromic / non_syndromic / mixed / unclear; ``tags`` 3-7 keywords; ``data_quality_note``
    a caveat about the enrichment (thin data, few terms) or None.
    """

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(
        description="2-4 sentences describing the clinical picture, phenotype terms only."
    )
    key_phenotype_themes: list[str] = Field(
        min_length=1, max_length=5, description="1-5 phenotype themes."
    )
    notably_absent: list[str] = Field(
        description="Phenotype areas notably not enriched in this cluster; may be empty."
    )
    clinical_pattern: str = Field(description="One sentence naming the overall clinical pattern.")
    syndrome_hints: list[str] = Field(
        description="Clinical syndromes the phenotype pattern suggests; may be empty."
    )
    inheritance_patterns: list[str] = Field(
        description="Modes of inheritance supported by enriched terms; may be empty."
    )
    syndromicity: Syndromicity = Field(
        description="syndromic, non_syndromic, mixed or unclear (multi-system vs isolated)."
    )
    tags: list[str] = Field(min_length=3, max_length=7, description="3-7 short lowercase keywords.")
    confidence: Confidence = Field(
        description="How strongly the enrichment supports this summary: high, medium or low."
    )
    data_quality_note: str | None = Field(
        default=None, description="A caveat about the enrichment data, or null."
    )


class JudgeVerdict(BaseModel):
    """A judge's structured verdict on one summary.

    Booleans answer one question each; ``reasoning`` is 2-3 sentences naming what failed (or why
    it passed); ``verdict`` is ``accept`` (publish as validated), ``low_confidence`` (keep, needs
    human review) or ``reject`` (regenerate with the reasoning as feedback).
    """

    model_config = ConfigDict(extra="ignore")

    is_factually_accurate: bool = Field(
        description="True if nothing in the summary contradicts the enrichment data."
    )
    is_grounded: bool = Field(
        description="True if every claim, theme and tag is supported by the enrichment terms."
    )
    pathways_valid: bool = Field(
        description="True if every listed pathway is an enriched pathway term (or none are listed)."
    )
    confidence_appropriate: bool = Field(
        description="True if the self-assessed confidence matches the strength of the enrichment."
    )
    reasoning: str = Field(description="2-3 sentences explaining the verdict.")
    verdict: Verdict = Field(description="accept, low_confidence or reject.")


SummaryModel = FunctionalSummary | PhenotypeSummary


def summary_class_for(cluster_type: str) -> type[FunctionalSummary] | type[PhenotypeSummary]:
    """The output class for a cluster type.

    Args:
        cluster_type: ``"functional"`` or ``"phenotype"``.

    Raises:
        ValueError: for any other cluster type.
    """
    if cluster_type == "functional":
        return FunctionalSummary
    if cluster_type == "phenotype":
        return PhenotypeSummary
    raise ValueError(f"unknown cluster_type {cluster_type!r}; expected 'functional' or 'phenotype'")
