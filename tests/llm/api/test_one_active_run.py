"""One active run per dataset and cluster type, under real concurrency: two simultaneous
``POST /api/runs/`` (threads, each with its own PostgreSQL connection) give exactly one 202 and
one 409 naming the run that won, and only one run row."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

import clustering.services as services
import llm.tasks
from clustering.models import ClusteringRun
from llm.models import GenerationJob, JobStatus
from tests.support.world import build_world, client_for, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


class _NoChain:
    def apply_async(self) -> None:
        """Nothing is enqueued: the test is about the rows, not the worker."""


@pytest.fixture
def slow_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen the race: every active-run check takes an extra 0.5 s before the run is created,
    so without the dataset row lock both requests would pass it."""
    real = services.active_run

    def slow(**kwargs: Any) -> Any:
        found = real(**kwargs)
        time.sleep(0.5)
        return found

    monkeypatch.setattr(services, "active_run", slow)
    monkeypatch.setattr(llm.tasks, "pipeline_chain", lambda **kwargs: _NoChain())


def _post_together(path: str, payload: dict[str, Any], users: list[Any]) -> list[Any]:
    barrier = threading.Barrier(len(users))
    responses: list[Any] = [None] * len(users)
    errors: list[BaseException] = []

    def send(index: int, user: Any) -> None:
        try:
            client = client_for(user)
            barrier.wait(timeout=60)
            responses[index] = client.post(path, payload, format="json")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=send, args=(i, u)) for i, u in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return responses


def test_two_simultaneous_creates_give_one_202_and_one_409(slow_check: None) -> None:
    world = build_world()
    GenerationJob.objects.filter(pk=world.job.pk).update(status=JobStatus.SUCCEEDED)
    users = [make_user("runner", "runner-a"), make_user("runner", "runner-b")]
    responses = _post_together("/api/runs/", {"dataset": "demo-genes"}, users)
    codes = sorted(r.status_code for r in responses)
    assert codes == [202, 409], [r.json() for r in responses]
    accepted = next(r for r in responses if r.status_code == 202).json()
    conflict = next(r for r in responses if r.status_code == 409).json()
    assert conflict["active_run"] == accepted["id"]
    assert ClusteringRun.objects.count() == 2  # the world's finished run and the winner


def test_two_simultaneous_reruns_give_one_202_and_one_409(slow_check: None) -> None:
    world = build_world()
    GenerationJob.objects.filter(pk=world.job.pk).update(status=JobStatus.SUCCEEDED)
    users = [make_user("runner", "runner-a"), make_user("staff", "staff-b")]
    responses = _post_together(f"/api/runs/{world.run.pk}/rerun/", {}, users)
    assert sorted(r.status_code for r in responses) == [202, 409]
    winner = next(r for r in responses if r.status_code == 202).json()["id"]
    assert next(r for r in responses if r.status_code == 409).json()["active_run"] == winner
    assert ClusteringRun.objects.count() == 2
