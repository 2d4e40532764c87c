"""`run_pipeline`: the embedded default (SQLite, eager Celery, extractive provider) in a fresh
process, and the worker path (enqueue, then follow progress from the database)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from clustering.services import dataset_import
from llm.models import ClusterSummary, GenerationJob

ROOT = Path(__file__).resolve().parents[2]


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
    second = _manage(["run_pipeline", "--dataset", "hpo-ndd"], env)
    assert second.returncode == 0, second.stderr
    assert f"skipped {n}" in second.stdout and "succeeded 0" in second.stdout


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
