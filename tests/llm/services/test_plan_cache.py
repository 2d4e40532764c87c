"""Planning a rerun resolves the composition-hash cache in bulk: every hit is marked skipped and
linked to the cached summary with a constant number of statements (one ``INSERT ... SELECT``
that looks the cache up and writes every task, hits already marked; a replan marks hits among
existing tasks with one ``UPDATE``), a forced rerun keeps curator-locked summaries, and misses are
returned for the provider."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clustering.models import Cluster
from clustering.services import clustering_run_create, clustering_run_execute
from llm.models import ClusterSummary, GenerationJob, SummaryTask, TaskState
from llm.services.cache import CACHE_HIT_MESSAGE, LOCKED_MESSAGE
from llm.services.generation import job_plan, job_start
from tests.support.planted_runs import PARAMS, complete_eagerly, import_planted

pytestmark = pytest.mark.django_db


def _plan_rerun(slug: str) -> tuple[int, list[int], list[str]]:
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    with CaptureQueriesContext(connection) as queries:
        misses = job_plan(run_id=run.pk)
    return run.pk, misses, [q["sql"] for q in queries.captured_queries]


def test_hits_are_marked_in_bulk_and_linked_to_the_cached_summary(planted_csv: Path) -> None:
    slug = import_planted(planted_csv)
    complete_eagerly(clustering_run_create(dataset_slug=slug, params=PARAMS))

    run_id, misses, sql = _plan_rerun(slug)

    assert misses == []
    tasks = list(SummaryTask.objects.filter(job__run_id=run_id).select_related("cluster"))
    assert len(tasks) == 3
    for task in tasks:
        cached = ClusterSummary.objects.get(
            composition_hash=task.cluster.composition_hash, is_current=True
        )
        assert (task.state, task.summary_id, task.last_error) == (
            TaskState.SKIPPED,
            cached.pk,
            CACHE_HIT_MESSAGE,
        )
        assert task.finished_at is not None
    task_inserts = [s for s in sql if s.startswith('INSERT INTO "llm_summarytask"')]
    task_updates = [s for s in sql if s.startswith("UPDATE") and '"llm_summarytask"' in s]
    lookups = [s for s in sql if '"llm_clustersummary"' in s]
    # one INSERT ... SELECT writes every task, the hits already marked: the cache lookup is its
    # join, and no task is written twice
    assert len(task_inserts) == 1 and "SELECT" in task_inserts[0]
    assert lookups == task_inserts
    assert task_updates == []
    statements = [s for s in sql if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert len(statements) <= 10, statements  # whatever the number of clusters


def test_forced_rerun_keeps_locked_summaries_and_returns_the_other_clusters(
    planted_csv: Path,
) -> None:
    slug = import_planted(planted_csv)
    first = complete_eagerly(clustering_run_create(dataset_slug=slug, params=PARAMS))
    hashes = list(Cluster.objects.filter(run=first.run).values_list("composition_hash", flat=True))
    locked = ClusterSummary.objects.get(composition_hash=hashes[0], is_current=True)
    ClusterSummary.objects.filter(pk=locked.pk).update(human_locked=True)

    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    GenerationJob.objects.create(
        run=run, provider="extractive", model="m", judge_model="m", force=True
    )
    misses = job_plan(run_id=run.pk)

    tasks = {t.cluster.composition_hash: t for t in SummaryTask.objects.filter(job__run=run)}
    kept = tasks[hashes[0]]
    assert (kept.state, kept.summary_id, kept.last_error) == (
        TaskState.SKIPPED,
        locked.pk,
        LOCKED_MESSAGE,
    )
    assert sorted(misses) == sorted(tasks[h].pk for h in hashes[1:])
    assert all(tasks[h].state == TaskState.PENDING for h in hashes[1:])


def test_tasks_created_before_the_plan_are_marked_by_one_update(planted_csv: Path) -> None:
    """A regeneration job's tasks exist before it starts: the hits among them are marked by
    the UPDATE path (the INSERT adds nothing), linked to the cached summary."""
    slug = import_planted(planted_csv)
    first = complete_eagerly(clustering_run_create(dataset_slug=slug, params=PARAMS))
    clusters = list(Cluster.objects.filter(run=first.run).order_by("number"))
    job = GenerationJob.objects.create(
        run=first.run,
        scope=GenerationJob.Scope.CLUSTERS,
        provider="extractive",
        model="m",
        judge_model="m",
    )
    SummaryTask.objects.bulk_create([SummaryTask(job=job, cluster=c) for c in clusters])
    with CaptureQueriesContext(connection) as queries:
        misses = job_start(job_id=job.pk)
    sql = [q["sql"] for q in queries.captured_queries]
    assert misses == []
    assert sum(1 for s in sql if s.startswith('UPDATE "llm_summarytask"')) == 1
    for task in SummaryTask.objects.filter(job=job).select_related("cluster"):
        cached = ClusterSummary.objects.get(
            composition_hash=task.cluster.composition_hash, is_current=True
        )
        assert (task.state, task.summary_id, task.last_error) == (
            TaskState.SKIPPED,
            cached.pk,
            CACHE_HIT_MESSAGE,
        )
    job.refresh_from_db()
    assert job.total == len(clusters)
