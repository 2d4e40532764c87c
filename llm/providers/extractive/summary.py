"""Extractive summaries: grounded, labelled text built from the enrichment table alone.

Themes are term names (without a trailing copy of the term id), pathways are term names copied
verbatim, tags are short term names or words of term names, confidence is derived from the FDRs;
every summary starts with :data:`~.terms.EXTRACTIVE_LABEL`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any, cast

from llm.context import PATHWAY_CATEGORIES
from llm.grounding import (
    MEDIUM_MIN_SIGNIFICANT,
    MIN_SYMBOL_LENGTH,
    SIGNIFICANT_FDR,
    confidence_from_fdrs,
    find_symbols,
    normalize_name,
)
from llm.prompts.schemas import (
    CONFIDENCE_ORDER,
    Confidence,
    FunctionalSummary,
    PhenotypeSummary,
)
from llm.providers.extractive.terms import (
    _GENERIC_WORDS,
    EXTRACTIVE_LABEL,
    EXTRACTIVE_LABEL_TAGS,
    THIN_DATA_THEMES,
    _content_words,
    _fmt_fdr,
    _join,
    _lower_first,
    _pct,
    _Term,
    _terms,
)

#: Maximum pathways an extractive functional summary lists.
MAX_PATHWAYS = 5
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
