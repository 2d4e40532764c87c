"""The server's side of judging: grounding bands, hard failures, and corrections.

The judge (an LLM, or the extractive rule-based judge) returns a :class:`JudgeVerdict`; the
server does not take its verdict on trust:

* **Hard failures** (``hard_failures``: molecular summary, invented phenotype, direction
  inversion, invented gene or pathway) reject the summary whatever verdict came with them.
* **Grounding bands** on ``grounding_percent``: a summary below the reject floor is rejected;
  an ``accept`` below the accept band becomes ``low_confidence``. Normal clusters: accept at
  >= 80%, reject below 50% (SysNDD's phenotype judge bands). Large clusters (>= 300 members,
  ``LARGE_CLUSTER_SIZE``) are judged at a relaxed bar, since a broad, grounded, high-level
  characterisation is what a heterogeneous cluster of that size allows: accept at >= 70%,
  reject below 40%.
* **Corrections** of an ``accept_with_corrections`` verdict (``corrected_summary``, tags,
  notably_absent, inheritance patterns, syndromicity) are applied to the summary and the result
  is validated again exactly as a generated summary is (schema, entity validation, inheritance
  and syndromicity figures): a correction that names a non-member gene, or otherwise fails, is
  refused, and the summary is kept uncorrected as ``low_confidence`` with the reason.

The bands themselves (:func:`~llm.grounding.grounding_bands`) live in :mod:`llm.grounding`, which
the extractive provider's rule-based judge shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from llm.context import ClusterContext
from llm.grounding import grounding_bands
from llm.prompts.schemas import JudgeVerdict, summary_class_for
from llm.services.validation import validate_summary

ACCEPT = "accept"
ACCEPT_WITH_CORRECTIONS = "accept_with_corrections"
LOW_CONFIDENCE = "low_confidence"
REJECT = "reject"


def verdict_effective(verdict: JudgeVerdict, *, cluster_size: int) -> tuple[str, list[str]]:
    """The verdict the server acts on, and a note per rule that changed the judge's verdict.

    Returns:
        (accept | accept_with_corrections | low_confidence | reject, notes).
    """
    bands = grounding_bands(cluster_size)
    notes: list[str] = []
    judged = verdict.verdict
    if verdict.hard_failures:
        if judged != REJECT:
            notes.append(
                "hard failure " + ", ".join(verdict.hard_failures) + f": {judged} becomes reject"
            )
        return REJECT, notes
    if verdict.grounding_percent < bands.reject:
        if judged != REJECT:
            notes.append(
                f"grounding {verdict.grounding_percent}% is below the {bands.reject}% floor: "
                f"{judged} becomes reject"
            )
        return REJECT, notes
    if judged == ACCEPT and verdict.grounding_percent < bands.accept:
        notes.append(
            f"grounding {verdict.grounding_percent}% is below the {bands.accept}% accept band: "
            "accept becomes low_confidence"
        )
        return LOW_CONFIDENCE, notes
    if judged == ACCEPT_WITH_CORRECTIONS and not verdict.corrections():
        notes.append("accept_with_corrections without any correction is taken as accept")
        if verdict.grounding_percent < bands.accept:
            return LOW_CONFIDENCE, notes
        return ACCEPT, notes
    return judged, notes


@dataclass
class CorrectionOutcome:
    """What applying a verdict's corrections gave.

    Attributes:
        summary: the corrected summary (validated), or the original when refused.
        applied: [{"field", "before", "after"}] of the fields changed (empty when refused).
        refused: why the corrections were refused ("" when applied).
    """

    summary: BaseModel
    applied: list[dict[str, Any]] = field(default_factory=list)
    refused: str = ""


def corrections_apply(
    ctx: ClusterContext, summary: BaseModel, verdict: JudgeVerdict
) -> CorrectionOutcome:
    """Apply the corrected_* fields of ``verdict`` to ``summary`` and validate the result again
    (the output schema, then :func:`~llm.services.validation.validate_summary`).

    Fields the summary does not have (e.g. notably_absent on a functional summary) are ignored.
    """
    original = summary.model_dump(mode="json")
    changes = {k: v for k, v in verdict.corrections().items() if k in original}
    if not changes:
        return CorrectionOutcome(summary=summary)
    corrected = {**original, **changes}
    output_class = summary_class_for(ctx.cluster_type)
    try:
        candidate = output_class.model_validate(corrected)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return CorrectionOutcome(summary=summary, refused=f"corrections refused: {problems}")
    failures = validate_summary(ctx, candidate)
    if failures:
        return CorrectionOutcome(
            summary=summary, refused="corrections refused: " + " ".join(failures)
        )
    applied = [
        {"field": name, "before": original[name], "after": candidate.model_dump(mode="json")[name]}
        for name in changes
        if original[name] != candidate.model_dump(mode="json")[name]
    ]
    return CorrectionOutcome(summary=candidate, applied=applied)


def corrections_note(applied: list[dict[str, Any]]) -> str:
    """One line per applied correction, for the audit trail."""

    def short(value: Any) -> str:
        text = value if isinstance(value, str) else ", ".join(str(v) for v in value or []) or "-"
        return text if len(text) <= 160 else text[:157] + "..."

    return "; ".join(f"{c['field']}: {short(c['before'])} -> {short(c['after'])}" for c in applied)
