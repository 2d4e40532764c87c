"""Entity validation (genes, pathways) and enrichment-derived confidence."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm import grounding
from llm.context import ClusterContext
from llm.grounding import (
    COMMON_WORD_SYMBOLS,
    MIN_SYMBOL_LENGTH,
    confidence_from_fdrs,
    find_symbols,
    normalize_name,
)
from llm.prompts.schemas import FunctionalSummary, PhenotypeSummary
from llm.services.validation import (
    checkable_symbols,
    derived_confidence,
    validate_entities,
    validate_summary,
    validate_supplementary,
)
from tests.llm.context_helpers import make_ctx, term, traits

MEMBERS = ["SYNGAP1", "GRIN2B", "SHANK3", "NKX2-1", "PTEN"]
NON_MEMBERS = {"TP53", "BRCA1", "SET", "AR", "MECP2"}


def functional_ctx() -> ClusterContext:
    """Functional cluster with two pathway terms (one quoting MECP2) and two GO terms."""
    terms = [
        term("GO:BP", "GO:0007268", "Chemical Synaptic Transmission", 1e-9),
        term("GO:BP", "GO:0031175", "Neuron Projection Development", 1e-7),
        term("WikiPathways", "WP4172", "PI3K Akt Signaling Pathway WP4172", 1e-6),
        term("WikiPathways", "WP3584", "MECP2 And Associated Rett Syndrome WP3584", 1e-5),
        term("WikiPathways", "WP0001", "Synaptic  Vesicle   Pathway", 1e-4),
    ]
    return make_ctx("functional", MEMBERS, terms, dataset_symbols=NON_MEMBERS, number=7)


def functional(**update: Any) -> FunctionalSummary:
    """A clean functional summary, with ``update`` applied."""
    base: dict[str, Any] = {
        "summary": "Synaptic genes such as SYNGAP1 and NKX2-1 drive chemical transmission.",
        "key_themes": ["Chemical synaptic transmission", "Neuron projection", "PI3K signalling"],
        "pathways": ["PI3K Akt Signaling Pathway WP4172"],
        "tags": ["synapse", "neuron", "pi3k"],
        "clinical_relevance": None,
        "confidence": "high",
    }
    return FunctionalSummary.model_validate(base | update)


def test_clean_summary_passes() -> None:
    assert validate_entities(functional_ctx(), functional()) == []


def test_hallucinated_gene_reported_member_not() -> None:
    summary = functional(summary="SYNGAP1 and TP53 co-regulate synapses.")
    failures = validate_entities(functional_ctx(), summary)
    assert len(failures) == 1
    assert "'TP53'" in failures[0] and "not a member of cluster 7" in failures[0]
    assert "SYNGAP1" not in failures[0]


def test_gene_checked_in_every_free_text_field() -> None:
    summary = functional(
        key_themes=["BRCA1 repair", "b theme", "c theme"],
        tags=["TP53", "x", "y"],
        clinical_relevance="Like TP53 carriers.",
    )
    failures = validate_entities(functional_ctx(), summary)
    assert failures == [
        "Gene 'BRCA1' is named in key_themes but is not a member of cluster 7.",
        "Gene 'TP53' is named in tags, clinical_relevance but is not a member of cluster 7.",
    ]


@pytest.mark.parametrize(
    ("text", "reported"),
    [
        ("TP53-mediated apoptosis", True),  # hyphen is a word boundary
        ("(TP53)", True),
        ("TP53s are many", False),  # no word boundary
        ("xTP53", False),
        ("tp53 lowercase", False),  # case-sensitive
        ("AR signalling", False),  # 1-2 character symbols ignored
        ("a SET of genes", False),  # common English word that is a symbol
        ("MECP2 And Associated Rett Syndrome", False),  # quoted from the cluster's own term
    ],
)
def test_gene_matching_rule(text: str, reported: bool) -> None:
    failures = validate_entities(functional_ctx(), functional(summary=text))
    assert bool(failures) is reported, failures


def test_hyphenated_member_symbol_matches_whole() -> None:
    assert find_symbols("NKX2-1-driven and TP53", {"NKX2-1", "NKX2", "TP53"}) == [
        "NKX2-1",
        "TP53",
    ]
    assert find_symbols("TP53, TP53 and PTEN", {"PTEN", "TP53"}) == ["TP53", "PTEN"]


def test_invented_pathway_reported() -> None:
    summary = functional(pathways=["Wnt Signaling Pathway", "PI3K Akt Signaling Pathway WP4172"])
    failures = validate_entities(functional_ctx(), summary)
    assert len(failures) == 1
    assert "'Wnt Signaling Pathway'" in failures[0]


@pytest.mark.parametrize(
    "pathway",
    [
        "PI3K Akt Signaling Pathway WP4172",
        "pi3k akt signaling pathway wp4172",
        "  PI3K   Akt\tSignaling Pathway WP4172. ",
        '"PI3K Akt Signaling Pathway WP4172"',
        "PI3K Akt Signaling Pathway",  # the Enrichr id suffix may be left out
        "PI3K Akt Signaling Pathway (WP4172)",
        "synaptic vesicle pathway",  # whitespace collapsed on the term side too
    ],
)
def test_verbatim_pathway_accepted_modulo_case_space_punctuation(pathway: str) -> None:
    assert validate_entities(functional_ctx(), functional(pathways=[pathway])) == []


@pytest.mark.parametrize(
    "pathway",
    [
        "Chemical Synaptic Transmission",  # a GO:BP term, not a pathway category
        "PI3K Akt Signaling",  # paraphrase
        "PI3K-Akt Signaling Pathway",  # inner punctuation is not stripped
    ],
)
def test_non_pathway_or_paraphrased_pathway_rejected(pathway: str) -> None:
    failures = validate_entities(functional_ctx(), functional(pathways=[pathway]))
    assert len(failures) == 1 and pathway in failures[0]


def test_dict_summary_accepted() -> None:
    data = functional(pathways=["Invented"]).model_dump()
    assert len(validate_entities(functional_ctx(), data)) == 1


def test_normalize_name() -> None:
    assert normalize_name("  Wnt   Signaling\nPathway. ") == "wnt signaling pathway"
    assert normalize_name("'De Novo' AMP Synthesis") == "de novo' amp synthesis"
    assert normalize_name("STRASSE") == normalize_name("straße")


def phenotype_ctx() -> ClusterContext:
    """Phenotype cluster of four genes, two HPO terms."""
    terms = [
        term("HPO", "HP:0001249", "Intellectual disability", 1e-8),
        term("HPO", "HP:0001250", "Seizure", 1e-6),
    ]
    return make_ctx(
        "phenotype", ["ADNP", "CHD8", "ARID1B", "DYRK1A"], terms, dataset_symbols={"SCN1A"}
    )


def phenotype(**update: Any) -> PhenotypeSummary:
    """A clean phenotype summary, with ``update`` applied."""
    base: dict[str, Any] = {
        "summary": "Intellectual disability with seizures.",
        "key_phenotype_themes": ["Intellectual disability", "Seizures"],
        "notably_absent": [],
        "clinical_pattern": "Neurodevelopmental disorder with epilepsy.",
        "syndrome_hints": ["ADNP syndrome"],
        "inheritance_patterns": [],
        "syndromicity": "syndromic",
        "tags": ["intellectual disability", "seizure", "neurodevelopment"],
        "confidence": "medium",
        "data_quality_note": None,
    }
    return PhenotypeSummary.model_validate(base | update)


def test_phenotype_clean_summary_passes_and_syndrome_may_name_member() -> None:
    assert validate_entities(phenotype_ctx(), phenotype()) == []


def test_phenotype_summary_naming_member_gene_fails() -> None:
    failures = validate_entities(phenotype_ctx(), phenotype(clinical_pattern="CHD8-like."))
    assert len(failures) == 1
    assert "'CHD8'" in failures[0] and "name no genes" in failures[0]


def test_phenotype_summary_naming_non_member_fails_even_in_syndrome_hints() -> None:
    failures = validate_entities(phenotype_ctx(), phenotype(syndrome_hints=["SCN1A epilepsy"]))
    assert failures == ["Gene 'SCN1A' is named in syndrome_hints but is not a member of cluster 1."]


def test_phenotype_pathways_not_checked() -> None:
    data = phenotype().model_dump() | {"pathways": ["Invented"]}
    assert validate_entities(phenotype_ctx(), data) == []


# Derived confidence: high needs >= 10 terms with FDR < 0.05 and mean FDR of the top 10 < 1e-4;
# medium needs >= 3 significant and mean FDR of the top 10 < 0.01; else low.


def fdr_ctx(fdrs: list[float]) -> ClusterContext:
    """A functional context whose terms have exactly these FDRs."""
    terms = [term("GO:BP", f"GO:{i:07d}", f"Process {i}", f) for i, f in enumerate(fdrs)]
    return make_ctx("functional", ["AAA1"], terms)


@pytest.mark.parametrize(
    ("fdrs", "expected"),
    [
        ([1e-6] * 10, "high"),
        ([1e-6] * 9, "medium"),  # one significant term short of high
        ([0.0] * 9 + [0.001], "medium"),  # mean of top 10 exactly 1e-4: not < 1e-4
        ([0.0] * 9 + [0.000999], "high"),  # mean just below 1e-4
        ([1e-6] * 10 + [0.04] * 20, "high"),  # only the top 10 enter the mean
        ([1e-6] * 9 + [0.049], "medium"),  # 10 significant but mean 4.9e-3
        ([1e-3] * 3, "medium"),
        ([1e-3] * 2, "low"),  # two significant terms only
        ([0.0, 0.0, 0.03], "low"),  # mean exactly 0.01: not < 0.01
        ([0.0, 0.0, 0.0299], "medium"),
        ([1e-3] * 3 + [0.5], "low"),  # non-significant terms in the top 10 raise the mean
        ([0.06] * 12, "low"),  # nothing significant
        ([], "low"),
    ],
)
def test_derived_confidence_thresholds(fdrs: list[float], expected: str) -> None:
    assert derived_confidence(fdr_ctx(fdrs)) == expected
    assert confidence_from_fdrs(reversed(fdrs)) == expected


def _reference_checkable(ctx: ClusterContext) -> set[str]:
    """The documented rule, computed naively."""
    candidates = {
        s
        for s in set(ctx.dataset_symbols) | set(ctx.symbols)
        if len(s) >= MIN_SYMBOL_LENGTH and s not in COMMON_WORD_SYMBOLS
    }
    quoted = {s for t in ctx.terms for s in find_symbols(t.name, candidates)}
    return candidates - quoted


def test_checkable_symbols_drop_short_common_and_quoted_symbols() -> None:
    ctx = functional_ctx()
    checkable = checkable_symbols(ctx)
    assert checkable == {"SYNGAP1", "GRIN2B", "SHANK3", "NKX2-1", "PTEN", "TP53", "BRCA1"}
    assert "MECP2" not in checkable  # quoted in "MECP2 And Associated Rett Syndrome"
    assert "AR" not in checkable and "SET" not in checkable


_SYMBOL = st.text(alphabet="ABCKP0123-", min_size=1, max_size=6).filter(
    lambda s: not s.startswith("-") and not s.endswith("-") and "--" not in s
)


@settings(max_examples=200, deadline=None)
@given(
    members=st.lists(_SYMBOL, min_size=1, max_size=6, unique=True),
    others=st.sets(_SYMBOL | st.sampled_from(sorted(COMMON_WORD_SYMBOLS)), max_size=20),
    names=st.lists(st.lists(_SYMBOL, max_size=4).map(" ".join), max_size=4),
    members_outside=st.booleans(),
)
def test_checkable_symbols_follow_the_documented_rule(
    members: list[str], others: set[str], names: list[str], members_outside: bool
) -> None:
    terms = [term("GO:BP", f"GO:{i:07d}", name, 1e-5) for i, name in enumerate(names)]
    ctx = make_ctx("functional", members, terms, dataset_symbols=others)
    if members_outside:  # members need not be among the dataset symbols
        ctx = dataclasses.replace(ctx, dataset_symbols=frozenset(others))
    assert checkable_symbols(ctx) == _reference_checkable(ctx)


def test_the_dataset_filter_runs_once_per_symbol_set() -> None:
    base = functional_ctx()
    grounding._filtered_dataset_symbols.cache_clear()
    for number in range(5):
        ctx = dataclasses.replace(base, cluster_number=number)
        assert validate_entities(ctx, functional()) == []
    info = grounding._filtered_dataset_symbols.cache_info()
    assert (info.misses, info.hits) == (1, 4)


# Clinical abbreviations and syndrome names that contain a symbol are not gene mentions.

ABBREVIATION_SYMBOLS = {"PAH", "DMD", "OTC", "ASL", "ATR", "ATRX", "TP53", "KAT6A"}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Pulmonary arterial hypertension (PAH) is frequent.", []),
        ("Duchenne muscular dystrophy (DMD) and OTC deficiency.", []),
        ("Argininosuccinic aciduria (ASL deficiency).", []),
        ("Resembles ATR-X syndrome and ATR-16.", []),
        ("DMD gene deletions", ["DMD"]),
        ("PAH variants cause phenylketonuria.", ["PAH"]),
        ("a DMD-related dystrophinopathy", ["DMD"]),
        ("ATRX and TP53-mediated arrest; KAT6A-related syndrome", ["ATRX", "TP53", "KAT6A"]),
    ],
)
def test_clinical_abbreviations_and_syndrome_names_are_not_gene_mentions(
    text: str, found: list[str]
) -> None:
    assert find_symbols(text, ABBREVIATION_SYMBOLS) == found


def test_phenotype_summary_may_use_clinical_abbreviations_that_are_dataset_symbols() -> None:
    ctx = make_ctx(
        "phenotype",
        ["ADNP", "CHD8"],
        [term("HPO", "HP:1", "Intellectual disability", 1e-8)],
        dataset_symbols={"PAH", "DMD", "OTC", "ASL", "ATR"},
    )
    text = "Intellectual disability; no PAH, DMD, OTC deficiency or ATR-X features."
    assert validate_entities(ctx, phenotype(summary=text)) == []
    assert validate_entities(ctx, phenotype(summary="Carriers of DMD variants.")) != []


# Supplementary checks: inheritance, syndromicity and notably_absent against the figures.


def supplementary_ctx() -> ClusterContext:
    terms = [
        term("HPO", "HP:0001249", "Intellectual disability", 1e-8),
        term("HPO", "HP:0001626", "Abnormality of the cardiovascular system", 1e-3,
             direction="depleted", overlap=0, fold=0.0),
    ]  # fmt: skip
    return make_ctx(
        "phenotype",
        ["ADNP", "CHD8", "ARID1B", "DYRK1A"],
        terms,
        traits=traits(supported=("autosomal_dominant",), call="non_syndromic", isolated_share=0.7),
    )


def test_supported_inheritance_and_consistent_syndromicity_pass() -> None:
    summary = phenotype(
        inheritance_patterns=["autosomal_dominant"],
        syndromicity="non_syndromic",
        notably_absent=["Abnormality of the cardiovascular system"],
    )
    assert validate_summary(supplementary_ctx(), summary) == []
    # mixed and unclear never contradict the call: the judge corrects a near miss
    assert validate_summary(supplementary_ctx(), phenotype(syndromicity="mixed")) == []


def test_unsupported_mode_contradicting_syndromicity_and_inverted_absence_fail() -> None:
    failures = validate_summary(
        supplementary_ctx(),
        phenotype(
            inheritance_patterns=["autosomal_dominant", "x_linked"],
            syndromicity="syndromic",
            notably_absent=["Intellectual disability"],
        ),
    )
    assert len(failures) == 3
    assert "'x_linked' is not supported" in failures[0] and "autosomal_dominant" in failures[0]
    assert "contradicts the data: 70%" in failures[1] and "'non_syndromic'" in failures[1]
    assert "'Intellectual disability' is listed as notably absent" in failures[2]


def test_without_inheritance_data_no_mode_is_supported() -> None:
    failures = validate_summary(phenotype_ctx(), phenotype(inheritance_patterns=["sporadic"]))
    assert failures and "none (no mode is supported by the data)" in failures[0]


def test_supplementary_checks_do_not_apply_to_functional_summaries() -> None:
    ctx = make_ctx("functional", ["AAA1"], [term("GO:BP", "GO:1", "Axon Guidance", 1e-5)])
    assert validate_supplementary(ctx, {"inheritance_patterns": ["sporadic"]}) == []


def test_derived_confidence_prefers_the_clusters_figure() -> None:
    ctx = dataclasses.replace(fdr_ctx([1e-6] * 10), derived_confidence="low")
    assert derived_confidence(ctx) == "low"  # stability/specificity win over the FDRs
