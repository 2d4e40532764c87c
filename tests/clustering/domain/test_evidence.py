"""Evidence selection (elim on a DAG, Jaccard without one), depletion, and a planted dataset whose
enriched, depleted and inheritance signals must be recovered exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from clustering.domain.annotations import AnnotationTable, annotation_table_build
from clustering.domain.enrichment import (
    DEPLETED,
    ENRICHED,
    TermEnrichmentResult,
    cluster_enrichment,
    hypergeometric_cdf,
    significance_cutoff,
)
from clustering.domain.evidence import (
    ELIM,
    JACCARD,
    TermBits,
    evidence_method_for,
    evidence_select,
)
from clustering.domain.params import ClusteringParams
from clustering.domain.pipeline import cluster_table
from clustering.domain.traits import entity_traits_build

Row = tuple[str, str, str, str, str]


def _dag_table(extra_parent_members: int) -> tuple[AnnotationTable, list[int]]:
    """200 entities; the cluster is e000..e059. Child term C ("Focal seizure") on e000..e019,
    its parent P ("Seizure") on C's genes plus ``extra_parent_members`` more cluster members and
    4 background entities; root-level R ("Nervous system") on everyone with P plus 60 more."""
    rows: list[Row] = []
    for i in range(200):
        entity, symbol = f"e{i:03d}", f"G{i:03d}"
        in_c = i < 20
        in_p = in_c or 20 <= i < 20 + extra_parent_members or 150 <= i < 154
        in_r = in_p or 60 <= i < 120
        if in_c:
            rows.append((entity, symbol, "HP:C", "Focal seizure", "HPO"))
        if in_p:
            rows.append((entity, symbol, "HP:P", "Seizure", "HPO"))
        if in_r:
            rows.append((entity, symbol, "HP:R", "Nervous system", "HPO"))
        rows.append((entity, symbol, "HP:X", "Everyone", "HPO"))
    ancestors = {
        "HP:C": frozenset({"HP:P", "HP:R"}),
        "HP:P": frozenset({"HP:R"}),
        "HP:R": frozenset(),
        "HP:X": frozenset(),
    }
    return annotation_table_build(rows, term_ancestors=ancestors), list(range(60))


def _select(
    table: AnnotationTable, members: list[int], **kwargs: float
) -> dict[str, TermEnrichmentResult]:
    enriched = cluster_enrichment(table, members, min_term_size=1)
    method = evidence_method_for(table, **kwargs)
    chosen = evidence_select(
        table, members, enriched, method=method, cutoff=significance_cutoff(enriched)
    )
    return {t.term_id: t for t in chosen}


def test_elim_hides_a_parent_whose_signal_its_child_explains() -> None:
    table, members = _dag_table(extra_parent_members=0)
    terms = _select(table, members)
    child, parent = terms["HP:C"], terms["HP:P"]
    assert parent.fdr < 0.05, "the parent is significant in the classic test"
    assert child.shown and child.evidence_rank == 1
    assert not parent.shown and parent.hidden_by == "HP:C"
    assert parent.elim_p_value is not None and parent.elim_p_value > parent.p_value
    assert child.represents >= 2  # itself and the parent


def test_elim_keeps_a_parent_that_stays_significant_without_the_childs_genes() -> None:
    table, members = _dag_table(extra_parent_members=20)  # 20 members have P but not C
    terms = _select(table, members)
    assert terms["HP:C"].shown and terms["HP:P"].shown
    # the parent's elim p-value is its test on its genes minus the child's: 20 of the 24
    # remaining dataset genes in a cluster of 60 of 200
    expected = stats.hypergeom.sf(20 - 1, 200, 24, 60)
    assert terms["HP:P"].elim_p_value == pytest.approx(expected, rel=1e-9)


def test_method_per_category_follows_the_dag() -> None:
    table, _ = _dag_table(extra_parent_members=0)
    assert evidence_method_for(table).categories == {"HPO": ELIM}
    rows = [(f"e{i}", f"S{i}", f"GO:{j}", f"go {j}", "GO:BP") for i in range(10) for j in range(2)]
    assert evidence_method_for(annotation_table_build(rows)).categories == {"GO:BP": JACCARD}


def _go_rows() -> list[Row]:
    """80 entities, cluster e00..e19. A: e00..e17 (18 members), B: e00..e16 plus e60 (a
    near-duplicate of A), S: e00..e04 plus 3 outside (a small specific term inside A), no DAG."""
    rows: list[Row] = []
    for i in range(80):
        entity, symbol = f"e{i:02d}", f"G{i:02d}"
        if i < 18:
            rows.append((entity, symbol, "GO:A", "Regulation of transcription", "GO:BP"))
        if i < 17 or i == 60:
            rows.append((entity, symbol, "GO:B", "Regulation of DNA transcription", "GO:BP"))
        if i < 5 or 70 <= i < 73:
            rows.append((entity, symbol, "GO:S", "Histone acetylation", "GO:BP"))
        rows.append((entity, symbol, "GO:Z", "Everything", "GO:BP"))
    return rows


def test_jaccard_hides_near_duplicates_behind_the_more_significant_term_only() -> None:
    table = annotation_table_build(_go_rows())
    terms = _select(table, list(range(20)), jaccard_threshold=0.5)
    a, b, small = terms["GO:A"], terms["GO:B"], terms["GO:S"]
    assert a.p_value < b.p_value
    assert a.shown and not b.shown and b.hidden_by == "GO:A"
    # S is included in A's members but is not similar to it: inclusion is never ancestry
    assert small.shown
    assert a.represents == 2 and small.represents == 1


def test_jaccard_threshold_one_keeps_everything_distinct() -> None:
    table = annotation_table_build(_go_rows())
    terms = _select(table, list(range(20)), jaccard_threshold=1.0)
    assert terms["GO:B"].shown


def test_depletion_is_the_lower_tail_with_its_own_bh_family() -> None:
    # 100 entities; term C on 60 of them but on no cluster member (e00..e19)
    rows: list[Row] = []
    for i in range(100):
        entity, symbol = f"e{i:02d}", f"G{i:02d}"
        if i >= 20 and i < 80:
            rows.append((entity, symbol, "T:C", "Common", "CAT"))
        if i < 10:
            rows.append((entity, symbol, "T:P", "Private", "CAT"))
        rows.append((entity, symbol, "T:Z", "Everyone", "CAT"))
    table = annotation_table_build(rows)
    depleted = cluster_enrichment(table, list(range(20)), min_term_size=1, direction=DEPLETED)
    assert [t.term_id for t in depleted] == ["T:C"]
    common = depleted[0]
    assert common.direction == DEPLETED and common.overlap == 0
    assert common.p_value == pytest.approx(stats.hypergeom.cdf(0, 100, 60, 20), rel=1e-9)
    # BH over the three tested terms; T:P and T:Z are not under-represented (p = 1)
    expected = multipletests([common.p_value, 1.0, 1.0], method="fdr_bh")[1][0]
    assert common.fdr == pytest.approx(expected)
    assert common.fold_enrichment == 0.0
    enriched = cluster_enrichment(table, list(range(20)), min_term_size=1)
    assert {t.term_id for t in enriched} == {"T:P"}


def test_lower_tail_matches_scipy_cdf_on_extremes() -> None:
    k = np.array([0, 3, 100, 182])
    big_k = np.array([100, 500, 1000, 1656])
    np.testing.assert_allclose(
        hypergeometric_cdf(k, big_k, 577, 2938),
        stats.hypergeom.cdf(k, 2938, big_k, 577),
        rtol=1e-9,
    )


def test_unknown_direction_is_refused() -> None:
    table = annotation_table_build(_go_rows())
    with pytest.raises(ValueError, match="direction"):
        cluster_enrichment(table, [0, 1], direction="sideways")


# --- a planted dataset: every signal known in advance ----------------------------------------

GROUPS = 4
SIZE = 30


def _planted() -> tuple[list[Row], dict[str, tuple[frozenset[str], float | None]]]:
    """Four groups of 30. Group g's entities carry g's 6 private terms ``T{g}_{j}`` (85% each);
    every entity outside group 0 carries the common term "Cardiac anomaly" with probability 0.7,
    group 0 never; group 0 is autosomal recessive and NDD-predominant, the others autosomal
    dominant and syndromic."""
    rng = np.random.default_rng(11)
    rows: list[Row] = []
    traits: dict[str, tuple[frozenset[str], float | None]] = {}
    for g in range(GROUPS):
        for i in range(SIZE):
            entity, symbol = f"E{g}_{i:02d}", f"G{g}S{i:02d}"
            for j in range(6):
                if rng.random() < 0.85:
                    rows.append((entity, symbol, f"T{g}_{j}", f"group {g} feature {j}", "CAT"))
            if g != 0 and rng.random() < 0.7:
                rows.append((entity, symbol, "COMMON", "Cardiac anomaly", "CAT"))
            for b in range(4):
                if rng.random() < 0.2:
                    rows.append((entity, symbol, f"B{b}", f"background {b}", "CAT"))
            mode = "autosomal_recessive" if g == 0 else "autosomal_dominant"
            traits[entity] = (frozenset({mode}), 0.8 if g == 0 else 0.1)
    return rows, traits


def test_planted_enriched_depleted_and_inheritance_signals_are_recovered_exactly() -> None:
    rows, per_entity = _planted()
    table = annotation_table_build(
        rows, traits=lambda ids: entity_traits_build(ids, per_entity, source="planted")
    )
    params = ClusteringParams(
        k=8, min_cluster_size=10, stability_repeats=5, null_repeats=5, min_term_size=3
    )
    result = cluster_table(table, params, cluster_type="functional")
    assert len(result.clusters) == GROUPS
    group0 = next(c for c in result.clusters if c.member_ids[0].startswith("E0_"))
    assert all(m.startswith("E0_") for m in group0.member_ids)
    private = {f"T0_{j}" for j in range(6)}
    enriched = [t for t in group0.enrichment if t.direction == ENRICHED]
    assert {t.term_id for t in enriched} == private, "exactly the planted terms are enriched"
    shown_enriched = [t for t in enriched if t.shown]
    # the six private terms share most members, so the evidence shows them non-redundantly:
    # the shown ones stand for all six
    assert shown_enriched and {t.term_id for t in shown_enriched} <= private
    assert sum(t.represents for t in shown_enriched) == 6
    assert all(t.hidden_by in private for t in enriched if not t.shown)
    shown = {(t.term_id, t.direction) for t in group0.enrichment if t.shown}
    depleted = {t for t, d in shown if d == DEPLETED}
    assert "COMMON" in depleted
    # nothing of group 0's own and no background term is depleted; the rest are other groups'
    assert all(t == "COMMON" or t[:2] in ("T1", "T2", "T3") for t in depleted), depleted
    assert not [t for t in group0.enrichment if t.term_id.startswith("B") and t.fdr < 0.05]
    modes = {m["code"]: m for m in group0.traits["inheritance"]["modes"]}
    assert modes["autosomal_recessive"]["direction"] == "enriched"
    assert modes["autosomal_recessive"]["supported"] is True
    assert modes["autosomal_recessive"]["share"] == 1.0
    assert "autosomal_dominant" not in {c for c, m in modes.items() if m["count"]}
    assert group0.traits["syndromicity"]["call"] == "non_syndromic"
    others = [c for c in result.clusters if c is not group0]
    assert all(c.traits["syndromicity"]["call"] == "syndromic" for c in others)
    assert all(c.stability is not None and c.stability > 0.9 for c in result.clusters)
    assert result.quality["modularity_z"] is not None and result.quality["modularity_z"] > 3
    assert all(c.derived_confidence == "high" for c in result.clusters)


def test_evidence_bits_are_shared_across_clusters() -> None:
    table = annotation_table_build(_go_rows())
    bits = TermBits(table)
    first = bits.term(0)
    assert bits.term(0) is first
    assert first.bit_count() == int(table.matrix[:, 0].sum())
