"""Start the whole pipeline for a dataset: clustering run, then summaries."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from clustering.models import ClusteringRun
from clustering.services import clustering_run_create
from llm.providers.registry import PROVIDERS, ProviderNotConfigured


def pipeline_start(
    *,
    dataset_slug: str,
    params: dict[str, Any] | None = None,
    provider: str | None = None,
    force: bool = False,
    enqueue: bool = True,
) -> ClusteringRun:
    """Create a clustering run and, after commit, enqueue cluster -> plan -> chord -> finalize.

    With ``enqueue=False`` only the run is created (the caller starts ``pipeline_chain``).

    Raises:
        UnknownDatasetError, InvalidParameters: from the clustering run.
        ProviderNotConfigured: an unknown provider name (a missing key is not an error here: the
            job then finishes with every cluster skipped and one message).
    """
    if provider is not None and provider not in PROVIDERS:
        raise ProviderNotConfigured(
            f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}"
        )
    from llm.tasks import pipeline_chain

    with transaction.atomic():
        run = clustering_run_create(dataset_slug=dataset_slug, params=params)
        if enqueue:
            signature = pipeline_chain(run_id=run.pk, provider=provider, force=force)
            transaction.on_commit(signature.apply_async)
    return run
