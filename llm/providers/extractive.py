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
from llm.services.validation import (
    COMMON_WORD_SYMBOLS,
    FUNCTIONAL_TEXT_FIELDS,
    MEDIUM_MIN_SIGNIFICANT,
    MIN_SYMBOL_LENGTH,
    PHENOTYPE_GENE_NAME_FIELDS,
    PHENOTYPE_TEXT_FIELDS,
    SIGNIFICANT_FDR,
    checkable_dataset_symbols,
    confidence_from_fdrs,
    find_symbols,
    normalize_name,
    pathway_keys,
)

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


@dataclass(frozen=True)
class _Term:
    category: str
    term_id: str
    name: str
    fdr: float
    overlap: int
    term_size: int

    @property
    def display_name(self) -> str:
        """The name without a trailing copy of its id ("Glutathione Metabolism WP100" ->
        "Glutathione Metabolism"; Enrichr libraries append ids to names)."""
        for suffix in (f" ({self.term_id})", f" {self.term_id}"):
            if self.term_id and self.name.endswith(suffix) and len(self.name) > len(suffix):
                return self.name[: -len(suffix)]
        return self.name


def _terms(data: Mapping[str, Any]) -> list[_Term]:
    """All terms of a cluster_data dict, sorted by (FDR, category, term id)."""
    out: list[_Term] = []
    terms = data.get("terms") or {}
    if not isinstance(terms, Mapping):
        raise ValueError("cluster_data 'terms' is not an object")
    for category, rows in terms.items():
        for row in rows or []:
            out.append(
                _Term(
                    category=str(category),
                    term_id=str(row.get("term_id", "")),
                    name=str(row.get("name", "")),
                    fdr=float(row.get("fdr", 1.0)),
                    overlap=int(row.get("overlap", 0)),
                    term_size=int(row.get("term_size", 0)),
                )
            )
    out.sort(key=lambda t: (t.fdr, t.category, t.term_id))
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


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _quote_list(items: list[str], limit: int = 5) -> str:
    shown = [f"'{item}'" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"{len(items) - limit} more")
    return ", ".join(shown)


def _mentions_member(name: str, members: Collection[str]) -> bool:
    return bool(find_symbols(name, members))


class _Evidence:
    """What the extractive summary is built from: the listed terms of one cluster_data dict."""

    def __init__(self, data: Mapping[str, Any], *, avoid_member_names: bool) -> None:
        self.size = int(data.get("size") or data.get("members_total") or 0)
        members = [str(m) for m in data.get("members") or []]
        terms = _terms(data)
        if avoid_member_names:
            # Phenotype summaries must not name genes: drop any term whose name quotes a member.
            member_set = {m for m in members if len(m) >= MIN_SYMBOL_LENGTH}
            terms = [t for t in terms if not _mentions_member(t.name, member_set)]
        self.terms = terms
        self.significant = [t for t in terms if t.fdr < SIGNIFICANT_FDR]
        self.confidence: Confidence = confidence_from_fdrs(t.fdr for t in terms)
        self.thin = len(self.significant) < MEDIUM_MIN_SIGNIFICANT

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
        names = self.distinct_names(self.significant, maximum)
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
        for name in self.distinct_names(self.significant, 50):
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

    def term_phrase(self, term: _Term) -> str:
        return (
            f"{term.display_name} ({term.category}, FDR {_fmt_fdr(term.fdr)}, "
            f"{term.overlap}/{self.size} members)"
        )

    def counts_phrase(self) -> str:
        per_category = Counter(t.category for t in self.significant)
        return ", ".join(f"{n} {category}" for category, n in sorted(per_category.items()))


def build_functional_summary(data: Mapping[str, Any]) -> FunctionalSummary:
    """An extractive :class:`FunctionalSummary` from a cluster_data dict.

    Themes are the 3-5 lowest-FDR distinct significant term names, trailing ids dropped
    (placeholders from
    :data:`THIN_DATA_THEMES` when fewer exist), pathways up to 5 significant terms of
    ``PATHWAY_CATEGORIES`` verbatim, tags ``extractive`` plus short term names and frequent
    term-name words, confidence from :func:`~llm.services.validation.confidence_from_fdrs`,
    clinical_relevance None (not assessable from the table).

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
        text = (
            f"{EXTRACTIVE_LABEL} This cluster of {ev.size} members has thin enrichment: no "
            f"annotation term reaches FDR < {SIGNIFICANT_FDR}, so its shared function cannot be "
            "characterised from the enrichment table."
        )
    else:
        top = ev.significant[:3]
        text = (
            f"{EXTRACTIVE_LABEL} This cluster of {ev.size} members has "
            f"{len(ev.significant)} listed enrichment terms with FDR < {SIGNIFICANT_FDR} "
            f"({ev.counts_phrase()}). The strongest are "
            f"{_join([ev.term_phrase(t) for t in top])}."
        )
        if pathways:
            text += f" Enriched pathways: {'; '.join(pathways)}."
        if ev.thin:
            text += " The enrichment is thin, so this description is tentative."
    text += f" Confidence {ev.confidence} is derived from the FDRs."
    return FunctionalSummary(
        summary=text,
        key_themes=ev.themes(3, 5),
        pathways=pathways,
        tags=ev.tags(),
        clinical_relevance=None,
        confidence=ev.confidence,
    )


def build_phenotype_summary(data: Mapping[str, Any]) -> PhenotypeSummary:
    """An extractive :class:`PhenotypeSummary` from a cluster_data dict, naming no genes.

    Terms whose names quote a member symbol are left out. Themes are the 1-5 lowest-FDR distinct
    significant term names; inheritance_patterns the significant terms named "... inheritance";
    notably_absent and syndrome_hints are empty and syndromicity is "unclear" (an enrichment
    table cannot show them); data_quality_note says so.

    Raises:
        ValueError: malformed cluster data.
    """
    ev = _Evidence(data, avoid_member_names=True)
    inheritance = ev.distinct_names(
        (t for t in ev.significant if normalize_name(t.display_name).endswith("inheritance")), 5
    )
    phenotypes = [
        t for t in ev.significant if not normalize_name(t.display_name).endswith("inheritance")
    ]
    top_names = ev.distinct_names(phenotypes, 3)
    if not phenotypes:
        text = (
            f"{EXTRACTIVE_LABEL} This cluster of {ev.size} members has thin enrichment: no "
            f"phenotype term reaches FDR < {SIGNIFICANT_FDR}, so no clinical picture can be "
            "drawn from the enrichment table."
        )
        pattern = "No significantly enriched phenotypes."
    else:
        top = phenotypes[:3]
        text = (
            f"{EXTRACTIVE_LABEL} This cluster of {ev.size} members has "
            f"{len(ev.significant)} listed phenotype terms with FDR < {SIGNIFICANT_FDR}. The most "
            f"significant are {_join([ev.term_phrase(t) for t in top])}."
        )
        if inheritance:
            text += f" Inheritance terms: {'; '.join(inheritance)}."
        if ev.thin:
            text += " The enrichment is thin, so this description is tentative."
        pattern = f"Most enriched phenotypes: {_join(top_names)}."
    text += f" Confidence {ev.confidence} is derived from the FDRs."
    note = (
        "Extractive baseline built only from the enrichment table, no language model; "
        "syndromicity, syndrome hints and absent phenotypes are not assessed."
    )
    if ev.thin:
        note += f" Fewer than {MEDIUM_MIN_SIGNIFICANT} significant terms: thin data."
    themes = ev.distinct_names(phenotypes, 5) or [THIN_DATA_THEMES[0]]
    return PhenotypeSummary(
        summary=text,
        key_phenotype_themes=themes,
        notably_absent=[],
        clinical_pattern=pattern,
        syndrome_hints=[],
        inheritance_patterns=inheritance,
        syndromicity="unclear",
        tags=ev.tags(),
        confidence=ev.confidence,
        data_quality_note=note,
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
    :func:`~llm.services.validation.find_symbols`. Without it, a non-member "gene" is any
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


def rule_based_verdict(
    data: Mapping[str, Any],
    summary: Mapping[str, Any],
    *,
    dataset_symbols: Collection[str] | None = None,
) -> JudgeVerdict:
    """Judge ``summary`` against a cluster_data dict with fixed rules (no LLM).

    Checks, each naming its failures in ``reasoning``:

    * pathways: every entry matches (normalised, see
      :func:`~llm.services.validation.normalize_name`) a listed term of ``PATHWAY_CATEGORIES``;
    * genes: no non-member gene is named in the free-text fields (exact dataset symbols when
      ``dataset_symbols`` is given, an upper-case-token heuristic otherwise); a phenotype summary
      names no member genes outside ``syndrome_hints``. When the member list in the data is
      truncated, an unknown symbol cannot be verified and counts as a soft failure;
    * themes and tags (and phenotype inheritance patterns): each equals a term name or has at
      least :data:`GROUNDED_WORD_FRACTION` of its content words (3+ letters, stopwords removed,
      plural "s" stripped) among the term names' words; extractive label tags are exempt;
    * confidence: the self-assessed level must not exceed the level derived from the listed FDRs
      (:func:`~llm.services.validation.confidence_from_fdrs`) nor be two levels below it;
    * thin data: fewer than 3 terms with FDR < 0.05, or placeholder themes.

    Verdict: ``reject`` when a pathway or gene is ungrounded; otherwise ``low_confidence`` when
    any soft check fails (confidence, thin data, underived themes/tags, unverifiable genes);
    otherwise ``accept``.
    """
    cluster_type = str(data.get("cluster_type", "functional"))
    members = {str(m) for m in data.get("members") or []}
    truncated = int(data.get("members_total") or len(members)) > len(members)
    terms = _terms(data)
    names = {normalize_name(t.name) for t in terms} | {
        normalize_name(t.display_name) for t in terms
    }
    vocabulary = {_stem(w) for t in terms for w in _content_words(t.name)}
    term_words = {w for t in terms for w in _TOKEN.findall(f"{t.name} {t.term_id}")}
    term_words |= {p for w in list(term_words) for p in w.split("-")}

    # Pathways.
    valid_pathways: set[str] = set()
    for t in terms:
        if t.category in PATHWAY_CATEGORIES:
            valid_pathways |= pathway_keys(t.name, t.term_id)
    bad_pathways = [
        p for p in _texts(summary.get("pathways")) if normalize_name(p) not in valid_pathways
    ]

    # Genes.
    # a run's shared frozenset is filtered once per run
    known = None if dataset_symbols is None else checkable_dataset_symbols(dataset_symbols)
    fields = PHENOTYPE_TEXT_FIELDS if cluster_type == "phenotype" else FUNCTIONAL_TEXT_FIELDS
    non_members: list[str] = []
    phenotype_genes: list[str] = []
    for field_name in fields:
        for text in _texts(summary.get(field_name)):
            named, others = _named_genes(text, members, known, term_words)
            non_members.extend(s for s in others if s not in non_members)
            if cluster_type == "phenotype" and field_name not in PHENOTYPE_GENE_NAME_FIELDS:
                phenotype_genes.extend(
                    s for s in named if s not in term_words and s not in phenotype_genes
                )
    unverifiable = non_members if truncated else []
    ungrounded_genes = [] if truncated else non_members

    # Themes and tags.
    theme_field = "key_phenotype_themes" if cluster_type == "phenotype" else "key_themes"
    themes = _texts(summary.get(theme_field))
    placeholder_themes = [t for t in themes if t in THIN_DATA_THEMES]
    items = [t for t in themes if t not in THIN_DATA_THEMES]
    items += [t for t in _texts(summary.get("tags")) if t not in EXTRACTIVE_LABEL_TAGS]
    if cluster_type == "phenotype":
        items += _texts(summary.get("inheritance_patterns"))
    underived = [item for item in items if _is_derived(item, names, vocabulary) is False]

    # Confidence and thin data.
    derived = confidence_from_fdrs(t.fdr for t in terms)
    claimed = str(summary.get("confidence", ""))
    if claimed in CONFIDENCE_ORDER:
        gap = CONFIDENCE_ORDER.index(cast(Confidence, claimed)) - CONFIDENCE_ORDER.index(derived)
        confidence_ok = 0 >= gap >= -1
    else:
        confidence_ok = False
    n_sig = sum(1 for t in terms if t.fdr < SIGNIFICANT_FDR)
    thin = n_sig < MEDIUM_MIN_SIGNIFICANT or bool(placeholder_themes)

    hard: list[str] = []
    if bad_pathways:
        hard.append(f"pathways not among the enriched pathway terms: {_quote_list(bad_pathways)}")
    if ungrounded_genes:
        hard.append(f"genes named that are not cluster members: {_quote_list(ungrounded_genes)}")
    if phenotype_genes:
        hard.append(f"a phenotype summary names genes: {_quote_list(phenotype_genes)}")
    soft: list[str] = []
    if not confidence_ok:
        soft.append(f"confidence '{claimed}' does not match the enrichment-derived '{derived}'")
    if underived:
        soft.append(f"themes or tags not derived from the term names: {_quote_list(underived)}")
    if unverifiable:
        soft.append(f"symbols not in the (truncated) member list: {_quote_list(unverifiable)}")
    if thin:
        soft.append(f"the enrichment is thin ({n_sig} terms with FDR < {SIGNIFICANT_FDR})")

    verdict: Verdict = "reject" if hard else ("low_confidence" if soft else "accept")
    sentences = [f"Rule-based grounding check (extractive judge, no LLM): {verdict}."]
    if hard:
        sentences.append(f"Ungrounded: {'; '.join(hard)}.")
    if soft:
        sentences.append(f"Concerns: {'; '.join(soft)}.")
    if not hard and not soft:
        sentences.append(
            "Every pathway is an enriched pathway term, every theme and tag derives from the term "
            f"names, no non-member gene is named, and confidence '{claimed}' matches the data."
        )
    return JudgeVerdict(
        is_factually_accurate=not bad_pathways and not ungrounded_genes,
        is_grounded=not ungrounded_genes and not phenotype_genes and not underived,
        pathways_valid=not bad_pathways,
        confidence_appropriate=confidence_ok,
        reasoning=" ".join(sentences),
        verdict=verdict,
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
