"""Batch APIs of the Gemini, OpenAI and Anthropic providers through the real SDKs and emulators.

No mocks: each test starts a real emulator (HTTP server on a free port) and the provider talks to
it with the vendor SDK's own transport. Batch behaviour (progression, failures, expiry, per-item
errors, shuffled results, limits, lost answers) is scripted on the emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openai import OpenAI
from pydantic import BaseModel

from llm.emulators.answers import prompt_tokens_of
from llm.emulators.anthropic import AnthropicEmulator
from llm.emulators.control import EmulatorControl
from llm.emulators.gemini import GeminiEmulator
from llm.emulators.openai import OpenAIEmulator
from llm.emulators.server import EmulatorServer
from llm.providers import anthropic as anthropic_module
from llm.providers.anthropic import AnthropicProvider
from llm.providers.base import ProviderError, ProviderRequest
from llm.providers.batch import BatchItemResult, BatchStatus
from llm.providers.gemini import GeminiProvider
from llm.providers.gemini_wire import batch_state as gemini_state
from llm.providers.openai import OpenAIProvider
from llm.providers.openai import batch_state as openai_state
from llm.providers.registry import (
    DEFAULT_MODELS,
    ProviderNotConfigured,
    batch_provider_get,
    provider_get,
)
from tests.llm.provider_helpers import (
    CANARY_KEY,
    HARNESSES,
    Harness,
    JudgeOut,
    SummaryOut,
    emulator_command,
)
from tests.llm.provider_helpers import VendorProvider as Provider


@pytest.fixture(autouse=True)
def _isolated(developer_api: None) -> Iterator[None]:
    anthropic_module._SUBMITTED.clear()
    yield
    anthropic_module._SUBMITTED.clear()


@pytest.fixture(params=HARNESSES, ids=[h.name for h in HARNESSES])
def harness(request: pytest.FixtureRequest) -> Harness:
    return request.param


def cluster_prompt(index: int) -> str:
    """A prompt whose cluster is unique to ``index`` (its members name it)."""
    cluster = {
        "cluster_type": "functional",
        "size": 3,
        "members": [f"GENE{index}A", f"GENE{index}B", f"GENE{index}C"],
        "terms": {
            "GO_Biological_Process_2023": [
                {"term_id": f"GO:{index:07d}", "name": f"Process {index} (GO:{index:07d})"}
                | {"fdr": 1e-6, "overlap": 3, "term_size": 40}
            ],
            "WikiPathways": [
                {"term_id": f"WP{index}", "name": f"Pathway {index} WP{index}", "fdr": 1e-4}
            ],
        },
    }
    return f"Summarise this cluster.\n<cluster_data>{json.dumps(cluster)}</cluster_data>"


def make_requests(harness: Harness, count: int) -> list[ProviderRequest[Any]]:
    """``count`` requests ``c0..``; odd ones are judge requests (another output class)."""
    return [
        harness.request(JudgeOut if i % 2 else SummaryOut, cluster_prompt(i), custom_id=f"c{i}")
        for i in range(count)
    ]


def plain_request(model: str, custom_id: str = "") -> ProviderRequest[Any]:
    """A minimal request (no cluster data)."""
    return ProviderRequest("s", "u", SummaryOut, model, custom_id=custom_id)


def classes_of(requests: Sequence[ProviderRequest[Any]]) -> dict[str, type[BaseModel]]:
    return {request.custom_id: request.output_class for request in requests}


def results_of(
    provider: Provider, batch_id: str, requests: Sequence[ProviderRequest[Any]]
) -> list[BatchItemResult]:
    return list(provider.batch_results(batch_id, classes_of(requests)))


def poll_until_final(provider: Provider, batch_id: str, limit: int = 10) -> BatchStatus:
    for _ in range(limit):
        status = provider.batch_get(batch_id)
        if status.state in ("succeeded", "failed", "cancelled", "expired"):
            return status
    raise AssertionError(f"{batch_id} did not finish in {limit} polls")


def accepted(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return [entry for entry in emulator.batch_submissions() if entry["accepted"]]


def submit_ended(provider: Provider, requests: Sequence[ProviderRequest[Any]], tag: str) -> str:
    batch_id = provider.batch_submit(requests, display_name=tag)
    poll_until_final(provider, batch_id)
    return batch_id


# -- the happy path --------------------------------------------------------------------------------


def test_submit_poll_and_results_matched_by_custom_id(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    emulator.configure_batches(polls=2, shuffle=True)
    requests = make_requests(harness, 8)

    batch_id = provider.batch_submit(requests, display_name="job-1-generate-r0-c0")
    states = [provider.batch_get(batch_id) for _ in range(3)]
    results = results_of(provider, batch_id, requests)

    assert [s.state for s in states] == ["running", "running", "succeeded"]
    final = states[-1]
    assert (final.batch_id, final.request_count, final.completed, final.failed) == (
        batch_id,
        8,
        8,
        0,
    )
    assert sorted(r.custom_id for r in results) == sorted(classes_of(requests))
    assert [r.custom_id for r in results] != [r.custom_id for r in requests]  # shuffled
    for item in results:
        index = int(item.custom_id[1:])
        assert item.error is None and item.result is not None
        assert isinstance(item.result.parsed, JudgeOut if index % 2 else SummaryOut)
        assert f"GENE{index}A" in item.result.raw_text  # its own cluster, not a neighbour's
        request = next(r for r in requests if r.custom_id == item.custom_id)
        # the emulator's usage is exact: (len(user) + len(system)) // 4 in, len(answer) // 4 out
        assert item.result.input_tokens == prompt_tokens_of(
            request.user_prompt, request.system_prompt
        )
        assert item.result.output_tokens == len(item.result.raw_text) // 4
    tags = [entry["tag"] for entry in accepted(emulator)]
    assert tags == ["" if harness.name == "anthropic" else "job-1-generate-r0-c0"]


def test_batch_answers_equal_realtime_answers(harness: Harness, provider: Provider) -> None:
    requests = make_requests(harness, 4)
    batch_id = submit_ended(provider, requests, "golden")
    batched = {r.custom_id: r.result for r in results_of(provider, batch_id, requests)}

    for request in requests:
        realtime = provider.generate(request)
        result = batched[request.custom_id]
        assert result is not None
        assert result.raw_text == realtime.raw_text
        assert result.parsed == realtime.parsed
        assert result.model_version == realtime.model_version


def test_all_providers_give_the_same_content() -> None:
    texts = []
    for harness in HARNESSES:
        with harness.emulator_class() as emu:
            request = make_requests(harness, 1)[0]
            texts.append(harness.provider(emu).generate(request).parsed)
    assert texts[0] == texts[1] == texts[2]


# -- per-item outcomes -----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "transient"), [(500, True), (429, True), (400, False)])
def test_partial_item_errors_are_reported_per_item(
    harness: Harness,
    emulator: EmulatorServer,
    provider: Provider,
    code: int,
    transient: bool,
) -> None:
    emulator.configure_batches(
        error_ids=["c1"],
        error_code=code,
        item_faults={"c2": "safety", "c3": "empty", "c4": {"kind": "truncated"}},
        shuffle=True,
    )
    requests = make_requests(harness, 6)
    batch_id = submit_ended(provider, requests, "partial")
    results = {r.custom_id: r for r in results_of(provider, batch_id, requests)}

    kinds = {
        cid: (r.error.kind, r.error.transient) if r.error else "ok" for cid, r in results.items()
    }
    assert kinds == {
        "c0": "ok",
        "c1": ("api_error", transient),
        "c2": ("blocked", False),
        "c3": ("api_error", False),
        "c4": ("validation_failed", False),
        "c5": "ok",
    }
    assert "emulated item error" in results["c1"].error.message  # type: ignore[union-attr]
    status = provider.batch_get(batch_id)
    assert (status.state, status.completed, status.failed) == ("succeeded", 5, 1)


def test_unknown_and_missing_results_are_reported(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    emulator.configure_batches(extra_ids=["ghost"], drop_ids=["c1"])
    requests = make_requests(harness, 3)
    batch_id = submit_ended(provider, requests, "strays")
    results = {r.custom_id: r for r in results_of(provider, batch_id, requests)}

    assert set(results) == {"c0", "c2", "ghost"}
    ghost = results["ghost"].error
    assert ghost is not None and ghost.kind == "api_error" and not ghost.transient
    assert "unknown custom_id" in ghost.message
    assert set(classes_of(requests)) - set(results) == {"c1"}  # the caller detects the gap


def test_expired_batch_keeps_processed_items(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    emulator.configure_batches(outcome="expired", unprocessed_ids=["c0", "c1"])
    requests = make_requests(harness, 4)
    batch_id = provider.batch_submit(requests, display_name="late")
    status = poll_until_final(provider, batch_id)
    results = {r.custom_id: r for r in results_of(provider, batch_id, requests)}

    assert status.state == "expired"
    assert all(results[cid].result is not None for cid in ("c2", "c3"))
    if harness.name == "gemini":
        assert set(results) == {"c2", "c3"}  # Gemini leaves unprocessed items out
    else:
        for cid in ("c0", "c1"):
            error = results[cid].error
            assert error is not None and error.transient and error.kind == "api_error"


def test_expiry_by_fraction_leaves_some_items_unprocessed(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    emulator.configure_batches(outcome="expired", unprocessed_fraction=0.5)
    requests = make_requests(harness, 6)
    batch_id = submit_ended(provider, requests, "half-late")
    answered = [r for r in results_of(provider, batch_id, requests) if r.result is not None]
    assert len(answered) == 3


def test_failed_batch_carries_the_reason(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    emulator.configure_batches(outcome="failed", failure_message="input is malformed (emulated)")
    requests = make_requests(harness, 3)
    batch_id = provider.batch_submit(requests, display_name="doomed")
    status = poll_until_final(provider, batch_id)
    results = results_of(provider, batch_id, requests)

    assert status.state == "failed"
    if harness.name == "anthropic":
        # No failed state on Anthropic: every item errored, each with the reason.
        assert status.error == "all 3 requests of the batch errored"
        assert {r.custom_id for r in results} == {"c0", "c1", "c2"}
        assert all(r.error and "malformed" in r.error.message for r in results)
    else:
        assert "input is malformed" in status.error
        assert results == []


def test_openai_invalid_input_lines_fail_the_batch() -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    data = (json.dumps(line) + "\n" + json.dumps(line) + "\nnot json\n").encode()
    with OpenAIEmulator() as emu:
        client = OpenAI(api_key=CANARY_KEY, base_url=emu.url + "/v1", max_retries=0)
        uploaded = client.files.create(
            file=("in.jsonl", data, "application/jsonl"), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"tag": "bad-input"},
        )
        status = OpenAIProvider(CANARY_KEY, emu.url, 5).batch_get(batch.id)
    assert (status.state, status.display_name) == ("failed", "bad-input")
    assert "line 2: The custom_id for this request is a duplicate" in status.error
    assert "line 3: Line 3 is not JSON" in status.error


def test_results_before_the_batch_ends_are_a_transient_error(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    emulator.configure_batches(polls=5)
    requests = make_requests(harness, 2)
    batch_id = provider.batch_submit(requests, display_name="early")
    assert provider.batch_get(batch_id).state == "running"
    with pytest.raises(ProviderError) as info:
        results_of(provider, batch_id, requests)
    assert info.value.transient


def test_cancelled_batch(harness: Harness, emulator: EmulatorServer, provider: Provider) -> None:
    emulator.configure_batches(polls=5)
    requests = make_requests(harness, 3)
    batch_id = provider.batch_submit(requests, display_name="stop-me")

    provider.batch_cancel(batch_id)
    status = poll_until_final(provider, batch_id)
    results = results_of(provider, batch_id, requests)

    assert status.state == "cancelled"
    if harness.name == "gemini":
        assert results == []
    else:
        assert {r.custom_id for r in results} == {"c0", "c1", "c2"}
        assert all(r.error and r.error.transient for r in results)


def test_unknown_batch_id_is_a_permanent_error(harness: Harness, provider: Provider) -> None:
    missing = {"gemini": "batches/nope", "openai": "batch_nope", "anthropic": "msgbatch_nope"}
    with pytest.raises(ProviderError) as info:
        provider.batch_get(missing[harness.name])
    assert (info.value.status_code, info.value.transient) == (404, False)


# -- limits and validation -------------------------------------------------------------------------


def test_oversize_sets_are_refused_before_anything_is_sent(
    harness: Harness, emulator: EmulatorServer
) -> None:
    requests = make_requests(harness, 3)
    by_count = harness.provider(emulator, max_requests_per_batch=2)
    by_bytes = harness.provider(emulator, max_bytes_per_batch=1000)

    with pytest.raises(ProviderError, match="3 requests exceed the limit of 2") as count_info:
        by_count.batch_submit(requests, display_name="too-many")
    with pytest.raises(ProviderError, match="over the limit of 1000 bytes") as bytes_info:
        by_bytes.batch_submit(requests, display_name="too-big")

    assert not count_info.value.transient and not bytes_info.value.transient
    assert emulator.batch_submissions() == [] and emulator.api_log() == []


def test_oversize_batch_is_rejected_by_the_api(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    emulator.configure_batches(max_requests=2)
    with pytest.raises(ProviderError) as info:
        provider.batch_submit(make_requests(harness, 3), display_name="over")
    assert (info.value.status_code, info.value.transient) == (400, False)
    assert "at most 2 are allowed" in info.value.message

    emulator.configure_batches(max_requests=None, max_bytes=500)
    with pytest.raises(ProviderError, match="at most 500 bytes"):
        provider.batch_submit(make_requests(harness, 1), display_name="fat")
    assert [(e["accepted"], e["status"]) for e in emulator.batch_submissions()] == [
        (False, 400),
        (False, 400),
    ]


def test_invalid_custom_ids_are_refused(harness: Harness, provider: Provider) -> None:
    requests = make_requests(harness, 2)
    twins = [requests[0], requests[0]]
    nameless = [plain_request(harness.model)]
    with pytest.raises(ProviderError, match="used twice"):
        provider.batch_submit(twins, display_name="twins")
    with pytest.raises(ProviderError, match="no custom_id"):
        provider.batch_submit(nameless, display_name="nameless")
    with pytest.raises(ProviderError, match="no requests"):
        provider.batch_submit([], display_name="nothing")


def test_anthropic_custom_ids_must_fit_the_pattern(anthropic_emulator: AnthropicEmulator) -> None:
    provider = AnthropicProvider(CANARY_KEY, anthropic_emulator.url, 5)
    base = make_requests(HARNESSES[2], 1)[0]
    for bad in ("has space", "semi;colon", "x" * 54):
        request = plain_request(base.model, bad)
        with pytest.raises(ProviderError, match="1 to 53 characters") as info:
            provider.batch_submit([request], display_name="bad-ids")
        assert not info.value.transient
    fits = plain_request(base.model, "j1-t2_g3-" + "x" * 44)
    assert provider.batch_submit([fits], display_name="good-ids").startswith("msgbatch_")


def test_batch_request_bytes_measure_what_is_sent(
    harness: Harness, emulator: EmulatorServer
) -> None:
    provider = harness.provider(
        emulator, **({"inline_limit_bytes": 1} if harness.name == "gemini" else {})
    )
    requests = make_requests(harness, 5)
    expected = sum(provider.batch_request_bytes(request) for request in requests)
    provider.batch_submit(requests, display_name="measured")
    sent = emulator.batch_submissions()[0]["bytes"]
    if harness.name == "openai":
        assert sent == expected  # the JSONL file is exactly the lines measured
    else:
        # Close to the body sent (which adds a constant envelope, e.g. {"requests": [...]}).
        assert sent - 64 <= expected <= 1.05 * sent


# -- finding a batch again -------------------------------------------------------------------------


def test_batch_find_by_tag(harness: Harness, emulator: EmulatorServer, provider: Provider) -> None:
    emulator.configure_batches(polls=3)
    requests = make_requests(harness, 2)
    first = provider.batch_submit(requests, display_name="job-7-generate-r0-c0")
    second = provider.batch_submit(requests, display_name="job-7-generate-r0-c1")
    if harness.name == "anthropic":
        # A fresh process knows nothing: only ended batches can be recognised by their results.
        anthropic_module._SUBMITTED.clear()
        emulator.finish_batches()

    found = provider.batch_find("job-7-generate-r0-c0")
    other = provider.batch_find("job-7-generate-r0-c1")

    assert found is not None and other is not None
    assert (found.batch_id, found.display_name) == (first, "job-7-generate-r0-c0")
    assert other.batch_id == second
    assert provider.batch_find("job-7-generate-r0-c9") is None
    listed = [status.batch_id for status in provider.batch_list()]
    assert listed == [second, first]  # newest first


def test_batch_find_pages_through_many_batches(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    requests = make_requests(harness, 1)
    ids = [provider.batch_submit(requests, display_name=f"tag-{i}") for i in range(105)]
    anthropic_module._SUBMITTED.clear()
    emulator.finish_batches()
    found = provider.batch_find("tag-0")  # the oldest: on the second page of 100
    assert found is not None and found.batch_id == ids[0]


def test_anthropic_in_progress_batches_are_undecided_until_they_end(
    anthropic_emulator: AnthropicEmulator,
) -> None:
    emulator = anthropic_emulator
    provider = AnthropicProvider(CANARY_KEY, emulator.url, 5)
    emulator.configure_batches(polls=5)
    requests = make_requests(HARNESSES[2], 3)
    batch_id = provider.batch_submit(requests, display_name="t1")
    assert provider.batch_find("t1") is not None  # this process remembers its own submission
    anthropic_module._SUBMITTED.clear()

    with pytest.raises(ProviderError, match="cannot tell yet") as info:
        provider.batch_find("t1")
    assert info.value.transient
    # Hints rule in-progress batches out, never in.
    assert provider.batch_find("t1", exclude_ids=[batch_id]) is None
    assert provider.batch_find("t1", request_count=99) is None
    later = datetime.now(UTC) + timedelta(hours=1)
    assert provider.batch_find("t1", created_after=later) is None
    with pytest.raises(ProviderError):
        provider.batch_find("t1", request_count=3)

    emulator.finish_batches()
    found = provider.batch_find("t1")
    assert found is not None and (found.batch_id, found.display_name) == (batch_id, "t1")


def test_lost_create_answer_is_recovered_without_a_second_submission(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    emulator.add_batch_fault("status", op="create", code=503, commit=True)
    requests = make_requests(harness, 3)

    with pytest.raises(ProviderError) as info:
        provider.batch_submit(requests, display_name="job-9-generate-r0-c0")
    assert info.value.transient  # the caller would retry: it must look first
    emulator.finish_batches()  # (Anthropic recognises ended batches only)
    found = provider.batch_find("job-9-generate-r0-c0")

    assert found is not None
    assert [entry["batch_id"] for entry in accepted(emulator)] == [found.batch_id]
    assert all(r.result is not None for r in results_of(provider, found.batch_id, requests))


def test_timed_out_create_still_created_exactly_one_batch(
    harness: Harness, emulator: EmulatorServer
) -> None:
    provider = harness.provider(emulator, timeout=1.0)
    emulator.add_batch_fault("timeout", op="create", seconds=3)
    with pytest.raises(ProviderError) as info:
        provider.batch_submit(make_requests(harness, 2), display_name="slow")
    assert (info.value.kind, info.value.transient) == ("timeout", True)
    assert len(accepted(emulator)) == 1


# -- Gemini inline vs file -------------------------------------------------------------------------


def test_gemini_small_batches_are_sent_inline() -> None:
    with GeminiEmulator() as emu:
        provider = GeminiProvider(CANARY_KEY, emu.url, 5)
        batch_id = provider.batch_submit(make_requests(HARNESSES[0], 3), display_name="inline")
        assert emu.batch(batch_id).source == "inline"
        assert not any("/upload/" in entry["path"] for entry in emu.api_log())


def test_gemini_large_batches_go_through_an_uploaded_file() -> None:
    requests = make_requests(HARNESSES[0], 6)
    with GeminiEmulator() as emu:
        inline = GeminiProvider(CANARY_KEY, emu.url, 5)
        reference = submit_ended(inline, requests, "inline")
        expected = {r.custom_id: r.result for r in results_of(inline, reference, requests)}

        emu.configure_batches(shuffle=True, error_ids=["c2"])
        provider = GeminiProvider(CANARY_KEY, emu.url, 5, inline_limit_bytes=1)
        batch_id = submit_ended(provider, requests, "via-file")
        results = {r.custom_id: r for r in results_of(provider, batch_id, requests)}

        batch = emu.batch(batch_id)
        assert batch.source == "file"
        paths = [(entry["method"], entry["path"]) for entry in emu.api_log()]
        assert ("POST", "/upload/v1beta/files") in paths
        assert any(p.endswith(":download") for _, p in paths)
        uploads = [f for f in emu.list_files() if f.purpose == "upload"]
        assert len(uploads) == 1 and uploads[0].mime_type == "application/jsonl"
        keys = [json.loads(line)["key"] for line in uploads[0].data.decode().splitlines()]
        assert keys == [f"c{i}" for i in range(6)]
    assert set(results) == set(expected)
    assert results["c2"].error is not None and results["c2"].error.transient
    for cid, result in results.items():
        if cid != "c2":
            assert result.result is not None and expected[cid] is not None
            assert result.result.raw_text == expected[cid].raw_text  # type: ignore[union-attr]


def test_gemini_batches_serve_one_model() -> None:
    with GeminiEmulator() as emu:
        provider = GeminiProvider(CANARY_KEY, emu.url, 5)
        requests = make_requests(HARNESSES[0], 2)
        mixed = [requests[0], plain_request("gemini-2.5-pro", "x")]
        with pytest.raises(ProviderError, match="one batch serves one model"):
            provider.batch_submit(mixed, display_name="mixed")


# -- states, keys, registry ------------------------------------------------------------------------


def test_state_mappings() -> None:
    assert [gemini_state(f"BATCH_STATE_{s}") for s in ("PENDING", "RUNNING", "SUCCEEDED")] == [
        "pending",
        "running",
        "succeeded",
    ]
    assert [gemini_state(f"JOB_STATE_{s}") for s in ("FAILED", "CANCELLED", "EXPIRED")] == [
        "failed",
        "cancelled",
        "expired",
    ]
    assert gemini_state("JOB_STATE_SOMETHING_NEW") == "running"
    assert [
        openai_state(s)
        for s in ("validating", "in_progress", "finalizing", "cancelling", "completed")
    ] == ["pending", "running", "running", "running", "succeeded"]
    assert [openai_state(s) for s in ("failed", "expired", "cancelled")] == [
        "failed",
        "expired",
        "cancelled",
    ]


def test_api_key_never_appears_in_batch_errors(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    requests = make_requests(harness, 2)
    errors: list[ProviderError] = []
    emulator.configure_batches(error_ids=["c0"], error_message=f"bad key={CANARY_KEY}")
    batch_id = submit_ended(provider, requests, "leaky-items")
    errors += [r.error for r in results_of(provider, batch_id, requests) if r.error]

    emulator.add_batch_fault("status", op="create", code=401, message=f"API key {CANARY_KEY} bad")
    with pytest.raises(ProviderError) as info:
        provider.batch_submit(requests, display_name="leaky-create")
    errors.append(info.value)
    with pytest.raises(ProviderError) as info:
        provider.batch_get(f"{batch_id}x")
    errors.append(info.value)

    emulator.configure_batches(error_ids=[], outcome="failed", failure_message=f"{CANARY_KEY}!")
    failed = poll_until_final(provider, provider.batch_submit(requests, display_name="leaky-fail"))
    assert failed.state == "failed" and CANARY_KEY not in failed.error

    assert len(errors) == 3
    for error in errors:
        for text in (error.message, str(error), repr(error), error.raw_text):
            assert CANARY_KEY not in text
        assert error.__context__ is None


def test_registry_builds_configured_batch_providers(settings: Any) -> None:
    settings.LLM_BASE_URL = "http://127.0.0.1:9"
    settings.LLM_TIMEOUT = 7.0
    settings.LLM_MODEL = ""
    settings.OPENAI_API_KEY = ""
    settings.ANTHROPIC_API_KEY = ""
    for name, variable in (("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")):
        with pytest.raises(ProviderNotConfigured, match=f"{variable} is not set"):
            provider_get(name)
        with pytest.raises(ProviderNotConfigured, match=variable):
            batch_provider_get(name)
    with pytest.raises(ProviderNotConfigured, match="provider extractive has no batch API"):
        batch_provider_get("extractive")
    with pytest.raises(ProviderNotConfigured, match="unknown provider"):
        batch_provider_get("nope")

    settings.OPENAI_API_KEY = CANARY_KEY
    settings.ANTHROPIC_API_KEY = CANARY_KEY
    settings.GEMINI_API_KEY = CANARY_KEY
    built = {name: batch_provider_get(name) for name in ("gemini", "openai", "anthropic")}
    assert isinstance(built["gemini"], GeminiProvider)
    assert isinstance(built["openai"], OpenAIProvider)
    assert isinstance(built["anthropic"], AnthropicProvider)
    assert isinstance(provider_get("openai"), OpenAIProvider)
    for provider in built.values():
        assert provider.base_url == "http://127.0.0.1:9" and provider.timeout == 7.0  # type: ignore[attr-defined]
        assert CANARY_KEY not in repr(provider)
    assert DEFAULT_MODELS["openai"] == "gpt-4.1-mini"
    assert DEFAULT_MODELS["anthropic"] == "claude-haiku-4-5"


# -- emulator control ------------------------------------------------------------------------------


def test_batch_controls_over_http(
    harness: Harness, emulator: EmulatorServer, provider: Provider
) -> None:
    control = EmulatorControl(emulator.url)
    settings = control.configure_batches(polls=4, shuffle=True, error_fraction=0.5)
    assert (settings["polls"], settings["shuffle"], settings["error_fraction"]) == (4, True, 0.5)
    with pytest.raises(RuntimeError, match="unknown batch setting"):
        control.configure_batches(explode=True)
    with pytest.raises(RuntimeError, match="outcome must be one of"):
        control.configure_batches(outcome="exploded")
    with pytest.raises(RuntimeError, match="unknown batch fault kind"):
        control.add_batch_faults([{"kind": "nonsense"}])
    assert control.add_batch_faults([{"kind": "latency", "op": "get", "seconds": 0}])

    requests = make_requests(harness, 4)
    batch_id = provider.batch_submit(requests, display_name="remote")
    assert provider.batch_get(batch_id).state == "running"
    assert control.finish_batches() == [batch_id]
    assert provider.batch_get(batch_id).state == "succeeded"
    errors = [r for r in results_of(provider, batch_id, requests) if r.error]
    assert len(errors) == 2  # half of the items, chosen deterministically
    assert [b["id"] for b in control.batches()] == [batch_id]
    assert [s["batch_id"] for s in control.submissions()] == [batch_id]
    assert len(control.api_log()) >= 3

    control.reset()
    assert control.batches() == [] and control.submissions() == []
    assert control.batch_settings()["polls"] == 0


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
def test_management_command_serves_every_provider(name: str) -> None:
    harness = next(h for h in HARNESSES if h.name == name)
    listening = f"{name} emulator listening on http://127.0.0.1:"
    with emulator_command(name, "--batch-polls", "1", expect=listening) as (process, url):
        control = EmulatorControl(url)
        control.add_faults([{"kind": "status", "code": 429, "retry_after": 3}])
        provider = harness.provider_class(CANARY_KEY, url, 5)
        request = make_requests(harness, 1)[0]
        with pytest.raises(ProviderError) as info:
            provider.generate(request)
        assert info.value.retry_after == 3.0
        assert provider.generate(request).parsed is not None

        batch_id = provider.batch_submit(make_requests(harness, 2), display_name="cli")
        assert [provider.batch_get(batch_id).state for _ in range(2)] == ["running", "succeeded"]
        assert [s["batch_id"] for s in control.submissions()] == [batch_id]
    assert process.returncode == 0
