"""Every provider's spec, and the one list a new provider is added to.

A provider is its module in ``llm/providers/`` (the :class:`~llm.providers.base.Provider`
contract, and :class:`~llm.providers.batch.BatchProvider` when it has a batch API) plus a spec
module here declaring a :class:`ProviderSpec`; adding that spec to :data:`PROVIDER_SPECS` is all
the wiring there is: the settings read its key (and batch timeout) from the environment, the
registry offers it, pricing knows its models, and its key is scrubbed from stored errors.

Pure declarations: the settings import this package before Django is set up, so nothing here
(or in a spec module) may import Django, the app's models or a vendor SDK.
"""

from __future__ import annotations

from llm.providers.specs import anthropic, extractive, gemini, openai
from llm.providers.specs.spec import ProviderSpec

#: The providers, in the order they are listed to users.
PROVIDER_SPECS: tuple[ProviderSpec, ...] = (
    extractive.SPEC,
    gemini.SPEC,
    openai.SPEC,
    anthropic.SPEC,
)

__all__ = ["PROVIDER_SPECS", "ProviderSpec"]
