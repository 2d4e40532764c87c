"""The spec of the OpenAI provider (openai SDK): key, default model, prices, batch API."""

from __future__ import annotations

from llm.providers.specs.spec import ProviderSpec, connect_class

SPEC = ProviderSpec(
    name="openai",
    default_model="gpt-4.1-mini",
    # USD per million tokens (input, output), openai.com/api/pricing, 2026-11
    prices={"gpt-4.1-mini": (0.40, 1.60)},
    connect=connect_class("llm.providers.openai:OpenAIProvider"),
    key_setting="OPENAI_API_KEY",
    batch=True,
    # the batch API's completion window is 24 h
    batch_timeout=24 * 3600,
)
