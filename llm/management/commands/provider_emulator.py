"""``manage.py provider_emulator gemini --port P --latency S [--rpm N]``: run an emulator.

Serves in the foreground until Ctrl-C, printing its base URL (point ``LLM_BASE_URL`` at it).
Faults can then be scripted over HTTP (``POST {url}/_control/faults``, see
``llm/providers/emulators/gemini.py``).
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

#: Provider name -> "module:Class" of its emulator; each class takes (host, port, latency=, rpm=,
#: window=) and has start(), stop() and .url.
EMULATORS = {
    "gemini": "llm.providers.emulators.gemini:GeminiEmulator",
}


class Command(BaseCommand):
    """Run a local provider emulator in the foreground."""

    help = "Run a local emulator of a provider's REST API until interrupted (Ctrl-C)."
    # A stand-alone test server: it touches neither the database nor the app registry.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """provider name, --host, --port (0 = free port), --latency (s), --rpm, --window (s)."""
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

    def handle(self, *args: Any, **options: Any) -> None:
        """Start the emulator, print its URL, block until Ctrl-C, then stop it.

        Raises:
            CommandError: unknown provider name, negative latency, or the port cannot be bound.
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
        module_name, class_name = EMULATORS[name].split(":")
        emulator_class = getattr(importlib.import_module(module_name), class_name)
        emulator = emulator_class(
            options["host"],
            options["port"],
            latency=options["latency"],
            rpm=options["rpm"],
            window=options["window"],
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
