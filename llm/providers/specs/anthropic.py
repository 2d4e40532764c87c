"""The spec of the Anthropic provider (anthropic SDK): key, default model, prices, batch API."""

from __future__ import annotations

from llm.providers.specs.spec import ProviderSpec, connect_class

SPEC = ProviderSpec(
    name="anthropic",
    default_model="claude-haiku-4-5",
    # USD per million tokens (input, output), anthropic.com/pricing, 2026-11
    prices={"claude-haiku-4-5": (1.00, 5.00)},
    connect=connect_class("llm.providers.anthropic:AnthropicProvider"),
    key_setting="ANTHROPIC_API_KEY",
    batch=True,
    # message batches expire after 24 h
    batch_timeout=24 * 3600,
)
