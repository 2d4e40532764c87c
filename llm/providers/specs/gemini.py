"""The spec of the Gemini provider (google-genai): key, default model, prices, batch API."""

from __future__ import annotations

from llm.providers.specs.spec import ProviderSpec, connect_class

SPEC = ProviderSpec(
    name="gemini",
    default_model="gemini-2.5-flash",
    # USD per million tokens (input, output), ai.google.dev/gemini-api/docs/pricing, 2026-11
    prices={
        "gemini-2.5-flash": (0.30, 2.50),
        "gemini-2.5-flash-lite": (0.10, 0.40),
        "gemini-2.5-pro": (1.25, 10.00),
    },
    connect=connect_class("llm.providers.gemini:GeminiProvider"),
    key_setting="GEMINI_API_KEY",
    key_fallback="GOOGLE_API_KEY",
    missing_key="neither GEMINI_API_KEY nor GOOGLE_API_KEY is set",
    batch=True,
    # Gemini batches expire after 48 h pending or running
    batch_timeout=48 * 3600,
)
