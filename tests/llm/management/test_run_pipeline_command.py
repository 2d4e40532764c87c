"""`run_pipeline`: the embedded default (SQLite, eager Celery, extractive provider) in a fresh
process, and the worker path (enqueue, then follow progress from the database)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from clustering.services import dataset_import
from llm.models import ClusterSummary, GenerationJob
from tests.conftest import planted_rows
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[3]


def _manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_embedded_default_runs_the_main_job_and_reruns_from_cache(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "LLM_PROVIDER"}}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", COLUMNS="200")
    assert _manage(["migrate", "--noinput", "-v0"], env).returncode == 0
    first = _manage(["run_pipeline", "--dataset", "hpo-ndd"], env)
    assert first.returncode == 0, first.stderr
    totals = next(line for line in first.stdout.splitlines() if line.startswith("total "))
    n = int(totals.split()[1].rstrip(":"))
    assert n >= 10
    # every cluster ended validated, pending or rejected (with reasoning), none failed
    assert "failed 0" in totals and "skipped 0" in totals
    assert "[Extractive summary, no LLM]" in first.stdout
    assert "Human Phenotype Ontology" in first.stdout and "2025-11-24" in first.stdout
    # the first sentence differs between clusters and names the cluster's own first evidence
    with sqlite3.connect(tmp_path / "demo.sqlite3") as db:
        rows = db.execute(
            "SELECT s.summary_text, t.term_name FROM llm_clustersummary s "
            "JOIN clustering_termenrichment t ON t.cluster_id = s.cluster_id "
            "WHERE t.direction = 'enriched' AND t.evidence_rank = 1"
        ).fetchall()
    first_sentences = [text.split(". ")[0] for text, _ in rows]
    assert len(first_sentences) >= n and len(set(first_sentences)) == len(first_sentences)
    named = sum(
        1 for sentence, (_, term) in zip(first_sentences, rows, strict=True) if term in sentence
    )
    assert named >= 0.8 * len(rows), (named, len(rows))
    assert first.stdout.strip().splitlines()[-1].startswith(f"ok: all {n} clusters have a summary")
    second = _manage(["run_pipeline", "--dataset", "hpo-ndd"], env)
    assert second.returncode == 0, second.stderr
    assert f"skipped {n}" in second.stdout and "succeeded 0" in second.stdout
    assert second.stdout.strip().splitlines()[-1] == (
        f"ok: all {n} clusters have a summary: 0 generated (0 rejected by the judge), "
        f"{n} served from the cache"
    )
    # the rerun's cache hits carry their finish time (SQLite keeps datetimes as text; a
    # PostgreSQL-only cast once stored the year alone there)
    with sqlite3.connect(tmp_path / "demo.sqlite3") as db:
        finished = [
            value
            for (value,) in db.execute(
                "SELECT finished_at FROM llm_summarytask WHERE job_id = "
                "(SELECT MAX(id) FROM llm_generationjob)"
            )
        ]
    assert len(finished) == n
    now = datetime.now(UTC).replace(tzinfo=None)
    stamps = [datetime.fromisoformat(str(v)).replace(tzinfo=None) for v in finished]
    assert all(abs(now - stamp) < timedelta(hours=1) for stamp in stamps), finished[:3]


def _embedded_env(database: Path, **extra: str) -> dict[str, str]:
    """The embedded default's environment (SQLite file ``database``, eager Celery)."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "LLM_PROVIDER"}}
    env.update(DATABASE_URL=f"sqlite:///{database}", COLUMNS="200", **extra)
    return env


@pytest.fixture(scope="module")
def planted_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file of the embedded default with the planted dataset imported, made
    once for the module: the failure tests are about the command's exit code and accounting,
    not about migrating or importing, so each starts from a copy of it."""
    folder = tmp_path_factory.mktemp("planted-db")
    database, csv = folder / "template.sqlite3", folder / "planted.csv"
    lines = ["entity_id,symbol,term_id,term_name,category"]
    lines += [",".join(row) for row in planted_rows()]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = _embedded_env(database)
    assert _manage(["migrate", "--noinput", "-v0"], env).returncode == 0
    imported = _manage(
        ["dataset_import", str(csv), "--slug", "planted", "--type", "functional"], env
    )
    assert imported.returncode == 0, imported.stderr
    return database


def _embedded(tmp_path: Path, planted_database: Path, **extra: str) -> dict[str, str]:
    """The embedded default (SQLite file, eager Celery) on a fresh copy of the migrated
    database with the planted dataset imported."""
    database = tmp_path / "run.sqlite3"
    shutil.copyfile(planted_database, database)
    # pacing is not what these tests are about: the default 30/minute would add 2 s per call
    return _embedded_env(database, LLM_RATE_LIMIT="600/minute", **extra)


def test_a_failed_cluster_makes_the_command_exit_1_saying_so_last(
    tmp_path: Path, planted_database: Path
) -> None:
    """Every call refused (nothing listens on the provider's port): every cluster fails."""
    dead = free_port()
    env = _embedded(
        tmp_path,
        planted_database,
        GEMINI_API_KEY="test-key-not-secret",
        LLM_BASE_URL=f"http://127.0.0.1:{dead}",
        LLM_CALL_TRIES="1",
        LLM_MAX_ATTEMPTS="1",
        LLM_TIMEOUT="5",
    )
    result = _manage(
        ["run_pipeline", "--dataset", "planted", "--k", "5", "--provider", "gemini"], env
    )
    assert result.returncode == 1, (result.stdout[-2000:], result.stderr[-2000:])
    totals = next(line for line in result.stdout.splitlines() if line.startswith("total "))
    n = int(totals.split()[1].rstrip(":"))
    assert n >= 2 and f"failed {n}" in totals
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"error: {n} of {n} clusters failed (exit code 1)", last


def test_some_clusters_failing_exit_1_and_the_rest_succeeding_is_counted(
    tmp_path: Path, planted_database: Path
) -> None:
    """The emulator answers the first generation request with a 400 (not retried): one cluster
    fails, the others get their summaries; still exit 1."""
    from llm.emulators.gemini import GeminiEmulator

    with GeminiEmulator() as emulator:
        emulator.add_fault("status", target="generate", code=400)
        env = _embedded(
            tmp_path,
            planted_database,
            GEMINI_API_KEY="test-key-not-secret",
            LLM_BASE_URL=emulator.url,
            LLM_CALL_TRIES="1",
            LLM_MAX_ATTEMPTS="1",
        )
        args = ["run_pipeline", "--dataset", "planted", "--k", "5", "--provider", "gemini"]
        result = _manage(args, env)
    assert result.returncode == 1, (result.stdout[-2000:], result.stderr[-2000:])
    totals = next(line for line in result.stdout.splitlines() if line.startswith("total "))
    n = int(totals.split()[1].rstrip(":"))
    assert "failed 1," in totals and n >= 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: 1 of {n} clusters failed (exit code 1)"
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_path_follows_progress_and_prints_totals(
    celery_worker: object, planted_csv: Path
) -> None:
    dataset_import(path=planted_csv, slug="planted", kind="functional")
    out, err = StringIO(), StringIO()
    call_command(
        "run_pipeline",
        "--dataset",
        "planted",
        "--k",
        "5",
        stdout=out,
        stderr=err,
    )
    text = out.getvalue()
    job = GenerationJob.objects.get()
    assert job.total == job.succeeded + job.rejected + job.failed + job.skipped
    assert f"total {job.total}:" in text
    assert ClusterSummary.objects.count() == job.succeeded + job.rejected


@pytest.mark.django_db
def test_bad_arguments_exit_2() -> None:
    for args, message in (
        (["--dataset", "nope"], "unknown dataset"),
        (["--dataset", "hpo-ndd", "--provider", "nope"], "unknown provider"),
        (["--dataset", "hpo-ndd", "--k", "1"], "--k must be"),
    ):
        err = StringIO()
        with pytest.raises(SystemExit) as info:
            call_command("run_pipeline", *args, stdout=StringIO(), stderr=err)
        assert info.value.code == 2
        assert message in err.getvalue()
