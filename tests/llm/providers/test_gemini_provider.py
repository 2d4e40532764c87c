"""GeminiProvider through the real google-genai SDK against the local Gemini emulator over HTTP.

No mocks: every test starts a real ``GeminiEmulator`` (HTTP server on a free port) and the
provider talks to it with the SDK's own transport. Faults are scripted on the emulator.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from google import genai
from google.genai import types
from pydantic import BaseModel, Field

from llm.emulators.control import EmulatorControl
from llm.emulators.faults import DEFAULT_FAKE_GENE, DEFAULT_FAKE_PATHWAY
from llm.emulators.gemini import GeminiEmulator
from llm.providers.base import ProviderError
from llm.providers.gemini import GeminiProvider
from tests.llm.provider_helpers import (
    CANARY_KEY,
    GEMINI,
    PATHWAY_NAMES,
    PHENOTYPE,
    PROMPT,
    JudgeOut,
    SummaryOut,
    assert_no_key_in,
    emulator_command,
    failure_of,
    leak_probe_errors,
    rate_limited_failure,
    refused_provider,
)

pytestmark = pytest.mark.usefixtures("developer_api")

HARNESS = GEMINI
MODEL = HARNESS.model
make_request = HARNESS.request


# -- success -------------------------------------------------------------------------------------


def test_valid_answer_is_parsed_and_grounded(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    result = provider.generate(make_request())

    assert isinstance(result.parsed, SummaryOut)
    assert result.parsed.model_dump() == json.loads(result.raw_text)
    assert set(result.parsed.pathways) <= PATHWAY_NAMES and result.parsed.pathways
    assert "ARID1A" in result.parsed.summary
    assert all(tag == tag.lower() for tag in result.parsed.tags)
    assert result.parsed.confidence == "high"
    # the emulator's usage is exact: (len(user) + len(system)) // 4 in, len(answer) // 4 out
    assert result.input_tokens == emulator.request_log()[-1]["prompt_tokens"]
    assert result.output_tokens == len(result.raw_text) // 4
    assert result.model_version == MODEL
    assert result.finish_reason == "STOP"
    assert 0 < result.latency_seconds < 5
    log = emulator.request_log()
    assert [(e["target"], e["status"], e["model"]) for e in log] == [("generate", 200, MODEL)]
    assert log[0]["path"] == f"/v1beta/models/{MODEL}:generateContent"


def test_judge_answer_accepts_by_default(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    prompt = PROMPT + '\n<summary>{"summary": "ARID1A and SMARCA4 remodel chromatin."}</summary>'
    result = provider.generate(make_request(JudgeOut, prompt))

    assert result.parsed == JudgeOut(
        verdict="accept",
        reasoning=result.parsed.reasoning,
        grounded=True,
        pathways_verbatim=True,
    )
    assert 2 <= result.parsed.reasoning.count(". ") + 1 <= 3
    assert emulator.request_log()[0]["target"] == "judge"


def test_verdict_fault_applies_to_judge_requests_only(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_fault("verdict", verdict="reject", reasoning="Names FAKEGENE1, not a member.")

    generated = provider.generate(make_request())
    judged = provider.generate(make_request(JudgeOut))

    assert isinstance(generated.parsed, SummaryOut)
    assert judged.parsed.verdict == "reject"
    assert judged.parsed.reasoning == "Names FAKEGENE1, not a member."
    assert emulator.pending_faults() == []


def test_same_request_gets_the_same_answer(provider: GeminiProvider) -> None:
    first = provider.generate(make_request())
    second = provider.generate(make_request())
    assert first.raw_text == second.raw_text


def test_prompt_without_cluster_data_still_gets_a_valid_answer(provider: GeminiProvider) -> None:
    result = provider.generate(make_request(prompt="Say something about a cluster."))
    assert isinstance(result.parsed, SummaryOut)
    assert result.parsed.pathways == []


def test_response_json_schema_is_answered_too(emulator: GeminiEmulator) -> None:
    client = genai.Client(
        api_key=CANARY_KEY,
        http_options=types.HttpOptions(base_url=emulator.url, api_version="v1beta"),
    )
    response = client.models.generate_content(
        model=MODEL,
        contents=PROMPT,
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_json_schema=SummaryOut.model_json_schema(),
        ),
    )
    assert response.text is not None
    parsed = SummaryOut.model_validate_json(response.text)
    assert set(parsed.pathways) <= PATHWAY_NAMES


class TermOut(BaseModel):
    """One cited term."""

    term_id: str
    name: str
    fdr: float = Field(ge=0, le=1)


class PhenotypeOut(BaseModel):
    """A phenotype summary with tight limits and nested objects."""

    summary: str = Field(min_length=30, max_length=120)
    key_phenotype_themes: list[str] = Field(min_length=2, max_length=4)
    top_terms: list[TermOut] = Field(max_length=2)
    note: str | None = None


class ScoresOut(BaseModel):
    """Nested judge ratings."""

    accuracy: int = Field(ge=1, le=5)
    has_hallucinations: bool


class NestedJudgeOut(BaseModel):
    """A judge with nested scores and an issue list."""

    verdict: Literal["accept", "low_confidence", "reject"]
    scores: ScoresOut
    issues: list[str]
    reasoning: str


def test_phenotype_schema_with_limits_and_nested_objects(provider: GeminiProvider) -> None:
    prompt = f"<cluster_data>{json.dumps(PHENOTYPE)}</cluster_data>"
    parsed = provider.generate(make_request(PhenotypeOut, prompt)).parsed

    assert parsed.key_phenotype_themes == ["global developmental delay", "seizure"]
    assert [term.term_id for term in parsed.top_terms] == ["HP:0001263", "HP:0001250"]
    assert parsed.top_terms[0].name == "Global developmental delay"
    assert "MECP2" in parsed.summary


def test_nested_judge_schema_accepts_consistently(provider: GeminiProvider) -> None:
    parsed = provider.generate(make_request(NestedJudgeOut)).parsed
    assert parsed.verdict == "accept"
    assert parsed.scores == ScoresOut(accuracy=5, has_hallucinations=False)
    assert parsed.issues == []


def test_default_latency_is_applied(emulator: GeminiEmulator, provider: GeminiProvider) -> None:
    emulator.configure(latency=0.3)
    result = provider.generate(make_request())
    assert result.latency_seconds >= 0.3


# -- output recovery and classification -----------------------------------------------------------


def test_fenced_json_is_recovered(provider: GeminiProvider, emulator: GeminiEmulator) -> None:
    emulator.add_fault("fenced")
    result = provider.generate(make_request())
    assert result.raw_text.startswith("```json")
    assert isinstance(result.parsed, SummaryOut)


def test_truncated_json_is_validation_failed(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_fault("truncated")
    error = failure_of(provider, make_request())
    assert error.kind == "validation_failed"
    assert error.transient is False
    assert error.raw_text and not error.raw_text.rstrip().endswith("}")
    assert error.input_tokens == emulator.request_log()[-1]["prompt_tokens"]
    assert error.output_tokens == len(error.raw_text) // 4


def test_max_tokens_is_classified_with_tokens(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_fault("max_tokens")
    error = failure_of(provider, make_request(max_output_tokens=300))
    assert error.kind == "validation_failed"
    assert error.transient is False
    assert "max tokens" in error.message
    assert error.output_tokens == 300
    assert error.input_tokens == emulator.request_log()[-1]["prompt_tokens"]


def test_small_token_budget_truncates_like_gemini(provider: GeminiProvider) -> None:
    error = failure_of(provider, make_request(max_output_tokens=10))
    assert error.kind == "validation_failed"
    assert "max tokens" in error.message


def test_empty_candidates_is_never_a_success(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_fault("empty")
    error = failure_of(provider, make_request())
    assert error.kind == "api_error"
    assert error.transient is False
    assert "no candidates" in error.message


def test_safety_finish_is_blocked(provider: GeminiProvider, emulator: GeminiEmulator) -> None:
    emulator.add_fault("safety")
    error = failure_of(provider, make_request())
    assert error.kind == "blocked"
    assert error.transient is False
    assert "SAFETY" in error.message


def test_blocked_prompt_is_blocked(provider: GeminiProvider, emulator: GeminiEmulator) -> None:
    emulator.add_fault("safety", block_reason="PROHIBITED_CONTENT")
    error = failure_of(provider, make_request())
    assert error.kind == "blocked"
    assert "PROHIBITED_CONTENT" in error.message


def test_hallucinations_are_delivered_for_downstream_validation(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_fault("hallucinated_gene")
    emulator.add_fault("hallucinated_pathway")
    gene = provider.generate(make_request()).parsed
    pathway = provider.generate(make_request()).parsed
    assert DEFAULT_FAKE_GENE in gene.summary and DEFAULT_FAKE_GENE in gene.tags
    assert DEFAULT_FAKE_PATHWAY in pathway.pathways
    assert DEFAULT_FAKE_PATHWAY not in PATHWAY_NAMES


# -- HTTP errors ----------------------------------------------------------------------------------


def test_429_with_retry_after_is_transient(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_fault("status", code=429, retry_after=7)
    error = failure_of(provider, make_request())
    assert error.transient is True
    assert error.retry_after == 7.0
    assert error.status_code == 429
    assert "RESOURCE_EXHAUSTED" in error.message


def test_retry_info_delay_is_used_without_header(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_fault("status", code=429, retry_delay=12)
    error = failure_of(provider, make_request())
    assert error.transient is True
    assert error.retry_after == 12.0


@pytest.mark.parametrize("code", [500, 503])
def test_server_errors_are_transient(
    provider: GeminiProvider, emulator: GeminiEmulator, code: int
) -> None:
    emulator.add_fault("status", code=code)
    error = failure_of(provider, make_request())
    assert error.transient is True
    assert error.kind == "api_error"
    assert error.status_code == code
    assert error.retry_after is None


@pytest.mark.parametrize("code", [400, 401, 403, 404])
def test_client_errors_are_permanent(
    provider: GeminiProvider, emulator: GeminiEmulator, code: int
) -> None:
    emulator.add_fault("status", code=code)
    error = failure_of(provider, make_request())
    assert error.transient is False
    assert error.status_code == code


def test_timeout_is_transient_timeout(emulator: GeminiEmulator) -> None:
    provider = GeminiProvider(api_key=CANARY_KEY, base_url=emulator.url, timeout=0.5)
    emulator.add_fault("timeout", seconds=5)
    started = time.monotonic()
    error = failure_of(provider, make_request())
    assert time.monotonic() - started < 3
    assert error.kind == "timeout"
    assert error.transient is True


def test_connection_refused_is_transient() -> None:
    provider = refused_provider(HARNESS, timeout=2)
    error = failure_of(provider, make_request())
    assert error.transient is True
    assert error.kind == "api_error"


def test_missing_key_is_refused_at_construction() -> None:
    with pytest.raises(ProviderError) as info:
        GeminiProvider(api_key="", base_url="http://127.0.0.1:1")
    assert info.value.transient is False


def test_api_key_never_appears_in_any_error(emulator: GeminiEmulator) -> None:
    errors = leak_probe_errors(
        HARNESS,
        emulator,
        [
            {"kind": "status", "code": 400, "message": f"API key {CANARY_KEY} not valid"},
            {"kind": "status", "code": 401},
            {"kind": "status", "code": 429, "retry_after": 1},
            {"kind": "status", "code": 503, "message": f"key={CANARY_KEY} overloaded"},
            {"kind": "timeout", "seconds": 3},
            {"kind": "empty"},
            {"kind": "safety"},
            {"kind": "max_tokens"},
            {"kind": "truncated"},
        ],
    )

    assert len({error.kind for error in errors}) == 4
    assert_no_key_in(errors)


# -- emulator: log, rate limit, control over HTTP, management command ----------------------------


def test_log_records_every_request_with_status(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_faults([{"kind": "status", "code": 503}, {"kind": "empty"}])
    for _ in range(2):
        failure_of(provider, make_request())
    provider.generate(make_request(JudgeOut))

    log = emulator.request_log()
    assert [(e["seq"], e["status"], e["target"]) for e in log] == [
        (1, 503, "generate"),
        (2, 200, "generate"),
        (3, 200, "judge"),
    ]
    assert [e["fault"] for e in log] == ["status", "empty", None]
    assert log[0]["monotonic"] <= log[1]["monotonic"] <= log[2]["monotonic"]
    assert all(abs(e["wall"] - time.time()) < 60 for e in log)
    assert len(emulator.request_log(target="judge")) == 1


def test_rate_limit_answers_429_with_retry_after(emulator: GeminiEmulator) -> None:
    error = rate_limited_failure(HARNESS, emulator, rpm=2)

    assert error.transient is True and error.status_code == 429
    assert error.retry_after is not None and 0 < error.retry_after <= 60
    assert [e["status"] for e in emulator.request_log()] == [200, 200, 429]


def test_rate_limit_window_slides(emulator: GeminiEmulator) -> None:
    emulator.configure(rpm=1, window=0.6, rate_mode="window")
    provider = GeminiProvider(api_key=CANARY_KEY, base_url=emulator.url, timeout=5)
    provider.generate(make_request())
    assert failure_of(provider, make_request()).status_code == 429
    time.sleep(0.65)
    assert isinstance(provider.generate(make_request()).parsed, SummaryOut)


def test_rate_limit_holds_under_concurrent_clients(emulator: GeminiEmulator) -> None:
    emulator.configure(rpm=5, window=60, latency=0.05, rate_mode="window")
    provider = GeminiProvider(api_key=CANARY_KEY, base_url=emulator.url, timeout=5)

    def call(_: int) -> str:
        try:
            provider.generate(make_request())
        except ProviderError as error:
            return str(error.status_code)
        return "ok"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = sorted(pool.map(call, range(12)))

    assert outcomes == ["429"] * 7 + ["ok"] * 5
    log = emulator.request_log()
    assert len(log) == 12 and sorted(e["seq"] for e in log) == list(range(1, 13))
    assert sum(e["status"] == 200 for e in log) == 5


def test_faults_are_fifo_and_respect_targets(
    provider: GeminiProvider, emulator: GeminiEmulator
) -> None:
    emulator.add_fault("status", target="judge", code=500)
    emulator.add_fault("status", target="generate", code=400)

    assert failure_of(provider, make_request()).status_code == 400
    assert failure_of(provider, make_request(JudgeOut)).status_code == 500
    assert isinstance(provider.generate(make_request()).parsed, SummaryOut)


def test_invalid_faults_are_rejected(emulator: GeminiEmulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        emulator.add_fault("explode")
    with pytest.raises(ValueError, match="target"):
        emulator.add_fault("empty", target="everything")
    assert emulator.pending_faults() == []


def test_http_control_endpoints(emulator: GeminiEmulator, provider: GeminiProvider) -> None:
    control = EmulatorControl(emulator.url)
    pending = control.add_faults([{"kind": "status", "code": 503, "times": 2}])
    assert [f["code"] for f in pending] == [503, 503]

    assert failure_of(provider, make_request()).status_code == 503
    assert [f["kind"] for f in control.pending_faults()] == ["status"]
    assert [e["status"] for e in control.log()] == [503]

    with pytest.raises(RuntimeError, match="unknown fault kind"):
        control.add_faults([{"kind": "nonsense"}])

    control.reset()
    assert control.log() == [] and control.pending_faults() == []
    assert control.configure(latency=0.1, rpm=10)["rpm"] == 10
    assert emulator.config() == {
        "latency": 0.1,
        "rpm": 10,
        "window": 60.0,
        "rate_mode": "bucket",
        "burst": 2,
    }
    assert control.configure(rate_mode="window", burst=None)["rate_mode"] == "window"
    with pytest.raises(RuntimeError, match="rate mode"):
        control.configure(rate_mode="sometimes")
    assert emulator.config()["rate_mode"] == "window"  # a refused change changes nothing

    # The raw HTTP shape, as another process would use it.
    body = json.dumps({"kind": "empty", "target": "generate"}).encode()
    raw = urllib.request.Request(emulator.url + "/_control/faults", data=body, method="POST")
    with urllib.request.urlopen(raw, timeout=5) as response:
        assert json.loads(response.read())["pending"][0]["kind"] == "empty"
    assert failure_of(provider, make_request()).kind == "api_error"


def test_unknown_path_and_missing_key_use_google_error_shape(emulator: GeminiEmulator) -> None:
    request = urllib.request.Request(
        emulator.url + f"/v1beta/models/{MODEL}:generateContent",
        data=b'{"contents": []}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 403
    assert json.loads(info.value.read())["error"]["status"] == "PERMISSION_DENIED"

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(emulator.url + "/v1beta/nothing", timeout=5)
    assert info.value.code == 404
    assert json.loads(info.value.read())["error"]["code"] == 404


def test_management_command_rejects_unknown_provider() -> None:
    with pytest.raises(CommandError, match="'nosuchprovider'"):
        call_command("provider_emulator", "nosuchprovider")


def test_management_command_serves_until_interrupted() -> None:
    with emulator_command("gemini", expect="listening on http://127.0.0.1:") as (process, url):
        control = EmulatorControl(url)
        control.add_faults([{"kind": "status", "code": 429, "retry_after": 3}])
        provider = GeminiProvider(api_key=CANARY_KEY, base_url=url, timeout=5)
        assert failure_of(provider, make_request()).retry_after == 3.0
        assert isinstance(provider.generate(make_request()).parsed, SummaryOut)
        assert [e["status"] for e in control.log()] == [429, 200]
    assert process.returncode == 0


def test_management_command_enforces_a_bucket() -> None:
    """``--rpm 60 --burst 1``: a second call at once is refused with the RetryInfo delay."""
    options = ("--rpm", "60", "--rate-mode", "bucket", "--burst", "1")
    with emulator_command("gemini", *options, expect="listening on") as (_, url):
        control = EmulatorControl(url)
        assert control.configure()["rate_mode"] == "bucket"
        provider = GeminiProvider(api_key=CANARY_KEY, base_url=url, timeout=5)
        provider.generate(make_request())
        error = failure_of(provider, make_request())
        assert error.rate_limited and 0.5 < (error.retry_after or 0) < 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--rate-mode", "sometimes"), "--rate-mode must be one of bucket, window"),
        (("--burst", "0"), "--burst must be a positive number"),
        (("--window", "0"), "--window must be > 0"),
    ],
)
def test_management_command_rejects_bad_rate_options(
    options: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("provider_emulator", "gemini", *options)
