"""The server's side of judging: hard failures, grounding bands, corrections re-validated."""

from __future__ import annotations

import pytest

from llm.grounding import LARGE_CLUSTER_BANDS, NORMAL_BANDS, grounding_bands
from llm.prompts.schemas import PhenotypeSummary
from llm.prompts.templates import LARGE_CLUSTER_SIZE
from llm.services.judging import corrections_apply, corrections_note, verdict_effective
from tests.llm.context_helpers import make_ctx, term, traits
from tests.llm.verdicts import make_verdict

MEMBERS = ["ADNP", "CHD8", "ARID1B", "DYRK1A"]


def ctx():
    return make_ctx(
        "phenotype",
        MEMBERS,
        [
            term("HPO", "HP:1", "Intellectual disability", 1e-9, overlap=4),
            term("HPO", "HP:2", "Hypertelorism", 1e-6, overlap=3),
            term(
                "HPO",
                "HP:3",
                "Abnormality of the cardiovascular system",
                1e-3,
                direction="depleted",
                overlap=0,
                fold=0.0,
            ),
        ],
        dataset_symbols={"TP53"},
        traits=traits(supported=("autosomal_dominant",), call="syndromic", isolated_share=0.1),
    )


def summary() -> PhenotypeSummary:
    return PhenotypeSummary(
        summary="Intellectual disability with hypertelorism.",
        key_phenotype_themes=["Intellectual disability", "Hypertelorism"],
        notably_absent=["Deafness"],
        clinical_pattern="Syndromic intellectual disability.",
        syndrome_hints=[],
        inheritance_patterns=["autosomal_dominant"],
        syndromicity="mixed",
        tags=["intellectual disability", "hypertelorism", "dysmorphism"],
        confidence="medium",
        data_quality_note=None,
    )


def test_bands_depend_on_cluster_size() -> None:
    assert grounding_bands(LARGE_CLUSTER_SIZE - 1) == NORMAL_BANDS
    assert grounding_bands(LARGE_CLUSTER_SIZE) == LARGE_CLUSTER_BANDS
    assert (NORMAL_BANDS.accept, NORMAL_BANDS.reject) == (80, 50)
    assert (LARGE_CLUSTER_BANDS.accept, LARGE_CLUSTER_BANDS.reject) == (70, 40)


@pytest.mark.parametrize(
    ("given", "size", "expected"),
    [
        ({"verdict": "accept"}, 10, "accept"),
        ({"verdict": "accept", "hard_failures": ["invented_phenotype"]}, 10, "reject"),
        ({"verdict": "low_confidence", "hard_failures": ["direction_inversion"]}, 500, "reject"),
        ({"verdict": "accept", "grounding_percent": 45}, 10, "reject"),
        ({"verdict": "accept", "grounding_percent": 45}, 500, "low_confidence"),
        ({"verdict": "accept", "grounding_percent": 75}, 10, "low_confidence"),
        ({"verdict": "accept", "grounding_percent": 75}, 500, "accept"),
        ({"verdict": "accept_with_corrections"}, 10, "accept"),  # no correction given
        ({"verdict": "accept_with_corrections", "corrected_syndromicity": "syndromic"}, 10,
         "accept_with_corrections"),
        ({"verdict": "low_confidence"}, 10, "low_confidence"),
        ({"verdict": "reject"}, 10, "reject"),
    ],
)  # fmt: skip
def test_effective_verdict(given: dict, size: int, expected: str) -> None:
    verdict = make_verdict(**given)
    effective, notes = verdict_effective(verdict, cluster_size=size)
    assert effective == expected
    assert bool(notes) == (effective != verdict.verdict)


def test_corrections_are_applied_and_revalidated() -> None:
    verdict = make_verdict(
        "accept_with_corrections",
        corrected_notably_absent=["Abnormality of the cardiovascular system"],
        corrected_syndromicity="syndromic",
        corrected_tags=["intellectual disability", "hypertelorism", "syndromic"],
    )
    outcome = corrections_apply(ctx(), summary(), verdict)
    assert outcome.refused == ""
    corrected = outcome.summary
    assert isinstance(corrected, PhenotypeSummary)
    assert corrected.notably_absent == ["Abnormality of the cardiovascular system"]
    assert corrected.syndromicity == "syndromic"
    assert {c["field"] for c in outcome.applied} == {"notably_absent", "syndromicity", "tags"}
    change = next(c for c in outcome.applied if c["field"] == "syndromicity")
    assert (change["before"], change["after"]) == ("mixed", "syndromic")
    assert "syndromicity: mixed -> syndromic" in corrections_note(outcome.applied)


@pytest.mark.parametrize(
    ("correction", "reason"),
    [
        ({"corrected_summary": "TP53 drives intellectual disability."}, "TP53"),
        ({"corrected_summary": "ADNP carriers show hypertelorism."}, "ADNP"),
        ({"corrected_inheritance_patterns": ["x_linked"]}, "x_linked"),
        ({"corrected_notably_absent": ["Intellectual disability"]}, "notably absent"),
        ({"corrected_tags": ["a", "b"]}, "tags"),
    ],
)
def test_a_correction_that_fails_validation_is_refused(correction: dict, reason: str) -> None:
    verdict = make_verdict("accept_with_corrections", **correction)
    original = summary()
    outcome = corrections_apply(ctx(), original, verdict)
    assert outcome.refused.startswith("corrections refused") and reason in outcome.refused
    assert outcome.summary == original and outcome.applied == []
