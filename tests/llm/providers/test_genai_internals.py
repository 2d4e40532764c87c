"""The google-genai internals the Gemini provider relies on are still there, as it uses them.

The SDK offers no public call for two things the batch code needs (checked against google-genai
3.4-3.6; upstream issue googleapis/python-genai#1323 asks for batch stats):

- reading a batch's raw operation JSON (``batchStats`` counts, the ``error`` of a FAILED job, the
  input file), which ``batches.get`` drops: ``client._api_client.request("get", name, {}, None)``;
- serialising an inlined request into the REST shape for the JSONL input file exactly as the
  inline path sends it: ``batches._InlinedRequest_to_mldev`` with ``_common.convert_to_dict`` and
  ``_common.encode_unserializable_types``.

pyproject pins google-genai to the tested range. If one of these tests fails after an upgrade,
update ``GeminiProvider._operation`` / ``GeminiProvider._rest_request`` in
``llm/providers/gemini.py`` (or switch to a public call if the SDK gained one), run
``tests/llm/providers/test_gemini_provider.py`` and
``tests/llm/providers/test_batch_providers.py``, and widen the pin.
"""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

from google.genai import _api_client, _common, batches
from packaging.requirements import Requirement

from llm.providers.gemini import GeminiProvider
from llm.providers.gemini_wire import response_from_rest
from tests.llm.provider_helpers import GEMINI, SummaryOut

ROOT = Path(__file__).resolve().parents[3]
UPDATE = (
    "google-genai changed an internal llm/providers/gemini.py relies on: update "
    "GeminiProvider._operation/_rest_request (see this module's docstring), then widen the pin"
)


def _pin() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [spec] = [d for d in project["dependencies"] if d.startswith("google-genai")]
    return Requirement(spec)


def test_the_installed_sdk_is_within_the_tested_range() -> None:
    pin, installed = _pin(), version("google-genai")
    assert pin.specifier and "<" in str(pin.specifier), "google-genai needs an upper bound"
    assert pin.specifier.contains(installed), f"google-genai {installed} is not in {pin}: {UPDATE}"


def test_the_raw_request_method_keeps_its_signature() -> None:
    request = getattr(_api_client.BaseApiClient, "request", None)
    assert callable(request), UPDATE
    names = list(inspect.signature(request).parameters)
    assert names[:4] == ["self", "http_method", "path", "request_dict"], f"{names}: {UPDATE}"
    client = GeminiProvider("k", "http://127.0.0.1:9")._client
    assert isinstance(client._api_client, _api_client.BaseApiClient), UPDATE


def test_the_request_serialiser_keeps_its_signature_and_shape() -> None:
    for function, first in (
        (batches._InlinedRequest_to_mldev, ["api_client", "from_object"]),
        (_common.convert_to_dict, ["obj"]),
        (_common.encode_unserializable_types, ["data"]),
    ):
        names = list(inspect.signature(function).parameters)
        assert names[: len(first)] == first, f"{function.__name__}{names}: {UPDATE}"
    provider = GeminiProvider("k", "http://127.0.0.1:9")
    request = GEMINI.request(SummaryOut, custom_id="abc-j1-t1-g1", max_output_tokens=256)
    line = provider._rest_request(request)
    assert line["metadata"] == {"key": "abc-j1-t1-g1"}, UPDATE
    body = line["request"]
    assert body["contents"][0]["parts"][0]["text"] == request.user_prompt, UPDATE
    assert body["systemInstruction"]["parts"][0]["text"] == request.system_prompt, UPDATE
    config = body["generationConfig"]
    assert config["maxOutputTokens"] == 256 and config["responseMimeType"] == "application/json"
    assert "responseSchema" in config or "responseJsonSchema" in config, UPDATE


def test_answers_are_read_through_the_public_model() -> None:
    """The responses-file lines need no internal: a lean dict through the public pydantic model,
    unknown fields (the SDK's models forbid extras) left out."""
    response = response_from_rest(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "{}", "newField": 1}]},
                    "finishReason": "STOP",
                    "citationMetadata": {"citationSources": []},
                }
            ],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3},
            "modelVersion": "gemini-2.5-flash-001",
            "somethingNew": True,
        }
    )
    assert response.candidates and response.candidates[0].content is not None
    assert response.text == "{}" and response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == 7 and response.model_version
