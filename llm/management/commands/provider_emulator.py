"""``manage.py provider_emulator gemini|openai|anthropic --port P --latency S [--rpm N]
[--rate-mode bucket|window] [--burst B] [--window S]``.

Runs a provider emulator in the foreground until Ctrl-C, printing its base URL (point
``LLM_BASE_URL`` at it; the OpenAI provider appends ``/v1`` itself). Realtime faults, batch
behaviour and batch-endpoint faults can then be scripted over HTTP (``{url}/_control/...``, see
``llm/emulators/control.py``); ``--batch-polls N`` sets how many status polls a batch
stays running before it finishes. ``--rpm`` per ``--window`` seconds is enforced as a token bucket
of ``--burst`` requests (default ``bucket``, burst 2: how providers enforce a per-minute limit)
or as a moving window (``--rate-mode window``); refusals are 429 in the vendor's own shape.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from llm.emulators.ratelimit import RATE_MODES

#: Provider name -> "module:Class" of its emulator; each class takes (host, port, latency=, rpm=,
#: window=, batch_settings=) and has start(), stop() and .url.
EMULATORS = {
    "gemini": "llm.emulators.gemini:GeminiEmulator",
    "openai": "llm.emulators.openai:OpenAIEmulator",
    "anthropic": "llm.emulators.anthropic:AnthropicEmulator",
}


class Command(BaseCommand):
    """Run a local provider emulator in the foreground."""

    help = "Run a local emulator of a provider's REST API until interrupted (Ctrl-C)."
    # A stand-alone test server: it touches neither the database nor the app registry.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """provider name, --host, --port (0 = free port), --latency (s), --rpm, --window (s),
        --rate-mode, --burst, --batch-polls."""
        parser.add_argument("provider", help=f"one of: {', '.join(sorted(EMULATORS))}")
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
        parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
        parser.add_argument(
            "--latency", type=float, default=0.0, help="delay before every answer, seconds"
        )
        parser.add_argument(
            "--rpm", type=int, default=None, help="server-side rate limit, requests per window"
        )
        parser.add_argument("--window", type=float, default=60.0, help="rate-limit window, seconds")
        parser.add_argument(
            "--rate-mode",
            default="bucket",
            help="how --rpm is enforced: bucket (token bucket with --burst) or window (moving)",
        )
        parser.add_argument(
            "--burst",
            type=int,
            default=None,
            help="bucket size in requests (bucket mode; default min(2, --rpm))",
        )
        parser.add_argument(
            "--batch-polls",
            type=int,
            default=0,
            help="status polls a batch answers 'running' before it finishes (0 = at once)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Start the emulator, print its URL, block until Ctrl-C, then stop it.

        Raises:
            CommandError: unknown provider name or rate mode, negative latency or batch polls,
                a burst below 1, a window not above 0, or the port cannot be bound.
        """
        name = str(options["provider"]).strip().lower()
        if name not in EMULATORS:
            raise CommandError(
                f"Unknown provider {options['provider']!r} for provider_emulator; "
                f"available: {', '.join(sorted(EMULATORS))}"
            )
        if options["latency"] < 0:
            raise CommandError("--latency must be >= 0 seconds")
        if options["rpm"] is not None and options["rpm"] < 1:
            raise CommandError("--rpm must be a positive number of requests")
        if options["rate_mode"] not in RATE_MODES:
            raise CommandError(
                f"--rate-mode must be one of {', '.join(RATE_MODES)}, got {options['rate_mode']!r}"
            )
        if options["burst"] is not None and options["burst"] < 1:
            raise CommandError("--burst must be a positive number of requests")
        if options["window"] <= 0:
            raise CommandError("--window must be > 0 seconds")
        if options["batch_polls"] < 0:
            raise CommandError("--batch-polls must be >= 0")
        module_name, class_name = EMULATORS[name].split(":")
        emulator_class = getattr(importlib.import_module(module_name), class_name)
        emulator = emulator_class(
            options["host"],
            options["port"],
            latency=options["latency"],
            rpm=options["rpm"],
            window=options["window"],
            rate_mode=options["rate_mode"],
            burst=options["burst"],
            batch_settings={"polls": options["batch_polls"]},
        )
        try:
            emulator.start()
        except OSError as error:
            raise CommandError(f"Cannot start the {name} emulator: {error}") from error
        self.stdout.write(f"{name} emulator listening on {emulator.url}")
        self.stdout.write("Press Ctrl-C to stop.")
        self.stdout.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            emulator.stop()
            self.stdout.write(f"{name} emulator stopped.")
