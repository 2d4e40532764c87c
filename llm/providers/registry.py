"""Provider lookup by name, read from the providers' specs (:mod:`llm.providers.specs`).

Names: ``extractive`` (offline baseline, no key), ``gemini`` (GEMINI_API_KEY or GOOGLE_API_KEY),
``openai`` (OPENAI_API_KEY), ``anthropic`` (ANTHROPIC_API_KEY); a provider is offered here once its
spec is in :data:`~llm.providers.specs.PROVIDER_SPECS`. Every network provider honours
LLM_BASE_URL (an emulator or a compatible endpoint) and LLM_TIMEOUT (seconds per call).
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from llm.providers import specs
from llm.providers.specs import ProviderSpec

from .base import Provider
from .batch import BatchProvider

#: Default model per provider when LLM_MODEL is not set (the specs' ``default_model``).
DEFAULT_MODELS = {spec.name: spec.default_model for spec in specs.PROVIDER_SPECS}
PROVIDERS = tuple(DEFAULT_MODELS)
#: Providers with a batch API (see :func:`batch_provider_get`).
BATCH_PROVIDERS = tuple(spec.name for spec in specs.PROVIDER_SPECS if spec.batch)


class ProviderNotConfigured(Exception):
    """The provider cannot be used: unknown name, missing key, or no batch API. The message is
    one clear sentence for the user, naming the setting to fix; it never contains a key."""


def provider_specs() -> dict[str, ProviderSpec]:
    """Every provider's spec by name, in the order of
    :data:`~llm.providers.specs.PROVIDER_SPECS` (read on each call)."""
    return {spec.name: spec for spec in specs.PROVIDER_SPECS}


def spec_get(name: str) -> ProviderSpec:
    """The spec of provider ``name``.

    Raises:
        ProviderNotConfigured: no provider of that name.
    """
    known = provider_specs()
    if name not in known:
        raise ProviderNotConfigured(f"unknown provider {name!r}; choose one of {', '.join(known)}")
    return known[name]


def default_model(provider: str) -> str:
    """LLM_MODEL if set, else the provider's default model ("" for an unknown provider)."""
    spec = provider_specs().get(provider)
    return settings.LLM_MODEL or (spec.default_model if spec else "")


def default_judge_model(provider: str) -> str:
    """LLM_JUDGE_MODEL if set, else the generation model."""
    return settings.LLM_JUDGE_MODEL or default_model(provider)


def _key(spec: ProviderSpec) -> str:
    return str(getattr(settings, spec.key_setting, "") or "") if spec.key_setting else ""


def provider_check(name: str) -> None:
    """Raise :class:`ProviderNotConfigured` when ``name`` cannot make calls; never calls it."""
    spec = spec_get(name)
    if spec.key_setting and not _key(spec):
        raise ProviderNotConfigured(
            f"LLM_PROVIDER is {name} but {spec.missing_key}; no provider call was made"
        )


def missing_key(name: str) -> str:
    """What is missing for ``name`` to make calls in this process ("" when nothing is), e.g.
    "OPENAI_API_KEY is not set"; never calls the provider."""
    spec = provider_specs().get(name)
    if spec is not None and spec.key_setting and not _key(spec):
        return spec.missing_key
    return ""


def api_keys() -> list[str]:
    """The API keys configured in this process (every spec's ``key_setting`` that is set), to
    be scrubbed from any text that is stored or shown."""
    return [key for key in map(_key, specs.PROVIDER_SPECS) if key]


_instances: dict[tuple[str, str, str | None, float], Any] = {}
_instances_lock = threading.Lock()


def _instance(spec: ProviderSpec) -> Any:
    """The configured provider of ``spec`` (key, LLM_BASE_URL, LLM_TIMEOUT), one instance per
    process and configuration: building an SDK client costs tens of milliseconds (TLS contexts,
    CA bundle), and the SDK clients are safe to share between threads."""
    base_url = settings.LLM_BASE_URL or None
    timeout = float(settings.LLM_TIMEOUT)
    key = _key(spec)
    cache_key = (spec.name, key, base_url, timeout)
    with _instances_lock:
        instance = _instances.get(cache_key)
        if instance is None:
            instance = _instances[cache_key] = spec.connect(key, base_url, timeout)
        return instance


def provider_get(name: str) -> Provider:
    """A ready provider instance.

    Raises:
        ProviderNotConfigured: unknown provider or missing key.
    """
    provider_check(name)
    provider: Provider = _instance(spec_get(name))
    return provider


def batch_provider_get(name: str) -> BatchProvider:
    """A ready provider instance with a batch API (gemini, openai, anthropic).

    Raises:
        ProviderNotConfigured: unknown provider, missing key, or a provider without a batch API
            (``extractive``).
    """
    provider_check(name)
    spec = spec_get(name)
    if not spec.batch:
        raise ProviderNotConfigured(f"provider {name} has no batch API")
    provider: BatchProvider = _instance(spec)
    return provider
