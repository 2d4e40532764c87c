"""Provider lookup by name, configured from settings.

Names: ``extractive`` (offline baseline, no key), ``gemini`` (GEMINI_API_KEY or GOOGLE_API_KEY),
``openai`` (OPENAI_API_KEY), ``anthropic`` (ANTHROPIC_API_KEY). Every network provider honours
LLM_BASE_URL (an emulator or a compatible endpoint) and LLM_TIMEOUT (seconds per call).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .base import Provider
from .batch import BatchProvider

if TYPE_CHECKING:
    from .anthropic import AnthropicProvider
    from .gemini import GeminiProvider
    from .openai import OpenAIProvider

#: Default model per provider when LLM_MODEL is not set.
DEFAULT_MODELS = {
    "extractive": "extractive-v1",
    "gemini": "gemini-2.5-flash",
    "openai": "gpt-4.1-mini",
    "anthropic": "claude-haiku-4-5",
}
PROVIDERS = tuple(DEFAULT_MODELS)
#: Providers with a batch API (see :func:`batch_provider_get`).
BATCH_PROVIDERS = ("gemini", "openai", "anthropic")

#: Provider -> (settings attribute holding its key, how to name the missing variable).
_KEYS = {
    "gemini": ("GEMINI_API_KEY", "neither GEMINI_API_KEY nor GOOGLE_API_KEY is set"),
    "openai": ("OPENAI_API_KEY", "OPENAI_API_KEY is not set"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY is not set"),
}


class ProviderNotConfigured(Exception):
    """The provider cannot be used: unknown name, missing key, or no batch API. The message is
    one clear sentence for the user, naming the setting to fix; it never contains a key."""


def default_model(provider: str) -> str:
    """LLM_MODEL if set, else the provider's default model."""
    return settings.LLM_MODEL or DEFAULT_MODELS.get(provider, "")


def default_judge_model(provider: str) -> str:
    """LLM_JUDGE_MODEL if set, else the generation model."""
    return settings.LLM_JUDGE_MODEL or default_model(provider)


def provider_check(name: str) -> None:
    """Raise :class:`ProviderNotConfigured` when ``name`` cannot make calls; never calls it."""
    if name not in DEFAULT_MODELS:
        raise ProviderNotConfigured(
            f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}"
        )
    if name in _KEYS:
        attribute, missing = _KEYS[name]
        if not getattr(settings, attribute, ""):
            raise ProviderNotConfigured(
                f"LLM_PROVIDER is {name} but {missing}; no provider call was made"
            )


def missing_key(name: str) -> str:
    """What is missing for ``name`` to make calls in this process ("" when nothing is), e.g.
    "OPENAI_API_KEY is not set"; never calls the provider."""
    if name in _KEYS:
        attribute, missing = _KEYS[name]
        if not getattr(settings, attribute, ""):
            return missing
    return ""


_instances: dict[tuple[str, str, str | None, float], Any] = {}
_instances_lock = threading.Lock()


def _network_provider(name: str) -> GeminiProvider | OpenAIProvider | AnthropicProvider:
    """A configured gemini / openai / anthropic provider (key, LLM_BASE_URL, LLM_TIMEOUT), one
    instance per process and configuration: building an SDK client costs tens of milliseconds
    (TLS contexts, CA bundle), and the SDK clients are safe to share between threads."""
    base_url = settings.LLM_BASE_URL or None
    timeout = float(settings.LLM_TIMEOUT)
    key = getattr(settings, _KEYS[name][0], "")
    cache_key = (name, key, base_url, timeout)
    with _instances_lock:
        instance = _instances.get(cache_key)
        if instance is None:
            instance = _instances[cache_key] = _build(name, key, base_url, timeout)
        return instance


def _build(
    name: str, key: str, base_url: str | None, timeout: float
) -> GeminiProvider | OpenAIProvider | AnthropicProvider:
    if name == "gemini":
        from .gemini import GeminiProvider

        return GeminiProvider(key, base_url, timeout)
    if name == "openai":
        from .openai import OpenAIProvider

        return OpenAIProvider(key, base_url, timeout)
    from .anthropic import AnthropicProvider

    return AnthropicProvider(key, base_url, timeout)


def provider_get(name: str) -> Provider:
    """A ready provider instance.

    Raises:
        ProviderNotConfigured: unknown provider or missing key.
    """
    provider_check(name)
    if name in _KEYS:
        return _network_provider(name)
    from .extractive import ExtractiveProvider

    return ExtractiveProvider()


def batch_provider_get(name: str) -> BatchProvider:
    """A ready provider instance with a batch API (gemini, openai, anthropic).

    Raises:
        ProviderNotConfigured: unknown provider, missing key, or a provider without a batch API
            (``extractive``).
    """
    provider_check(name)
    if name not in BATCH_PROVIDERS:
        raise ProviderNotConfigured(f"provider {name} has no batch API")
    return _network_provider(name)
