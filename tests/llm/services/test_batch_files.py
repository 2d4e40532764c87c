"""Batch files are deleted at the provider once their results are stored; leftovers are listed
and removed by `llm_batch files`. Against the OpenAI and Gemini emulators (file storage as the
real APIs: upload, list with pages, delete) with the real SDKs and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustering.models import ClusteringRun
from llm.emulators.batches import EmuFile
from llm.emulators.gemini import GeminiEmulator
from llm.emulators.openai import OpenAIEmulator
from llm.emulators.server import EmulatorServer
from llm.models import ProviderBatch
from llm.providers.registry import batch_provider_get
from llm.services.batch_admin import batch_job_create
from tests.llm.batch_helpers import planted_run, point_app_at, wait_final
from tests.llm.management.test_llm_batch_command import run_cmd

pytestmark = pytest.mark.django_db(transaction=True)

EMULATORS = {"openai": OpenAIEmulator, "gemini": GeminiEmulator}


@pytest.fixture(params=sorted(EMULATORS))
def store(request: pytest.FixtureRequest, settings, developer_api) -> Iterator[EmulatorServer]:
    """The app on the OpenAI or Gemini emulator; Gemini batches go through an uploaded file."""
    with EMULATORS[request.param]() as emulator:
        point_app_at(settings, request.param, emulator)
        settings.LLM_BATCH_KEEP_FILES = False
        if request.param == "gemini":
            batch_provider_get("gemini").inline_limit_bytes = 1  # type: ignore[attr-defined]
        yield emulator


@pytest.fixture
def run(tmp_path: Path) -> ClusteringRun:
    return planted_run(tmp_path, "three")


def _file_ids(emulator: EmulatorServer) -> set[str]:
    return {f.id for f in emulator.list_files()}


def _foreign(emulator: EmulatorServer) -> str:
    """A file another deployment uploaded with the same key: never ours to list or delete."""
    name = "clustersum-0badc0de-j1-generate-r1-c0"
    file_id = "files/foreign1" if isinstance(emulator, GeminiEmulator) else "file-foreign1"
    emulator.store_file(
        EmuFile(file_id, f"{name}.jsonl", "application/jsonl", "batch", b"{}\n", time.time())
    )
    return file_id


def test_files_are_deleted_once_the_results_are_stored(store, run) -> None:
    foreign = _foreign(store)
    job = batch_job_create(dataset="three").job
    [generation] = ProviderBatch.objects.filter(job=job)
    inputs = _file_ids(store) - {foreign}
    assert len(inputs) == 1  # the uploaded input
    final = wait_final(job)
    assert final.status == "succeeded"
    assert _file_ids(store) == {foreign}  # inputs and results of both batches deleted
    assert ProviderBatch.objects.filter(job=job, files_deleted_at__isnull=True).count() == 0
    assert generation.pk in ProviderBatch.objects.values_list("pk", flat=True)
    code, out, err = run_cmd("files", "--list")
    assert code == 0, err
    assert "no batch files of this deployment" in out


def test_kept_files_and_an_orphaned_upload_are_listed_and_removed(store, run, settings) -> None:
    settings.LLM_BATCH_KEEP_FILES = True
    foreign = _foreign(store)
    store.add_batch_fault("status", op="create", code=500)  # the upload stays, orphaned
    job = batch_job_create(dataset="three").job
    [batch] = ProviderBatch.objects.filter(job=job)
    assert batch.state == "preparing" and len(_file_ids(store) - {foreign}) == 1

    code, out, err = run_cmd("files", "--list")
    assert code == 0, err
    [row] = [line for line in out.splitlines()[1:] if line.strip()]
    assert row.split()[-2:] == ["in", "use"] and str(batch.pk) in row.split()

    assert wait_final(job).status == "succeeded"
    ours = _file_ids(store) - {foreign}
    assert len(ours) >= 4  # orphan, the generation input and output, the judge input and output
    code, out, err = run_cmd("files", "--list")
    assert code == 0, err
    lines = [line for line in out.splitlines()[1:] if line.strip()]
    assert len(lines) == len(ours) and all(line.endswith("leftover") for line in lines)
    assert foreign not in out

    code, out, err = run_cmd("files", "--delete-leftovers")
    assert code == 0, err
    assert f"{len(ours)} leftover file(s) deleted" in out
    assert _file_ids(store) == {foreign}


def test_files_needs_the_key_and_a_provider_with_files(store, run, settings) -> None:
    code, _out, err = run_cmd("files", "--list", "--provider", "anthropic")
    assert code == 2 and err.strip() == (
        "error: provider anthropic keeps no batch files; choose one of gemini, openai"
    )
    for variable in ("GEMINI_API_KEY", "OPENAI_API_KEY"):
        setattr(settings, variable, "")
    code, _out, err = run_cmd("files", "--delete-leftovers")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "_API_KEY" in err
