"""AnthropicProvider through the real ``anthropic`` SDK against the local Anthropic emulator.

No mocks: every test starts a real ``AnthropicEmulator`` (HTTP server on a free port) and the
provider talks to it with the SDK's own transport. Faults are scripted on the emulator.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from llm.emulators.anthropic import AnthropicEmulator
from llm.emulators.anthropic_wire import forced_tool, message_response
from llm.emulators.faults import DEFAULT_FAKE_PATHWAY
from llm.prompts.schemas import FunctionalSummary, JudgeVerdict, PhenotypeSummary
from llm.providers.anthropic import AnthropicProvider, tool_for
from llm.providers.base import ProviderError
from tests.llm.provider_helpers import (
    ANTHROPIC,
    CANARY_KEY,
    PATHWAY_NAMES,
    PHENOTYPE,
    JudgeOut,
    SummaryOut,
    assert_no_key_in,
    failure_of,
    leak_probe_errors,
    rate_limited_failure,
    refused_provider,
    timeout_failure,
)

HARNESS = ANTHROPIC
MODEL = HARNESS.model
make_request = HARNESS.request


# -- success -------------------------------------------------------------------------------------


def test_forced_tool_answer_is_parsed_with_usage(
    provider: AnthropicProvider, emulator: AnthropicEmulator
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
    assert result.finish_reason == "tool_use"
    log = emulator.request_log()
    assert [(e["path"], e["status"], e["model"], e["target"]) for e in log] == [
        ("/v1/messages", 200, MODEL, "generate")
    ]


def test_request_forces_one_tool_with_the_pydantic_schema(provider: AnthropicProvider) -> None:
    params = provider._params(make_request(FunctionalSummary))
    tool = params["tools"][0]
    assert params["tool_choice"] == {"type": "tool", "name": "FunctionalSummary"}
    assert tool == tool_for(FunctionalSummary)
    assert tool["input_schema"] == FunctionalSummary.model_json_schema()
    assert forced_tool(params) == tool
    assert message_response(params)["content"][0]["type"] == "tool_use"


def test_project_schemas_are_answered(provider: AnthropicProvider) -> None:
    phenotype = f"<cluster_data>{json.dumps(PHENOTYPE)}</cluster_data>"
    summary = provider.generate(make_request(FunctionalSummary)).parsed
    clinical = provider.generate(make_request(PhenotypeSummary, phenotype)).parsed
    verdict = provider.generate(make_request(JudgeVerdict)).parsed
    assert isinstance(summary, FunctionalSummary)
    assert isinstance(clinical, PhenotypeSummary) and "seizure" in clinical.key_phenotype_themes
    assert isinstance(verdict, JudgeVerdict) and verdict.verdict == "accept"


def test_judge_and_verdict_fault(provider: AnthropicProvider, emulator: AnthropicEmulator) -> None:
    emulator.add_fault("verdict", verdict="low_confidence")
    assert provider.generate(make_request(JudgeOut)).parsed.verdict == "low_confidence"
    assert provider.generate(make_request(JudgeOut)).parsed.verdict == "accept"


# -- output recovery and classification -----------------------------------------------------------


def test_text_answer_instead_of_tool_call_is_recovered(
    provider: AnthropicProvider, emulator: AnthropicEmulator
) -> None:
    emulator.add_fault("fenced")
    result = provider.generate(make_request())
    assert result.raw_text.startswith("```json") and result.finish_reason == "end_turn"
    assert isinstance(result.parsed, SummaryOut)


def test_truncated_text_is_validation_failed(
    provider: AnthropicProvider, emulator: AnthropicEmulator
) -> None:
    emulator.add_fault("truncated")
    error = failure_of(provider, make_request())
    assert (error.kind, error.transient) == ("validation_failed", False)
    assert error.raw_text and error.output_tokens == len(error.raw_text) // 4
    assert error.input_tokens == emulator.request_log()[-1]["prompt_tokens"]


def test_max_tokens_stop_is_validation_failed(
    provider: AnthropicProvider, emulator: AnthropicEmulator
) -> None:
    emulator.add_fault("max_tokens")
    error = failure_of(provider, make_request(max_output_tokens=300))
    assert (error.kind, error.transient) == ("validation_failed", False)
    assert "max tokens" in error.message and error.output_tokens == 300


def test_refusal_is_blocked(provider: AnthropicProvider, emulator: AnthropicEmulator) -> None:
    emulator.add_fault("safety")
    error = failure_of(provider, make_request())
    assert (error.kind, error.transient) == ("blocked", False)
    assert "refusal" in error.message


def test_empty_answer_is_never_a_success(
    provider: AnthropicProvider, emulator: AnthropicEmulator
) -> None:
    emulator.add_fault("empty")
    error = failure_of(provider, make_request())
    assert (error.kind, error.transient) == ("api_error", False)
    assert "empty" in error.message


def test_hallucinated_pathway_passes_through(
    provider: AnthropicProvider, emulator: AnthropicEmulator
) -> None:
    emulator.add_fault("hallucinated_pathway")
    assert DEFAULT_FAKE_PATHWAY in provider.generate(make_request()).parsed.pathways


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (429, True),
        (500, True),
        (503, True),
        (529, True),
    ],
)
def test_http_errors_are_classified(
    provider: AnthropicProvider, emulator: AnthropicEmulator, code: int, transient: bool
) -> None:
    emulator.add_fault("status", code=code, retry_after=7)
    error = failure_of(provider, make_request())
    assert (error.kind, error.status_code, error.transient) == ("api_error", code, transient)
    assert error.retry_after == (7.0 if transient else None)
    assert error.message.startswith(f"Anthropic API error {code}")


def test_overloaded_is_named(provider: AnthropicProvider, emulator: AnthropicEmulator) -> None:
    emulator.add_fault("status", code=529)
    assert "overloaded_error" in failure_of(provider, make_request()).message


def test_timeout_is_transient(emulator: AnthropicEmulator) -> None:
    error = timeout_failure(HARNESS, emulator, seconds=3)
    assert (error.kind, error.transient) == ("timeout", True)


def test_connection_refused_is_transient() -> None:
    provider = refused_provider(HARNESS, timeout=2)
    error = failure_of(provider, make_request())
    assert (error.kind, error.transient) == ("api_error", True)


def test_server_rate_limit_answers_429_with_retry_after(emulator: AnthropicEmulator) -> None:
    error = rate_limited_failure(HARNESS, emulator, rpm=1)
    assert error.status_code == 429 and error.transient
    assert error.retry_after is not None and 0 < error.retry_after <= 60


def test_missing_key_is_refused_at_construction() -> None:
    with pytest.raises(ProviderError, match="ANTHROPIC_API_KEY") as info:
        AnthropicProvider(api_key="", base_url="http://127.0.0.1:1")
    assert info.value.transient is False


def test_emulator_refuses_requests_without_a_key(emulator: AnthropicEmulator) -> None:
    request = urllib.request.Request(
        emulator.url + "/v1/messages",
        data=b'{"model": "m", "max_tokens": 5, "messages": []}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 401
    body = json.loads(info.value.read())
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    with AnthropicEmulator(api_key="the-right-key") as strict:
        wrong = AnthropicProvider(api_key="a-wrong-key-123", base_url=strict.url, timeout=5)
        error = failure_of(wrong, make_request())
        assert (error.status_code, error.transient) == (401, False)


def test_api_key_never_appears_in_any_error(emulator: AnthropicEmulator) -> None:
    errors = leak_probe_errors(
        HARNESS,
        emulator,
        [
            {"kind": "status", "code": 400, "message": f"API key {CANARY_KEY} not valid"},
            {"kind": "status", "code": 401, "message": f"x-api-key: {CANARY_KEY}"},
            {"kind": "status", "code": 429, "retry_after": 1},
            {"kind": "status", "code": 529, "message": f"key={CANARY_KEY} overloaded"},
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
