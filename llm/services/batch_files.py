"""Batch files at the provider: deleted once their results are stored; leftovers found and removed.

OpenAI and Gemini keep a batch's uploaded input file and its result files in a file storage with
quotas. Once a batch is collected (its results stored), :func:`batch_files_delete` deletes them,
unless ``LLM_BATCH_KEEP_FILES`` is set. What is left (an upload whose batch creation failed, a
deletion that failed, files kept on purpose) is found by :func:`leftover_files` and removed by
:func:`leftovers_delete` (``manage.py llm_batch files --list / --delete-leftovers``).

A file is this deployment's when its name carries one of its batch display names
(``clustersum-<inst>-j...``: our uploads are named after the batch; Gemini result files too), or
the provider batch id of one of its rows (OpenAI names result files ``<batch id>_output.jsonl``).
It is a leftover when that batch is collected, or when no row of ours has that name any more;
files of batches still at work are listed as in use and never deleted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from llm.models import ProviderBatch
from llm.providers.base import ProviderError, redact
from llm.providers.batch import BatchProvider, ProviderFile
from llm.services.deployment import deployment_identity

logger = logging.getLogger(__name__)


def batch_files_delete(batch: ProviderBatch, provider: BatchProvider) -> int:
    """Delete the provider files (input, results, errors) of a collected batch, unless
    ``LLM_BATCH_KEEP_FILES``; returns how many were deleted. Failures are logged, never raised
    (the results are stored already; ``llm_batch files --delete-leftovers`` retries)."""
    if settings.LLM_BATCH_KEEP_FILES or not batch.provider_batch_id:
        return 0
    try:
        file_ids = provider.batch_files(batch.provider_batch_id)
        deleted = sum(1 for file_id in file_ids if provider.file_delete(file_id))
    except ProviderError as exc:
        logger.warning(
            "deleting the files of %s failed (left for `llm_batch files`): %s",
            batch.display_name,
            redact(exc.message),
        )
        return 0
    ProviderBatch.objects.filter(pk=batch.pk).update(files_deleted_at=timezone.now())
    return deleted


@dataclass(frozen=True)
class OurFile:
    """One of this deployment's files at the provider: ``batch`` is the row it belongs to (None:
    no row has its batch any more), ``leftover`` whether it may be deleted (its batch is
    collected, or gone)."""

    file: ProviderFile
    batch: ProviderBatch | None
    leftover: bool


def _owner_index(
    provider_name: str,
) -> tuple[dict[str, ProviderBatch], dict[str, ProviderBatch]]:
    rows = list(ProviderBatch.objects.filter(provider=provider_name))
    by_name = {row.display_name: row for row in rows}
    by_batch_id = {
        row.provider_batch_id.removeprefix("batches/"): row for row in rows if row.provider_batch_id
    }
    return by_name, by_batch_id


def our_files(provider_name: str, provider: BatchProvider) -> Iterator[OurFile]:
    """This deployment's files at ``provider`` (see the module docstring), as listed.

    Raises:
        ProviderError: the listing failed.
    """
    identity = deployment_identity()
    name_re = re.compile(rf"clustersum-{identity}-j\d+-[a-z]+-r\d+-c\d+(?:-s\d+)*")
    by_name, by_batch_id = _owner_index(provider_name)
    for stored in provider.files_list():
        text = f"{stored.file_id} {stored.name}"
        row: ProviderBatch | None = None
        match = name_re.search(text)
        if match is not None:
            row = by_name.get(match.group(0))
        else:
            row = next((r for bid, r in by_batch_id.items() if bid and bid in text), None)
            if row is None:
                continue  # not ours
        leftover = row is None or row.state == ProviderBatch.State.COLLECTED
        yield OurFile(stored, row, leftover)


def leftover_files(provider_name: str, provider: BatchProvider) -> list[OurFile]:
    """This deployment's files that :func:`leftovers_delete` would delete."""
    return [f for f in our_files(provider_name, provider) if f.leftover]


def leftovers_delete(provider_name: str, provider: BatchProvider) -> list[OurFile]:
    """Delete this deployment's leftover files at ``provider``; returns those deleted.

    Raises:
        ProviderError: listing or a deletion failed (those deleted before stay deleted).
    """
    deleted = []
    for found in leftover_files(provider_name, provider):
        if provider.file_delete(found.file.file_id):
            deleted.append(found)
    return deleted


#: providers with a file storage batches use
FILE_PROVIDERS = ("gemini", "openai")


class FilesError(Exception):
    """An operator request about files that cannot be carried out (one sentence; exit 2)."""


def file_providers(name: str | None) -> list[str]:
    """The providers ``llm_batch files`` looks at: ``name``, or every provider with a file
    storage that this deployment's batches use, or ``LLM_PROVIDER``.

    Raises:
        FilesError: ``name`` has no file storage, or its key (or that of one of the providers
            in use) is not set in this process.
    """
    from llm.providers.registry import missing_key

    if name is not None and name not in FILE_PROVIDERS:
        raise FilesError(
            f"provider {name} keeps no batch files; choose one of {', '.join(FILE_PROVIDERS)}"
        )
    if name is not None:
        names = [name]
    else:
        used = set(ProviderBatch.objects.values_list("provider", flat=True).distinct())
        used.add(settings.LLM_PROVIDER)
        names = [p for p in FILE_PROVIDERS if p in used]
    for candidate in names:
        missing = missing_key(candidate)
        if missing:
            raise FilesError(
                f"cannot list the files of provider {candidate}: {missing} in this process"
            )
    return names
