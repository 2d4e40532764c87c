"""The provider registry is open: a provider is its module, its spec and one entry in
``PROVIDER_SPECS``; the registry, the settings, pricing and the secret scrubber read the specs.

The openness test registers a test-only spec exactly as a new provider would (adding it to the
list) and changes nothing else: the registry offers it and names its missing key, pricing knows
its model, and its key, echoed by the provider in an error text, is scrubbed from the stored
``LLMCall`` although it looks like no key pattern ``redact`` knows.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from llm.models import LLMCall
from llm.pricing import call_cost
from llm.providers import registry, specs
from llm.providers.base import ProviderError, ProviderRequest, ProviderResult, T
from llm.providers.specs import PROVIDER_SPECS, ProviderSpec
from llm.services.calls import provider_call

CANARY = f"echo-canary-{uuid.uuid4().hex}"


class EchoProvider:
    """A provider whose vendor echoes the caller's key in every error, as some do."""

    name = "echo"

    def __init__(self, key: str, base_url: str | None, timeout: float) -> None:
        self.key = key

    def generate(self, request: ProviderRequest[T]) -> ProviderResult[T]:
        raise ProviderError(
            f"401 invalid credential {self.key} for {request.model}", transient=False
        )


ECHO = ProviderSpec(
    name="echo",
    default_model="echo-1",
    prices={"echo-1": (1.0, 2.0)},
    connect=EchoProvider,
    key_setting="ECHO_API_KEY",
)


class Answer(BaseModel):
    text: str


@pytest.fixture
def echo_registered(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The echo spec added to the one list, its key set as the settings would set it."""
    monkeypatch.setattr(specs, "PROVIDER_SPECS", (*specs.PROVIDER_SPECS, ECHO))
    settings.ECHO_API_KEY = CANARY
    settings.LLM_MODEL = ""
    settings.LLM_PRICES = {}
    settings.LLM_CALL_TRIES = 1
    registry._instances.clear()


@pytest.mark.usefixtures("echo_registered")
def test_a_registered_spec_is_offered_by_the_registry(settings: Any) -> None:
    assert "echo" in registry.provider_specs()
    assert registry.default_model("echo") == "echo-1"
    registry.provider_check("echo")
    provider = registry.provider_get("echo")
    assert isinstance(provider, EchoProvider) and provider.key == CANARY
    assert registry.provider_get("echo") is provider  # one instance per configuration
    with pytest.raises(registry.ProviderNotConfigured, match="provider echo has no batch API"):
        registry.batch_provider_get("echo")
    settings.ECHO_API_KEY = ""
    assert registry.missing_key("echo") == "ECHO_API_KEY is not set"
    with pytest.raises(registry.ProviderNotConfigured) as info:
        registry.provider_get("echo")
    assert str(info.value) == (
        "LLM_PROVIDER is echo but ECHO_API_KEY is not set; no provider call was made"
    )


@pytest.mark.usefixtures("echo_registered")
def test_a_registered_spec_gets_its_prices() -> None:
    assert call_cost("echo-1", 1_000_000, 1_000_000) == Decimal("3.000000")
    assert call_cost("echo-1-2026", 1000, 0, batch=True) == Decimal("0.000500")  # prefix, half


@pytest.mark.django_db
@pytest.mark.usefixtures("echo_registered")
def test_a_registered_spec_key_is_scrubbed_from_stored_errors() -> None:
    request: ProviderRequest[BaseModel] = ProviderRequest(
        system_prompt="s", user_prompt="u", output_class=Answer, model="echo-1"
    )
    outcome = provider_call(
        provider=registry.provider_get("echo"),
        request=request,
        kind="generate",
        job=None,
        task=None,
        attempt=1,
    )
    assert outcome.error is not None and CANARY in outcome.error.message  # the provider leaked it
    row = LLMCall.objects.get(pk=outcome.call.pk)
    assert row.provider == "echo" and row.status == LLMCall.Status.API_ERROR
    assert row.error_message == "401 invalid credential [REDACTED] for echo-1"


def test_unregistered_names_are_refused_naming_the_registered_ones() -> None:
    with pytest.raises(registry.ProviderNotConfigured) as info:
        registry.provider_get("echo")
    assert str(info.value) == (
        "unknown provider 'echo'; choose one of extractive, gemini, openai, anthropic"
    )


def test_the_settings_and_the_registry_follow_the_specs(settings: Any) -> None:
    names = tuple(spec.name for spec in PROVIDER_SPECS)
    assert settings.LLM_PROVIDERS == registry.PROVIDERS == names
    assert registry.BATCH_PROVIDERS == ("gemini", "openai", "anthropic")
    for spec in PROVIDER_SPECS:
        assert spec.default_model in spec.prices, spec.name  # every default model has a price
        if spec.key_setting:
            assert hasattr(settings, spec.key_setting), spec.key_setting
        if spec.batch:
            assert getattr(settings, spec.batch_timeout_setting) == spec.batch_timeout


@pytest.mark.parametrize("spec", PROVIDER_SPECS, ids=lambda spec: spec.name)
def test_every_spec_constructs_its_provider(spec: ProviderSpec) -> None:
    # building a client sends nothing: the SDKs connect on the first request
    provider = spec.connect("test-key-not-secret", "http://127.0.0.1:9", 1.0)
    assert provider.name == spec.name
    assert callable(provider.generate)
    assert callable(getattr(provider, "batch_create", None)) == spec.batch
