"""Hand-built cluster contexts for the prompt, validation and extractive-provider tests."""

from __future__ import annotations

from llm.context import ClusterContext, ClusterType, TermRow


def term(
    category: str, term_id: str, name: str, fdr: float, *, overlap: int = 3, term_size: int = 100
) -> TermRow:
    """A TermRow with a p-value a tenth of its FDR and a nominal fold enrichment."""
    return TermRow(category, term_id, name, fdr, fdr / 10, overlap, term_size, 2.0)


def make_ctx(
    cluster_type: ClusterType,
    symbols: list[str],
    terms: list[TermRow],
    *,
    dataset_symbols: set[str] | None = None,
    number: int = 1,
) -> ClusterContext:
    """Members (E0000.., symbol), terms sorted by FDR; members are also dataset symbols."""
    return ClusterContext(
        cluster_type=cluster_type,
        cluster_number=number,
        size=len(symbols),
        members=tuple((f"E{i:04d}", s) for i, s in enumerate(symbols)),
        terms=tuple(sorted(terms, key=lambda t: (t.fdr, t.term_id))),
        dataset_symbols=frozenset(dataset_symbols or set()) | frozenset(symbols),
    )
