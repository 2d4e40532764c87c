"""Statistics against independent references: a hand-computed hypergeometric case, statsmodels."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from clustering.domain.annotations import annotation_table_build
from clustering.domain.enrichment import (
    benjamini_hochberg,
    cluster_enrichment,
    hypergeometric_sf,
)


def test_hypergeometric_matches_hand_computation() -> None:
    # N=10 entities, K=4 carry the term, cluster of n=3 holds k=2 of them:
    # P(X>=2) = [C(4,2)C(6,1) + C(4,3)C(6,0)] / C(10,3) = (36 + 4) / 120 = 1/3
    p = hypergeometric_sf(np.array([2]), np.array([4]), 3, 10)
    assert p[0] == pytest.approx(1 / 3, rel=1e-12)
    by_hand = sum(comb(4, x) * comb(6, 3 - x) for x in range(2, 4)) / comb(10, 3)
    assert p[0] == pytest.approx(by_hand, rel=1e-12)


def test_hypergeometric_all_overlap_is_the_smallest_tail() -> None:
    p = hypergeometric_sf(np.array([1, 2, 3]), np.array([4, 4, 4]), 3, 10)
    assert p[0] > p[1] > p[2]
    assert p[2] == pytest.approx(comb(4, 3) / comb(10, 3))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_benjamini_hochberg_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 1, 200), rng.uniform(0, 1e-4, 20), [1.0, 1.0]])
    rng.shuffle(p)
    expected = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(benjamini_hochberg(p), expected, rtol=1e-12)


def test_benjamini_hochberg_empty() -> None:
    assert benjamini_hochberg(np.array([])).size == 0


def test_cluster_enrichment_fold_fdr_and_members() -> None:
    # 10 entities; term A on e0..e3, term B on e0..e8, term D on e9
    rows = []
    for i in range(10):
        if i < 4:
            rows.append((f"e{i}", f"S{i}", "A", "term A", "C"))
        if i < 9:
            rows.append((f"e{i}", f"S{i}", "B", "term B", "C"))
    rows.append(("e9", "S9", "D", "term D", "C"))  # e9 is in the background via another term
    table = annotation_table_build(rows)
    results = cluster_enrichment(table, [0, 1, 2], min_term_size=1, fdr_threshold=1.0)
    by_id = {r.term_id: r for r in results}
    a = by_id["A"]
    assert (a.overlap, a.term_size) == (3, 4)
    assert a.p_value == pytest.approx(comb(4, 3) / comb(10, 3))
    assert a.fold_enrichment == pytest.approx((3 / 3) / (4 / 10))
    assert a.overlap_members == ["S0", "S1", "S2"]
    # BH over the three tested terms: B has p = C(9,3)/C(10,3) = 0.7, D no overlap (p = 1)
    expected = multipletests([a.p_value, 0.7, 1.0], method="fdr_bh")[1]
    assert a.fdr == pytest.approx(expected[0])
    assert expected[1] == pytest.approx(1.0)
    assert "B" not in by_id  # FDR 1 is not below the threshold 1.0


def test_cluster_enrichment_threshold_drops_unenriched(planted_table) -> None:
    group0 = [i for i, e in enumerate(planted_table.entity_ids) if e.startswith("E00_")]
    results = cluster_enrichment(planted_table, group0, min_term_size=3, fdr_threshold=0.05)
    assert results, "the planted group's private terms must be enriched"
    assert {r.term_id[:2] for r in results} == {"T0"}
    assert all(r.fdr < 0.05 for r in results)
    assert [r.p_value for r in results] == sorted(r.p_value for r in results)
