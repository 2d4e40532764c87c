"""Chunked chord headers: several clusters per Celery message for large realtime jobs, one per
message for small ones, and a chunk that runs past its time budget hands the rest on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm import tasks
from llm.models import SummaryTask, TaskState
from llm.services.requeue import TaskRequeued
from tests.llm.services.test_call_log import _planned


@pytest.mark.parametrize(
    ("count", "per_message", "sizes"),
    [
        (3, 10, [1, 1, 1]),  # small jobs: one cluster per message, every thread busy
        (127, 10, [1] * 127),
        (128, 10, [2] * 64),
        (1000, 10, [10] * 100),
        (1005, 10, [10] * 100 + [5]),
        (10000, 10, [10] * 1000),
        (10000, 1, [1] * 10000),  # LLM_CLUSTERS_PER_MESSAGE=1: the old one-task-per-cluster
    ],
)
def test_chunks_keep_at_least_64_messages(
    settings, count: int, per_message: int, sizes: list[int]
) -> None:
    settings.LLM_CLUSTERS_PER_MESSAGE = per_message
    ids = list(range(count))
    chunks = tasks._chunks(ids)
    assert [len(c) for c in chunks] == sizes
    assert [i for c in chunks for i in c] == ids  # every task once, in order


@pytest.mark.django_db
def test_a_chunk_summarises_each_cluster_and_skips_finished_ones(planted_csv: Path) -> None:
    _, ids = _planned(planted_csv)
    assert tasks.summarise_clusters.apply(args=(ids,)).get() == 3
    states = set(SummaryTask.objects.filter(pk__in=ids).values_list("state", flat=True))
    assert states == {TaskState.SUCCEEDED}
    calls = SummaryTask.objects.get(pk=ids[0]).calls.count()
    # a redelivered chunk finds every task finished: nothing is called again
    assert tasks.summarise_clusters.apply(args=(ids,)).get() == 3
    assert SummaryTask.objects.get(pk=ids[0]).calls.count() == calls


@pytest.mark.django_db
def test_a_chunk_past_its_budget_sends_the_rest_as_a_new_message(
    planted_csv: Path, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ids = _planned(planted_csv)
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0  # the budget is spent after the first cluster
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.summarise_clusters, "delay", lambda rest: sent.append(rest))
    assert tasks.summarise_clusters.apply(args=(ids,)).get() == 1
    assert sent == [ids[1:]]
    assert SummaryTask.objects.get(pk=ids[0]).state == TaskState.SUCCEEDED
    assert set(SummaryTask.objects.filter(pk__in=ids[1:]).values_list("state", flat=True)) == {
        TaskState.PENDING
    }


@pytest.mark.django_db
def test_a_requeued_cluster_leaves_its_chunk_alone_with_its_delay(
    planted_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient failure after the last try (``TaskRequeued``, see
    tests/llm/test_rate_limit_storm.py for the real path) sends that cluster alone back to the
    queue with its countdown; the chunk goes on with the others instead of failing."""
    _, ids = _planned(planted_csv)
    real = tasks.summary_task_execute

    def flaky(*, task_id: int, loaded: Any = None) -> str | None:
        if task_id == ids[1]:
            raise TaskRequeued(7.5, "generation: HTTP 503 after the last try")
        return real(task_id=task_id, loaded=loaded)

    sent: list[tuple[tuple[int, ...], float]] = []
    monkeypatch.setattr(tasks, "summary_task_execute", flaky)
    monkeypatch.setattr(
        tasks.summarise_cluster,
        "apply_async",
        lambda args, countdown: sent.append((tuple(args), countdown)),
    )
    assert tasks.summarise_clusters.apply(args=(ids,)).get() == 3
    assert sent == [((ids[1],), 7.5)]
    states = {t.pk: t.state for t in SummaryTask.objects.filter(pk__in=ids)}
    assert states[ids[0]] == states[ids[2]] == TaskState.SUCCEEDED
