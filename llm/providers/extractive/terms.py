"""The enrichment table and the words of term names, as the extractive provider reads them.

Shared by the summary builder (:mod:`.summary`) and the rule-based judge (:mod:`.judge`): the
terms of a ``<cluster_data>`` block, content words and stems, the labels every extractive
summary carries, and the upper-case words that look like gene symbols but are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Prefix of every extractive summary text.
EXTRACTIVE_LABEL = "[Extractive summary, no LLM]"
#: Tags the extractive provider adds that do not come from term names.
EXTRACTIVE_LABEL_TAGS = ("extractive", "thin-enrichment", "unannotated")
#: Placeholder themes used when fewer than 3 distinct term names are available.
THIN_DATA_THEMES = (
    "No significant enrichment",
    "Enrichment too thin for further themes",
    "Needs manual review",
)


#: Fraction of a theme's or tag's content words that must occur in the term names for the
#: rule-based judge to count it as derived from them.
GROUNDED_WORD_FRACTION = 0.5

#: Upper-case words common in biomedical prose that look like gene symbols but are not.
ACRONYMS = frozenset(
    {
        "ADHD", "ADP", "AMPA", "AND", "ASD", "ATP", "BMP", "CNS", "CNV", "CRISPR", "DNA", "ECG",
        "ECM", "EEG", "EKG", "EMG", "ERK", "FDR", "GABA", "GDD", "GDP", "GOF", "GTP", "HGNC",
        "HLA", "HPO", "JAK", "KEGG", "LLM", "LOF", "MAPK", "MHC", "MRI", "NADH", "NADPH", "NDD",
        "NMD", "NMDA", "NOT", "OCD", "OMIM", "PKA", "PKC", "PNS", "RNA", "SNP", "STAT", "TCA",
        "TGF", "THE", "UTR", "WITH", "WNT",
    }
)  # fmt: skip

_STOPWORDS = frozenset(
    {
        "a", "an", "and", "as", "at", "by", "for", "from", "in", "into", "of", "on", "or", "the",
        "to", "via", "with", "without", "other", "due", "type", "like",
    }
)  # fmt: skip
#: Words too generic to be a tag on their own.
_GENERIC_WORDS = frozenset(
    {
        "abnormal", "abnormality", "activity", "biological", "cellular", "dependent", "involved",
        "mediated", "negative", "pathway", "pathways", "positive", "process", "regulation",
        "response", "system", "morphology", "signaling", "human",
    }
)  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_GENE_LIKE = re.compile(r"[A-Z][A-Z0-9]{2,}")


@dataclass(frozen=True)
class _Term:
    category: str
    term_id: str
    name: str
    fdr: float
    overlap: int
    term_size: int
    fold: float = 0.0
    coverage: float = 0.0
    represents: int = 1
    branches: tuple[str, ...] = ()
    expected: float | None = None
    order: int = 0

    @property
    def display_name(self) -> str:
        """The name without a trailing copy of its id ("Glutathione Metabolism WP100" ->
        "Glutathione Metabolism"; Enrichr libraries append ids to names)."""
        for suffix in (f" ({self.term_id})", f" {self.term_id}"):
            if self.term_id and self.name.endswith(suffix) and len(self.name) > len(suffix):
                return self.name[: -len(suffix)]
        return self.name


def _terms(data: Mapping[str, Any], key: str = "terms") -> list[_Term]:
    """The terms of one block of a cluster_data dict (``terms``: enriched evidence,
    ``depleted_terms``), in evidence order: by position within their category (the evidence
    rank), categories interleaved, ties by FDR."""
    out: list[_Term] = []
    terms = data.get(key) or {}
    if not isinstance(terms, Mapping):
        raise ValueError(f"cluster_data {key!r} is not an object")
    for category, rows in terms.items():
        for position, row in enumerate(rows or []):
            expected = row.get("expected")
            out.append(
                _Term(
                    category=str(category),
                    term_id=str(row.get("term_id", "")),
                    name=str(row.get("name", "")),
                    fdr=float(row.get("fdr", 1.0)),
                    overlap=int(row.get("overlap", 0)),
                    term_size=int(row.get("term_size", 0)),
                    fold=float(row.get("fold_enrichment", 0.0) or 0.0),
                    coverage=float(row.get("coverage", 0.0) or 0.0),
                    represents=int(row.get("represents", 1) or 1),
                    branches=tuple(str(b) for b in row.get("branches") or ()),
                    expected=float(expected) if expected is not None else None,
                    order=position,
                )
            )
    out.sort(key=lambda t: (t.order, t.fdr, t.category, t.term_id))
    return out


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.casefold()) if len(w) >= 3 and w not in _STOPWORDS]


def _fmt_fdr(fdr: float) -> str:
    return f"{fdr:.1e}"


def _pct(share: float) -> str:
    return f"{round(100 * share)}%"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _quote_list(items: list[str], limit: int = 5) -> str:
    shown = [f"'{item}'" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"{len(items) - limit} more")
    return ", ".join(shown)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text
