"""The spec of the Anthropic provider (anthropic SDK): key, default model, prices, batch API."""

from __future__ import annotations

from typing import Any

from llm.providers.specs.spec import ProviderSpec


def _connect(key: str, base_url: str | None, timeout: float) -> Any:
    from llm.providers.anthropic import AnthropicProvider

    return AnthropicProvider(key, base_url, timeout)


SPEC = ProviderSpec(
    name="anthropic",
    default_model="claude-haiku-4-5",
    # USD per million tokens (input, output), anthropic.com/pricing, 2026-11
    prices={"claude-haiku-4-5": (1.00, 5.00)},
    connect=_connect,
    key_setting="ANTHROPIC_API_KEY",
    batch=True,
    # message batches expire after 24 h
    batch_timeout=24 * 3600,
)
