"""The spec of the extractive provider: offline, deterministic, no key, no cost, no batch API."""

from __future__ import annotations

from typing import Any

from llm.providers.specs.spec import ProviderSpec


def _connect(key: str, base_url: str | None, timeout: float) -> Any:
    from llm.providers.extractive import ExtractiveProvider

    return ExtractiveProvider()


SPEC = ProviderSpec(
    name="extractive",
    default_model="extractive-v1",
    prices={"extractive-v1": (0.0, 0.0)},
    connect=_connect,
)
