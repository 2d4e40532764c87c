"""Provider lookup by name, configured from settings."""

from __future__ import annotations

from django.conf import settings

from .base import Provider

#: Default model per provider when LLM_MODEL is not set.
DEFAULT_MODELS = {"extractive": "extractive-v1", "gemini": "gemini-2.5-flash"}
PROVIDERS = tuple(DEFAULT_MODELS)


class ProviderNotConfigured(Exception):
    """The provider cannot be used: unknown name or missing key. The message is one clear
    sentence for the user, naming the setting to fix; it never contains a key."""


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
    if name == "gemini" and not settings.GEMINI_API_KEY:
        raise ProviderNotConfigured(
            "LLM_PROVIDER is gemini but neither GEMINI_API_KEY nor GOOGLE_API_KEY is set; "
            "no provider call was made"
        )


def provider_get(name: str) -> Provider:
    """A ready provider instance.

    Raises:
        ProviderNotConfigured: unknown provider or missing key.
    """
    provider_check(name)
    if name == "gemini":
        from .gemini import GeminiProvider

        return GeminiProvider(
            api_key=settings.GEMINI_API_KEY,
            base_url=settings.LLM_BASE_URL or None,
            timeout=settings.LLM_TIMEOUT,
        )
    from .extractive import ExtractiveProvider

    return ExtractiveProvider()
