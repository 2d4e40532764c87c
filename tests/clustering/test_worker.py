"""The clustering task executed by a real Celery worker against Redis and PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import transaction

from clustering.models import ClusteringRun, RunStatus
from clustering.services import clustering_run_create
from clustering.tasks import cluster_run
from tests.support.waiting import wait_until

pytestmark = pytest.mark.worker

NO_REPEATS = {"stability_repeats": 0, "null_repeats": 0}


def _wait(run_id: int, timeout: float = 600.0) -> ClusteringRun:
    def final() -> ClusteringRun | None:
        run = ClusteringRun.objects.get(pk=run_id)
        return run if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) else None

    return wait_until(final, timeout, f"run {run_id} finished", interval=0.2)


def test_real_worker_clusters_hpo_ndd(celery_worker: object) -> None:
    # The worker's handling is under test (delivery, progress, a duplicate delivery), not the
    # stability subsamples and null rewirings, which repeat the clustering 20 times; they are
    # covered on the planted dataset (test_services) and on hpo-ndd by test_evidence_real.
    with transaction.atomic():
        run = clustering_run_create(dataset_slug="hpo-ndd", params=NO_REPEATS)
        transaction.on_commit(lambda: cluster_run.delay(run.pk))
    run = _wait(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.clusters.count() >= 10
    assert run.progress_message.startswith("Done")
    # a duplicate delivery of the same message changes nothing
    before = sorted(run.clusters.values_list("composition_hash", flat=True))
    cluster_run.delay(run.pk).get(timeout=60)
    run.refresh_from_db()
    assert run.attempts == 1
    assert sorted(run.clusters.values_list("composition_hash", flat=True)) == before
