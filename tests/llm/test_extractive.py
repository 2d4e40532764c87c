"""The extractive provider: grounded, labelled, deterministic summaries and a rule-based judge."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llm.context import PATHWAY_CATEGORIES, ClusterContext, ClusterType
from llm.prompts.schemas import FunctionalSummary, JudgeVerdict, PhenotypeSummary
from llm.prompts.templates import build_generation_prompt, build_judge_prompt
from llm.providers.base import Provider, ProviderError, ProviderRequest, ProviderResult
from llm.providers.extractive import (
    EXTRACTIVE_LABEL,
    EXTRACTIVE_LABEL_TAGS,
    THIN_DATA_THEMES,
    ExtractiveProvider,
)
from llm.services.validation import derived_confidence, find_symbols, validate_entities
from tests.llm.context_helpers import make_ctx, term

FUNCTIONAL_MEMBERS = ["SYNGAP1", "GRIN2B", "SHANK3", "NKX2-1", "PTEN", "DLG4", "CAMK2A", "GRIA2"]
OTHER_GENES = {"TP53", "BRCA1", "SCN1A", "MECP2"}


def functional_ctx() -> ClusterContext:
    """A rich functional cluster: 12 significant terms (10 GO:BP, 2 WikiPathways): high."""
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
    ]
    return make_ctx("functional", FUNCTIONAL_MEMBERS, terms, dataset_symbols=OTHER_GENES)


PHENOTYPE_MEMBERS = ["ADNP", "CHD8", "ARID1B", "DYRK1A", "ANKRD11", "KMT2A"]


def phenotype_ctx() -> ClusterContext:
    """A phenotype cluster: 5 significant HPO terms (one inheritance term), one naming a member."""
    terms = [
        term("HPO", "HP:0001249", "Intellectual disability", 1e-9, overlap=6),
        term("HPO", "HP:0000729", "Autistic behavior", 1e-7, overlap=5),
        term("HPO", "HP:0000006", "Autosomal dominant inheritance", 1e-6, overlap=6),
        term("HPO", "HP:9999999", "CHD8-associated macrocephaly", 5e-6, overlap=2),
        term("HPO", "HP:0001263", "Global developmental delay", 1e-5, overlap=5),
        term("HPO", "HP:0000252", "Microcephaly", 1e-4),
    ]
    return make_ctx("phenotype", PHENOTYPE_MEMBERS, terms, dataset_symbols={"SCN1A", "TP53"})


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
    assert summary.key_themes[0] == "Chemical Synaptic Transmission"  # lowest FDR first
    pathway_names = [t.name for t in ctx.terms if t.category in PATHWAY_CATEGORIES]
    assert summary.pathways == pathway_names
    words = term_words(ctx)
    for tag in summary.tags:
        assert tag in EXTRACTIVE_LABEL_TAGS or set(tag.split()) <= words, tag
    assert summary.confidence == derived_confidence(ctx) == "high"
    assert summary.clinical_relevance is None
    assert validate_entities(ctx, summary) == []
    # The text cites terms with their statistics; the only gene it names is quoted from a term.
    assert "Chemical Synaptic Transmission (GO:BP, FDR 1.0e-12, 7/8 members)" in summary.summary
    assert find_symbols(summary.summary, ctx.dataset_symbols) == ["MECP2"]
    assert "MECP2 And Associated Rett Syndrome WP3584" in summary.summary


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
    assert validate_entities(ctx, summary) == []
    assert summary.key_phenotype_themes[:3] == [
        "Intellectual disability",
        "Autistic behavior",
        "Global developmental delay",
    ]
    assert summary.inheritance_patterns == ["Autosomal dominant inheritance"]
    assert summary.syndromicity == "unclear"
    assert summary.notably_absent == [] and summary.syndrome_hints == []
    assert summary.confidence == derived_confidence(ctx)
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
