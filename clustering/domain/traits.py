"""Supplementary per-entity data that explains clusters without shaping them: mode of
inheritance and syndromicity. Never used as clustering features.

* **Mode of inheritance**: from the HPO "Mode of inheritance" subtree (HP:0000005) of each
  gene's HPO annotations (propagated: an X-linked recessive gene is also X-linked). Per cluster,
  each mode's count among the members annotated with any mode, its share of them, the same share
  in the dataset, fold enrichment, one-sided hypergeometric p-values in both directions against
  the dataset's annotated entities, and Benjamini-Hochberg FDRs over the modes.
* **Syndromicity**: an entity is *NDD-predominant* ("isolated NDD") when at least
  :data:`NDD_PREDOMINANT_FRACTION` of its direct phenotypic-abnormality annotations lie in the
  nervous-system branch (HP:0000707 Abnormality of the nervous system, with HP:0000240
  Abnormality of skull size, since micro- and macrocephaly reflect brain size); otherwise it is
  *syndromic* (most of its phenotypes are in other organ systems). Gene-level HPO annotations
  are the union over all of a gene's diseases, so the rule is a share rather than strict
  confinement (only 27 of the 2,938 NDD genes have no phenotype outside the nervous system).
  A cluster's call from the share of NDD-predominant members with phenotype data: at least
  0.5 -> ``non_syndromic``; at least 0.25 -> ``mixed``; below -> ``syndromic``; fewer than
  :data:`MIN_SYNDROMICITY_MEMBERS` members with phenotype data -> ``unclear``.

Source: Human Phenotype Ontology annotations (hpo3 package, HPO release 2025-11-24; see
``clustering/datasets/hpo.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .enrichment import benjamini_hochberg, hypergeometric_cdf, hypergeometric_sf


@dataclass(frozen=True)
class InheritanceMode:
    """One mode of inheritance as HPO names it.

    Attributes:
        code: the value used in summaries (``inheritance_patterns``), snake_case of the HPO name.
        abbreviation: the usual clinical abbreviation (AD, AR, XL, ...), or "" where none.
        hpo_id, name: the HPO term.
    """

    code: str
    abbreviation: str
    hpo_id: str
    name: str


#: The modes reported, in display order (HPO release 2025-11-24 names).
INHERITANCE_MODES: tuple[InheritanceMode, ...] = (
    InheritanceMode("autosomal_dominant", "AD", "HP:0000006", "Autosomal dominant inheritance"),
    InheritanceMode("autosomal_recessive", "AR", "HP:0000007", "Autosomal recessive inheritance"),
    InheritanceMode("x_linked", "XL", "HP:0001417", "X-linked inheritance"),
    InheritanceMode("x_linked_recessive", "XLR", "HP:0001419", "X-linked recessive inheritance"),
    InheritanceMode("x_linked_dominant", "XLD", "HP:0001423", "X-linked dominant inheritance"),
    InheritanceMode("mitochondrial", "MT", "HP:0001427", "Mitochondrial inheritance"),
    InheritanceMode("y_linked", "YL", "HP:0001450", "Y-linked inheritance"),
    InheritanceMode("somatic_mosaicism", "", "HP:0001442", "Typified by somatic mosaicism"),
    InheritanceMode("sporadic", "SP", "HP:0003745", "Sporadic"),
    InheritanceMode("digenic", "", "HP:0010984", "Digenic inheritance"),
    InheritanceMode("polygenic", "", "HP:0010982", "Polygenic inheritance"),
)
MODE_BY_CODE = {m.code: m for m in INHERITANCE_MODES}
MODE_BY_HPO_ID = {m.hpo_id: m for m in INHERITANCE_MODES}

#: An entity is NDD-predominant when at least this share of its phenotypes is neurological.
NDD_PREDOMINANT_FRACTION = 0.5
#: A cluster's syndromicity is "unclear" with fewer members with phenotype data than this.
MIN_SYNDROMICITY_MEMBERS = 5
#: Share of NDD-predominant members from which a cluster is called non_syndromic / mixed.
NON_SYNDROMIC_SHARE = 0.5
MIXED_SHARE = 0.25
#: A mode is supported for a cluster when at least this share of its annotated members have it
#: (and at least :data:`MIN_SUPPORT_COUNT` of them), or when it is enriched at FDR < 0.05.
SUPPORTED_SHARE = 0.25
MIN_SUPPORT_COUNT = 2
TRAIT_FDR = 0.05


@dataclass(frozen=True)
class EntityTraits:
    """Supplementary data aligned with an annotation table's entities (length N each).

    Attributes:
        modes: mode code -> boolean array, True where the entity is annotated with the mode.
        neuro_fraction: share of each entity's direct phenotypic-abnormality annotations in the
            nervous-system branch; NaN for entities without phenotype annotations.
        source: where the data come from (shown with the figures).
    """

    modes: Mapping[str, np.ndarray]
    neuro_fraction: np.ndarray
    source: str

    @property
    def has_mode(self) -> np.ndarray:
        """True where the entity has at least one mode of inheritance."""
        out = np.zeros(self.neuro_fraction.size, dtype=bool)
        for values in self.modes.values():
            out |= values
        return out


def entity_traits_build(
    entity_ids: Sequence[str],
    per_entity: Mapping[str, tuple[frozenset[str], float | None]],
    *,
    source: str,
) -> EntityTraits:
    """Align per-entity (mode codes, neurological fraction) with ``entity_ids``; entities not
    in ``per_entity`` have no mode and no phenotype data.

    Raises:
        ValueError: an unknown mode code.
    """
    n = len(entity_ids)
    modes = {m.code: np.zeros(n, dtype=bool) for m in INHERITANCE_MODES}
    fraction = np.full(n, np.nan)
    for i, entity_id in enumerate(entity_ids):
        found = per_entity.get(entity_id)
        if found is None:
            continue
        codes, neuro = found
        for code in codes:
            if code not in modes:
                raise ValueError(f"unknown inheritance mode {code!r}")
            modes[code][i] = True
        if neuro is not None:
            fraction[i] = neuro
    return EntityTraits(modes=modes, neuro_fraction=fraction, source=source)


def _two_tailed(count: int, successes: int, n: int, total: int) -> tuple[float, float]:
    """(P(X >= count), P(X <= count)) for X ~ Hypergeom(total, successes, n)."""
    if n == 0 or total == 0:
        return 1.0, 1.0
    up = float(hypergeometric_sf(np.array([count]), np.array([successes]), n, total)[0])
    down = float(hypergeometric_cdf(np.array([count]), np.array([successes]), n, total)[0])
    return min(up, 1.0), min(down, 1.0)


def cluster_inheritance(traits: EntityTraits, member_indices: Sequence[int]) -> dict[str, Any]:
    """Mode-of-inheritance figures of one cluster.

    Returns:
        ``{"annotated": members with any mode, "members": n, "modes": [{"code", "abbreviation",
        "hpo_id", "name", "count", "share", "dataset_share", "fold_enrichment", "p_enriched",
        "p_depleted", "fdr_enriched", "fdr_depleted", "direction", "supported"}]}`` with one row
        per mode that any member or the dataset has, in :data:`INHERITANCE_MODES` order; shares
        are over annotated members (0..1), ``direction`` is ``enriched`` / ``depleted`` at FDR
        < 0.05 or "" and ``supported`` follows :data:`SUPPORTED_SHARE`.
    """
    members = np.asarray(sorted(member_indices), dtype=np.int64)
    annotated_all = traits.has_mode
    background = int(annotated_all.sum())
    annotated = int(annotated_all[members].sum()) if members.size else 0
    rows: list[dict[str, Any]] = []
    p_up: list[float] = []
    p_down: list[float] = []
    for mode in INHERITANCE_MODES:
        values = traits.modes[mode.code]
        in_dataset = int(values.sum())
        if in_dataset == 0:
            continue
        count = int(values[members].sum()) if members.size else 0
        up, down = _two_tailed(count, in_dataset, annotated, background)
        share = count / annotated if annotated else 0.0
        dataset_share = in_dataset / background if background else 0.0
        rows.append(
            {
                "code": mode.code,
                "abbreviation": mode.abbreviation,
                "hpo_id": mode.hpo_id,
                "name": mode.name,
                "count": count,
                "share": share,
                "dataset_share": dataset_share,
                "fold_enrichment": share / dataset_share if dataset_share else 0.0,
                "p_enriched": up,
                "p_depleted": down,
            }
        )
        p_up.append(up)
        p_down.append(down)
    fdr_up = benjamini_hochberg(np.array(p_up))
    fdr_down = benjamini_hochberg(np.array(p_down))
    for row, q_up, q_down in zip(rows, fdr_up, fdr_down, strict=True):
        row["fdr_enriched"] = float(q_up)
        row["fdr_depleted"] = float(q_down)
        row["direction"] = (
            "enriched" if q_up < TRAIT_FDR else "depleted" if q_down < TRAIT_FDR else ""
        )
        row["supported"] = bool(
            row["count"] >= MIN_SUPPORT_COUNT
            and (row["share"] >= SUPPORTED_SHARE or row["direction"] == "enriched")
        )
    return {"annotated": annotated, "members": int(members.size), "modes": rows}


def syndromicity_call(isolated_share: float, with_phenotypes: int) -> str:
    """The syndromicity a share of NDD-predominant members implies (see the module docstring)."""
    if with_phenotypes < MIN_SYNDROMICITY_MEMBERS:
        return "unclear"
    if isolated_share >= NON_SYNDROMIC_SHARE:
        return "non_syndromic"
    if isolated_share >= MIXED_SHARE:
        return "mixed"
    return "syndromic"


def cluster_syndromicity(traits: EntityTraits, member_indices: Sequence[int]) -> dict[str, Any]:
    """Syndromic vs NDD-predominant members of one cluster.

    Returns:
        ``{"with_phenotypes", "isolated_ndd", "isolated_share", "syndromic_share",
        "dataset_isolated_share", "p_isolated_enriched", "p_isolated_depleted", "call",
        "threshold"}``: counts of members, shares (0..1) over members with phenotype data,
        one-sided hypergeometric p-values of the NDD-predominant count against the dataset, and
        the call of :func:`syndromicity_call`.
    """
    members = np.asarray(sorted(member_indices), dtype=np.int64)
    known = ~np.isnan(traits.neuro_fraction)
    isolated = known & (np.nan_to_num(traits.neuro_fraction) >= NDD_PREDOMINANT_FRACTION)
    with_data = int(known[members].sum()) if members.size else 0
    count = int(isolated[members].sum()) if members.size else 0
    background = int(known.sum())
    in_dataset = int(isolated.sum())
    up, down = _two_tailed(count, in_dataset, with_data, background)
    share = count / with_data if with_data else 0.0
    return {
        "with_phenotypes": with_data,
        "isolated_ndd": count,
        "isolated_share": share,
        "syndromic_share": (1.0 - share) if with_data else 0.0,
        "dataset_isolated_share": in_dataset / background if background else 0.0,
        "p_isolated_enriched": up,
        "p_isolated_depleted": down,
        "call": syndromicity_call(share, with_data),
        "threshold": NDD_PREDOMINANT_FRACTION,
    }


def cluster_traits(traits: EntityTraits | None, member_indices: Sequence[int]) -> dict[str, Any]:
    """Both figures of a cluster, ``{"source", "inheritance", "syndromicity"}``; ``{}`` when the
    dataset has no supplementary data."""
    if traits is None:
        return {}
    return {
        "source": traits.source,
        "inheritance": cluster_inheritance(traits, member_indices),
        "syndromicity": cluster_syndromicity(traits, member_indices),
    }
