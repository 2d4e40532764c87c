"""The rule-based judge of the extractive provider: a fixed grounding check of a summary against
its cluster_data (no LLM), returning a :class:`~llm.prompts.schemas.JudgeVerdict`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from llm.context import PATHWAY_CATEGORIES
from llm.grounding import (
    COMMON_WORD_SYMBOLS,
    FUNCTIONAL_TEXT_FIELDS,
    MEDIUM_MIN_SIGNIFICANT,
    PHENOTYPE_GENE_NAME_FIELDS,
    PHENOTYPE_TEXT_FIELDS,
    SIGNIFICANT_FDR,
    GroundingBands,
    checkable_dataset_symbols,
    confidence_from_fdrs,
    field_texts,
    find_symbols,
    grounding_bands,
    normalize_name,
    pathway_keys,
)
from llm.prompts.schemas import (
    CONFIDENCE_ORDER,
    Confidence,
    JudgeVerdict,
    Verdict,
)
from llm.providers.extractive.terms import (
    _GENE_LIKE,
    _TOKEN,
    _WORD,
    ACRONYMS,
    EXTRACTIVE_LABEL_TAGS,
    GROUNDED_WORD_FRACTION,
    THIN_DATA_THEMES,
    _content_words,
    _quote_list,
    _stem,
    _terms,
)


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
    for pathway in field_texts(summary.get("pathways")):
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
        for text in field_texts(summary.get(field_name)):
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
    themes = field_texts(summary.get(theme_field))
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
    tags = field_texts(summary.get("tags"))
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
        absent = field_texts(summary.get("notably_absent"))
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
        claimed = field_texts(summary.get("inheritance_patterns"))
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
