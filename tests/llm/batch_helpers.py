"""Helpers of the tests that point the app at a provider emulator (:func:`point_app_at`,
:func:`app_on_emulator`, the key and emulator tables) and of the batch-mode tests: a planted,
clustered dataset and a loop that plays beat until a job is final."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from clustering.models import ClusteringRun
from clustering.services import clustering_run_create, clustering_run_execute, dataset_import
from llm.emulators.anthropic import AnthropicEmulator
from llm.emulators.gemini import GeminiEmulator
from llm.emulators.openai import OpenAIEmulator
from llm.emulators.server import EmulatorServer
from llm.models import GenerationJob, JobStatus
from llm.providers.registry import DEFAULT_MODELS
from llm.services.batches import job_batch_advance
from tests.conftest import planted_rows
from tests.support.waiting import wait_until

PARAMS = {"k": 5, "min_cluster_size": 5}


def planted_run(tmp_path: Path, slug: str, groups: int = 3) -> ClusteringRun:
    """Import ``groups`` planted groups of 12 genes as dataset ``slug`` and cluster it
    (k = 5): the run comes back executed, normally with one cluster per group."""
    path = tmp_path / f"{slug}.csv"
    rows = planted_rows(groups=groups, size=12)
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug=slug, kind="functional")
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    return clustering_run_execute(run_id=run.pk)


def wait_final(job: GenerationJob, timeout: float = 90.0) -> GenerationJob:
    """Play beat (``job_batch_advance`` every 0.2 s) until ``job`` succeeded or failed; returns
    it refreshed.

    Raises:
        AssertionError: not final within ``timeout`` seconds.
    """

    def final() -> GenerationJob | None:
        job_batch_advance(job_id=job.pk)
        job.refresh_from_db()
        return job if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED) else None

    return wait_until(
        final, timeout, f"job {job.pk} finished", interval=0.2, context=lambda: job.progress_message
    )


#: settings attribute of each batch provider's key
KEY_SETTINGS = {
    "gemini": "GEMINI_API_KEY",
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
}


#: the emulator of each batch provider (the providers with a vendor SDK)
EMULATORS: dict[str, type[EmulatorServer]] = {
    "gemini": GeminiEmulator,
    "openai": OpenAIEmulator,
    "anthropic": AnthropicEmulator,
}


def point_app_at(
    settings: Any,
    provider: str,
    emulator: EmulatorServer,
    *,
    timeout: float = 10.0,
    batch: bool = True,
    **overrides: Any,
) -> None:
    """Point the app (``settings``: pytest-django's fixture) at ``emulator`` as ``provider``
    through its real SDK: the provider's default model, no separate judge model, ``timeout``
    seconds per call, a rate limit that never binds, 0.05 s retry backoff, a dummy key.

    Args:
        batch: True: the batch API on, with a threshold no run reaches (only operators ask for
            batch); False: the batch settings stay as configured.
        overrides: further settings by name (``LLM_CALL_TRIES=3``), set last.
    """
    settings.LLM_PROVIDER = provider
    settings.LLM_MODEL = DEFAULT_MODELS[provider]
    settings.LLM_JUDGE_MODEL = ""
    settings.LLM_BASE_URL = emulator.url
    settings.LLM_TIMEOUT = timeout
    settings.LLM_RATE_LIMIT = "1000/second"
    settings.LLM_BACKOFF_BASE = 0.05
    setattr(settings, KEY_SETTINGS[provider], "test-key-not-secret")
    if batch:
        settings.BATCH_API_ENABLED = True
        settings.BATCH_THRESHOLD = 1000
    for name, value in overrides.items():
        setattr(settings, name, value)


@contextmanager
def app_on_emulator(
    settings: Any, monkeypatch: pytest.MonkeyPatch, provider: str, **options: Any
) -> Iterator[EmulatorServer]:
    """A fresh emulator of ``provider`` (see ``EMULATORS``) with the app pointed at it
    (:func:`point_app_at` with ``options``), the Gemini SDK on the Developer API whatever the
    environment says; the emulator stops on exit."""
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    with EMULATORS[provider]() as emulator:
        point_app_at(settings, provider, emulator, **options)
        yield emulator


def recreate_llm_database() -> None:
    """Simulate a database recreated after a reset: every row of the ``llm`` app goes (the
    deployment row with it) and the id sequences start again at 1, so a new job gets the ids
    the old one had. The clustering rows are kept (the same clusters are summarised again)."""
    from django.apps import apps
    from django.db import connection

    tables = [model._meta.db_table for model in apps.get_app_config("llm").get_models()]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
