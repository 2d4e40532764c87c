"""The judge's four verdicts, its corrections, a hard-reject rule and the large-cluster bar, end
to end: the pipeline's own steps (plan -> generate -> validate -> judge -> store) with the real
vendor SDKs talking HTTP to the local emulators, whose judge answers are scripted by faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clustering.domain.hashing import composition_hash
from clustering.models import Cluster, ClusteringRun, Dataset, RunStatus, TermEnrichment
from clustering.services import clustering_run_create, clustering_run_execute, dataset_import
from llm.emulators.server import EmulatorServer
from llm.models import (
    ClusterSummary,
    SummaryTask,
    TaskState,
    ValidationEvent,
    ValidationStatus,
)
from llm.prompts.templates import LARGE_CLUSTER_SIZE
from llm.services.generation import job_plan, summary_task_execute
from tests.conftest import planted_rows
from tests.llm.batch_helpers import EMULATORS, app_on_emulator

pytestmark = pytest.mark.django_db

LONER = "LONE1"  # a dataset symbol that belongs to no cluster


@pytest.fixture(params=sorted(EMULATORS))
def vendor(request: pytest.FixtureRequest, settings, monkeypatch) -> Iterator[EmulatorServer]:
    """The app pointed at one vendor's emulator through its real SDK."""
    with app_on_emulator(settings, monkeypatch, request.param, batch=False) as emulator:
        yield emulator


@pytest.fixture
def gemini(settings, monkeypatch) -> Iterator[EmulatorServer]:
    with app_on_emulator(settings, monkeypatch, "gemini", batch=False) as emulator:
        yield emulator


def _phenotype_run(tmp_path: Path, groups: int) -> ClusteringRun:
    """``groups`` planted phenotype groups of 12 (plus a loner), clustered."""
    rows = planted_rows(groups=groups, size=12)
    rows.append(("Z1", LONER, "Tz", "loner phenotype", "HPO"))
    rows = [(e, s, t, n, "HPO") for e, s, t, n, _ in rows]
    path = tmp_path / "phenotypes.csv"
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug="planted-hpo", kind="phenotype")
    run = clustering_run_create(dataset_slug="planted-hpo", params={"k": 5, "min_cluster_size": 5})
    run = clustering_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED and run.clusters.count() == groups
    return run


def _summarise(run: ClusteringRun) -> list[SummaryTask]:
    """Plan the run and execute its tasks one after the other, in cluster order (so the
    emulator's scripted judge answers meet the clusters in that order)."""
    pending = set(job_plan(run_id=run.pk))
    tasks = SummaryTask.objects.filter(pk__in=pending).order_by("cluster__number")
    for task in tasks:
        summary_task_execute(task_id=task.pk)
    return list(SummaryTask.objects.filter(pk__in=pending).order_by("cluster__number"))


def _stored(task: SummaryTask) -> ClusterSummary:
    assert task.summary is not None, task.last_error
    return task.summary


def _verdict(emu: EmulatorServer, verdict: str, **params: Any) -> None:
    emu.add_fault("verdict", target="judge", verdict=verdict, **params)


def test_four_verdicts_corrections_applied_and_audited(vendor: EmulatorServer, tmp_path) -> None:
    run = _phenotype_run(tmp_path, groups=4)
    corrected_tags = ["group feature", "planted phenotype", "clinical cluster"]
    _verdict(vendor, "accept")
    _verdict(
        vendor,
        "accept_with_corrections",
        corrections={"corrected_tags": corrected_tags, "corrected_syndromicity": "mixed"},
        reasoning="Grounded; two tags were too generic and the syndromicity overstated.",
    )
    _verdict(vendor, "low_confidence", reasoning="Grounded but the data are thin.")
    _verdict(vendor, "reject", reasoning="Theme 'cardiac rhythm' has no term behind it.")
    tasks = _summarise(run)
    accepted, corrected, doubtful, regenerated = tasks
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 4

    first = _stored(accepted)
    assert (first.validation_status, first.judge_verdict) == ("validated", "accept")
    assert first.judge_prompt_version == "judge-v2" and first.prompt_version == "phenotype-v2"
    assert first.judge_scores["rubric"]["grounding"] == 2
    assert first.judge_scores["grounding_percent"] == 95 and first.corrections == []

    fixed = _stored(corrected)
    assert (fixed.validation_status, fixed.judge_verdict) == (
        "validated",
        "accept_with_corrections",
    )
    assert fixed.content["tags"] == corrected_tags and fixed.tags == corrected_tags
    assert fixed.content["syndromicity"] == "mixed"
    assert {c["field"] for c in fixed.corrections} == {"tags", "syndromicity"}
    change = next(c for c in fixed.corrections if c["field"] == "tags")
    assert change["after"] == corrected_tags and change["before"] != corrected_tags
    audit = list(fixed.events.order_by("id"))
    assert [e.source for e in audit] == [ValidationEvent.Source.JUDGE] * 2
    assert audit[1].note.startswith("Judge corrections applied and re-validated: ")
    assert "syndromicity:" in audit[1].note and "-> mixed" in audit[1].note

    pending = _stored(doubtful)
    assert (pending.validation_status, pending.judge_verdict) == ("pending", "low_confidence")

    assert regenerated.attempts == 2
    assert any("cardiac rhythm" in item for item in regenerated.feedback)
    again = _stored(regenerated)
    assert (again.validation_status, again.judge_verdict, again.attempts) == (
        "validated",
        "accept",
        2,
    )
    judge_calls = [e for e in vendor.request_log() if e["target"] == "judge"]
    assert len(judge_calls) == 5
    # the judge's reasons reach the regeneration prompt, as the provider received it
    generations = [e for e in vendor.request_log() if e["target"] == "generate"]
    assert len(generations) == 5
    assert "Theme 'cardiac rhythm' has no term behind it." in generations[-1]["user"]
    assert not any("cardiac rhythm" in e["user"] + e["system"] for e in generations[:-1])


def test_a_hard_failure_rejects_whatever_verdict_came_with_it(gemini, tmp_path) -> None:
    run = _phenotype_run(tmp_path, groups=2)
    _verdict(gemini, "accept", hard_failures=["direction_inversion"])
    tasks = _summarise(run)
    inverted = tasks[0]
    assert inverted.attempts == 2 and inverted.state == TaskState.SUCCEEDED
    assert any(
        "hard failure direction_inversion: accept becomes reject" in f for f in inverted.feedback
    )
    assert tasks[1].attempts == 1


def test_a_correction_naming_a_non_member_gene_is_refused(gemini, tmp_path) -> None:
    run = _phenotype_run(tmp_path, groups=2)
    _verdict(
        gemini,
        "accept_with_corrections",
        corrections={"corrected_summary": f"Carriers of {LONER} variants share these features."},
    )
    task = _summarise(run)[0]
    summary = _stored(task)
    assert summary.validation_status == ValidationStatus.PENDING
    assert summary.judge_verdict == "low_confidence"
    assert LONER not in summary.summary_text and summary.corrections == []
    assert "corrections refused" in summary.judge_reasoning and LONER in summary.judge_reasoning
    assert summary.judge_scores["judged_verdict"] == "accept_with_corrections"


def _run_with_cluster_of(size: int, slug: str) -> ClusteringRun:
    """A stored phenotype run with one cluster of ``size`` members and two evidence terms."""
    dataset = Dataset.objects.create(slug=slug, name=slug, kind="phenotype", entity_count=size * 2)
    run = ClusteringRun.objects.create(
        dataset=dataset, cluster_type="phenotype", status=RunStatus.SUCCEEDED
    )
    ids = [f"E{i:05d}" for i in range(size)]
    cluster = Cluster.objects.create(
        run=run,
        number=1,
        size=size,
        members=[{"id": i, "symbol": f"SYM{n}"} for n, i in enumerate(ids)],
        composition_hash=composition_hash(ids, "phenotype"),
        derived_confidence="medium",
    )
    for rank, (term_id, name) in enumerate(
        [("HP:0001249", "Intellectual disability"), ("HP:0001250", "Seizure")], start=1
    ):
        TermEnrichment.objects.create(
            cluster=cluster,
            category="HPO",
            term_id=term_id,
            term_name=name,
            overlap=size // 2,
            term_size=size // 2 + 10,
            p_value=1e-12,
            fdr=1e-11,
            fold_enrichment=1.9,
            evidence_rank=rank,
        )
    return run


@pytest.mark.parametrize(
    ("size", "attempts", "status"),
    [(20, 2, "validated"), (LARGE_CLUSTER_SIZE, 1, "pending")],
    ids=["small-cluster-rejected", "large-cluster-relaxed-bar"],
)
def test_the_large_cluster_bar(gemini, size: int, attempts: int, status: str) -> None:
    """An accept at 45% grounding: below the normal floor (reject and regenerate), above the
    large-cluster floor (kept for review as low_confidence)."""
    run = _run_with_cluster_of(size, f"bar-{size}")
    _verdict(gemini, "accept", grounding_percent=45)
    (task,) = _summarise(run)
    assert task.attempts == attempts
    summary = _stored(task)
    assert summary.validation_status == status
    if size >= LARGE_CLUSTER_SIZE:
        assert summary.judge_verdict == "low_confidence"
        assert "below the 70% accept band" in summary.judge_reasoning
    else:
        assert any("below the 50% floor" in f for f in task.feedback)
