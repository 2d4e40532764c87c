"""OpenAIProvider through the real ``openai`` SDK against the local OpenAI emulator over HTTP.

No mocks: every test starts a real ``OpenAIEmulator`` (HTTP server on a free port) and the
provider talks to it with the SDK's own transport. Faults are scripted on the emulator.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from openai import OpenAI

from llm.emulators.faults import DEFAULT_FAKE_GENE
from llm.emulators.openai import OpenAIEmulator
from llm.emulators.openai_wire import REFUSAL_TEXT
from llm.prompts.schemas import FunctionalSummary, JudgeVerdict
from llm.providers.base import ProviderError
from llm.providers.openai import OpenAIProvider, response_format
from tests.llm.provider_helpers import (
    CANARY_KEY,
    OPENAI,
    PATHWAY_NAMES,
    JudgeOut,
    SummaryOut,
    assert_no_key_in,
    failure_of,
    leak_probe_errors,
    rate_limited_failure,
    refused_provider,
    timeout_failure,
)

HARNESS = OPENAI
MODEL = HARNESS.model
make_request = HARNESS.request


# -- success -------------------------------------------------------------------------------------


def test_valid_answer_is_parsed_with_usage(
    provider: OpenAIProvider, emulator: OpenAIEmulator
) -> None:
    result = provider.generate(make_request())

    assert isinstance(result.parsed, SummaryOut)
    assert result.parsed.model_dump() == json.loads(result.raw_text)
    assert set(result.parsed.pathways) <= PATHWAY_NAMES and result.parsed.pathways
    assert "ARID1A" in result.parsed.summary
    # the emulator's usage is exact: (len(user) + len(system)) // 4 in, len(answer) // 4 out
    assert result.input_tokens == emulator.request_log()[-1]["prompt_tokens"]
    assert result.output_tokens == len(result.raw_text) // 4
    assert result.model_version == MODEL
    assert result.finish_reason == "stop"
    assert 0 < result.latency_seconds < 5
    log = emulator.request_log()
    assert [(e["path"], e["status"], e["model"], e["target"]) for e in log] == [
        ("/v1/chat/completions", 200, MODEL, "generate")
    ]


def test_project_schemas_are_answered(provider: OpenAIProvider) -> None:
    summary = provider.generate(make_request(FunctionalSummary)).parsed
    verdict = provider.generate(make_request(JudgeVerdict)).parsed
    assert isinstance(summary, FunctionalSummary) and 3 <= len(summary.key_themes) <= 5
    assert isinstance(verdict, JudgeVerdict) and verdict.verdict == "accept"


def test_response_format_is_strict_json_schema_when_possible() -> None:
    strict = response_format(FunctionalSummary)
    spec = strict["json_schema"]
    assert strict["type"] == "json_schema" and spec["name"] == "FunctionalSummary"
    assert spec["strict"] is True
    schema = spec["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    assert "default" not in json.dumps(schema)
    # String length limits are outside strict mode's subset: sent as guidance, validated by us.
    assert response_format(SummaryOut)["json_schema"]["strict"] is False


def test_judge_and_verdict_fault(provider: OpenAIProvider, emulator: OpenAIEmulator) -> None:
    emulator.add_fault("verdict", verdict="reject", reasoning="Names FAKEGENE1, not a member.")
    generated = provider.generate(make_request())
    judged = provider.generate(make_request(JudgeOut))
    assert isinstance(generated.parsed, SummaryOut)
    assert judged.parsed.verdict == "reject"
    assert emulator.request_log(target="judge")[0]["fault"] == "verdict"


def test_same_request_gets_the_same_answer(provider: OpenAIProvider) -> None:
    assert provider.generate(make_request()).raw_text == provider.generate(make_request()).raw_text


def test_base_url_with_v1_is_accepted(emulator: OpenAIEmulator) -> None:
    provider = OpenAIProvider(api_key=CANARY_KEY, base_url=emulator.url + "/v1/", timeout=5)
    assert isinstance(provider.generate(make_request()).parsed, SummaryOut)


# -- output recovery and classification -----------------------------------------------------------


def test_fenced_json_is_recovered(provider: OpenAIProvider, emulator: OpenAIEmulator) -> None:
    emulator.add_fault("fenced")
    result = provider.generate(make_request())
    assert result.raw_text.startswith("```json")
    assert isinstance(result.parsed, SummaryOut)


def test_truncated_json_is_validation_failed(
    provider: OpenAIProvider, emulator: OpenAIEmulator
) -> None:
    emulator.add_fault("truncated")
    error = failure_of(provider, make_request())
    assert (error.kind, error.transient) == ("validation_failed", False)
    assert error.raw_text and error.output_tokens == len(error.raw_text) // 4
    assert error.input_tokens == emulator.request_log()[-1]["prompt_tokens"]


def test_length_stop_is_validation_failed(
    provider: OpenAIProvider, emulator: OpenAIEmulator
) -> None:
    emulator.add_fault("max_tokens")
    error = failure_of(provider, make_request(max_output_tokens=300))
    assert (error.kind, error.transient) == ("validation_failed", False)
    assert "max tokens" in error.message and error.output_tokens == 300
    # A budget too small for the answer is cut the same way.
    assert failure_of(provider, make_request(max_output_tokens=10)).kind == "validation_failed"


def test_refusal_and_content_filter_are_blocked(
    provider: OpenAIProvider, emulator: OpenAIEmulator
) -> None:
    emulator.add_faults([{"kind": "safety"}, {"kind": "safety", "block_reason": "violence"}])
    refused = failure_of(provider, make_request())
    filtered = failure_of(provider, make_request())
    assert (refused.kind, refused.transient) == ("blocked", False)
    assert REFUSAL_TEXT in refused.message
    assert (filtered.kind, filtered.transient) == ("blocked", False)
    assert "content_filter" in filtered.message


def test_empty_answer_is_never_a_success(
    provider: OpenAIProvider, emulator: OpenAIEmulator
) -> None:
    emulator.add_fault("empty")
    error = failure_of(provider, make_request())
    assert (error.kind, error.transient) == ("api_error", False)
    assert "empty" in error.message


def test_hallucinated_gene_passes_through_for_entity_validation(
    provider: OpenAIProvider, emulator: OpenAIEmulator
) -> None:
    emulator.add_fault("hallucinated_gene")
    result = provider.generate(make_request())
    assert DEFAULT_FAKE_GENE in result.parsed.summary


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (429, True),
        (500, True),
        (503, True),
        (529, True),
    ],
)
def test_http_errors_are_classified(
    provider: OpenAIProvider, emulator: OpenAIEmulator, code: int, transient: bool
) -> None:
    emulator.add_fault("status", code=code, retry_after=7)
    error = failure_of(provider, make_request())
    assert (error.kind, error.status_code, error.transient) == ("api_error", code, transient)
    assert error.retry_after == (7.0 if transient else None)
    assert f"OpenAI API error {code}" in error.message


def test_timeout_is_transient(emulator: OpenAIEmulator) -> None:
    error = timeout_failure(HARNESS, emulator, seconds=3)
    assert (error.kind, error.transient) == ("timeout", True)


def test_connection_refused_is_transient() -> None:
    provider = refused_provider(HARNESS, timeout=2)
    error = failure_of(provider, make_request())
    assert (error.kind, error.transient) == ("api_error", True)


def test_server_rate_limit_answers_429_with_retry_after(emulator: OpenAIEmulator) -> None:
    error = rate_limited_failure(HARNESS, emulator, rpm=1)
    assert error.status_code == 429 and error.transient
    assert error.retry_after is not None and 0 < error.retry_after <= 60


def test_missing_key_is_refused_at_construction() -> None:
    with pytest.raises(ProviderError, match="OPENAI_API_KEY") as info:
        OpenAIProvider(api_key="", base_url="http://127.0.0.1:1")
    assert info.value.transient is False


def test_emulator_refuses_requests_without_a_key(emulator: OpenAIEmulator) -> None:
    request = urllib.request.Request(
        emulator.url + "/v1/chat/completions",
        data=b'{"model": "m", "messages": []}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 401
    assert json.loads(info.value.read())["error"]["type"] == "invalid_request_error"
    # A wrong key is refused too when the emulator is given one.
    with OpenAIEmulator(api_key="the-right-key") as strict:
        client = OpenAI(api_key="a-wrong-key", base_url=strict.url + "/v1", max_retries=0)
        with pytest.raises(Exception, match="401"):
            client.models.list()


def test_api_key_never_appears_in_any_error(emulator: OpenAIEmulator) -> None:
    errors = leak_probe_errors(
        HARNESS,
        emulator,
        [
            {"kind": "status", "code": 400, "message": f"API key {CANARY_KEY} not valid"},
            {"kind": "status", "code": 401, "message": f"Incorrect API key provided: {CANARY_KEY}"},
            {"kind": "status", "code": 429, "retry_after": 1},
            {"kind": "status", "code": 503, "message": f"key={CANARY_KEY} overloaded"},
            {"kind": "timeout", "seconds": 3},
            {"kind": "empty"},
            {"kind": "safety"},
            {"kind": "max_tokens"},
            {"kind": "truncated"},
        ],
    )

    assert {error.kind for error in errors} == {
        "api_error",
        "timeout",
        "blocked",
        "validation_failed",
    }
    assert_no_key_in(errors)
