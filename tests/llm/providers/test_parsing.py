"""Recovery of broken model output: ``llm.providers.parsing.parse_structured``."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from llm.providers.base import ProviderError
from llm.providers.parsing import parse_structured, strip_code_fences


class Summary(BaseModel):
    """A small summary-like output model."""

    summary: str = Field(min_length=5)
    tags: list[str] = Field(min_length=1, max_length=4)
    confidence: Literal["high", "medium", "low"]


VALID = {"summary": "Cluster of ARID1A and SMARCA4.", "tags": ["chromatin"], "confidence": "high"}
VALID_TEXT = json.dumps(VALID)
VALID_MODEL = Summary.model_validate(VALID)


def test_valid_json_parses_strictly() -> None:
    result = parse_structured(VALID_TEXT, Summary)
    assert result == VALID_MODEL


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{VALID_TEXT}\n```",
        f"```JSON\n{VALID_TEXT}\n```\n",
        f"```\n{VALID_TEXT}\n```",
        f"  ```json {VALID_TEXT}```  ",
        f"Here is the answer:\n```json\n{VALID_TEXT}\n```\nHope it helps.",
        f"```json\n{VALID_TEXT}",  # closing fence lost
    ],
)
def test_fenced_json_is_recovered(text: str) -> None:
    assert parse_structured(text, Summary) == VALID_MODEL


def test_strip_code_fences_leaves_plain_text_alone() -> None:
    assert strip_code_fences('  {"a": 1} ') == '{"a": 1}'
    assert strip_code_fences('```json\n{"a": 1}\n```') == '{"a": 1}'


@pytest.mark.parametrize(
    "text",
    [
        '{"summary": "Cluster of ARID1A and SMARCA4.", "tags": ["chromatin",], '
        '"confidence": "high",}',
        "{'summary': 'Cluster of ARID1A and SMARCA4.', 'tags': ['chromatin'], "
        "'confidence': 'high'}",
        f"Sure! {VALID_TEXT}",
        # The closing brackets were lost but every field is complete.
        '{"summary": "Cluster of ARID1A and SMARCA4.", "confidence": "high", "tags": ["chromatin"',
    ],
)
def test_broken_syntax_is_repaired(text: str) -> None:
    assert parse_structured(text, Summary) == VALID_MODEL


def test_repeated_object_takes_the_first_valid_one() -> None:
    text = VALID_TEXT + "\n" + json.dumps({**VALID, "summary": "Second copy of it."})
    assert parse_structured(text, Summary).summary == VALID["summary"]


def test_truncated_json_fails_validation_naming_missing_fields() -> None:
    truncated = VALID_TEXT[: len(VALID_TEXT) // 2]
    with pytest.raises(ProviderError) as info:
        parse_structured(truncated, Summary)
    error = info.value
    assert error.kind == "validation_failed"
    assert error.transient is False
    assert error.raw_text == truncated
    assert "confidence" in error.message
    assert "Field required" in error.message


def test_wrong_value_names_the_field_and_problem() -> None:
    text = json.dumps({**VALID, "confidence": "certain"})
    with pytest.raises(ProviderError) as info:
        parse_structured(text, Summary)
    assert info.value.kind == "validation_failed"
    assert "confidence" in info.value.message
    assert "Summary" in info.value.message


@pytest.mark.parametrize("text", ["", "   ", "```json\n```", "no json here at all", "null"])
def test_empty_or_garbage_fails_cleanly(text: str) -> None:
    with pytest.raises(ProviderError) as info:
        parse_structured(text, Summary)
    assert info.value.kind == "validation_failed"
    assert info.value.transient is False
    assert info.value.raw_text == text


def test_nan_is_rejected_not_crashing() -> None:
    with pytest.raises(ProviderError):
        parse_structured('{"summary": "abcdef", "tags": ["x"], "confidence": NaN}', Summary)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.text(max_size=400))
def test_arbitrary_text_only_ever_raises_provider_error(text: str) -> None:
    try:
        result = parse_structured(text, Summary)
    except ProviderError as error:
        assert error.kind == "validation_failed"
        assert error.transient is False
    else:
        assert isinstance(result, Summary)


# NUL is never valid output (parse_structured rejects it: no database stores it in text); lone
# surrogates (category Cs) are not text a model can send in UTF-8, and pydantic refuses them
TEXT_CHARACTERS = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.text(
        min_size=5,
        max_size=80,
        alphabet=TEXT_CHARACTERS,
    ),
    st.lists(
        st.text(
            max_size=20,
            alphabet=TEXT_CHARACTERS,
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["high", "medium", "low"]),
    st.booleans(),
)
def test_valid_objects_round_trip_fenced_or_not(
    summary: str, tags: list[str], confidence: str, fenced: bool
) -> None:
    expected = Summary(summary=summary, tags=tags, confidence=confidence)  # type: ignore[arg-type]
    text = expected.model_dump_json()
    if fenced:
        text = f"```json\n{text}\n```"
    assert parse_structured(text, Summary) == expected


def test_nul_in_output_is_a_validation_failure() -> None:
    text = '{"summary": "long a\\u0000b", "tags": ["x"], "confidence": "high"}'
    with pytest.raises(ProviderError) as info:
        parse_structured(text, Summary)
    assert info.value.kind == "validation_failed" and "NUL" in info.value.message
