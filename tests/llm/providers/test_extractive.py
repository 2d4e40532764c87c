"""The extractive provider: grounded, labelled, deterministic summaries and a rule-based judge."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llm.context import PATHWAY_CATEGORIES, ClusterContext, ClusterType
from llm.grounding import find_symbols
from llm.prompts.schemas import FunctionalSummary, JudgeVerdict, PhenotypeSummary
from llm.prompts.templates import (
    LARGE_CLUSTER_SIZE,
    build_generation_prompt,
    build_judge_prompt,
)
from llm.providers.base import Provider, ProviderError, ProviderRequest, ProviderResult
from llm.providers.extractive import (
    EXTRACTIVE_LABEL,
    EXTRACTIVE_LABEL_TAGS,
    THIN_DATA_THEMES,
    ExtractiveProvider,
)
from llm.services.validation import (
    derived_confidence,
    validate_entities,
    validate_summary,
)
from tests.llm.context_helpers import make_ctx, term, traits

FUNCTIONAL_MEMBERS = ["SYNGAP1", "GRIN2B", "SHANK3", "NKX2-1", "PTEN", "DLG4", "CAMK2A", "GRIA2"]
OTHER_GENES = {"TP53", "BRCA1", "SCN1A", "MECP2"}


def functional_ctx() -> ClusterContext:
    """A rich functional cluster: 12 significant terms (10 GO:BP, 2 WikiPathways), stable and
    specific (derived confidence high), one depleted term."""
    terms = [
        term("GO:BP", "GO:0007268", "Chemical Synaptic Transmission", 1e-12, overlap=7),
        term("GO:BP", "GO:0050804", "Modulation Of Chemical Synaptic Transmission", 1e-10),
        term("WikiPathways", "WP4172", "PI3K Akt Signaling Pathway WP4172", 1e-8, overlap=4),
        term("WikiPathways", "WP3584", "MECP2 And Associated Rett Syndrome WP3584", 1e-7),
        term("GO:BP", "GO:0099536", "Synaptic Signaling", 2e-7, overlap=6),
        term("GO:BP", "GO:0031175", "Neuron Projection Development", 5e-7, overlap=5),
        term("GO:BP", "GO:0048167", "Regulation Of Synaptic Plasticity", 1e-6, overlap=4),
        term("GO:BP", "GO:0060291", "Long-Term Synaptic Potentiation", 2e-6, overlap=4),
        term("GO:BP", "GO:0035249", "Synaptic Transmission, Glutamatergic", 3e-6, overlap=4),
        term("GO:BP", "GO:0050808", "Synapse Organization", 4e-6, overlap=4),
        term("GO:BP", "GO:0007611", "Learning Or Memory", 5e-6),
        term("GO:BP", "GO:0001505", "Regulation Of Neurotransmitter Levels", 6e-6),
        term(
            "GO:BP",
            "GO:0006412",
            "Translation",
            1e-3,
            overlap=0,
            term_size=1000,
            fold=0.0,
            direction="depleted",
        ),
    ]
    return make_ctx(
        "functional",
        FUNCTIONAL_MEMBERS,
        terms,
        dataset_symbols=OTHER_GENES,
        derived_confidence="high",
        stability=0.8,
        specificity=0.7,
        signature=("GRIN2B", "SHANK3", "DLG4"),
        dataset_size=2000,
    )


PHENOTYPE_MEMBERS = ["ADNP", "CHD8", "ARID1B", "DYRK1A", "ANKRD11", "KMT2A"]
NERVOUS = ("Abnormality of the nervous system",)
HEAD = ("Abnormality of head or neck",)


def phenotype_ctx() -> ClusterContext:
    """A phenotype cluster: 5 significant HPO terms in two branches, one naming a member; two
    depleted terms; autosomal dominant supported; called syndromic."""
    terms = [
        term("HPO", "HP:0001249", "Intellectual disability", 1e-9, overlap=6, branches=NERVOUS),
        term("HPO", "HP:0000729", "Autistic behavior", 1e-7, overlap=5, branches=NERVOUS),
        term("HPO", "HP:0000316", "Hypertelorism", 1e-6, overlap=4, branches=HEAD),
        term("HPO", "HP:9999999", "CHD8-associated macrocephaly", 5e-6, overlap=2),
        term("HPO", "HP:0001263", "Global developmental delay", 1e-5, overlap=5, branches=NERVOUS),
        term("HPO", "HP:0000252", "Microcephaly", 1e-4, branches=HEAD),
        term("HPO", "HP:0001626", "Abnormality of the cardiovascular system", 1e-3, overlap=0,
             fold=0.0, direction="depleted"),
        term("HPO", "HP:0001939", "Abnormality of metabolism/homeostasis", 2e-3, overlap=0,
             fold=0.0, direction="depleted"),
    ]  # fmt: skip
    return make_ctx(
        "phenotype",
        PHENOTYPE_MEMBERS,
        terms,
        dataset_symbols={"SCN1A", "TP53"},
        traits=traits(supported=("autosomal_dominant",), call="syndromic", isolated_share=0.1),
        derived_confidence="medium",
        stability=0.7,
        specificity=0.4,
        dataset_size=2900,
    )


def generate(ctx: ClusterContext, output_class: type[BaseModel]) -> ProviderResult[Any]:
    """Run the extractive provider on the generation prompt of ``ctx``."""
    system, user = build_generation_prompt(ctx)
    request = ProviderRequest(system, user, output_class, model="extractive")
    return ExtractiveProvider().generate(request)


def judge(
    ctx: ClusterContext,
    summary: BaseModel | dict[str, Any],
    *,
    with_symbols: bool = True,
    max_members: int | None = 1000,
) -> JudgeVerdict:
    """Run the extractive rule-based judge on ``summary``."""
    system, user = build_judge_prompt(ctx, summary, max_members=max_members)
    metadata = {"dataset_symbols": sorted(ctx.dataset_symbols)} if with_symbols else {}
    request = ProviderRequest(system, user, JudgeVerdict, model="extractive", metadata=metadata)
    verdict = ExtractiveProvider().generate(request).parsed
    assert isinstance(verdict, JudgeVerdict)
    return verdict


def term_words(ctx: ClusterContext) -> set[str]:
    """Casefolded words of the context's term names."""
    return {w.strip(",").casefold() for t in ctx.terms for w in t.name.split()}


def test_is_a_provider() -> None:
    provider: Provider = ExtractiveProvider()
    assert provider.name == "extractive"


def test_functional_result_metadata_and_schema() -> None:
    result = generate(functional_ctx(), FunctionalSummary)
    assert isinstance(result.parsed, FunctionalSummary)
    assert FunctionalSummary.model_validate_json(result.raw_text) == result.parsed
    assert result.input_tokens == 0 and result.output_tokens == 0
    assert result.model_version == "extractive-v1"
    assert result.finish_reason == "STOP"
    assert 0 <= result.latency_seconds < 5


def test_functional_summary_is_labelled_and_grounded() -> None:
    ctx = functional_ctx()
    summary: FunctionalSummary = generate(ctx, FunctionalSummary).parsed
    assert summary.summary.startswith(EXTRACTIVE_LABEL)
    assert "extractive" in summary.tags
    names = {t.name.removesuffix(f" {t.term_id}") for t in ctx.terms}  # ids dropped from themes
    assert set(summary.key_themes) <= names
    assert summary.key_themes[0] == "Chemical Synaptic Transmission"  # first evidence term
    pathway_names = [t.name for t in ctx.terms if t.category in PATHWAY_CATEGORIES]
    assert summary.pathways == pathway_names
    words = term_words(ctx)
    for tag in summary.tags:
        assert tag in EXTRACTIVE_LABEL_TAGS or set(tag.split()) <= words, tag
    assert summary.confidence == derived_confidence(ctx) == "high"
    assert summary.clinical_relevance is None
    assert validate_summary(ctx, summary) == []
    # The first sentence names what the cluster is, with coverage and fold enrichment.
    first = summary.summary.split(". ")[0]
    assert first.startswith(f"{EXTRACTIVE_LABEL} A cluster of 8 genes centred on ")
    assert "Chemical Synaptic Transmission (88% of members, 2.0-fold)" in first
    assert "Evidence: 10 non-redundant of 10 significant GO:BP terms" in summary.summary
    assert "Most central members: GRIN2B, SHANK3 and DLG4." in summary.summary
    assert "Under-represented: Translation (0 members, 4 expected)." in summary.summary
    assert "Derived confidence high (stability 0.80 (stable), specificity 0.70)." in summary.summary
    # the only non-member symbol it names is quoted from a term
    assert set(find_symbols(summary.summary, ctx.dataset_symbols)) - set(FUNCTIONAL_MEMBERS) == {
        "MECP2"
    }
    assert "MECP2 And Associated Rett Syndrome WP3584" in summary.summary


def test_different_clusters_read_differently() -> None:
    seizures = make_ctx(
        "phenotype",
        ["AAA1", "BBB2", "CCC3", "DDD4"],
        [
            term("HPO", "HP:1", "Infantile spasms", 1e-8, overlap=3, branches=NERVOUS),
            term("HPO", "HP:2", "Hypsarrhythmia", 1e-7, overlap=3, branches=NERVOUS),
            term("HPO", "HP:3", "Status epilepticus", 1e-6, overlap=2, branches=NERVOUS),
        ],
        traits=traits(call="non_syndromic", isolated_share=0.8),
    )
    faces = make_ctx(
        "phenotype",
        ["AAA1", "BBB2", "CCC3", "DDD4"],
        [
            term("HPO", "HP:4", "Synophrys", 1e-8, overlap=3, branches=HEAD),
            term("HPO", "HP:5", "Short philtrum", 1e-7, overlap=3, branches=HEAD),
            term("HPO", "HP:6", "Thin upper lip vermilion", 1e-6, overlap=2, branches=HEAD),
        ],
        traits=traits(call="syndromic", isolated_share=0.1),
    )
    first = [generate(c, PhenotypeSummary).parsed.summary.split(". ")[0] for c in (seizures, faces)]
    assert first[0] != first[1]
    assert "non-syndromic" in first[0] and "neurological features" in first[0]
    assert "Infantile spasms (75% of members, 2.0-fold)" in first[0]
    assert "A syndromic cluster" in first[1] and "head and neck features" in first[1]
    assert "Synophrys" in first[1] and "Short philtrum" in first[1]


def test_extractive_is_deterministic() -> None:
    for ctx, cls in ((functional_ctx(), FunctionalSummary), (phenotype_ctx(), PhenotypeSummary)):
        first, second = generate(ctx, cls), generate(ctx, cls)
        assert first.raw_text == second.raw_text
        assert first.parsed == second.parsed
        verdicts = {judge(ctx, first.parsed).model_dump_json() for _ in range(3)}
        assert len(verdicts) == 1


def test_phenotype_summary_names_no_genes() -> None:
    ctx = phenotype_ctx()
    result = generate(ctx, PhenotypeSummary)
    summary: PhenotypeSummary = result.parsed
    assert summary.summary.startswith(EXTRACTIVE_LABEL) and "extractive" in summary.tags
    for symbol in PHENOTYPE_MEMBERS:
        assert symbol.casefold() not in result.raw_text.casefold()
    assert validate_summary(ctx, summary) == []
    assert summary.key_phenotype_themes[:3] == [
        "Intellectual disability",
        "Autistic behavior",
        "Hypertelorism",
    ]
    first = summary.summary.split(". ")[0]
    assert first.startswith(f"{EXTRACTIVE_LABEL} A syndromic cluster of 6 genes marked by ")
    assert "neurological features, led by Intellectual disability (100% of members" in first
    assert "head and neck features, led by Hypertelorism" in first
    assert "Inheritance: AD in 60% of annotated members (enriched, FDR 3.0e-04)." in summary.summary
    assert summary.inheritance_patterns == ["autosomal_dominant"]
    assert summary.syndromicity == "syndromic"
    assert summary.notably_absent == [
        "Abnormality of the cardiovascular system",
        "Abnormality of metabolism/homeostasis",
    ]
    assert summary.syndrome_hints == []
    assert summary.confidence == derived_confidence(ctx) == "medium"
    assert summary.data_quality_note and "no language model" in summary.data_quality_note


@pytest.mark.parametrize(
    ("cluster_type", "cls"),
    [("functional", FunctionalSummary), ("phenotype", PhenotypeSummary)],
)
def test_no_terms_gives_valid_thin_summary(cluster_type: ClusterType, cls: type[BaseModel]) -> None:
    ctx = make_ctx(cluster_type, ["AAA1", "BBB2", "CCC3"], [])
    result = generate(ctx, cls)
    summary = cls.model_validate_json(result.raw_text)
    data = summary.model_dump()
    assert data["confidence"] == "low"
    assert data["summary"].startswith(EXTRACTIVE_LABEL)
    assert "thin" in data["summary"]
    assert "extractive" in data["tags"] and 3 <= len(data["tags"]) <= 7
    verdict = judge(ctx, summary)
    assert verdict.verdict == "low_confidence"
    assert "thin" in verdict.reasoning


def test_few_terms_padded_with_placeholders() -> None:
    ctx = make_ctx(
        "functional",
        ["AAA1", "BBB2"],
        [
            term("GO:BP", "GO:1", "Axon Guidance", 1e-3, overlap=2),
            term("GO:BP", "GO:2", "Dendrite Development", 0.2, overlap=1),  # not significant
        ],
    )
    summary: FunctionalSummary = generate(ctx, FunctionalSummary).parsed
    assert summary.key_themes == ["Axon Guidance", *THIN_DATA_THEMES[1:]]
    assert summary.pathways == []
    assert summary.confidence == "low"
    assert "Dendrite" not in summary.summary


def test_enrichr_style_ids_dropped_from_themes_and_tags_but_pathways_verbatim() -> None:
    ctx = make_ctx(
        "functional",
        ["AAA1", "BBB2", "CCC3"],
        [
            term("GO:BP", "GO:0007268", "Chemical Synaptic Transmission (GO:0007268)", 1e-9),
            term("WikiPathways", "WP100", "Glutathione Metabolism WP100", 1e-8),
            term("GO:BP", "GO:0031175", "Neuron Projection Development (GO:0031175)", 1e-7),
        ],
    )
    summary: FunctionalSummary = generate(ctx, FunctionalSummary).parsed
    assert summary.key_themes == [
        "Chemical Synaptic Transmission",
        "Glutathione Metabolism",
        "Neuron Projection Development",
    ]
    assert summary.pathways == ["Glutathione Metabolism WP100"]
    assert not any("wp100" in tag or "0007268" in tag for tag in summary.tags)
    assert validate_entities(ctx, summary) == []
    assert judge(ctx, summary).verdict == "accept"


def test_judge_accepts_extractive_summaries() -> None:
    for ctx, cls in ((functional_ctx(), FunctionalSummary), (phenotype_ctx(), PhenotypeSummary)):
        summary = generate(ctx, cls).parsed
        for with_symbols in (True, False):
            verdict = judge(ctx, summary, with_symbols=with_symbols)
            assert verdict.verdict == "accept", verdict.reasoning
            assert verdict.is_factually_accurate and verdict.is_grounded
            assert verdict.pathways_valid and verdict.confidence_appropriate


def test_judge_accepts_grounded_llm_style_summary() -> None:
    summary = FunctionalSummary(
        summary="Synaptic genes including SYNGAP1 and GRIN2B shape glutamatergic transmission.",
        key_themes=[
            "Chemical synaptic transmission",
            "Synaptic plasticity",
            "Synapse organization",
        ],
        pathways=["pi3k akt signaling pathway"],
        tags=["synaptic transmission", "plasticity", "glutamatergic"],
        confidence="high",
    )
    assert judge(functional_ctx(), summary).verdict == "accept"


def test_judge_rejects_invented_pathway() -> None:
    ctx = functional_ctx()
    summary = generate(ctx, FunctionalSummary).parsed
    bad = summary.model_copy(update={"pathways": [*summary.pathways, "Wnt Signaling Pathway"]})
    verdict = judge(ctx, bad)
    assert verdict.verdict == "reject"
    assert not verdict.pathways_valid and not verdict.is_factually_accurate
    assert "'Wnt Signaling Pathway'" in verdict.reasoning


@pytest.mark.parametrize("with_symbols", [True, False])
def test_judge_rejects_non_member_gene(with_symbols: bool) -> None:
    ctx = functional_ctx()
    summary = generate(ctx, FunctionalSummary).parsed
    bad = summary.model_copy(update={"summary": summary.summary + " TP53 is central."})
    verdict = judge(ctx, bad, with_symbols=with_symbols)
    assert verdict.verdict == "reject"
    assert not verdict.is_grounded
    assert "'TP53'" in verdict.reasoning


def test_judge_member_gene_is_fine_for_functional_but_not_phenotype() -> None:
    fctx = functional_ctx()
    fsum = generate(fctx, FunctionalSummary).parsed
    ok = fsum.model_copy(update={"summary": fsum.summary + " SYNGAP1 and NKX2-1 lead."})
    assert judge(fctx, ok, with_symbols=False).verdict == "accept"
    pctx = phenotype_ctx()
    psum = generate(pctx, PhenotypeSummary).parsed
    bad = psum.model_copy(update={"clinical_pattern": "Resembles ADNP carriers."})
    verdict = judge(pctx, bad)
    assert verdict.verdict == "reject" and "'ADNP'" in verdict.reasoning


def test_judge_unverifiable_gene_with_truncated_members_is_low_confidence() -> None:
    ctx = functional_ctx()
    summary = generate(ctx, FunctionalSummary).parsed
    text = summary.model_copy(update={"summary": summary.summary + " GRIA2 matters."})
    verdict = judge(ctx, text, max_members=3)  # GRIA2 is a member but not listed
    assert verdict.verdict == "low_confidence"
    assert "truncated" in verdict.reasoning


@pytest.mark.parametrize(
    ("claimed", "expected"),
    [("high", "accept"), ("medium", "accept"), ("low", "low_confidence")],
)
def test_judge_confidence_consistency(claimed: str, expected: str) -> None:
    ctx = functional_ctx()  # derived confidence: high
    summary = generate(ctx, FunctionalSummary).parsed.model_copy(update={"confidence": claimed})
    verdict = judge(ctx, summary)
    assert verdict.verdict == expected
    assert verdict.confidence_appropriate is (expected == "accept")


def test_judge_flags_overclaimed_confidence_on_thin_data() -> None:
    ctx = make_ctx("functional", ["AAA1", "BBB2"], [term("GO:BP", "GO:1", "Axon Guidance", 1e-3)])
    summary = generate(ctx, FunctionalSummary).parsed.model_copy(update={"confidence": "high"})
    verdict = judge(ctx, summary)
    assert verdict.verdict == "low_confidence"
    assert not verdict.confidence_appropriate
    assert "confidence 'high'" in verdict.reasoning


def test_judge_flags_underived_themes() -> None:
    ctx = functional_ctx()
    summary = generate(ctx, FunctionalSummary).parsed
    bad = summary.model_copy(update={"key_themes": ["Cardiac muscle contraction", "b1", "c1"]})
    verdict = judge(ctx, bad)
    assert verdict.verdict == "low_confidence"
    assert not verdict.is_grounded
    assert "'Cardiac muscle contraction'" in verdict.reasoning


def test_bad_requests_raise_permanent_provider_error() -> None:
    provider = ExtractiveProvider()
    with pytest.raises(ProviderError) as no_block:
        provider.generate(ProviderRequest("s", "no data", FunctionalSummary, model="m"))
    assert no_block.value.transient is False
    _, user = build_generation_prompt(functional_ctx())
    with pytest.raises(ProviderError) as no_summary:
        provider.generate(ProviderRequest("s", user, JudgeVerdict, model="m"))
    assert no_summary.value.transient is False

    class Other(BaseModel):
        x: int

    with pytest.raises(ProviderError):
        provider.generate(ProviderRequest("s", user, Other, model="m"))


WORDS = ["Synaptic", "Axon", "Neuron", "Signaling", "Seizure", "Development", "Of", "Growth"]


@settings(max_examples=60, deadline=None)
@given(
    cluster_type=st.sampled_from(["functional", "phenotype"]),
    rows=st.lists(
        st.tuples(
            st.sampled_from(["GO:BP", "WikiPathways", "HPO"]),
            st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
            st.floats(min_value=0.0, max_value=0.2),
        ),
        max_size=30,
    ),
)
def test_extractive_output_always_valid_and_never_rejected_by_its_judge(
    cluster_type: ClusterType, rows: list[tuple[str, list[str], float]]
) -> None:
    terms = [term(cat, f"T{i}", " ".join(words), fdr) for i, (cat, words, fdr) in enumerate(rows)]
    ctx = make_ctx(cluster_type, ["AAA1", "BBB2", "CCC3"], terms, dataset_symbols={"TP53"})
    cls = FunctionalSummary if cluster_type == "functional" else PhenotypeSummary
    summary = generate(ctx, cls).parsed
    assert validate_entities(ctx, summary) == []
    assert summary.confidence == derived_confidence(ctx)
    assert judge(ctx, summary).verdict != "reject"


# --- judge v2: corrections, hard failures, grounding bands -----------------------------------


def _phenotype_summary() -> PhenotypeSummary:
    return generate(phenotype_ctx(), PhenotypeSummary).parsed


def test_judge_scores_a_rubric_and_grounding() -> None:
    verdict = judge(phenotype_ctx(), _phenotype_summary())
    assert verdict.verdict == "accept", verdict.reasoning
    assert verdict.grounding_percent == 100 and verdict.hard_failures == []
    assert set(verdict.rubric.values()) == {2} and verdict.rubric_total == 12
    assert verdict.corrections() == {}


@pytest.mark.parametrize(
    ("update", "field", "expected"),
    [
        ({"tags": ["intellectual disability", "cardiac arrest", "hypertelorism"]}, "tags", None),
        (
            {"notably_absent": ["Abnormality of the cardiovascular system", "Deafness"]},
            "notably_absent",
            ["Abnormality of the cardiovascular system"],
        ),
        (
            {"inheritance_patterns": ["autosomal_dominant", "x_linked"]},
            "inheritance_patterns",
            ["autosomal_dominant"],
        ),
        ({"syndromicity": "mixed"}, "syndromicity", "syndromic"),
    ],
)
def test_judge_corrects_fixable_problems(update: dict[str, Any], field: str, expected: Any) -> None:
    ctx = phenotype_ctx()
    bad = _phenotype_summary().model_copy(update=update)
    verdict = judge(ctx, bad)
    assert verdict.verdict == "accept_with_corrections", verdict.reasoning
    corrections = verdict.corrections()
    assert set(corrections) == {field}
    if expected is not None:
        assert corrections[field] == expected
    else:
        tags = corrections[field]
        assert isinstance(tags, list) and "cardiac arrest" not in tags and len(tags) >= 3
    assert verdict.corrections_made and not verdict.hard_failures


@pytest.mark.parametrize(
    ("update", "failure"),
    [
        ({"notably_absent": ["Intellectual disability"]}, "direction_inversion"),
        (
            {"key_phenotype_themes": ["Abnormality of the cardiovascular system"]},
            "direction_inversion",
        ),
        (
            {"key_phenotype_themes": ["Intellectual disability", "Renal failure"]},
            "invented_phenotype",
        ),
        (
            {"summary": "Chromatin remodelling and histone methylation alter transcription."},
            "molecular_summary",
        ),
        (
            {"summary": "Most carriers of ADNP variants show intellectual disability."},
            "invented_gene",
        ),
    ],
)
def test_judge_hard_failures_reject(update: dict[str, Any], failure: str) -> None:
    verdict = judge(phenotype_ctx(), _phenotype_summary().model_copy(update=update))
    assert verdict.verdict == "reject", verdict.reasoning
    assert failure in verdict.hard_failures
    assert verdict.corrections() == {}


def test_judge_removes_an_isolated_molecular_sentence() -> None:
    summary = _phenotype_summary()
    text = summary.summary + " This reflects defective kinase signaling."
    verdict = judge(phenotype_ctx(), summary.model_copy(update={"summary": text}))
    assert verdict.verdict == "accept_with_corrections", verdict.reasoning
    assert verdict.corrected_summary == summary.summary
    assert verdict.score_clinical_language == 1


def _weakly_grounded(size: int) -> tuple[ClusterContext, FunctionalSummary]:
    """A functional summary with 3 of its 7 claims grounded (42%): 2 of 4 themes, 1 of 3 tags."""
    ctx = make_ctx(
        "functional",
        [f"GENE{i}" for i in range(size)],
        [
            term("GO:BP", "GO:1", "Synaptic Signaling", 1e-12, overlap=size // 2),
            term("GO:BP", "GO:2", "Axon Guidance", 1e-10, overlap=size // 2),
            term("GO:BP", "GO:3", "Neuron Projection Development", 1e-9, overlap=size // 2),
        ],
        derived_confidence="medium",
    )
    summary = FunctionalSummary(
        summary="A synaptic cluster.",
        key_themes=["Synaptic signaling", "Axon guidance", "Cardiac rhythm", "Liver lipids"],
        pathways=[],
        tags=["synaptic", "kidney", "spleen"],
        confidence="medium",
    )
    return ctx, summary


def test_large_clusters_are_judged_at_the_relaxed_bar() -> None:
    """42% grounded: below the normal floor (50%), above the large-cluster floor (40%)."""
    ctx, summary = _weakly_grounded(40)
    normal = judge(ctx, summary)
    assert normal.grounding_percent == 42 and normal.verdict == "reject", normal.reasoning
    ctx, summary = _weakly_grounded(LARGE_CLUSTER_SIZE)
    large = judge(ctx, summary)
    assert large.grounding_percent == 42 and large.verdict == "low_confidence", large.reasoning
    assert large.hard_failures == []
