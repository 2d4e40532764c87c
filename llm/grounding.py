"""Grounding rules shared by the summary checks, the judge and the extractive provider.

What counts as a gene mention in prose (:func:`find_symbols`), how names and pathway citations
are compared (:func:`normalize_name`, :func:`pathway_keys`), which dataset symbols are worth
checking, the confidence level a cluster's FDRs imply, and the grounding bands a judge's
``grounding_percent`` is held to. Pure: no Django, no services, no provider; both
``llm.services`` (validation, judging) and ``llm.providers`` (the extractive provider and its
rule-based judge) import it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from llm.prompts.templates import LARGE_CLUSTER_SIZE

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


def field_texts(value: Any) -> list[str]:
    """The texts of one summary field: ``[]`` for None, ``[value]`` for a string, each non-None
    item as a string for a list or tuple, else ``[str(value)]``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value if item is not None]
    return [str(value)]


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


def is_checkable_symbol(symbol: str) -> bool:
    """Whether ``symbol`` is worth looking for in prose: at least :data:`MIN_SYMBOL_LENGTH`
    characters and not one of the :data:`COMMON_WORD_SYMBOLS`."""
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
    return frozenset(s for s in dataset_symbols if is_checkable_symbol(s))


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


@dataclass(frozen=True)
class GroundingBands:
    """Percent of grounded claims: accept at or above ``accept``, reject below ``reject``."""

    accept: int
    reject: int


NORMAL_BANDS = GroundingBands(accept=80, reject=50)
LARGE_CLUSTER_BANDS = GroundingBands(accept=70, reject=40)


def grounding_bands(cluster_size: int) -> GroundingBands:
    """The bands a cluster of ``cluster_size`` members is judged at: relaxed from
    ``LARGE_CLUSTER_SIZE`` (300) members on (see :mod:`llm.services.judging`)."""
    return LARGE_CLUSTER_BANDS if cluster_size >= LARGE_CLUSTER_SIZE else NORMAL_BANDS
