"""`manage.py llm_batch create|list|fetch|cancel` against the OpenAI emulator with the real
`openai` SDK, PostgreSQL and Redis; a real worker where clusters fall back to realtime."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from clustering.models import ClusteringRun
from llm.emulators.openai import OpenAIEmulator
from llm.models import (
    BatchItem,
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    ProviderBatch,
    ValidationStatus,
)
from tests.llm.batch_helpers import planted_run, wait_final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def three(tmp_path: Path) -> ClusteringRun:
    """A succeeded run of the dataset ``three``: three clusters, numbered 1-3."""
    run = planted_run(tmp_path, "three")
    assert run.status == "succeeded" and run.clusters.count() == 3
    return run


def run_cmd(*args: str) -> tuple[int, str, str]:
    """Run `llm_batch` in-process; returns (exit code, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("llm_batch", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def _accepted(emu: OpenAIEmulator) -> list[dict[str, Any]]:
    return [s for s in emu.batch_submissions() if s["accepted"]]


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- create -------------------------------------------------------------------------------------


def test_create_submits_a_batch_job_whatever_the_threshold(emu, three) -> None:
    code, out, err = run_cmd("create", "--dataset", "three")
    assert code == 0, err
    job = GenerationJob.objects.get(scope=GenerationJob.Scope.CLUSTERS)
    assert (job.run_id, job.mode, job.status, job.provider) == (
        three.pk,
        "batch",
        "running",
        "openai",
    )
    batch = ProviderBatch.objects.get(job=job)
    assert (batch.kind, batch.state, batch.request_count) == ("generate", "submitted", 3)
    [submission] = _accepted(emu)
    assert batch.provider_batch_id == submission["batch_id"] and submission["requests"] == 3
    assert submission["tag"] == batch.display_name
    assert "3 cluster(s), 0 served from the cache, 3 to generate" in out
    row = next(line for line in out.splitlines() if batch.display_name in line)
    assert row.split() == [
        str(batch.pk),
        batch.display_name,
        batch.provider_batch_id,
        "generate",
        "submitted",
        "3",
    ]
    assert emu.request_log() == []  # nothing in realtime


def test_create_selected_clusters_split_by_batch_size(emu, three) -> None:
    code, out, err = run_cmd(
        "create", "--dataset", "three", "--clusters", "1", "3", "--batch-size", "1"
    )
    assert code == 0, err
    job = GenerationJob.objects.get(scope=GenerationJob.Scope.CLUSTERS)
    assert sorted(job.tasks.values_list("cluster__number", flat=True)) == [1, 3]
    batches = ProviderBatch.objects.filter(job=job).order_by("chunk_index")
    assert [b.request_count for b in batches] == [1, 1]
    assert len(_accepted(emu)) == 2
    for b in batches:
        assert b.display_name in out and b.provider_batch_id in out


def test_create_serves_cached_clusters_and_force_regenerates(emu, three) -> None:
    _finish_with_fetch(run_cmd("create", "--dataset", "three"))
    code, out, err = run_cmd("create", "--dataset", "three")
    assert code == 0, err
    assert "3 served from the cache, 0 to generate" in out and "no batch needed" in out
    second = GenerationJob.objects.filter(scope="clusters").order_by("-pk").first()
    assert second is not None and second.status == JobStatus.SUCCEEDED and second.skipped == 3
    code, out, err = run_cmd("create", "--dataset", "three", "--force", "--clusters", "2")
    assert code == 0, err
    assert "0 served from the cache, 1 to generate" in out
    assert len(_accepted(emu)) == 3  # generate + judge for the first job, then this one


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "extractive"], "error: provider extractive has no batch API"),
        (["--provider", "nope"], "error: unknown provider 'nope'"),
        (["--dataset", "nosuch"], "error: unknown dataset 'nosuch'; known datasets:"),
        (
            ["--clusters", "2", "7", "9"],
            "error: unknown cluster number(s) 7, 9 in run",
        ),
        (["--batch-size", "0"], "error: --batch-size must be at least 1, got 0"),
    ],
)
def test_create_refuses_bad_input_with_one_line(emu, three, args, message) -> None:
    code, _out, err = run_cmd("create", "--dataset", "three", *args)
    assert code == 2
    assert _error_line(err).startswith(message)
    assert not GenerationJob.objects.exists() and emu.batch_submissions() == []


def test_create_with_the_default_extractive_provider_says_it_has_no_batch_api(
    emu, three, settings
) -> None:
    settings.LLM_PROVIDER = "extractive"
    code, _out, err = run_cmd("create")  # the only dataset with a run is chosen
    assert code == 2
    assert _error_line(err).startswith("error: provider extractive has no batch API")


def test_create_without_the_key_names_the_variable(emu, three, settings) -> None:
    settings.OPENAI_API_KEY = ""
    code, _out, err = run_cmd("create", "--dataset", "three")
    assert code == 2 and "OPENAI_API_KEY is not set" in _error_line(err)


def test_create_refuses_a_second_job_on_clusters_still_in_flight(emu, three) -> None:
    emu.configure_batches(polls=10_000)
    assert run_cmd("create", "--dataset", "three", "--clusters", "1")[0] == 0
    code, _out, err = run_cmd("create", "--dataset", "three")
    assert code == 2 and "is still summarising clusters of run" in _error_line(err)
    assert len(_accepted(emu)) == 1


# --- list and fetch -----------------------------------------------------------------------------


def _ids(out: str) -> list[int]:
    return [int(line.split()[0]) for line in out.splitlines()[1:] if line.split()[0].isdigit()]


def _finish_with_fetch(created: tuple[int, str, str], rounds: int = 10) -> GenerationJob:
    assert created[0] == 0, created[2]
    job = GenerationJob.objects.filter(scope="clusters").order_by("-pk").first()
    assert job is not None
    for _ in range(rounds):
        code, _out, err = run_cmd("fetch", "--all-pending")
        assert code == 0, err
        job.refresh_from_db()
        if job.status == JobStatus.SUCCEEDED:
            return job
    raise AssertionError(f"job {job.pk} did not finish: {job.progress_message}")


def test_list_and_fetch_drive_a_job_to_validated_summaries(emu, three) -> None:
    assert run_cmd("create", "--dataset", "three")[0] == 0
    generate = ProviderBatch.objects.get(kind="generate")
    code, out, _ = run_cmd("list", "--status", "pending")
    assert code == 0 and _ids(out) == [generate.pk]
    header = out.splitlines()[0].split()
    assert header[:6] == ["id", "job", "provider", "kind", "state", "outcome"]
    assert run_cmd("list", "--status", "completed")[1].strip() == "no completed batches"

    code, out, err = run_cmd("fetch", "--ids", str(generate.pk))
    assert code == 0, err
    assert f"batch {generate.pk} {generate.display_name} (generate): submitted/validating" in out
    assert "-> collected/completed, 3 request(s), 3 completed / 0 failed" in out
    assert "collected 1 batch(es) (3 item(s), 0 sent to realtime), submitted 0" in out
    assert not ProviderBatch.objects.filter(kind="judge").exists()  # only the named batch

    code, out, err = run_cmd("fetch", "--all-pending")  # as beat: the judge batch
    assert code == 0, err
    judge = ProviderBatch.objects.get(kind="judge")
    assert f"batch {judge.pk} {judge.display_name} (judge): new -> submitted/validating" in out

    code, out, err = run_cmd("fetch", "--all-pending")
    assert code == 0, err
    assert f"batch {judge.pk} {judge.display_name} (judge): submitted/" in out
    assert "job succeeded - Done: 3 succeeded" in out
    job = GenerationJob.objects.get(scope="clusters")
    assert (job.status, job.succeeded, job.failed) == ("succeeded", 3, 0)
    assert set(ClusterSummary.objects.values_list("validation_status", flat=True)) == {
        ValidationStatus.VALIDATED
    }
    assert emu.request_log() == []  # no realtime call at all

    code, out, _ = run_cmd("list", "--status", "completed")
    assert _ids(out) == [judge.pk, generate.pk]  # newest first
    row = out.splitlines()[1].split()
    assert row[1:7] == [str(job.pk), "openai", "judge", "collected", "completed", "completed"]
    assert row[7:9] == ["3", "3/0"]
    assert run_cmd("list", "--status", "pending")[1].strip() == "no pending batches"
    assert run_cmd("list", "--status", "failed")[1].strip() == "no failed batches"
    assert _ids(run_cmd("list")[1]) == [judge.pk, generate.pk]
    assert run_cmd("fetch", "--all-pending")[1].strip() == (
        "no pending batches and no running batch job"
    )


def test_fetch_of_a_batch_still_running_reports_no_change_after_the_poll(emu, three) -> None:
    emu.configure_batches(polls=10_000)
    assert run_cmd("create", "--dataset", "three")[0] == 0
    batch = ProviderBatch.objects.get()
    code, out, _ = run_cmd("fetch", "--ids", str(batch.pk))
    assert code == 0 and "submitted/validating -> running/in_progress" in out
    code, out, _ = run_cmd("fetch", "--ids", str(batch.pk))
    assert code == 0 and "polled 1" in out and "no batch changed" in out


def test_fetch_and_cancel_refuse_unknown_ids(emu, three) -> None:
    code, _out, err = run_cmd("fetch", "--ids", "98", "99")
    assert code == 2
    assert _error_line(err) == (
        "error: unknown batch id(s) 98, 99; `manage.py llm_batch list` shows the batches"
    )
    assert run_cmd("create", "--dataset", "three")[0] == 0
    real = ProviderBatch.objects.get().pk
    code, _out, err = run_cmd("fetch", "--ids", str(real), "12345")
    assert code == 2 and "unknown batch id(s) 12345;" in _error_line(err)
    assert ProviderBatch.objects.get().poll_count == 0  # nothing was done
    code, _out, err = run_cmd("cancel", "12345")
    assert code == 2
    assert _error_line(err) == (
        "error: unknown batch id 12345; `manage.py llm_batch list` shows the batches"
    )


# --- cancel -------------------------------------------------------------------------------------


@pytest.mark.worker
def test_cancel_stops_the_batch_and_retries_its_clusters_in_realtime(
    celery_worker, emu, three
) -> None:
    emu.configure_batches(polls=10_000)  # the batch would run for ever
    assert run_cmd("create", "--dataset", "three")[0] == 0
    batch = ProviderBatch.objects.get()
    code, out, err = run_cmd("cancel", str(batch.pk))
    assert code == 0, err
    assert emu.batch(batch.provider_batch_id).state == "cancelled"
    batch.refresh_from_db()
    assert batch.state == ProviderBatch.State.COLLECTED and batch.provider_state == "cancelled"
    assert set(BatchItem.objects.filter(batch=batch).values_list("state", flat=True)) == {
        BatchItem.State.FALLBACK
    }
    assert f"cancelled batch {batch.pk} {batch.display_name}: the provider was asked" in out
    assert "3 of its 3 item(s) retried in realtime, 0 answered before the cancellation" in out

    job = wait_final(GenerationJob.objects.get(scope="clusters"))
    assert (job.succeeded, job.failed) == (3, 0)
    realtime = LLMCall.objects.filter(job=job, batch__isnull=True)
    assert realtime.filter(kind="generate", status="success").count() == 3
    assert len(_accepted(emu)) == 1  # no new batch for the cancelled clusters

    code, out, err = run_cmd("list", "--status", "failed")
    assert _ids(out) == [batch.pk]  # collected, nothing answered: it failed
    code, _out, err = run_cmd("cancel", str(batch.pk))
    assert code == 1
    assert _error_line(err) == (
        f"error: batch {batch.pk} ({batch.display_name}) already ended (collected); "
        "nothing to cancel"
    )


@pytest.mark.worker
def test_cancel_of_a_batch_not_yet_submitted_never_reaches_the_provider(
    celery_worker, emu, three
) -> None:
    emu.add_batch_fault("status", op="create", code=503, times=3)  # submission fails, transient
    code, out, err = run_cmd("create", "--dataset", "three")
    assert code == 0, err
    batch = ProviderBatch.objects.get()
    assert batch.state == ProviderBatch.State.PREPARING and "not submitted yet" in out
    emu.clear_batch_faults()
    code, out, err = run_cmd("cancel", str(batch.pk))
    assert code == 0, err
    assert "it had not reached the provider" in out
    batch.refresh_from_db()
    assert batch.state == ProviderBatch.State.COLLECTED
    assert _accepted(emu) == []
    job = wait_final(GenerationJob.objects.get(scope="clusters"))
    assert (job.succeeded, job.failed) == (3, 0)
    assert _accepted(emu) == []


# --- the operator's batch size, fetch of named batches, provider state ---------------------------


def test_the_batch_size_is_kept_for_the_judge_and_regeneration_batches(emu, three) -> None:
    code, _out, err = run_cmd("create", "--dataset", "three", "--batch-size", "1")
    assert code == 0, err
    job = GenerationJob.objects.get(scope="clusters")
    assert job.batch_size == 1
    first = list(ProviderBatch.objects.filter(kind="generate").order_by("chunk_index"))
    assert [b.request_count for b in first] == [1, 1, 1]
    # two answers come back cut off: those two clusters are regenerated in a second round
    cut = [BatchItem.objects.get(batch=b).custom_id for b in first[:2]]
    emu.configure_batches(item_faults={custom_id: "truncated" for custom_id in cut})
    job = _finish_with_fetch((0, "", ""), rounds=12)  # fetch without --batch-size
    emu.configure_batches(item_faults={})
    assert (job.succeeded, job.failed) == (3, 0)
    regenerated = ProviderBatch.objects.filter(kind="generate", round=2)
    assert [b.request_count for b in regenerated] == [1, 1]
    judges = ProviderBatch.objects.filter(kind="judge")
    assert judges.count() >= 3 and set(judges.values_list("request_count", flat=True)) == {1}


def test_fetch_of_named_batches_advances_only_those(emu, three) -> None:
    assert run_cmd("create", "--dataset", "three", "--batch-size", "1")[0] == 0
    one, two, three_ = ProviderBatch.objects.filter(kind="generate").order_by("chunk_index")
    emu.finish_batches()
    code, out, err = run_cmd("fetch", "--ids", str(one.pk))
    assert code == 0, err
    rows = {b.pk: b for b in ProviderBatch.objects.all()}
    assert rows[one.pk].state == ProviderBatch.State.COLLECTED
    for other in (two, three_):
        assert (rows[other.pk].state, rows[other.pk].poll_count) == ("submitted", 0)
    assert set(rows) == {one.pk, two.pk, three_.pk}  # no judge batch written
    assert f"batch {two.pk}" not in out


def test_list_shows_the_provider_state_as_soon_as_the_batch_is_created(emu, three) -> None:
    assert run_cmd("create", "--dataset", "three")[0] == 0
    batch = ProviderBatch.objects.get()
    assert (batch.state, batch.provider_state, batch.poll_count) == ("submitted", "validating", 0)
    code, out, _ = run_cmd("list")
    row = out.splitlines()[1].split()
    assert (
        code == 0
        and row[0] == str(batch.pk)
        and row[4:7]
        == [
            "submitted",
            "pending",
            "validating",
        ]
    )
