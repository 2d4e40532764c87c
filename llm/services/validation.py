"""Deterministic checks of a generated summary against its cluster, and derived confidence.

Nothing here calls a model or the database: inputs are a :class:`~llm.context.ClusterContext`
and a summary (pydantic model or dict); outputs are human-readable failures (fed back to the
model on regeneration) or a confidence level computed from the enrichment statistics alone.
The rules of what counts as a gene mention or a pathway citation live in :mod:`llm.grounding`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from llm.context import PATHWAY_CATEGORIES, ClusterContext
from llm.grounding import (
    FUNCTIONAL_TEXT_FIELDS,
    PHENOTYPE_GENE_NAME_FIELDS,
    PHENOTYPE_TEXT_FIELDS,
    Confidence,
    checkable_dataset_symbols,
    confidence_from_fdrs,
    field_texts,
    find_symbols,
    is_checkable_symbol,
    normalize_name,
    pathway_keys,
)


def summary_as_dict(summary: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """A summary as a plain JSON-like dict (pydantic models are dumped in JSON mode)."""
    if isinstance(summary, BaseModel):
        return summary.model_dump(mode="json")
    return dict(summary)


class _CheckableSymbols(Collection[str]):
    """Read-only view of the checkable symbols of one cluster: the (cached) filtered dataset
    symbols plus the filtered members, minus the symbols quoted in term names. Containment is
    O(1) and nothing of dataset size is copied per cluster."""

    def __init__(self, dataset: frozenset[str], members: frozenset[str]) -> None:
        self._dataset = dataset
        self._members = members
        self._quoted: frozenset[str] = frozenset()

    def exclude(self, quoted: Iterable[str]) -> None:
        self._quoted = frozenset(quoted)

    def __contains__(self, symbol: object) -> bool:
        return (symbol in self._dataset or symbol in self._members) and symbol not in self._quoted

    def __iter__(self) -> Iterator[str]:
        yield from (s for s in self._dataset if s not in self._quoted)
        yield from (s for s in self._members - self._dataset if s not in self._quoted)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _checkable(ctx: ClusterContext) -> _CheckableSymbols:
    view = _CheckableSymbols(
        checkable_dataset_symbols(ctx.dataset_symbols),
        frozenset(s for s in ctx.symbols if is_checkable_symbol(s)),
    )
    quoted: set[str] = set()
    for term in ctx.terms:
        quoted.update(find_symbols(term.name, view))
    view.exclude(quoted)
    return view


def checkable_symbols(ctx: ClusterContext) -> set[str]:
    """Symbols looked for in summary text under the documented rule.

    Every dataset symbol and member symbol, minus symbols shorter than
    :data:`MIN_SYMBOL_LENGTH`, minus :data:`COMMON_WORD_SYMBOLS`, minus symbols that occur as a
    word in one of the cluster's own term names (quoting an enriched term such as
    "MECP2 And Associated Rett Syndrome" is not naming a gene).

    The filtered dataset symbols are cached per dataset symbol set (at most 8 sets), so
    validating many clusters of one run does the dataset-sized work once.
    """
    return set(_checkable(ctx))


def validate_entities(ctx: ClusterContext, summary: BaseModel | Mapping[str, Any]) -> list[str]:
    """Entity-level grounding failures of ``summary`` for cluster ``ctx``; empty when it passes.

    Rules:

    * Genes. Each free-text field (see :data:`FUNCTIONAL_TEXT_FIELDS` /
      :data:`PHENOTYPE_TEXT_FIELDS`) is scanned with :func:`find_symbols` for the symbols of
      :func:`checkable_symbols` (dataset symbols, case-sensitive whole words, ignoring symbols of
      1-2 characters, :data:`COMMON_WORD_SYMBOLS` and symbols quoted from the cluster's own term
      names). A named symbol that is not a cluster member is a failure. For phenotype clusters,
      whose prompt forbids gene names, naming a member gene is a failure too, except in
      ``syndrome_hints`` (syndromes are often named after a gene).
    * Pathways (functional only). Each entry of ``pathways`` must equal, after
      :func:`normalize_name` (casefold, collapsed whitespace, punctuation stripped at the ends),
      the name of one of the cluster's enriched terms whose category is in
      ``PATHWAY_CATEGORIES`` (the name with its term id appended or removed also matches, see
      :func:`pathway_keys`).

    Returns:
        one human-readable sentence per failure, deterministic order (field order, then order of
        appearance).
    """
    data = summary_as_dict(summary)
    failures: list[str] = []
    members = set(ctx.symbols)
    symbols = _checkable(ctx)
    fields = FUNCTIONAL_TEXT_FIELDS if ctx.cluster_type == "functional" else PHENOTYPE_TEXT_FIELDS

    non_members: dict[str, list[str]] = {}
    named_members: dict[str, list[str]] = {}
    for field_name in fields:
        for text in field_texts(data.get(field_name)):
            for symbol in find_symbols(text, symbols):
                if symbol not in members:
                    where = non_members.setdefault(symbol, [])
                elif ctx.cluster_type == "phenotype" and field_name not in (
                    PHENOTYPE_GENE_NAME_FIELDS
                ):
                    where = named_members.setdefault(symbol, [])
                else:
                    continue
                if field_name not in where:
                    where.append(field_name)
    for symbol, where in non_members.items():
        failures.append(
            f"Gene {symbol!r} is named in {', '.join(where)} but is not a member of "
            f"cluster {ctx.cluster_number}."
        )
    for symbol, where in named_members.items():
        failures.append(
            f"Gene {symbol!r} is named in {', '.join(where)}: phenotype summaries must use "
            "clinical phenotype language and name no genes."
        )

    if ctx.cluster_type == "functional":
        valid: set[str] = set()
        for term in ctx.terms:
            if term.category in PATHWAY_CATEGORIES and term.direction == "enriched":
                valid |= pathway_keys(term.name, term.term_id)
        for pathway in field_texts(data.get("pathways")):
            if normalize_name(pathway) not in valid:
                failures.append(
                    f"Pathway {pathway!r} is not an enriched pathway term of cluster "
                    f"{ctx.cluster_number}; copy pathway names verbatim from the pathway terms."
                )
    return failures


#: The syndromicity values that contradict each call (the opposite end); "mixed" and
#: "unclear" never contradict, the judge corrects a near miss.
_CONTRADICTS = {"syndromic": "non_syndromic", "non_syndromic": "syndromic"}


def validate_supplementary(
    ctx: ClusterContext, summary: BaseModel | Mapping[str, Any]
) -> list[str]:
    """Failures of a phenotype summary's inheritance, syndromicity and notably_absent fields
    against the cluster's figures; empty when it passes (and for functional summaries).

    Rules:

    * every ``inheritance_patterns`` entry must be a mode the inheritance figures support
      (``ClusterContext.supported_modes``: at least 25% of the annotated members, or enriched at
      FDR < 0.05, and at least 2 members); with no inheritance data the list must be empty;
    * ``syndromicity`` must not contradict the figures' call (``syndromic`` when at least half
      of the members are NDD-predominant, or ``non_syndromic`` when fewer than a quarter are);
    * no ``notably_absent`` entry may be the name of an enriched term of the cluster (calling
      an over-represented phenotype absent inverts the direction).
    """
    if ctx.cluster_type != "phenotype":
        return []
    data = summary_as_dict(summary)
    failures: list[str] = []
    supported = ctx.supported_modes()
    for mode in field_texts(data.get("inheritance_patterns")):
        if mode not in supported:
            figures = ", ".join(supported) or "none (no mode is supported by the data)"
            failures.append(
                f"Inheritance mode {mode!r} is not supported by the inheritance figures of "
                f"cluster {ctx.cluster_number}; supported modes: {figures}."
            )
    call = str(ctx.syndromicity.get("call", ""))
    claimed = str(data.get("syndromicity", ""))
    if call in _CONTRADICTS and claimed == _CONTRADICTS[call]:
        share = float(ctx.syndromicity.get("isolated_share", 0.0))
        failures.append(
            f"Syndromicity {claimed!r} contradicts the data: {share:.0%} of the members with "
            f"phenotype data are NDD-predominant, which the figures call {call!r}."
        )
    enriched = {normalize_name(t.name) for t in ctx.terms if t.direction == "enriched"}
    for item in field_texts(data.get("notably_absent")):
        if normalize_name(item) in enriched:
            failures.append(
                f"{item!r} is listed as notably absent but is an enriched term of cluster "
                f"{ctx.cluster_number}; notably_absent may only name depleted terms."
            )
    return failures


def validate_summary(ctx: ClusterContext, summary: BaseModel | Mapping[str, Any]) -> list[str]:
    """Every deterministic check of a summary: :func:`validate_entities` then
    :func:`validate_supplementary`; one sentence per failure, empty when it passes."""
    return validate_entities(ctx, summary) + validate_supplementary(ctx, summary)


def derived_confidence(ctx: ClusterContext) -> Confidence:
    """The cluster's derived confidence, independent of any model's self-assessment: the level
    computed at clustering time from stability and specificity (see
    ``clustering.domain.quality``), or for a cluster stored without it, the level its enriched
    FDRs imply (:func:`confidence_from_fdrs`)."""
    if ctx.derived_confidence in ("high", "medium", "low"):
        return ctx.derived_confidence  # type: ignore[return-value]
    return confidence_from_fdrs(term.fdr for term in ctx.terms if term.direction == "enriched")
