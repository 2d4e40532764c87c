"""Deterministic checks of a generated summary against its cluster, and derived confidence.

Nothing here calls a model or the database: inputs are a :class:`~llm.context.ClusterContext`
and a summary (pydantic model or dict); outputs are human-readable failures (fed back to the
model on regeneration) or a confidence level computed from the enrichment statistics alone.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel

from llm.context import PATHWAY_CATEGORIES, ClusterContext

Confidence = Literal["high", "medium", "low"]

#: FDR below which a term counts as significant.
SIGNIFICANT_FDR = 0.05
#: How many lowest-FDR terms the mean FDR is taken over.
TOP_TERMS = 10
#: ``high``: at least this many significant terms ...
HIGH_MIN_SIGNIFICANT = 10
#: ... and a mean FDR of the top terms strictly below this.
HIGH_MAX_MEAN_FDR = 1e-4
#: ``medium``: at least this many significant terms ...
MEDIUM_MIN_SIGNIFICANT = 3
#: ... and a mean FDR of the top terms strictly below this.
MEDIUM_MAX_MEAN_FDR = 0.01

#: Symbols shorter than this are never matched (too many false hits: "ID", "MS", "GO").
MIN_SYMBOL_LENGTH = 3

#: Dataset symbols that are also English words (or common all-caps words) and are ignored when
#: written in capitals in prose: a summary saying "SET" or "REST" is rarely naming that gene.
COMMON_WORD_SYMBOLS = frozenset(
    {
        "ACE", "AIM", "ARC", "BAD", "BID", "CAPS", "CAST", "CAT", "CLOCK", "COPE", "GAL", "IMPACT",
        "MAX", "NOTE", "REST", "SET", "SHE", "STAR", "TANK", "WAS",
    }
)  # fmt: skip

#: Dataset symbols that are also clinical abbreviations or syndrome names. Written alone they
#: are read as the clinical term ("PAH" pulmonary arterial hypertension, "DMD" Duchenne muscular
#: dystrophy, "OTC deficiency"); they count as a gene mention only in a gene context: followed by
#: one of :data:`GENE_CONTEXT_WORDS` ("DMD gene", "PAH variants") or joined to "-related" /
#: "-associated" ("DMD-related").
CLINICAL_ABBREVIATIONS = frozenset(
    {
        "ADA",  # adenosine deaminase deficiency
        "AMN",  # adrenomyeloneuropathy
        "ASL",  # argininosuccinic aciduria (argininosuccinate lyase deficiency)
        "ATR",  # ATR-X and ATR-16 syndromes
        "CBS",  # CBS deficiency (classic homocystinuria), Charles Bonnet syndrome
        "DLD",  # developmental language disorder
        "DMD",  # Duchenne muscular dystrophy
        "GAN",  # giant axonal neuropathy
        "OTC",  # ornithine transcarbamylase deficiency
        "PAH",  # pulmonary arterial hypertension; PAH deficiency (phenylketonuria)
        "PTS",  # PTPS deficiency; post-traumatic stress
    }
)
#: Words after a clinical abbreviation that make it a gene mention.
GENE_CONTEXT_WORDS = frozenset(
    {
        "gene", "genes", "variant", "variants", "mutation", "mutations", "protein", "proteins",
        "locus", "loci", "allele", "alleles", "knockout", "expression", "transcript",
    }
)  # fmt: skip
#: Hyphenated suffixes after a symbol that make it a gene mention ("DMD-related").
GENE_CONTEXT_SUFFIXES = frozenset({"related", "associated", "linked", "mediated", "dependent"})

#: Free-text fields scanned for gene symbols, per cluster type. Pathways are excluded: they are
#: checked (stricter) against the pathway terms.
FUNCTIONAL_TEXT_FIELDS = ("summary", "key_themes", "tags", "clinical_relevance")
PHENOTYPE_TEXT_FIELDS = (
    "summary",
    "key_phenotype_themes",
    "notably_absent",
    "clinical_pattern",
    "syndrome_hints",
    "inheritance_patterns",
    "tags",
    "data_quality_note",
)
#: Phenotype fields allowed to name member genes: many syndromes are named after their gene
#: ("ADNP syndrome").
PHENOTYPE_GENE_NAME_FIELDS = frozenset({"syndrome_hints"})

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_WHITESPACE = re.compile(r"\s+")
_EDGE_CHARS = string.punctuation + string.whitespace


def normalize_name(text: str) -> str:
    """Normalised form for comparing names: casefold, collapse runs of whitespace to one space,
    strip whitespace and ASCII punctuation at both ends (``" Wnt  Signaling." -> "wnt signaling"``).
    """
    return _WHITESPACE.sub(" ", text.casefold()).strip(_EDGE_CHARS)


def pathway_keys(name: str, term_id: str = "") -> set[str]:
    """Normalised names under which a pathway term may be cited.

    The name itself, plus, when a term id is known, the name with the id appended
    (``"Glutathione Metabolism WP100"`` or ``"... (WP100)"``) and the name with a trailing id
    removed (Enrichr libraries put the id at the end of the name), so either spelling matches.
    """
    keys = {normalize_name(name)}
    if term_id:
        base = name.rstrip()
        for suffix in (f" ({term_id})", f" {term_id}"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        keys |= {
            normalize_name(base),
            normalize_name(f"{base} {term_id}"),
            normalize_name(f"{base} ({term_id})"),
        }
    keys.discard("")
    return keys


def find_symbols(text: str, symbols: Collection[str]) -> list[str]:
    """Symbols from ``symbols`` named in ``text`` as genes, unique, in order of first appearance.

    Matching is case-sensitive on whole words: a word is a maximal run of letters and digits,
    optionally joined by hyphens. Inside a hyphenated word the longest hyphen-joined parts that
    are symbols win, left to right, so ``"NKX2-1"`` matches the symbol ``NKX2-1`` and
    ``"TP53-mediated"`` matches ``TP53``; ``"TP53s"`` or ``"xTP53"`` match nothing.

    Two readings are not gene mentions:

    * a symbol joined by a hyphen to a part of one or two characters that is not a symbol
      itself, as in the syndrome names "ATR-X" or "ATR-16";
    * a symbol in :data:`CLINICAL_ABBREVIATIONS` ("PAH", "DMD", "OTC" ...) unless a gene context
      follows it: a word of :data:`GENE_CONTEXT_WORDS` ("DMD gene", "PAH variants") or a
      hyphenated suffix of :data:`GENE_CONTEXT_SUFFIXES` ("DMD-related").
    """
    found: list[str] = []
    seen: set[str] = set()
    matches = list(_TOKEN.finditer(text))
    for position, match in enumerate(matches):
        parts = match.group(0).split("-")
        following = matches[position + 1].group(0).casefold() if position + 1 < len(matches) else ""
        i = 0
        while i < len(parts):
            hit = 0
            for j in range(len(parts), i, -1):
                if "-".join(parts[i:j]) in symbols:
                    hit = j
                    break
            if not hit:
                i += 1
                continue
            symbol = "-".join(parts[i:hit])
            rest = parts[hit] if hit < len(parts) else ""
            syndrome_suffix = 0 < len(rest) <= 2 and rest not in symbols
            if symbol in CLINICAL_ABBREVIATIONS:
                context = (rest.casefold() in GENE_CONTEXT_SUFFIXES) or (
                    not rest and following in GENE_CONTEXT_WORDS
                )
                named = context
            else:
                named = not syndrome_suffix
            if named and symbol not in seen:
                seen.add(symbol)
                found.append(symbol)
            # the one- or two-character suffix belongs to the syndrome name ("ATR-X")
            i = hit + 1 if syndrome_suffix else hit
    return found


def summary_as_dict(summary: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """A summary as a plain JSON-like dict (pydantic models are dumped in JSON mode)."""
    if isinstance(summary, BaseModel):
        return summary.model_dump(mode="json")
    return dict(summary)


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value if item is not None]
    return [str(value)]


def _is_checkable(symbol: str) -> bool:
    return len(symbol) >= MIN_SYMBOL_LENGTH and symbol not in COMMON_WORD_SYMBOLS


def checkable_dataset_symbols(dataset_symbols: Collection[str]) -> frozenset[str]:
    """The dataset's symbols minus those shorter than :data:`MIN_SYMBOL_LENGTH` and the
    :data:`COMMON_WORD_SYMBOLS`, computed once per dataset symbol set when it is a frozenset
    (contexts of one run share one, so every item after the first is a cache hit found by
    identity; at most 8 sets are kept). Any other collection is frozen first (O(its size))."""
    if not isinstance(dataset_symbols, frozenset):
        dataset_symbols = frozenset(dataset_symbols)
    return _filtered_dataset_symbols(dataset_symbols)


@lru_cache(maxsize=8)
def _filtered_dataset_symbols(dataset_symbols: frozenset[str]) -> frozenset[str]:
    return frozenset(s for s in dataset_symbols if _is_checkable(s))


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
        frozenset(s for s in ctx.symbols if _is_checkable(s)),
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
        for text in _texts(data.get(field_name)):
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
        for pathway in _texts(data.get("pathways")):
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
    for mode in _texts(data.get("inheritance_patterns")):
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
    for item in _texts(data.get("notably_absent")):
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


def confidence_from_fdrs(fdrs: Iterable[float]) -> Confidence:
    """Confidence level implied by a cluster's term FDRs alone (any order, any categories); the
    fallback of :func:`derived_confidence` for clusters stored without quality figures.

    Let ``n_sig`` be the number of FDRs < 0.05 and ``mean_top`` the arithmetic mean of the 10
    lowest FDRs (of all of them when fewer than 10):

    * ``high``: ``n_sig >= 10`` and ``mean_top < 1e-4``;
    * ``medium``: otherwise ``n_sig >= 3`` and ``mean_top < 0.01``;
    * ``low``: everything else, including no terms at all.
    """
    values = sorted(float(f) for f in fdrs)
    n_sig = sum(1 for f in values if f < SIGNIFICANT_FDR)
    top = values[:TOP_TERMS]
    if not top:
        return "low"
    mean_top = sum(top) / len(top)
    if n_sig >= HIGH_MIN_SIGNIFICANT and mean_top < HIGH_MAX_MEAN_FDR:
        return "high"
    if n_sig >= MEDIUM_MIN_SIGNIFICANT and mean_top < MEDIUM_MAX_MEAN_FDR:
        return "medium"
    return "low"


def derived_confidence(ctx: ClusterContext) -> Confidence:
    """The cluster's derived confidence, independent of any model's self-assessment: the level
    computed at clustering time from stability and specificity (see
    ``clustering.domain.quality``), or for a cluster stored without it, the level its enriched
    FDRs imply (:func:`confidence_from_fdrs`)."""
    if ctx.derived_confidence in ("high", "medium", "low"):
        return ctx.derived_confidence  # type: ignore[return-value]
    return confidence_from_fdrs(term.fdr for term in ctx.terms if term.direction == "enriched")
