"""The ``extractive`` provider: a deterministic, grounded, non-LLM baseline.

It reads the ``<cluster_data>`` block of the user prompt (see :mod:`llm.prompts.templates`) and
writes a summary using only the cluster's enrichment table: themes are term names (without a
trailing copy of the term id), pathways are term names copied verbatim, tags are short term names
or words of term names, confidence is derived from the FDRs.
Every output is labelled: summaries start with :data:`EXTRACTIVE_LABEL` and carry the tag
``extractive``. For :class:`~llm.prompts.schemas.JudgeVerdict` requests it runs a rule-based
grounding check of the ``<summary>`` block instead (:func:`rule_based_verdict`).

Same request, same output (byte for byte): no randomness, no clock in the content. Tokens are 0,
the model version is ``extractive-v1``. It is the embedded default (DESIGN.md) and the baseline
that LLM providers are measured against.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from llm.context import PATHWAY_CATEGORIES
from llm.grounding import (
    COMMON_WORD_SYMBOLS,
    FUNCTIONAL_TEXT_FIELDS,
    MEDIUM_MIN_SIGNIFICANT,
    MIN_SYMBOL_LENGTH,
    PHENOTYPE_GENE_NAME_FIELDS,
    PHENOTYPE_TEXT_FIELDS,
    SIGNIFICANT_FDR,
    GroundingBands,
    checkable_dataset_symbols,
    confidence_from_fdrs,
    find_symbols,
    grounding_bands,
    normalize_name,
    pathway_keys,
)
from llm.prompts.schemas import (
    CONFIDENCE_ORDER,
    Confidence,
    FunctionalSummary,
    JudgeVerdict,
    PhenotypeSummary,
    Verdict,
)
from llm.prompts.templates import parse_cluster_data, parse_summary_block
from llm.providers.base import ProviderError, ProviderRequest, ProviderResult

T = TypeVar("T", bound=BaseModel)

MODEL_VERSION = "extractive-v1"
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
#: Maximum pathways an extractive functional summary lists.
MAX_PATHWAYS = 5

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


#: Evidence terms covering less than this share of the members do not characterise a cluster
#: in its first sentence (unless nothing covers more).
MIN_THEME_COVERAGE = 0.1
#: Depleted terms named in notably_absent at most.
MAX_ABSENT = 3
_BRANCH_PREFIXES = ("Abnormality of the ", "Abnormality of ", "Abnormal ")
#: How the first sentence names the top-level HPO branches (HP:0000118 children, release
#: 2025-11-24); other branch names are shortened by :data:`_BRANCH_PREFIXES`.
BRANCH_ADJECTIVES = {
    "Abnormal cellular phenotype": "cellular",
    "Abnormality of blood and blood-forming tissues": "haematological",
    "Abnormality of head or neck": "head and neck",
    "Abnormality of limbs": "limb",
    "Abnormality of metabolism/homeostasis": "metabolic",
    "Abnormality of prenatal development or birth": "prenatal and birth",
    "Abnormality of the breast": "breast",
    "Abnormality of the cardiovascular system": "cardiovascular",
    "Abnormality of the digestive system": "digestive",
    "Abnormality of the ear": "ear",
    "Abnormality of the endocrine system": "endocrine",
    "Abnormality of the eye": "eye",
    "Abnormality of the genitourinary system": "genitourinary",
    "Abnormality of the immune system": "immune",
    "Abnormality of the integument": "skin, hair and nail",
    "Abnormality of the musculoskeletal system": "musculoskeletal",
    "Abnormality of the nervous system": "neurological",
    "Abnormality of the respiratory system": "respiratory",
    "Abnormality of the thoracic cavity": "thoracic",
    "Abnormality of the voice": "voice",
    "Constitutional symptom": "constitutional",
    "Growth abnormality": "growth",
    "Neoplasm": "neoplastic",
}
_CALL_WORDS = {
    "syndromic": "syndromic",
    "non_syndromic": "predominantly neurodevelopmental (non-syndromic)",
    "mixed": "mixed syndromic and neurodevelopmental",
    "unclear": "",
}


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


def _branch_label(branch: str) -> str:
    """A readable organ-system label: "Abnormality of head or neck" -> "head and neck"."""
    if branch in BRANCH_ADJECTIVES:
        return BRANCH_ADJECTIVES[branch]
    for prefix in _BRANCH_PREFIXES:
        if branch.startswith(prefix) and len(branch) > len(prefix):
            return branch[len(prefix) :]
    return _lower_first(branch)


def _mentions_member(name: str, members: Collection[str]) -> bool:
    return bool(find_symbols(name, members))


class _Evidence:
    """What the extractive summary is built from: one cluster_data dict (prompt v2)."""

    def __init__(self, data: Mapping[str, Any], *, avoid_member_names: bool) -> None:
        self.size = int(data.get("size") or data.get("members_total") or 0)
        members = [str(m) for m in data.get("members") or []]
        self.signature = [str(m) for m in data.get("signature_members") or []]
        terms = _terms(data)
        depleted = _terms(data, "depleted_terms")
        if avoid_member_names:
            # Phenotype summaries must not name genes: drop any term whose name quotes a member.
            member_set = {m for m in members if len(m) >= MIN_SYMBOL_LENGTH}
            terms = [t for t in terms if not _mentions_member(t.name, member_set)]
            depleted = [t for t in depleted if not _mentions_member(t.name, member_set)]
        self.terms = terms
        self.depleted = [t for t in depleted if t.fdr < SIGNIFICANT_FDR]
        self.significant = [t for t in terms if t.fdr < SIGNIFICANT_FDR]
        quality = data.get("quality") if isinstance(data.get("quality"), Mapping) else {}
        self.quality: Mapping[str, Any] = quality or {}
        derived = str(self.quality.get("derived_confidence", ""))
        self.confidence: Confidence = (
            cast(Confidence, derived)
            if derived in CONFIDENCE_ORDER
            else confidence_from_fdrs(t.fdr for t in terms)
        )
        self.thin = len(self.significant) < MEDIUM_MIN_SIGNIFICANT
        inheritance = data.get("inheritance")
        self.inheritance: Mapping[str, Any] = (
            inheritance if isinstance(inheritance, Mapping) else {}
        )
        counts = data.get("evidence_counts")
        self.counts: Mapping[str, Any] = counts if isinstance(counts, Mapping) else {}
        syndromicity = data.get("syndromicity")
        self.syndromicity: Mapping[str, Any] = (
            syndromicity if isinstance(syndromicity, Mapping) else {}
        )

    # -- selections ---------------------------------------------------------------------------

    def characterising(self) -> list[_Term]:
        """Significant evidence terms that cover at least :data:`MIN_THEME_COVERAGE` of the
        members, in evidence order (all significant terms when none covers that much)."""
        wide = [t for t in self.significant if t.coverage >= MIN_THEME_COVERAGE]
        return wide or list(self.significant)

    def groups(self, limit: int = 2, per_group: int = 3) -> list[tuple[str, list[_Term]]]:
        """Up to ``limit`` (label, terms) groups of the characterising terms: by top-level HPO
        branch where rows carry branches (a term counts under its first branch), else by
        category; groups ordered by their best term, up to ``per_group`` terms each, no term
        named twice."""
        grouped: dict[str, list[_Term]] = {}
        for term in self.characterising():
            label = _branch_label(term.branches[0]) if term.branches else term.category
            grouped.setdefault(label, [])
            if len(grouped[label]) < per_group:
                grouped[label].append(term)
        return list(grouped.items())[:limit]

    def distinct_names(
        self, terms: Iterable[_Term], limit: int, *, verbatim: bool = False
    ) -> list[str]:
        """Up to ``limit`` distinct names of ``terms`` in order; display names unless
        ``verbatim`` (pathways must be cited exactly as the term is named)."""
        names: list[str] = []
        seen: set[str] = set()
        for term in terms:
            name = term.name if verbatim else term.display_name
            key = normalize_name(name)
            if key and key not in seen:
                seen.add(key)
                names.append(name)
            if len(names) >= limit:
                break
        return names

    def themes(self, minimum: int, maximum: int) -> list[str]:
        characterising = self.characterising()
        rest = [t for t in self.significant if t not in characterising]
        names = self.distinct_names([*characterising, *rest], maximum)
        for placeholder in THIN_DATA_THEMES:
            if len(names) >= minimum:
                break
            if placeholder == THIN_DATA_THEMES[0] and self.significant:
                continue
            names.append(placeholder)
        return names

    def tags(self) -> list[str]:
        tags = ["extractive"]
        # Short term names make the best tags; then the most frequent informative words.
        for name in self.distinct_names(self.characterising(), 50):
            tag = normalize_name(name)
            if len(tag.split()) <= 3 and tag not in tags:
                tags.append(tag)
            if len(tags) >= 4:
                break
        counts: Counter[str] = Counter()
        first_seen: dict[str, int] = {}
        for term in self.significant:
            for word in dict.fromkeys(_content_words(term.display_name)):
                if word in _GENERIC_WORDS or word.isdigit():
                    continue
                counts[word] += 1
                first_seen.setdefault(word, len(first_seen))
        for word in sorted(counts, key=lambda w: (-counts[w], first_seen[w])):
            if len(tags) >= 7:
                break
            if word not in tags and not any(word in tag.split() for tag in tags):
                tags.append(word)
        for label in EXTRACTIVE_LABEL_TAGS[1:]:
            if len(tags) >= 3:
                break
            tags.append(label)
        return tags

    def supported_modes(self) -> list[Mapping[str, Any]]:
        return [m for m in self.inheritance.get("modes") or [] if m.get("supported")]

    @property
    def call(self) -> str:
        return str(self.syndromicity.get("call") or "unclear")

    # -- phrases ------------------------------------------------------------------------------

    def term_brief(self, term: _Term) -> str:
        """``name (32% of members, 2.9-fold)``."""
        if term.coverage:
            return f"{term.display_name} ({_pct(term.coverage)} of members, {term.fold:.1f}-fold)"
        return f"{term.display_name} (FDR {_fmt_fdr(term.fdr)}, {term.overlap}/{self.size})"

    def character_sentence(self, kind: str) -> str:
        """The first sentence: what the cluster is, from its strongest specific terms."""
        groups = self.groups()
        call = _CALL_WORDS.get(self.call, "") if kind == "phenotype" else ""
        noun = f"{call} cluster" if call else "cluster"
        parts = []
        for label, terms in groups:
            briefs = _join([self.term_brief(t) for t in terms])
            parts.append(f"{label} features, led by {briefs}" if kind == "phenotype" else briefs)
        if kind == "phenotype":
            return f"A {noun} of {self.size} genes marked by {'; and '.join(parts)}."
        return f"A {noun} of {self.size} genes centred on {'; and '.join(parts)}."

    def counts_sentence(self) -> str:
        """Real counts: shown (non-redundant) and significant terms per category."""
        phrases = []
        for category, counts in sorted(self.counts.items()):
            if not isinstance(counts, Mapping):
                continue
            shown, significant = int(counts.get("shown", 0)), int(counts.get("significant", 0))
            if significant:
                phrases.append(
                    f"{shown:,} non-redundant of {significant:,} significant {category} terms"
                )
        return f"Evidence: {_join(phrases)}." if phrases else ""

    def inheritance_sentence(self) -> str:
        modes = self.supported_modes()
        if not modes:
            return ""
        phrases = []
        for m in modes[:3]:
            name = m.get("abbreviation") or str(m.get("name", m.get("mode", "")))
            what = f"{name} in {_pct(float(m.get('share', 0)))} of annotated members"
            if m.get("direction") == "enriched":
                what += f" (enriched, FDR {_fmt_fdr(float(m.get('fdr_enriched', 1)))})"
            elif m.get("direction") == "depleted":
                what += " (below the dataset's share)"
            phrases.append(what)
        return f"Inheritance: {_join(phrases)}."

    def syndromicity_sentence(self) -> str:
        if not self.syndromicity:
            return ""
        share = float(self.syndromicity.get("ndd_predominant_share", 0.0))
        base = float(self.syndromicity.get("dataset_ndd_predominant_share", 0.0))
        return (
            f"{_pct(share)} of members have predominantly neurodevelopmental phenotypes "
            f"(dataset {_pct(base)})."
        )

    def depleted_sentence(self) -> str:
        if not self.depleted:
            return ""
        briefs = []
        for t in self.depleted[:3]:
            if t.expected:
                noun = "member" if t.overlap == 1 else "members"
                briefs.append(f"{t.display_name} ({t.overlap} {noun}, {t.expected:.0f} expected)")
            else:
                briefs.append(t.display_name)
        return f"Under-represented: {_join(briefs)}."

    def quality_sentence(self) -> str:
        stability = self.quality.get("stability")
        specificity = self.quality.get("specificity")
        bits = []
        if isinstance(stability, int | float):
            bits.append(f"stability {stability:.2f} ({self.quality.get('stability_band', '')})")
        if isinstance(specificity, int | float):
            bits.append(f"specificity {specificity:.2f}")
        head = f"Derived confidence {self.confidence}"
        return f"{head} ({', '.join(bits)})." if bits else f"{head}, from the FDRs."


def _thin_text(ev: _Evidence, what: str) -> str:
    return (
        f"{EXTRACTIVE_LABEL} This cluster of {ev.size} members has thin enrichment: no "
        f"{what} term reaches FDR < {SIGNIFICANT_FDR}, so it cannot be characterised from the "
        "evidence table."
    )


def build_functional_summary(data: Mapping[str, Any]) -> FunctionalSummary:
    """An extractive :class:`FunctionalSummary` from a cluster_data dict (prompt v2).

    The first sentence names the cluster's character: its strongest characterising evidence
    terms (coverage >= 10% of members, in evidence order) grouped by category, with coverage and
    fold enrichment; then the pathways, the most central members, inheritance, depleted terms
    and the quality figures. Themes are the 3-5 first distinct characterising term names
    (placeholders from :data:`THIN_DATA_THEMES` when fewer exist), pathways up to 5 significant
    terms of ``PATHWAY_CATEGORIES`` verbatim, tags ``extractive`` plus short term names and
    frequent term-name words, confidence the data's derived confidence, clinical_relevance None.

    Raises:
        ValueError: malformed cluster data.
    """
    ev = _Evidence(data, avoid_member_names=False)
    pathways = ev.distinct_names(
        (t for t in ev.significant if t.category in PATHWAY_CATEGORIES),
        MAX_PATHWAYS,
        verbatim=True,
    )
    if not ev.significant:
        text = _thin_text(ev, "annotation")
    else:
        sentences = [
            EXTRACTIVE_LABEL,
            ev.character_sentence("functional"),
            ev.counts_sentence(),
        ]
        if pathways:
            sentences.append(f"Pathways: {_join(pathways[:3])}.")
        if ev.signature:
            sentences.append(f"Most central members: {_join(ev.signature[:5])}.")
        sentences += [ev.inheritance_sentence(), ev.depleted_sentence()]
        if ev.thin:
            sentences.append("The enrichment is thin, so this description is tentative.")
        text = " ".join(s for s in sentences if s)
    text += f" {ev.quality_sentence()}"
    return FunctionalSummary(
        summary=text,
        key_themes=ev.themes(3, 5),
        pathways=pathways,
        tags=ev.tags(),
        clinical_relevance=None,
        confidence=ev.confidence,
    )


def build_phenotype_summary(data: Mapping[str, Any]) -> PhenotypeSummary:
    """An extractive :class:`PhenotypeSummary` from a cluster_data dict (prompt v2), naming no
    genes.

    Terms whose names quote a member symbol are left out. The first sentence gives the
    syndromicity call and the strongest characterising terms grouped by top-level HPO branch,
    with coverage and fold enrichment; then inheritance, the NDD-predominant share, depleted
    phenotypes and the quality figures. Themes are the 1-5 first characterising term names;
    notably_absent the first depleted terms (exact names); inheritance_patterns the supported
    modes; syndromicity the figures' call; syndrome_hints empty (an evidence table cannot name a
    syndrome).

    Raises:
        ValueError: malformed cluster data.
    """
    ev = _Evidence(data, avoid_member_names=True)
    if not ev.significant:
        text = _thin_text(ev, "phenotype")
        pattern = "No significantly enriched phenotypes."
    else:
        sentences = [
            EXTRACTIVE_LABEL,
            ev.character_sentence("phenotype"),
            ev.counts_sentence(),
            ev.inheritance_sentence(),
            ev.syndromicity_sentence(),
            ev.depleted_sentence(),
        ]
        if ev.thin:
            sentences.append("The enrichment is thin, so this description is tentative.")
        text = " ".join(s for s in sentences if s)
        labels = [label for label, _ in ev.groups()]
        call = _CALL_WORDS.get(ev.call, "")
        pattern = f"{(call or 'Phenotype').capitalize()} pattern with {_join(labels)} features."
    text += f" {ev.quality_sentence()}"
    note = (
        "Extractive baseline built only from the evidence table, no language model; syndrome "
        "hints are not assessed."
    )
    if ev.thin:
        note += f" Fewer than {MEDIUM_MIN_SIGNIFICANT} significant terms: thin data."
    band = str(ev.quality.get("stability_band", ""))
    if band in ("weak", "dissolved"):
        note += f" The cluster is unstable under subsampling ({band})."
    themes = ev.distinct_names(ev.characterising(), 5) or [THIN_DATA_THEMES[0]]
    modes = [str(m.get("mode")) for m in ev.supported_modes()]
    return PhenotypeSummary.model_validate(
        {
            "summary": text,
            "key_phenotype_themes": themes,
            "notably_absent": ev.distinct_names(ev.depleted, MAX_ABSENT, verbatim=True),
            "clinical_pattern": pattern,
            "syndrome_hints": [],
            "inheritance_patterns": modes,
            "syndromicity": ev.call if ev.call in _CALL_WORDS else "unclear",
            "tags": ev.tags(),
            "confidence": ev.confidence,
            "data_quality_note": note,
        }
    )


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None]
    return [str(value)]


class _EitherOf(Collection[str]):
    """Membership in either of two collections, without copying the (dataset-sized) second."""

    def __init__(self, first: Collection[str], second: Collection[str]) -> None:
        self._first, self._second = first, second

    def __contains__(self, item: object) -> bool:
        return item in self._first or item in self._second

    def __iter__(self) -> Iterator[str]:
        yield from self._first
        yield from (s for s in self._second if s not in self._first)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _named_genes(
    text: str, members: Collection[str], known: Collection[str] | None, excluded: Collection[str]
) -> tuple[list[str], list[str]]:
    """(member symbols, non-member gene symbols) named in ``text``.

    With ``known`` (dataset symbols) the match is exact as in
    :func:`~llm.grounding.find_symbols`. Without it, a non-member "gene" is any
    upper-case token of 3+ letters/digits (``[A-Z][A-Z0-9]{2,}``) that is not in
    :data:`ACRONYMS`, ``COMMON_WORD_SYMBOLS`` or ``excluded`` (words of the term names).
    """
    vocabulary = _EitherOf(members, known if known is not None else ())
    found = find_symbols(text, vocabulary)
    named_members = [s for s in found if s in members]
    others = [s for s in found if s not in members and s not in excluded]
    if known is None:
        for match in _TOKEN.finditer(text):
            token = match.group(0)
            if token in vocabulary:
                continue
            for part in token.split("-"):
                if (
                    _GENE_LIKE.fullmatch(part)
                    and part not in vocabulary
                    and part not in ACRONYMS
                    and part not in COMMON_WORD_SYMBOLS
                    and part not in excluded
                    and part not in others
                    and not any(part in m.split("-") for m in members)
                ):
                    others.append(part)
    return named_members, others


def _is_derived(item: str, names: set[str], vocabulary: set[str]) -> bool | None:
    """True/False whether ``item`` derives from term names; None when it has no content words."""
    if normalize_name(item) in names:
        return True
    words = [_stem(w) for w in _content_words(item)]
    if not words:
        return None
    hits = sum(1 for w in words if w in vocabulary)
    return hits / len(words) >= GROUNDED_WORD_FRACTION


#: Words that mark molecular-mechanism language in a phenotype summary (SysNDD's scrub list,
#: without "gene": counting a cluster's genes is not a mechanism, and naming one is the gene
#: check's business).
MOLECULAR_WORDS = frozenset(
    {
        "protein", "proteins", "pathway", "pathways", "signaling", "signalling",
        "transcription", "transcriptional", "chromatin", "histone", "methylation", "enzyme",
        "enzymes", "receptor", "receptors", "kinase", "kinases", "mtor", "mapk", "dna", "rna",
        "splicing", "ubiquitin", "regulates", "modulates", "mechanism", "mechanisms",
    }
)  # fmt: skip
#: Distinct molecular words (outside term names) from which a phenotype summary counts as
#: fundamentally molecular (hard failure); fewer are corrected by removing their sentences.
MOLECULAR_SUMMARY_WORDS = 3
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _molecular_words(text: str, term_vocabulary: set[str]) -> list[str]:
    words = [w for w in _WORD.findall(text.casefold()) if w not in term_vocabulary]
    return sorted({w for w in words if w in MOLECULAR_WORDS})


def _without_molecular_sentences(text: str, term_vocabulary: set[str]) -> str:
    kept = [s for s in _SENTENCE.split(text) if not _molecular_words(s, term_vocabulary)]
    return " ".join(kept).strip()


@dataclass
class _Findings:
    """What the rule-based judge found, check by check."""

    hard: dict[str, list[str]]
    soft: list[str]
    corrections: dict[str, Any]
    claims: int
    grounded: int
    confidence_gap: int
    underived: list[str]
    direction_problems: int
    molecular: list[str]
    supplementary_problems: int


def _grade(findings: _Findings, *, phenotype: bool, bands: GroundingBands) -> dict[str, int]:
    """The rubric as ``score_<check>`` fields of the verdict."""
    percent = 100 * findings.grounded // findings.claims if findings.claims else 100
    hard = findings.hard
    return dict(
        score_grounding=2 if percent >= bands.accept else 1 if percent >= bands.reject else 0,
        score_fidelity=(
            0
            if {"invented_gene", "invented_pathway", "invented_phenotype"} & set(hard)
            else 1
            if findings.underived
            else 2
        ),
        score_direction=(
            0 if "direction_inversion" in hard else 1 if findings.direction_problems else 2
        ),
        score_clinical_language=(
            2
            if not phenotype
            else 0
            if "molecular_summary" in hard
            else 1
            if findings.molecular
            else 2
        ),
        score_supplementary=max(0, 2 - findings.supplementary_problems),
        score_confidence=max(0, 2 - findings.confidence_gap),
    )


def rule_based_verdict(
    data: Mapping[str, Any],
    summary: Mapping[str, Any],
    *,
    dataset_symbols: Collection[str] | None = None,
) -> JudgeVerdict:
    """Judge ``summary`` against a cluster_data dict (prompt v2) with fixed rules (no LLM).

    Claims are the themes, tags (label tags exempt), pathways and, for phenotype summaries, the
    inheritance patterns, notably_absent items and syndromicity; ``grounding_percent`` is the
    share of them grounded in the data. Checks:

    * hard failures (reject): ``invented_pathway`` (a pathway not among the listed pathway
      terms, normalised), ``invented_gene`` (a non-member gene named, exact dataset symbols when
      ``dataset_symbols`` is given, an upper-case-token heuristic otherwise; or a phenotype
      summary naming a member outside ``syndrome_hints``), ``invented_phenotype`` (a phenotype
      theme sharing no content word with the enriched terms), ``direction_inversion`` (a
      notably_absent item that is an enriched term, or a theme that is a depleted term and no
      enriched one), ``molecular_summary`` (a phenotype summary whose text uses at least
      :data:`MOLECULAR_SUMMARY_WORDS` distinct :data:`MOLECULAR_WORDS` outside term names);
    * correctable (accept_with_corrections): tags not derived from the term names (dropped),
      notably_absent items that are no depleted term (dropped), unsupported inheritance modes
      (dropped), a syndromicity other than the figures' call (set to the call), one or two
      molecular words in a phenotype summary (their sentences removed);
    * soft (low_confidence): themes not derived from the term names (at least
      :data:`GROUNDED_WORD_FRACTION` of their content words), confidence above the derived
      confidence or two levels below it, thin data (fewer than 3 terms with FDR < 0.05 or
      placeholder themes), genes that cannot be verified against a truncated member list.

    The grounding bands are the server's (``llm.grounding``: accept >= 80%, reject
    < 50%; clusters of >= 300 members: 70% and 40%). Verdict: reject on a hard failure or
    grounding below the reject band; accept_with_corrections when every problem is correctable;
    low_confidence on any soft concern or grounding below the accept band; otherwise accept.
    """
    cluster_type = str(data.get("cluster_type", "functional"))
    phenotype = cluster_type == "phenotype"
    size = int(data.get("size") or data.get("members_total") or 0)
    bands = grounding_bands(size)
    members = {str(m) for m in data.get("members") or []}
    truncated = int(data.get("members_total") or len(members)) > len(members)
    terms = _terms(data)
    depleted = _terms(data, "depleted_terms")
    names = {normalize_name(t.name) for t in terms} | {
        normalize_name(t.display_name) for t in terms
    }
    depleted_names = {normalize_name(t.name) for t in depleted} | {
        normalize_name(t.display_name) for t in depleted
    }
    vocabulary = {_stem(w) for t in terms for w in _content_words(t.name)}
    term_words = {w for t in terms + depleted for w in _TOKEN.findall(f"{t.name} {t.term_id}")}
    term_words |= {p for w in list(term_words) for p in w.split("-")}
    term_vocabulary = {w.casefold() for w in term_words}

    hard: dict[str, list[str]] = {}
    soft: list[str] = []
    corrections: dict[str, Any] = {}
    claims = grounded = 0
    direction_problems = supplementary_problems = 0

    # Pathways.
    valid_pathways: set[str] = set()
    for t in terms:
        if t.category in PATHWAY_CATEGORIES:
            valid_pathways |= pathway_keys(t.name, t.term_id)
    for pathway in _texts(summary.get("pathways")):
        claims += 1
        if normalize_name(pathway) in valid_pathways:
            grounded += 1
        else:
            hard.setdefault("invented_pathway", []).append(pathway)

    # Genes.
    known = None if dataset_symbols is None else checkable_dataset_symbols(dataset_symbols)
    fields = PHENOTYPE_TEXT_FIELDS if phenotype else FUNCTIONAL_TEXT_FIELDS
    non_members: list[str] = []
    phenotype_genes: list[str] = []
    for field_name in fields:
        for text in _texts(summary.get(field_name)):
            named, others = _named_genes(text, members, known, term_words)
            non_members.extend(s for s in others if s not in non_members)
            if phenotype and field_name not in PHENOTYPE_GENE_NAME_FIELDS:
                phenotype_genes.extend(
                    s for s in named if s not in term_words and s not in phenotype_genes
                )
    if truncated and non_members:
        soft.append(f"symbols not in the (truncated) member list: {_quote_list(non_members)}")
    elif non_members:
        hard.setdefault("invented_gene", []).extend(non_members)
    if phenotype_genes:
        hard.setdefault("invented_gene", []).extend(phenotype_genes)

    # Themes.
    theme_field = "key_phenotype_themes" if phenotype else "key_themes"
    themes = _texts(summary.get(theme_field))
    placeholder_themes = [t for t in themes if t in THIN_DATA_THEMES]
    underived: list[str] = []
    for theme in (t for t in themes if t not in THIN_DATA_THEMES):
        claims += 1
        if _is_derived(theme, names, vocabulary) is not False:
            grounded += 1
            continue
        if normalize_name(theme) in depleted_names:
            hard.setdefault("direction_inversion", []).append(theme)
            direction_problems += 1
        elif phenotype and not any(_stem(w) in vocabulary for w in _content_words(theme)):
            hard.setdefault("invented_phenotype", []).append(theme)
        else:
            underived.append(theme)
    if underived:
        soft.append(f"themes not derived from the term names: {_quote_list(underived)}")

    # Tags (correctable).
    tags = _texts(summary.get("tags"))
    bad_tags = [
        t
        for t in tags
        if t not in EXTRACTIVE_LABEL_TAGS and _is_derived(t, names, vocabulary) is False
    ]
    claims += sum(1 for t in tags if t not in EXTRACTIVE_LABEL_TAGS)
    grounded += sum(1 for t in tags if t not in EXTRACTIVE_LABEL_TAGS and t not in bad_tags)
    if bad_tags:
        kept = [t for t in tags if t not in bad_tags]
        for name in (normalize_name(t.display_name) for t in terms):
            if len(kept) >= 3:
                break
            if name and name not in kept and len(name.split()) <= 4:
                kept.append(name)
        if len(kept) >= 3:
            corrections["corrected_tags"] = kept[:7]
        else:
            soft.append(f"tags not derived from the term names: {_quote_list(bad_tags)}")
        underived.extend(bad_tags)

    if phenotype:
        # notably_absent: depleted terms only; an enriched term there is an inversion.
        absent = _texts(summary.get("notably_absent"))
        inverted = [a for a in absent if normalize_name(a) in names]
        off = [a for a in absent if a not in inverted and normalize_name(a) not in depleted_names]
        claims += len(absent)
        grounded += len(absent) - len(inverted) - len(off)
        if inverted:
            hard.setdefault("direction_inversion", []).extend(inverted)
            direction_problems += 1
        if off:
            direction_problems += 1
            corrections["corrected_notably_absent"] = [a for a in absent if a not in off]
        # inheritance: the supported modes only
        inheritance = data.get("inheritance")
        modes = inheritance.get("modes") if isinstance(inheritance, Mapping) else None
        supported = [str(m.get("mode")) for m in modes or [] if m.get("supported")]
        claimed = _texts(summary.get("inheritance_patterns"))
        unsupported = [m for m in claimed if m not in supported]
        claims += len(claimed)
        grounded += len(claimed) - len(unsupported)
        if unsupported:
            supplementary_problems += 1
            corrections["corrected_inheritance_patterns"] = [m for m in claimed if m in supported]
        # syndromicity: the figures' call
        block = data.get("syndromicity")
        call = str(block.get("call", "")) if isinstance(block, Mapping) else ""
        said = str(summary.get("syndromicity", ""))
        if call and call != "unclear" and said != "unclear":
            claims += 1
            if said == call:
                grounded += 1
            else:
                supplementary_problems += 1
                corrections["corrected_syndromicity"] = call
        # molecular language
        text = str(summary.get("summary", ""))
        molecular = _molecular_words(text, term_vocabulary)
        if len(molecular) >= MOLECULAR_SUMMARY_WORDS:
            hard.setdefault("molecular_summary", []).extend(molecular)
        elif molecular:
            fixed = _without_molecular_sentences(text, term_vocabulary)
            if fixed:
                corrections["corrected_summary"] = fixed
            else:
                soft.append(f"molecular language: {_quote_list(molecular)}")
    else:
        molecular = []

    # Confidence and thin data.
    quality = data.get("quality") if isinstance(data.get("quality"), Mapping) else {}
    derived_level = str((quality or {}).get("derived_confidence", ""))
    derived: Confidence = (
        cast(Confidence, derived_level)
        if derived_level in CONFIDENCE_ORDER
        else confidence_from_fdrs(t.fdr for t in terms)
    )
    claimed_confidence = str(summary.get("confidence", ""))
    if claimed_confidence in CONFIDENCE_ORDER:
        gap = CONFIDENCE_ORDER.index(cast(Confidence, claimed_confidence)) - CONFIDENCE_ORDER.index(
            derived
        )
        confidence_ok = 0 >= gap >= -1
        confidence_gap = 0 if gap == 0 else 1 if confidence_ok else 2
    else:
        confidence_ok, confidence_gap = False, 2
    if not confidence_ok:
        soft.append(
            f"confidence '{claimed_confidence}' does not match the derived confidence '{derived}'"
        )
    n_sig = sum(1 for t in terms if t.fdr < SIGNIFICANT_FDR)
    if n_sig < MEDIUM_MIN_SIGNIFICANT or placeholder_themes:
        soft.append(f"the enrichment is thin ({n_sig} terms with FDR < {SIGNIFICANT_FDR})")

    findings = _Findings(
        hard=hard,
        soft=soft,
        corrections=corrections,
        claims=claims,
        grounded=grounded,
        confidence_gap=confidence_gap,
        underived=underived,
        direction_problems=direction_problems,
        molecular=molecular,
        supplementary_problems=supplementary_problems,
    )
    percent = 100 * grounded // claims if claims else 100
    if hard or percent < bands.reject:
        verdict: Verdict = "reject"
    elif soft or (percent < bands.accept and not corrections):
        verdict = "low_confidence"
    elif corrections:
        verdict = "accept_with_corrections"
    else:
        verdict = "accept"
    if verdict != "accept_with_corrections":
        corrections = {}

    sentences = [f"Rule-based grounding check (extractive judge, no LLM): {verdict}."]
    sentences.append(f"{grounded} of {claims} claims grounded ({percent}%).")
    if hard:
        listed = "; ".join(f"{k.replace('_', ' ')}: {_quote_list(v)}" for k, v in hard.items())
        sentences.append(f"Hard failures: {listed}.")
    if soft:
        sentences.append(f"Concerns: {'; '.join(soft)}.")
    if corrections:
        sentences.append(
            "Corrected: "
            + ", ".join(k.removeprefix("corrected_").replace("_", " ") for k in corrections)
            + "."
        )
    if not hard and not soft and not corrections:
        sentences.append(
            "Every pathway is an enriched pathway term, every theme and tag derives from the term "
            f"names, no non-member gene is named, and confidence '{claimed_confidence}' matches "
            "the data."
        )
    return JudgeVerdict.model_validate(
        {
            "is_factually_accurate": "invented_pathway" not in hard and "invented_gene" not in hard,
            "is_grounded": not hard and not underived,
            "pathways_valid": "invented_pathway" not in hard,
            "confidence_appropriate": confidence_ok,
            **_grade(findings, phenotype=phenotype, bands=bands),
            "grounding_percent": percent,
            "hard_failures": sorted(hard),
            "reasoning": " ".join(sentences),
            "verdict": verdict,
            "corrections_made": [
                f"{k.removeprefix('corrected_')} corrected by the rule-based judge"
                for k in corrections
            ],
            **corrections,
        }
    )


class ExtractiveProvider:
    """Deterministic non-LLM provider (registry name ``extractive``).

    Understands requests built by :mod:`llm.prompts.templates`: ``output_class`` a subclass of
    :class:`FunctionalSummary`, :class:`PhenotypeSummary` or :class:`JudgeVerdict`. For judge
    requests, ``request.metadata["dataset_symbols"]`` (an iterable of symbols) makes the gene
    check exact; without it a heuristic is used (see :func:`rule_based_verdict`).

    Results: tokens 0, ``model_version`` "extractive-v1", ``finish_reason`` "STOP", ``raw_text``
    the JSON of the parsed object, ``latency_seconds`` measured wall time.
    """

    name = "extractive"

    def generate(self, request: ProviderRequest[T]) -> ProviderResult[T]:
        """Build the summary or verdict for ``request``.

        Raises:
            ProviderError: (permanent, ``api_error``) when the prompt has no valid cluster_data
                (or, for a judge request, summary) block or the output class is unsupported;
                (permanent, ``validation_failed``) if the built object fails its own schema.
        """
        started = time.perf_counter()
        output_class = request.output_class
        try:
            data = parse_cluster_data(request.user_prompt)
            obj: BaseModel
            if issubclass(output_class, JudgeVerdict):
                summary = parse_summary_block(request.user_prompt)
                symbols = request.metadata.get("dataset_symbols")
                obj = rule_based_verdict(data, summary, dataset_symbols=symbols)
            elif issubclass(output_class, FunctionalSummary):
                obj = build_functional_summary(data)
            elif issubclass(output_class, PhenotypeSummary):
                obj = build_phenotype_summary(data)
            else:
                raise ProviderError(
                    f"extractive provider cannot produce {output_class.__name__}",
                    transient=False,
                )
        except ValidationError as exc:
            raise ProviderError(
                f"extractive output failed validation: {exc.error_count()} errors",
                transient=False,
                kind="validation_failed",
            ) from exc
        except (ValueError, TypeError, AttributeError) as exc:
            raise ProviderError(f"extractive provider: bad prompt: {exc}", transient=False) from exc
        raw_text = obj.model_dump_json()
        try:
            parsed = output_class.model_validate_json(raw_text)
        except ValidationError as exc:
            raise ProviderError(
                f"extractive output does not fit {output_class.__name__}",
                transient=False,
                kind="validation_failed",
                raw_text=raw_text,
            ) from exc
        return ProviderResult(
            parsed=parsed,
            raw_text=raw_text,
            input_tokens=0,
            output_tokens=0,
            latency_seconds=time.perf_counter() - started,
            model_version=MODEL_VERSION,
            finish_reason="STOP",
        )
