"""The spec of the OpenAI provider (openai SDK): key, default model, prices, batch API."""

from __future__ import annotations

from typing import Any

from llm.providers.specs.spec import ProviderSpec


def _connect(key: str, base_url: str | None, timeout: float) -> Any:
    from llm.providers.openai import OpenAIProvider

    return OpenAIProvider(key, base_url, timeout)


SPEC = ProviderSpec(
    name="openai",
    default_model="gpt-4.1-mini",
    # USD per million tokens (input, output), openai.com/api/pricing, 2026-11
    prices={"gpt-4.1-mini": (0.40, 1.60)},
    connect=_connect,
    key_setting="OPENAI_API_KEY",
    batch=True,
    # the batch API's completion window is 24 h
    batch_timeout=24 * 3600,
)
