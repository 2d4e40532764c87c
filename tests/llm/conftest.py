"""Fixtures of the provider tests (see ``provider_helpers.py``).

``emulator`` and ``provider`` serve the test module's ``HARNESS`` (``test_batch_providers``
overrides ``harness`` to run over all three vendors); a module that defines fixtures of the same
names keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm.emulators.anthropic import AnthropicEmulator
from llm.emulators.openai import OpenAIEmulator
from llm.emulators.server import EmulatorServer
from llm.providers import anthropic as anthropic_module
from tests.llm.batch_helpers import point_app_at
from tests.llm.provider_helpers import HARNESSES, Harness, VendorProvider


@pytest.fixture
def developer_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Gemini SDK talks to the Developer API, whatever the environment says."""
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Harness:
    """The test module's ``HARNESS``."""
    harness = getattr(request.module, "HARNESS", None)
    if not isinstance(harness, Harness):
        pytest.fail(f"{request.module.__name__} needs a HARNESS for the emulator fixtures")
    return harness


@pytest.fixture
def emulator(harness: Harness) -> Iterator[EmulatorServer]:
    with harness.emulator_class() as emu:
        yield emu


@pytest.fixture
def provider(harness: Harness, emulator: EmulatorServer) -> VendorProvider:
    return harness.provider(emulator)


@pytest.fixture
def anthropic_emulator() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as emu:
        yield emu


@pytest.fixture
def emu(settings) -> Iterator[OpenAIEmulator]:
    """An OpenAI emulator the app is pointed at, for the batch-mode tests (``llm_batch``, the
    batch driver); BATCH_THRESHOLD high, so only an explicit operator request uses the batch
    API."""
    with OpenAIEmulator() as emulator:
        point_app_at(settings, "openai", emulator)
        yield emulator


@pytest.fixture(params=HARNESSES, ids=[h.name for h in HARNESSES])
def vendor(request: pytest.FixtureRequest, settings, developer_api) -> Iterator[EmulatorServer]:
    """The app pointed at each batch provider's emulator in turn (gemini, openai, anthropic),
    one API key for the whole test; nothing remembered of earlier Anthropic submissions."""
    harness: Harness = request.param
    anthropic_module._SUBMITTED.clear()
    with harness.emulator_class() as emulator:
        point_app_at(settings, harness.name, emulator)
        yield emulator
    anthropic_module._SUBMITTED.clear()
