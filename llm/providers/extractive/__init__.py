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

Parts: :mod:`.terms` (the enrichment table and the words of term names), :mod:`.summary` (the
summary builders), :mod:`.judge` (the rule-based judge); this module parses the request and
dispatches it.
"""

from __future__ import annotations

import time
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from llm.prompts.schemas import FunctionalSummary, JudgeVerdict, PhenotypeSummary
from llm.prompts.templates import parse_cluster_data, parse_summary_block
from llm.providers.base import ProviderError, ProviderRequest, ProviderResult
from llm.providers.extractive.judge import rule_based_verdict
from llm.providers.extractive.summary import build_functional_summary, build_phenotype_summary
from llm.providers.extractive.terms import (
    EXTRACTIVE_LABEL,
    EXTRACTIVE_LABEL_TAGS,
    THIN_DATA_THEMES,
)

T = TypeVar("T", bound=BaseModel)

MODEL_VERSION = "extractive-v1"


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


__all__ = [
    "EXTRACTIVE_LABEL",
    "EXTRACTIVE_LABEL_TAGS",
    "MODEL_VERSION",
    "THIN_DATA_THEMES",
    "ExtractiveProvider",
    "build_functional_summary",
    "build_phenotype_summary",
    "rule_based_verdict",
]
