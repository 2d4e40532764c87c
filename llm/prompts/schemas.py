"""Pydantic v2 output models: what a generation or judge call must return.

These classes are handed to providers as ``ProviderRequest.output_class``; a provider turns them
into the vendor's structured-output schema (e.g. Gemini ``response_schema``). To stay portable the
models use only plain types, ``Literal`` enums, ``str | None`` and ``min_length``/``max_length`` on
lists: no regex patterns, no numeric bounds, no ``additionalProperties`` tricks, no recursion.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Confidence = Literal["high", "medium", "low"]
Syndromicity = Literal["syndromic", "non_syndromic", "mixed", "unclear"]
Verdict = Literal["accept", "accept_with_corrections", "low_confidence", "reject"]
#: Modes of inheritance as HPO names them (clustering.domain.traits.INHERITANCE_MODES codes).
InheritanceMode = Literal[
    "autosomal_dominant",
    "autosomal_recessive",
    "x_linked",
    "x_linked_recessive",
    "x_linked_dominant",
    "mitochondrial",
    "y_linked",
    "somatic_mosaicism",
    "sporadic",
    "digenic",
    "polygenic",
]
#: Failures for which a summary is rejected whatever else the judge found.
HardFailure = Literal[
    "molecular_summary",
    "invented_phenotype",
    "direction_inversion",
    "invented_gene",
    "invented_pathway",
]


def _score(value: int) -> int:
    if not 0 <= value <= 2:
        raise ValueError(f"a rubric score is 0, 1 or 2, got {value}")
    return value


def _percent(value: int) -> int:
    if not 0 <= value <= 100:
        raise ValueError(f"a percentage is 0 to 100, got {value}")
    return value


#: 0, 1 or 2 (checked by pydantic, not in the schema: some vendors refuse numeric bounds).
Score = Annotated[int, AfterValidator(_score)]
Percent = Annotated[int, AfterValidator(_percent)]

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
        description="Phenotypes notably under-represented: names of depleted terms; may be empty."
    )
    clinical_pattern: str = Field(description="One sentence naming the overall clinical pattern.")
    syndrome_hints: list[str] = Field(
        description="Clinical syndromes the phenotype pattern suggests; may be empty."
    )
    inheritance_patterns: list[InheritanceMode] = Field(
        description=(
            "Modes of inheritance the inheritance figures support (marked supported); may be empty."
        )
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


#: The rubric's checks, each a ``score_<check>`` field of :class:`JudgeVerdict` scored 0 (failed),
#: 1 (minor problems) or 2 (passed). ``grounding``: claims, themes and tags are supported by the
#: enriched evidence; ``fidelity``: names are faithful (pathways verbatim, only member genes, no
#: invented phenotype or term); ``direction``: nothing depleted is described as a feature and
#: notably_absent lists only depleted terms; ``clinical_language``: a phenotype summary
#: describes phenotypes, not molecular mechanisms (2 for functional clusters);
#: ``supplementary``: inheritance and syndromicity claims match their figures; ``confidence``:
#: the self-assessed confidence matches the derived confidence.
RUBRIC_CHECKS = (
    "grounding",
    "fidelity",
    "direction",
    "clinical_language",
    "supplementary",
    "confidence",
)


class JudgeVerdict(BaseModel):
    """A judge's structured verdict on one summary (judge prompt v2).

    The four booleans answer one question each; the six ``score_*`` fields are the rubric of
    :data:`RUBRIC_CHECKS`, 0-2 each (flat fields: some vendors' schemas refuse nested refs);
    ``grounding_percent`` is the share of the summary's claims grounded in the data (0-100);
    ``hard_failures`` lists the failures that reject a summary outright; ``reasoning`` is 2-3
    sentences. ``verdict``: ``accept`` (publish as validated), ``accept_with_corrections`` (minor
    fixable problems: the ``corrected_*`` fields hold the fixed values, applied and re-validated
    by the server, then validated), ``low_confidence`` (keep, needs human review) or ``reject``
    (regenerate with the reasoning as feedback). ``corrections_made`` describes each correction.
    """

    model_config = ConfigDict(extra="ignore")

    is_factually_accurate: bool = Field(
        description="True if nothing in the summary contradicts the data."
    )
    is_grounded: bool = Field(
        description="True if every claim, theme and tag is supported by the evidence terms."
    )
    pathways_valid: bool = Field(
        description="True if every listed pathway is an enriched pathway term (or none are listed)."
    )
    confidence_appropriate: bool = Field(
        description="True if the self-assessed confidence matches the derived confidence."
    )
    score_grounding: Score = Field(
        description="0, 1 or 2: claims supported by the enriched evidence."
    )
    score_fidelity: Score = Field(
        description="0, 1 or 2: pathways verbatim, member genes only, no invented phenotype."
    )
    score_direction: Score = Field(
        description="0, 1 or 2: depleted terms never described as features."
    )
    score_clinical_language: Score = Field(
        description="0, 1 or 2: phenotypes, not molecular mechanisms (2 for functional)."
    )
    score_supplementary: Score = Field(
        description="0, 1 or 2: inheritance and syndromicity match their figures."
    )
    score_confidence: Score = Field(
        description="0, 1 or 2: self-assessed confidence matches the derived confidence."
    )
    grounding_percent: Percent = Field(
        description="Percentage (0-100) of the summary's claims grounded in the data."
    )
    hard_failures: list[HardFailure] = Field(
        description="Failures that reject the summary outright; empty if none."
    )
    reasoning: str = Field(description="2-3 sentences explaining the verdict.")
    verdict: Verdict = Field(
        description="accept, accept_with_corrections, low_confidence or reject."
    )
    corrections_made: list[str] = Field(
        description="One short sentence per correction made; empty unless corrections are given."
    )
    corrected_summary: str | None = Field(
        default=None, description="A corrected summary text, or null."
    )
    corrected_tags: list[str] | None = Field(
        default=None, description="Corrected tags (3-7), or null."
    )
    corrected_notably_absent: list[str] | None = Field(
        default=None, description="Phenotype clusters: corrected notably_absent, or null."
    )
    corrected_inheritance_patterns: list[InheritanceMode] | None = Field(
        default=None, description="Phenotype clusters: corrected inheritance_patterns, or null."
    )
    corrected_syndromicity: Syndromicity | None = Field(
        default=None, description="Phenotype clusters: corrected syndromicity, or null."
    )

    @property
    def rubric(self) -> dict[str, int]:
        """Check name -> score (0-2), in :data:`RUBRIC_CHECKS` order."""
        return {check: int(getattr(self, f"score_{check}")) for check in RUBRIC_CHECKS}

    @property
    def rubric_total(self) -> int:
        """Sum of the six scores (0..12)."""
        return sum(self.rubric.values())

    def corrections(self) -> dict[str, object]:
        """The summary fields this verdict corrects -> their corrected values (non-null only;
        an empty notably_absent list is a correction, an empty tag list is not)."""
        out: dict[str, object] = {}
        if self.corrected_summary and self.corrected_summary.strip():
            out["summary"] = self.corrected_summary.strip()
        if self.corrected_tags:
            out["tags"] = list(self.corrected_tags)
        if self.corrected_notably_absent is not None:
            out["notably_absent"] = list(self.corrected_notably_absent)
        if self.corrected_inheritance_patterns is not None:
            out["inheritance_patterns"] = list(self.corrected_inheritance_patterns)
        if self.corrected_syndromicity:
            out["syndromicity"] = self.corrected_syndromicity
        return out


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
