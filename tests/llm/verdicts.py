"""A complete judge verdict (prompt v2) for tests that need one, with overrides."""

from __future__ import annotations

from typing import Any

from llm.prompts.schemas import RUBRIC_CHECKS, JudgeVerdict

_RUBRIC = {f"score_{check}": 2 for check in RUBRIC_CHECKS}


def verdict_dict(verdict: str = "accept", **overrides: Any) -> dict[str, Any]:
    """The JSON of a passing verdict: every check true, rubric 2s, grounding 100%."""
    data: dict[str, Any] = {
        "is_factually_accurate": True,
        "is_grounded": True,
        "pathways_valid": True,
        "confidence_appropriate": True,
        **_RUBRIC,
        "grounding_percent": 100,
        "hard_failures": [],
        "reasoning": "Grounded in the evidence terms.",
        "verdict": verdict,
        "corrections_made": [],
    }
    data.update(overrides)
    return data


def make_verdict(verdict: str = "accept", **overrides: Any) -> JudgeVerdict:
    """:func:`verdict_dict` validated as a :class:`JudgeVerdict`."""
    return JudgeVerdict.model_validate(verdict_dict(verdict, **overrides))
