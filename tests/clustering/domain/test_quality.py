"""Stability, the modularity null model, signature members, traits and derived confidence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from clustering.domain.annotations import annotation_table_build
from clustering.domain.enrichment import TermEnrichmentResult
from clustering.domain.features import feature_matrix_build
from clustering.domain.leiden import leiden_partition
from clustering.domain.quality import derived_confidence, dice, specificity
from clustering.domain.similarity import _top_k, knn_graph_build, knn_graph_from_similarity
from clustering.domain.stability import modularity_null, signature_members, subsample_stability
from clustering.domain.traits import (
    cluster_inheritance,
    cluster_syndromicity,
    entity_traits_build,
    syndromicity_call,
)
from tests.conftest import planted_rows


def _planted(groups: int = 3, size: int = 20):
    table = annotation_table_build(planted_rows(groups=groups, size=size))
    features = feature_matrix_build(table, min_term_size=3, max_term_fraction=0.5).matrix
    groups_of = [
        [i for i, e in enumerate(table.entity_ids) if e.startswith(f"E{g:02d}_")]
        for g in range(groups)
    ]
    return table, features, groups_of


def test_top_k_orders_exactly_like_a_stable_sort_with_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(3, 30))
        kk = int(rng.integers(1, n))
        dense = rng.integers(0, 4, size=(n, n)).astype(float) / 3  # many ties, some zeros
        np.fill_diagonal(dense, -np.inf)
        got = _top_k(dense.copy(), 0, kk)
        order = np.argsort(-dense, axis=1, kind="stable")[:, :kk]
        chosen = np.take_along_axis(dense, order, axis=1)
        valid = chosen > 0
        src = np.repeat(np.arange(n), kk).reshape(-1, kk)
        for a, b in zip(got, (src[valid], order[valid], chosen[valid]), strict=True):
            np.testing.assert_array_equal(a, b)


def test_graph_from_a_similarity_matrix_equals_the_feature_graph() -> None:
    _, features, _ = _planted()
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1)).ravel())
    unit = features.multiply(1 / norms[:, None]).tocsr()
    similarity = (unit @ unit.T).toarray()
    direct = knn_graph_build(features, k=6)
    derived = knn_graph_from_similarity(similarity, k=6)
    np.testing.assert_array_equal(direct.edges, derived.edges)
    np.testing.assert_allclose(direct.weights, derived.weights, rtol=1e-12)


def test_planted_groups_are_perfectly_stable_and_deterministic() -> None:
    _, features, groups = _planted()
    first = subsample_stability(features, groups, k=6, resolution=1.0, seed=5, repeats=6)
    again = subsample_stability(features, groups, k=6, resolution=1.0, seed=5, repeats=6)
    assert first.scores == again.scores
    assert all(s is not None and s > 0.95 for s in first.scores)
    assert first.per_repeat.shape == (6, 3)


def test_an_arbitrary_split_of_a_group_is_unstable() -> None:
    _, features, groups = _planted()
    halves = [groups[0][:10], groups[0][10:]]  # not a real boundary
    result = subsample_stability(features, halves, k=6, resolution=1.0, seed=5, repeats=6)
    assert all(s is not None and s < 0.6 for s in result.scores), result.scores


def test_no_repeats_means_no_stability() -> None:
    _, features, groups = _planted()
    result = subsample_stability(features, groups, k=6, resolution=1.0, seed=5, repeats=0)
    assert result.scores == [None, None, None]


def test_modularity_null_model_scores_planted_groups_far_above_rewired_graphs() -> None:
    _, features, groups = _planted()
    graph = knn_graph_build(features, k=6)
    partition = leiden_partition(graph, seed=1)
    labels = sorted({partition.membership[g[0]] for g in groups})
    result = modularity_null(graph, partition.membership, labels, repeats=8, seed=2)
    assert result.modularity == pytest.approx(partition.modularity, rel=1e-9)
    assert result.null_mean is not None and abs(result.null_mean) < 0.2
    assert result.z is not None and result.z > 5
    assert all(z is not None and z > 3 for z in result.cluster_z.values())
    again = modularity_null(graph, partition.membership, labels, repeats=8, seed=2)
    assert again.z == result.z
    none = modularity_null(graph, partition.membership, labels, repeats=0, seed=2)
    assert none.z is None and set(none.cluster_z) == set(labels)


def test_signature_members_are_ranked_by_within_cluster_strength() -> None:
    _, features, groups = _planted()
    graph = knn_graph_build(features, k=6)
    ranked = signature_members(graph, groups[0], limit=5)
    strengths = [s for _, s in ranked]
    assert strengths == sorted(strengths, reverse=True) and len(ranked) == 5
    inside = set(groups[0])
    top, top_strength = ranked[0]
    by_hand = sum(
        w
        for (a, b), w in zip(graph.edges.tolist(), graph.weights.tolist(), strict=True)
        if top in (a, b) and a in inside and b in inside
    )
    assert top_strength == pytest.approx(by_hand)


def test_inheritance_figures_match_the_hypergeometric_test() -> None:
    ids = [f"e{i:02d}" for i in range(40)]
    per: dict[str, tuple[frozenset[str], float | None]] = {
        e: (frozenset({"autosomal_recessive" if i < 20 else "autosomal_dominant"}), 0.2)
        for i, e in enumerate(ids)
    }
    per["e39"] = (frozenset(), None)  # no mode, no phenotypes
    traits = entity_traits_build(ids, per, source="test")
    figures = cluster_inheritance(traits, list(range(12)))  # 12 recessive members
    modes = {m["code"]: m for m in figures["modes"]}
    assert figures["annotated"] == 12
    ar = modes["autosomal_recessive"]
    assert ar["count"] == 12 and ar["share"] == 1.0
    assert ar["dataset_share"] == pytest.approx(20 / 39)
    assert ar["p_enriched"] == pytest.approx(stats.hypergeom.sf(11, 39, 20, 12))
    assert ar["direction"] == "enriched" and ar["supported"]
    ad = modes["autosomal_dominant"]
    assert ad["count"] == 0 and ad["direction"] == "depleted" and not ad["supported"]


def test_entity_traits_refuse_unknown_modes() -> None:
    with pytest.raises(ValueError, match="unknown inheritance mode"):
        entity_traits_build(["a"], {"a": (frozenset({"lamarckian"}), None)}, source="x")


@pytest.mark.parametrize(
    ("share", "with_data", "call"),
    [
        (0.6, 20, "non_syndromic"),
        (0.5, 20, "non_syndromic"),
        (0.3, 20, "mixed"),
        (0.25, 20, "mixed"),
        (0.1, 20, "syndromic"),
        (0.9, 4, "unclear"),
    ],
)
def test_syndromicity_call_thresholds(share: float, with_data: int, call: str) -> None:
    assert syndromicity_call(share, with_data) == call


def test_cluster_syndromicity_counts_ndd_predominant_members() -> None:
    ids = [f"e{i}" for i in range(10)]
    per: dict[str, tuple[frozenset[str], float | None]] = {
        e: (frozenset(), 0.9 if i < 6 else 0.1) for i, e in enumerate(ids)
    }
    traits = entity_traits_build(ids, per, source="test")
    figures = cluster_syndromicity(traits, [0, 1, 2, 3, 6])
    assert (figures["with_phenotypes"], figures["isolated_ndd"]) == (5, 4)
    assert figures["isolated_share"] == pytest.approx(0.8) and figures["call"] == "non_syndromic"


def _term(overlap: int, size: int, term_size: int, *, shown: bool = True) -> TermEnrichmentResult:
    return TermEnrichmentResult(
        term_index=0,
        term_id=f"T{overlap}-{term_size}",
        term_name="t",
        category="C",
        overlap=overlap,
        term_size=term_size,
        p_value=1e-9,
        fdr=1e-8,
        fold_enrichment=2.0,
        overlap_members=[],
        ancestor_ids=[],
        cluster_size=size,
        evidence_rank=1 if shown else None,
    )


def test_specificity_is_the_best_dice_of_a_shown_term() -> None:
    assert dice(10, 10, 10) == 1.0 and dice(0, 10, 10) == 0.0
    terms = [_term(5, 20, 100), _term(18, 20, 22), _term(20, 20, 20, shown=False)]
    value, term_id = specificity(terms)
    assert value == pytest.approx(36 / 42) and term_id == "T18-22"


@pytest.mark.parametrize(
    ("stability", "spec", "n", "level"),
    [
        (0.8, 0.6, 10, "high"),
        (0.8, 0.4, 10, "medium"),
        (0.65, 0.6, 10, "medium"),
        (0.5, 0.9, 10, "low"),
        (0.9, 0.2, 10, "low"),
        (0.9, 0.9, 2, "low"),
        (None, 0.6, 10, "medium"),
        (None, 0.4, 10, "low"),
    ],
)
def test_derived_confidence_thresholds(
    stability: float | None, spec: float, n: int, level: str
) -> None:
    assert (
        derived_confidence(stability=stability, specificity_value=spec, evidence_terms=n) == level
    )
