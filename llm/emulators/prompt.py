"""The cluster facts an emulator finds in a prompt: :class:`PromptData` parses the
``<cluster_data>{...}</cluster_data>`` (and a judge's ``<summary>``) JSON block, as the product's
prompt templates write it, so every emulator answers from the same facts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from llm.context import PATHWAY_CATEGORIES
from llm.emulators.schema import as_float, as_int

_CLUSTER_DATA_RE = re.compile(r"<cluster_data>(.*?)</cluster_data>", re.DOTALL)
_SUMMARY_RE = re.compile(r"<summary>(.*?)</summary>", re.DOTALL)
_TERM_ID_NOISE_RE = re.compile(
    r"\s*\((?:GO|HP|MP|R-HSA|WP)[:\-][^)]*\)|\s+WP\d+$|\s+R-HSA-\d+$|\s+HP:\d+$"
)


class PromptData:
    """The cluster facts found in a prompt.

    Attributes:
        cluster_type: "functional" or "phenotype" ("" when unknown).
        size: cluster size (entities); members_total: members before any prompt truncation.
        members: member symbols in prompt order.
        terms: ``{"category","term_id","name","fdr","overlap","term_size"}`` dicts sorted by FDR.
        depleted_names: names of the depleted terms (prompt v2), in prompt order.
        supported_modes: inheritance modes marked supported; syndromicity_call and
            derived_confidence: the figures' call and level ("" when absent).
        summary: the decoded ``<summary>`` JSON of a judge prompt, or None.
    """

    def __init__(self, cluster: Mapping[str, Any] | None, summary: Any = None) -> None:
        cluster = cluster or {}
        self.found = bool(cluster)
        self.cluster_type = str(cluster.get("cluster_type") or "")
        members = cluster.get("members") or []
        self.members: list[str] = [str(m) for m in members if isinstance(m, str | int)]
        self.size = as_int(cluster.get("size"), len(self.members))
        self.members_total = as_int(cluster.get("members_total"), self.size)
        terms: list[dict[str, Any]] = []
        raw_terms = cluster.get("terms") or {}
        if isinstance(raw_terms, Mapping):
            for category, rows in raw_terms.items():
                if not isinstance(rows, list):
                    continue
                for row in rows:
                    if isinstance(row, Mapping) and row.get("name"):
                        terms.append({**row, "category": str(category)})
        elif isinstance(raw_terms, list):
            terms = [dict(row) for row in raw_terms if isinstance(row, Mapping) and row.get("name")]
        terms.sort(key=lambda row: as_float(row.get("fdr"), 1.0))
        self.terms = terms
        depleted = cluster.get("depleted_terms") or {}
        self.depleted_names: list[str] = unique_names(
            str(row.get("name"))
            for rows in (depleted.values() if isinstance(depleted, Mapping) else [])
            if isinstance(rows, list)
            for row in rows
            if isinstance(row, Mapping) and row.get("name")
        )
        inheritance = cluster.get("inheritance")
        modes = inheritance.get("modes") if isinstance(inheritance, Mapping) else None
        self.supported_modes: list[str] = [
            str(m.get("mode")) for m in modes or [] if isinstance(m, Mapping) and m.get("supported")
        ]
        syndromicity = cluster.get("syndromicity")
        self.syndromicity_call = (
            str(syndromicity.get("call") or "") if isinstance(syndromicity, Mapping) else ""
        )
        quality = cluster.get("quality")
        self.derived_confidence = (
            str(quality.get("derived_confidence") or "") if isinstance(quality, Mapping) else ""
        )
        self.summary = summary if isinstance(summary, Mapping) else None

    @classmethod
    def from_prompt(cls, text: str) -> PromptData:
        """Parse ``<cluster_data>`` (and ``<summary>``) JSON blocks out of ``text``; tolerant."""
        cluster = _load_block(_CLUSTER_DATA_RE, text)
        summary = _load_block(_SUMMARY_RE, text)
        return cls(cluster if isinstance(cluster, Mapping) else None, summary)

    @property
    def term_names(self) -> list[str]:
        """Distinct term names, most significant first."""
        return unique_names(str(row["name"]) for row in self.terms)

    @property
    def pathway_names(self) -> list[str]:
        """Distinct names of pathway-category terms (WikiPathways, Reactome, KEGG, *Pathway*)."""
        return unique_names(
            str(row["name"])
            for row in self.terms
            if row.get("category") in PATHWAY_CATEGORIES
            or "pathway" in str(row["category"]).lower()
        )

    def theme_names(self, max_words: int = 0) -> list[str]:
        """Short lowercase term names without ids; at most ``max_words`` words if > 0."""
        themes = []
        for name in self.term_names:
            theme = _TERM_ID_NOISE_RE.sub("", name).strip().lower()
            theme = re.sub(r"\s+", " ", theme)
            if max_words > 0:
                theme = " ".join(theme.split()[:max_words])
            if theme:
                themes.append(theme)
        return unique_names(themes)


def unique_names(values: Iterable[str]) -> list[str]:
    """The non-empty ``values`` in order, each once, case-insensitively (the first spelling)."""
    seen: set[str] = set()
    result = []
    for value in values:
        key = value.lower()
        if value and key not in seen:
            seen.add(key)
            result.append(value)
    return result


def _load_block(pattern: re.Pattern[str], text: str) -> Any:
    match = pattern.search(text)
    if not match:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def join_words(items: list[str]) -> str:
    """English list: "A", "A and B", "A, B and C"."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]
