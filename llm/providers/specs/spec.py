"""What the rest of the system needs to know about one provider, declared by the provider.

A :class:`ProviderSpec` is plain data plus a constructor that imports the provider's module only
when it is called, so that reading the specs (the settings, the registry, pricing, the secret
scrubber) costs nothing: a vendor SDK takes 0.5-1.7 s to import and most processes never use
more than one of them. Nothing here imports Django or an SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Builds a provider from (API key, base URL or None, timeout in seconds per call); the registry
#: types what it returns as :class:`~llm.providers.base.Provider` or, for ``batch`` specs,
#: :class:`~llm.providers.batch.BatchProvider`.
Connect = Callable[[str, "str | None", float], Any]


@dataclass(frozen=True)
class ProviderSpec:
    """One provider, as the registry, the settings, pricing and the secret scrubber see it.

    Attributes:
        name: the registry name and the value of ``LLM_PROVIDER`` (``"gemini"``).
        default_model: the model used when ``LLM_MODEL`` is not set.
        prices: USD per million tokens (input, output) per model name, from the provider's
            public price page; ``LLM_PRICES`` overrides or extends them.
        connect: builds the realtime provider (a :class:`~llm.providers.base.Provider`) from
            (key, base URL, timeout); imports the provider's module when called.
        key_setting: the setting and environment variable holding the API key ("" for a
            provider that needs none); its value is scrubbed from every stored error text.
        key_fallback: a second environment variable read when ``key_setting`` is unset.
        missing_key: the sentence naming what to set when the key is missing
            ("OPENAI_API_KEY is not set").
        batch: whether ``connect`` also gives a
            :class:`~llm.providers.batch.BatchProvider` (the provider has a batch API).
        batch_timeout: default seconds a batch may stay open (``BATCH_TIMEOUT_<NAME>``), the
            provider's documented window.
    """

    name: str
    default_model: str
    connect: Connect
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    key_setting: str = ""
    key_fallback: str = ""
    missing_key: str = ""
    batch: bool = False
    batch_timeout: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.key_setting and not self.missing_key:
            object.__setattr__(self, "missing_key", f"{self.key_setting} is not set")

    @property
    def batch_timeout_setting(self) -> str:
        """The setting of this provider's batch timeout (``BATCH_TIMEOUT_GEMINI``)."""
        return f"BATCH_TIMEOUT_{self.name.upper()}"


def connect_class(path: str) -> Connect:
    """A :data:`Connect` that imports ``path`` (``"package.module:ClassName"``) when first called
    and returns ``ClassName(key, base_url, timeout)``; the import waits until a provider of that
    kind is really wanted."""
    module_name, _, class_name = path.partition(":")

    def connect(key: str, base_url: str | None, timeout: float) -> Any:
        provider_class = getattr(importlib.import_module(module_name), class_name)
        return provider_class(key, base_url, timeout)

    return connect
