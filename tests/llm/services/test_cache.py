"""The composition cache, one test per rule of the README's cache section (and of
``llm/services/cache.py``'s docstring): planning and storing read the rule from one module.

Runs go through the services eagerly with the offline extractive provider, on the planted
dataset (three groups of twelve)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from clustering.models import Cluster, ClusteringRun
from clustering.services import clustering_run_create, clustering_run_execute
from llm.models import ClusterSummary, GenerationJob, JobStatus, SummaryTask, TaskState
from llm.services.cache import (
    CACHE_HIT_MESSAGE,
    FILLED_MEANWHILE_MESSAGE,
    LOCKED_MESSAGE,
    CacheDecision,
    cache_decide,
    current_summaries,
)
from llm.services.generation import job_plan, summary_task_execute
from tests.support.planted_runs import PARAMS, complete_eagerly, import_planted

pytestmark = pytest.mark.django_db


def _summarised(planted_csv: Path) -> tuple[str, list[ClusterSummary]]:
    """The planted dataset imported and summarised once; its current summaries."""
    slug = import_planted(planted_csv)
    job = complete_eagerly(clustering_run_create(dataset_slug=slug, params=PARAMS))
    assert job.status == JobStatus.SUCCEEDED and job.succeeded == 3
    return slug, list(current_summaries(cluster_type="functional").order_by("pk"))


def _planned(slug: str, *, force: bool = False) -> tuple[ClusteringRun, list[int]]:
    """A new run of ``slug`` clustered and planned (a job with ``force``); its misses."""
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    if force:
        GenerationJob.objects.create(
            run=run, provider="extractive", model="extractive", judge_model="extractive", force=True
        )
    return run, job_plan(run_id=run.pk)


def _tasks(run: ClusteringRun) -> list[SummaryTask]:
    return list(SummaryTask.objects.filter(job__run=run).order_by("cluster__number"))


def test_the_decision_for_one_key() -> None:
    free, locked = ClusterSummary(human_locked=False), ClusterSummary(human_locked=True)
    assert cache_decide(None, force=False) is CacheDecision.MISS
    assert cache_decide(None, force=True) is CacheDecision.MISS
    assert cache_decide(free, force=False) is CacheDecision.HIT
    assert cache_decide(free, force=True) is CacheDecision.MISS
    assert cache_decide(locked, force=False) is CacheDecision.LOCKED
    assert cache_decide(locked, force=True) is CacheDecision.LOCKED


def test_rule_1_one_current_summary_per_composition_and_type(planted_csv: Path) -> None:
    _, summaries = _summarised(planted_csv)
    first = summaries[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        ClusterSummary.objects.create(
            composition_hash=first.composition_hash,
            cluster_type=first.cluster_type,
            dataset=first.dataset,
            provider="extractive",
            model="m",
            prompt_version="p",
        )
    # the same composition under the other cluster type is another key
    ClusterSummary.objects.create(
        composition_hash=first.composition_hash,
        cluster_type="phenotype",
        dataset=first.dataset,
        provider="extractive",
        model="m",
        prompt_version="p",
    )
    keyed = current_summaries(cluster_type="functional", hashes=[first.composition_hash])
    assert list(keyed) == [first]


def test_rule_2_model_and_prompt_version_do_not_invalidate(planted_csv: Path) -> None:
    slug, summaries = _summarised(planted_csv)
    ClusterSummary.objects.filter(pk__in=[s.pk for s in summaries]).update(
        model="another-model", prompt_version="functional-v0"
    )
    run, misses = _planned(slug)
    assert misses == []
    tasks = _tasks(run)
    assert {(t.state, t.last_error) for t in tasks} == {(TaskState.SKIPPED, CACHE_HIT_MESSAGE)}
    assert {t.summary_id for t in tasks} == {s.pk for s in summaries}


def test_rule_3_force_regenerates_and_keeps_the_old_row_as_history(planted_csv: Path) -> None:
    slug, summaries = _summarised(planted_csv)
    run, misses = _planned(slug, force=True)
    assert len(misses) == 3
    for task_id in misses:
        summary_task_execute(task_id=task_id)
    for old in summaries:
        old.refresh_from_db()
        assert not old.is_current  # kept, as history
        new = current_summaries(cluster_type="functional", hashes=[old.composition_hash]).get()
        assert new.pk != old.pk
        assert (
            new.cluster_id == Cluster.objects.get(run=run, composition_hash=old.composition_hash).pk
        )


def test_rule_4_a_curator_locked_summary_is_never_overwritten(planted_csv: Path) -> None:
    slug, summaries = _summarised(planted_csv)
    locked = summaries[0]
    ClusterSummary.objects.filter(pk=locked.pk).update(human_locked=True)
    # planning: with force, the locked composition is kept, the others regenerate
    run, misses = _planned(slug, force=True)
    assert len(misses) == 2
    kept = next(t for t in _tasks(run) if t.summary_id == locked.pk)
    assert (kept.state, kept.last_error) == (TaskState.SKIPPED, LOCKED_MESSAGE)
    # storing: a summary locked while a forced task generated is kept too
    other = next(s for s in summaries if s.pk != locked.pk)
    ClusterSummary.objects.filter(pk=other.pk).update(human_locked=True)
    task_id = next(
        t.pk
        for t in _tasks(run)
        if t.pk in misses and t.cluster.composition_hash == other.composition_hash
    )
    summary_task_execute(task_id=task_id)
    task = SummaryTask.objects.get(pk=task_id)
    assert task.state == TaskState.SKIPPED and task.summary_id == other.pk
    assert task.last_error.startswith("kept: a curator set this summary's status")
    assert (
        current_summaries(cluster_type="functional", hashes=[other.composition_hash]).get() == other
    )


def test_rule_5_a_summary_stored_meanwhile_wins_over_an_unforced_result(
    planted_csv: Path,
) -> None:
    slug = import_planted(planted_csv)
    run, misses = _planned(slug)
    assert len(misses) == 3
    first = SummaryTask.objects.select_related("cluster").get(pk=misses[0])
    meanwhile = ClusterSummary.objects.create(  # as another job would have stored it
        composition_hash=first.cluster.composition_hash,
        cluster_type="functional",
        dataset=run.dataset,
        provider="extractive",
        model="extractive",
        prompt_version="functional-v2",
    )
    summary_task_execute(task_id=first.pk)
    first.refresh_from_db()
    assert (first.state, first.summary_id, first.last_error) == (
        TaskState.SKIPPED,
        meanwhile.pk,
        FILLED_MEANWHILE_MESSAGE,
    )
    assert (
        current_summaries(cluster_type="functional", hashes=[meanwhile.composition_hash]).get()
        == meanwhile
    )
