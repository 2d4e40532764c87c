"""Scaffolding the provider tests share (Gemini, OpenAI, Anthropic; realtime and batch).

The canary key, the cluster prompt and output models the emulators answer, one
:class:`Harness` per vendor (provider class, emulator class, model, request builder), the
failure of one call, a port nothing listens on, and the emulator management command run as a
subprocess. The ``harness`` / ``emulator`` / ``provider`` fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from llm.emulators.anthropic import AnthropicEmulator
from llm.emulators.gemini import GeminiEmulator
from llm.emulators.openai import OpenAIEmulator
from llm.emulators.server import EmulatorServer
from llm.providers.anthropic import AnthropicProvider
from llm.providers.base import Provider, ProviderError, ProviderRequest
from llm.providers.gemini import GeminiProvider
from llm.providers.openai import OpenAIProvider
from tests.support.net import free_port

CANARY_KEY = "canary-secret-7f3a9c-do-not-leak"
REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PROMPT = "You write grounded cluster summaries as JSON."

CLUSTER = {
    "cluster_type": "functional",
    "size": 5,
    "members_total": 5,
    "members": ["ARID1A", "ARID1B", "SMARCA4", "SMARCB1", "SMARCC2"],
    "terms": {
        "GO_Biological_Process_2023": [
            {
                "term_id": "GO:0006338",
                "name": "Chromatin Remodeling (GO:0006338)",
                "fdr": 1.2e-7,
                "overlap": 5,
                "term_size": 120,
            },
            {
                "term_id": "GO:0045893",
                "name": "Positive Regulation Of DNA-templated Transcription (GO:0045893)",
                "fdr": 3.0e-4,
                "overlap": 4,
                "term_size": 900,
            },
        ],
        "WikiPathways": [
            {
                "term_id": "WP5107",
                "name": "SWI/SNF Complex WP5107",
                "fdr": 2.0e-6,
                "overlap": 5,
                "term_size": 30,
            },
            {
                "term_id": "WP4540",
                "name": "Neural Crest Cell Migration In Cancer WP4540",
                "fdr": 4.0e-3,
                "overlap": 2,
                "term_size": 45,
            },
        ],
    },
}
PATHWAY_NAMES = {row["name"] for row in CLUSTER["terms"]["WikiPathways"]}  # type: ignore[index]
PROMPT = (
    "Summarise this gene cluster using only the data below.\n"
    f"<cluster_data>{json.dumps(CLUSTER)}</cluster_data>"
)

PHENOTYPE = {
    "cluster_type": "phenotype",
    "size": 3,
    "members_total": 3,
    "members": ["MECP2", "CDKL5", "FOXG1"],
    "terms": {
        "HPO": [
            {"term_id": "HP:0001250", "name": "Seizure", "fdr": 0.01, "overlap": 3},
            {"term_id": "HP:0001263", "name": "Global developmental delay", "fdr": 0.001},
        ]
    },
}


class SummaryOut(BaseModel):
    """A summary-like output model, as the pipeline's generate step uses."""

    summary: str = Field(min_length=20, max_length=800)
    key_themes: list[str] = Field(min_length=1, max_length=5)
    pathways: list[str] = Field(default_factory=list, max_length=5)
    tags: list[str] = Field(min_length=1, max_length=8)
    confidence: Literal["high", "medium", "low"]


class JudgeOut(BaseModel):
    """A judge-like output model: the emulator recognises it by its ``verdict`` property."""

    verdict: Literal["accept", "low_confidence", "reject"]
    reasoning: str = Field(min_length=10)
    grounded: bool
    pathways_verbatim: bool


#: Any of the three batch-capable providers.
VendorProvider = GeminiProvider | OpenAIProvider | AnthropicProvider


@dataclass(frozen=True)
class Harness:
    """One provider with its emulator."""

    name: str
    emulator_class: type[EmulatorServer]
    provider_class: type[VendorProvider]
    model: str

    def provider(self, emulator: EmulatorServer, **options: Any) -> VendorProvider:
        timeout = options.pop("timeout", 5.0)
        return self.provider_class(CANARY_KEY, emulator.url, timeout, **options)

    def request(
        self, output_class: type[BaseModel] = SummaryOut, prompt: str = PROMPT, **overrides: Any
    ) -> ProviderRequest[Any]:
        """A request for ``output_class`` with the cluster prompt, to this harness's model
        unless ``model`` is among the overrides."""
        return ProviderRequest(
            system_prompt=SYSTEM_PROMPT,
            user_prompt=prompt,
            output_class=output_class,
            model=overrides.pop("model", self.model),
            **overrides,
        )


GEMINI = Harness("gemini", GeminiEmulator, GeminiProvider, "gemini-2.5-flash")
OPENAI = Harness("openai", OpenAIEmulator, OpenAIProvider, "gpt-4.1-mini")
ANTHROPIC = Harness("anthropic", AnthropicEmulator, AnthropicProvider, "claude-haiku-4-5")
HARNESSES = [GEMINI, OPENAI, ANTHROPIC]


def failure_of(provider: Provider, request: ProviderRequest[Any]) -> ProviderError:
    """The ProviderError that ``provider.generate(request)`` must raise."""
    with pytest.raises(ProviderError) as info:
        provider.generate(request)
    return info.value


def refused_provider(harness: Harness, timeout: float) -> VendorProvider:
    """The harness's provider pointed at a loopback port nothing listens on."""
    return harness.provider_class(CANARY_KEY, f"http://127.0.0.1:{free_port()}", timeout)


def timeout_failure(harness: Harness, emulator: EmulatorServer, *, seconds: float) -> ProviderError:
    """The failure of a call the emulator holds ``seconds``, by a provider that waits 0.5 s."""
    provider = harness.provider(emulator, timeout=0.5)
    emulator.add_fault("timeout", seconds=seconds)
    return failure_of(provider, harness.request())


def rate_limited_failure(harness: Harness, emulator: EmulatorServer, *, rpm: int) -> ProviderError:
    """The failure of the call after ``rpm`` successful ones, the emulator allowing ``rpm`` a
    minute."""
    emulator.configure(rpm=rpm, window=60)
    provider = harness.provider(emulator, timeout=5)
    for _ in range(rpm):
        provider.generate(harness.request())
    return failure_of(provider, harness.request())


def leak_probe_errors(
    harness: Harness, emulator: EmulatorServer, faults: Sequence[Mapping[str, Any]]
) -> list[ProviderError]:
    """One error per scripted fault (a provider that waits 0.5 s), then a refused connection's
    (1 s): the errors a canary key must never appear in."""
    provider = harness.provider(emulator, timeout=0.5)
    emulator.add_faults(faults)
    errors = [failure_of(provider, harness.request()) for _ in range(len(faults))]
    errors.append(failure_of(refused_provider(harness, timeout=1), harness.request()))
    return errors


def assert_no_key_in(errors: Sequence[ProviderError]) -> None:
    """The canary key is in no error's message, str, repr or raw text, and no error carries
    the SDK exception (which holds the request headers) as its cause or context."""
    for error in errors:
        for text in (error.message, str(error), repr(error), error.raw_text):
            assert CANARY_KEY not in text
        assert error.__cause__ is None and error.__context__ is None


#: Seconds an emulator subprocess is given to stop after SIGINT before it is killed.
GRACEFUL_STOP_SECONDS = 60.0


@contextlib.contextmanager
def emulator_command(
    name: str, *options: str, expect: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``manage.py provider_emulator NAME --port 0 OPTIONS`` in a subprocess.

    Asserts that its first line of output contains ``expect`` (with its stderr in the message
    when it does not say it is listening), yields the process and the URL it listens on, and
    stops it with SIGINT on exit, draining its output meanwhile (killed if it has not ended
    after ``GRACEFUL_STOP_SECONDS``: generous, a loaded 2-core machine needs more than an idle
    one, and the tests assert exit code 0 so a kill fails them).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GOOGLE_GENAI_USE_VERTEXAI", None)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "provider_emulator", name, "--port", "0", *options],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        errors = process.stderr.read() if "listening" not in line and process.stderr else ""
        assert expect in line, line + errors
        yield process, line.strip().rsplit(" ", 1)[-1]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=GRACEFUL_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
