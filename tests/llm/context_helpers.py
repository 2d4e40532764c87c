"""Hand-built cluster contexts for the prompt, validation and extractive-provider tests."""

from __future__ import annotations

from typing import Any

from llm.context import ClusterContext, ClusterType, TermRow


def term(
    category: str,
    term_id: str,
    name: str,
    fdr: float,
    *,
    overlap: int = 3,
    term_size: int = 100,
    fold: float = 2.0,
    direction: str = "enriched",
    rank: int | None = None,
    represents: int = 1,
    branches: tuple[str, ...] = (),
) -> TermRow:
    """A TermRow with a p-value a tenth of its FDR (fold enrichment 2 unless given)."""
    return TermRow(
        category,
        term_id,
        name,
        fdr,
        fdr / 10,
        overlap,
        term_size,
        fold,
        direction=direction,
        evidence_rank=rank,
        represents=represents,
        branches=branches,
    )


def traits(
    *,
    supported: tuple[str, ...] = (),
    call: str = "",
    isolated_share: float = 0.0,
    annotated: int = 10,
) -> dict[str, Any]:
    """Inheritance and syndromicity figures in the shape of clustering.domain.traits: the
    ``supported`` modes at 60% share (enriched), autosomal dominant at 10% otherwise."""
    modes = []
    for code in ("autosomal_dominant", "autosomal_recessive", "x_linked"):
        on = code in supported
        modes.append(
            {
                "code": code,
                "abbreviation": {"autosomal_dominant": "AD", "autosomal_recessive": "AR"}.get(
                    code, "XL"
                ),
                "hpo_id": "HP:0000000",
                "name": code.replace("_", " ").capitalize() + " inheritance",
                "count": 6 if on else 1,
                "share": 0.6 if on else 0.1,
                "dataset_share": 0.3,
                "fold_enrichment": 2.0 if on else 0.33,
                "p_enriched": 1e-4 if on else 0.9,
                "p_depleted": 0.99 if on else 0.2,
                "fdr_enriched": 3e-4 if on else 0.9,
                "fdr_depleted": 0.99 if on else 0.3,
                "direction": "enriched" if on else "",
                "supported": on,
            }
        )
    out: dict[str, Any] = {
        "inheritance": {"annotated": annotated, "members": annotated, "modes": modes}
    }
    if call:
        out["syndromicity"] = {
            "with_phenotypes": annotated,
            "isolated_ndd": round(isolated_share * annotated),
            "isolated_share": isolated_share,
            "syndromic_share": 1 - isolated_share,
            "dataset_isolated_share": 0.25,
            "p_isolated_enriched": 0.5,
            "p_isolated_depleted": 0.5,
            "call": call,
            "threshold": 0.5,
        }
    return out


def make_ctx(
    cluster_type: ClusterType,
    symbols: list[str],
    terms: list[TermRow],
    *,
    dataset_symbols: set[str] | None = None,
    number: int = 1,
    size: int | None = None,
    traits: dict[str, Any] | None = None,
    derived_confidence: str = "",
    stability: float | None = None,
    specificity: float | None = None,
    signature: tuple[str, ...] = (),
    dataset_size: int = 0,
) -> ClusterContext:
    """Members (E0000.., symbol), terms sorted by FDR; members are also dataset symbols."""
    return ClusterContext(
        cluster_type=cluster_type,
        cluster_number=number,
        size=len(symbols) if size is None else size,
        members=tuple((f"E{i:04d}", s) for i, s in enumerate(symbols)),
        terms=tuple(sorted(terms, key=lambda t: (t.fdr, t.term_id))),
        dataset_symbols=frozenset(dataset_symbols or set()) | frozenset(symbols),
        dataset_size=dataset_size,
        stability=stability,
        specificity=specificity,
        derived_confidence=derived_confidence,
        signature=signature,
        traits=dict(traits or {}),
    )
