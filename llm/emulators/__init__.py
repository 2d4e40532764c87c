"""Local emulators of the Gemini, OpenAI and Anthropic REST APIs, for tests, drills, benchmarks
and ``manage.py provider_emulator``: real HTTP servers the official SDKs talk to, with scripted
faults, rate limits, batches and files. Only the ``provider_emulator`` command imports them;
the providers, services and tasks never do.

Where things live:

- ``gemini.py``, ``openai.py``, ``anthropic.py``: each vendor's server (routes, key check, 429
  shape, batch and file endpoints); ``*_wire.py`` beside each: its request and response JSON.
- ``server.py``: :class:`EmulatorServer`, the base class, joining ``realtime.py`` (latency, rate
  limit, realtime faults, request logs with the prompts received) and ``batch_store.py``
  (batches, files, batch settings and faults; their data in ``batches.py``).
- ``answers.py``: the deterministic answer to a prompt, built by ``builder.py`` (the schema
  walk) from the facts ``prompt.py`` finds in the prompt; ``schema.py`` reads schemas and values.
- ``faults.py``: fault kinds and their validation; ``ratelimit.py``: the bucket and window modes.
- ``control.py``: the ``/_control`` API and its client; ``transport.py``: the HTTP plumbing.
"""

from llm.emulators.anthropic import AnthropicEmulator
from llm.emulators.gemini import GeminiEmulator
from llm.emulators.openai import OpenAIEmulator

__all__ = ["AnthropicEmulator", "GeminiEmulator", "OpenAIEmulator"]
