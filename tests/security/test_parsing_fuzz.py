"""Property-based tests of model-output recovery (``llm.providers.parsing.parse_structured``)
against the real output classes (FunctionalSummary, PhenotypeSummary, JudgeVerdict).

Properties:

* whatever the text (arbitrary unicode, JSON-ish values, mutated or truncated JSON, deep
  nesting, non-text), the only exception is ``ProviderError(kind="validation_failed",
  transient=False)`` carrying the raw text, and anything returned is a valid instance;
* a valid object survives the ways models wrap it (fences with or without a language tag or a
  closing fence, prose around it, a fence inside a string, indentation, ASCII escapes,
  repetition, extra keys, trailing commas): ``json dump -> wrap -> parse`` gives back an equal
  object.

tests/llm/providers/test_parsing.py covers the hand-picked cases with a toy class; these go wider.
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llm.prompts.schemas import (
    FunctionalSummary,
    HardFailure,
    InheritanceMode,
    JudgeVerdict,
    PhenotypeSummary,
    Verdict,
)
from llm.providers.base import ProviderError
from llm.providers.parsing import parse_structured
from tests.llm.verdicts import make_verdict

pytestmark = pytest.mark.security

OUTPUT_CLASSES: tuple[type[BaseModel], ...] = (FunctionalSummary, PhenotypeSummary, JudgeVerdict)
FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Characters that matter to the recovery steps, mixed into otherwise arbitrary text.
_TRICKY = [*"{}[]\"'`~,:\\\n\r\t <>&", "```", "```json\n", "~~~", "\u2028", "\ufeff", "NaN"]
_NO_NUL = st.characters(codec="utf-8", exclude_characters="\x00")
tricky_text = st.lists(
    st.sampled_from(_TRICKY) | st.text(alphabet=_NO_NUL, max_size=8), max_size=12
).map("".join)
# Text a model may put inside a JSON string: any unicode but lone surrogates (not UTF-8) and NUL
# (parse_structured rejects NUL: no database stores it in text; tested separately).
field_text = st.text(alphabet=_NO_NUL, max_size=40) | tricky_text
confidence = st.sampled_from(["high", "medium", "low"])

functional_summaries = st.builds(
    FunctionalSummary,
    summary=field_text,
    key_themes=st.lists(field_text, min_size=3, max_size=5),
    pathways=st.lists(field_text, max_size=5),
    tags=st.lists(field_text, min_size=3, max_size=7),
    clinical_relevance=st.none() | field_text,
    confidence=confidence,
)
phenotype_summaries = st.builds(
    PhenotypeSummary,
    summary=field_text,
    key_phenotype_themes=st.lists(field_text, min_size=1, max_size=5),
    notably_absent=st.lists(field_text, max_size=4),
    clinical_pattern=field_text,
    syndrome_hints=st.lists(field_text, max_size=3),
    inheritance_patterns=st.lists(st.sampled_from(get_args(InheritanceMode)), max_size=3),
    syndromicity=st.sampled_from(["syndromic", "non_syndromic", "mixed", "unclear"]),
    tags=st.lists(field_text, min_size=3, max_size=7),
    confidence=confidence,
    data_quality_note=st.none() | field_text,
)
score = st.integers(min_value=0, max_value=2)
judge_verdicts = st.builds(
    JudgeVerdict,
    is_factually_accurate=st.booleans(),
    is_grounded=st.booleans(),
    pathways_valid=st.booleans(),
    confidence_appropriate=st.booleans(),
    score_grounding=score,
    score_fidelity=score,
    score_direction=score,
    score_clinical_language=score,
    score_supplementary=score,
    score_confidence=score,
    grounding_percent=st.integers(min_value=0, max_value=100),
    hard_failures=st.lists(st.sampled_from(get_args(HardFailure)), max_size=2),
    reasoning=field_text,
    verdict=st.sampled_from(get_args(Verdict)),
    corrections_made=st.lists(field_text, max_size=2),
    corrected_summary=st.none() | field_text,
    corrected_tags=st.none() | st.lists(field_text, min_size=3, max_size=7),
    corrected_notably_absent=st.none() | st.lists(field_text, max_size=3),
    corrected_inheritance_patterns=st.none()
    | st.lists(st.sampled_from(get_args(InheritanceMode)), max_size=2),
    corrected_syndromicity=st.none()
    | st.sampled_from(["syndromic", "non_syndromic", "mixed", "unclear"]),
)
valid_objects: st.SearchStrategy[BaseModel] = st.one_of(
    functional_summaries, phenotype_summaries, judge_verdicts
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | tricky_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=12,
)
# Prose a model writes around the object: no braces, brackets or fence characters.
prose = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="{}[]`~\x00"), max_size=40)


def assert_clean_outcome(text: Any, output_class: type[BaseModel]) -> BaseModel | None:
    """Parse ``text``; the only acceptable failure is a permanent validation_failed
    ProviderError with the raw text attached, and a result must be a valid, storable instance.

    Returns the parsed object, or None when parsing failed cleanly.
    """
    try:
        result = parse_structured(text, output_class)
    except ProviderError as error:
        assert error.kind == "validation_failed", error
        assert error.transient is False
        assert isinstance(error.message, str) and error.message
        assert error.raw_text == (text if isinstance(text, str) else "")
        return None
    assert isinstance(result, output_class)
    assert output_class.model_validate_json(result.model_dump_json()) == result
    return result


def wrap(
    obj: BaseModel, *, style: str, indent: int | None, ascii_only: bool, before: str, after: str
) -> str:
    """Serialise ``obj`` as a model might: JSON, then one wrapping ``style``."""
    text = json.dumps(obj.model_dump(mode="json"), indent=indent, ensure_ascii=ascii_only)
    styles = {
        "bare": text,
        "spaces": f"\n  {text}  \n",
        "fence-json": f"```json\n{text}\n```",
        "fence-upper": f"```JSON\n{text}\n```\n",
        "fence-plain": f"```\n{text}\n```",
        "tilde": f"~~~json\n{text}\n~~~",
        "fence-unclosed": f"```json\n{text}",
        "fence-in-prose": f"{before}\n```json\n{text}\n```\n{after}",
        "prose": f"{before} {text} {after}",
        "repeated": f"{text}\n{text}",
    }
    return styles[style]


@FUZZ
@given(text=st.text(max_size=300) | tricky_text, output_class=st.sampled_from(OUTPUT_CLASSES))
def test_arbitrary_text_fails_only_with_validation_failed(
    text: str, output_class: type[BaseModel]
) -> None:
    assert_clean_outcome(text, output_class)


@FUZZ
@given(
    value=json_values,
    output_class=st.sampled_from(OUTPUT_CLASSES),
    cut=st.none() | st.integers(min_value=0, max_value=400),
    fence=st.booleans(),
    noise=tricky_text,
    at=st.integers(min_value=0, max_value=400),
)
def test_json_ish_values_fail_only_with_validation_failed(
    value: Any, output_class: type[BaseModel], cut: int | None, fence: bool, noise: str, at: int
) -> None:
    text = json.dumps(value)
    text = text[:at] + noise + text[at:]
    if cut is not None:
        text = text[:cut]
    if fence:
        text = f"```json\n{text}\n```"
    assert_clean_outcome(text, output_class)


@FUZZ
@given(
    output_class=st.sampled_from(OUTPUT_CLASSES),
    values=st.dictionaries(st.sampled_from(["summary", "tags", "verdict", "x"]), json_values),
    data=st.data(),
)
def test_objects_with_the_right_keys_and_wrong_values_fail_cleanly(
    output_class: type[BaseModel], values: dict[str, Any], data: st.DataObject
) -> None:
    fields = list(output_class.model_fields)
    chosen = data.draw(st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields)))
    assert_clean_outcome(json.dumps({**values, **chosen}), output_class)


@FUZZ
@given(
    obj=valid_objects,
    style=st.sampled_from(
        [
            "bare",
            "spaces",
            "fence-json",
            "fence-upper",
            "fence-plain",
            "tilde",
            "fence-unclosed",
            "fence-in-prose",
            "prose",
            "repeated",
        ]
    ),
    indent=st.none() | st.integers(min_value=0, max_value=4),
    ascii_only=st.booleans(),
    before=prose,
    after=prose,
)
def test_valid_objects_round_trip_through_every_wrapping(
    obj: BaseModel, style: str, indent: int | None, ascii_only: bool, before: str, after: str
) -> None:
    text = wrap(obj, style=style, indent=indent, ascii_only=ascii_only, before=before, after=after)
    assert parse_structured(text, type(obj)) == obj


@FUZZ
@given(obj=valid_objects, extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_unknown_keys_are_ignored(obj: BaseModel, extra: dict[str, Any]) -> None:
    payload = obj.model_dump(mode="json")
    payload = {**{k: v for k, v in extra.items() if k not in payload}, **payload}
    assert parse_structured(json.dumps(payload), type(obj)) == obj


@FUZZ
@given(obj=valid_objects, indent=st.integers(min_value=1, max_value=3))
def test_trailing_commas_are_repaired_without_changing_content(obj: BaseModel, indent: int) -> None:
    text = json.dumps(obj.model_dump(mode="json"), indent=indent, ensure_ascii=True)
    # raw newlines are structural in indented JSON (never inside a string): a comma before
    # every closing bracket that ends a line
    broken = re.sub(r"\n(\s*)([}\]])", r",\n\1\2", text)
    assert parse_structured(broken, type(obj)) == obj


@FUZZ
@given(obj=valid_objects, data=st.data(), fence=st.booleans())
def test_truncated_output_fails_cleanly_or_gives_a_valid_object(
    obj: BaseModel, data: st.DataObject, fence: bool
) -> None:
    text = json.dumps(obj.model_dump(mode="json"), ensure_ascii=data.draw(st.booleans()))
    cut = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    truncated = ("```json\n" if fence else "") + text[:cut]
    assert_clean_outcome(truncated, type(obj))


@pytest.mark.parametrize(
    "text",
    [
        # far deeper than Python's recursion limit, about as long as a capped answer may be
        "[" * 20_000,
        "{" * 20_000,
        '{"a":' * 4_000,
        '{"summary": ' + "[" * 10_000 + "]" * 10_000 + "}",
        "```json\n" + "[" * 20_000,
        '{"summary": "' + "\\" * 10_001 + '"}',
        "\x00" * 1000,
        "\ud800",  # a lone surrogate (never valid UTF-8)
    ],
    ids=[
        "brackets",
        "braces",
        "nested-keys",
        "deep-value",
        "fenced-brackets",
        "backslashes",
        "nul",
        "surrogate",
    ],
)
@pytest.mark.parametrize("output_class", OUTPUT_CLASSES, ids=lambda c: c.__name__)
def test_pathological_inputs_fail_cleanly(text: str, output_class: type[BaseModel]) -> None:
    assert assert_clean_outcome(text, output_class) is None


@pytest.mark.parametrize("value", [None, b'{"summary": "x"}', 42, ["{}"]])
def test_non_text_fails_cleanly(value: Any) -> None:
    assert assert_clean_outcome(value, JudgeVerdict) is None


VERDICT = make_verdict(reasoning="Grounded in the terms; see ```json``` and é[")


@pytest.mark.parametrize(
    "text",
    [
        # a fence inside a string value cut the fenced candidate short (found by the fuzzer)
        f"Here it is:\n```json\n{VERDICT.model_dump_json()}\n```\nDone.",
        f"Here it is:\n```json\n{json.dumps(VERDICT.model_dump(), indent=2)}\n```",
        # json_repair turned "\u00e9[" followed by a list into 'é["' (found by the fuzzer)
        json.dumps({**VERDICT.model_dump(), "extra": ["x"]}, indent=1).replace("\n}", ",\n}"),
        json.dumps(VERDICT.model_dump()).replace("}", ",}"),
    ],
    ids=["fence-in-string-in-prose", "fence-in-string-indented", "escape-bracket", "compact"],
)
def test_recovery_regressions(text: str) -> None:
    assert parse_structured(text, JudgeVerdict) == VERDICT
