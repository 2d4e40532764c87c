"""A clustering run is bounded by the worker's limits and says which one it hit: the soft time
limit (``SoftTimeLimitExceeded``, raised by Celery inside the task) and the address-space limit
of a worker child (``MemoryError`` from a real ``RLIMIT_AS``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from clustering.models import Cluster, RunStatus
from clustering.services import clustering_run_create, clustering_run_execute, dataset_import

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def _raise_at_step(exc: BaseException, step: int) -> Callable[[int, int, str], None]:
    """A progress callback raising ``exc`` when the run reaches ``step`` (as Celery's soft
    limit or an allocation does, in the middle of the computation)."""

    def progress(current: int, total: int, message: str) -> None:
        if current == step:
            raise exc

    return progress


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (SoftTimeLimitExceeded(), "time limit: clustering took longer than the worker's soft"),
        (MemoryError(), "memory limit: clustering needed more memory than the worker's limit"),
    ],
)
def test_a_run_past_a_worker_limit_fails_with_the_limit_named(
    planted_csv: Path, settings, exc: BaseException, reason: str
) -> None:
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 570
    settings.CELERY_WORKER_MEMORY_LIMIT_MB = 2048
    dataset_import(path=planted_csv, slug="planted", kind="functional")
    run = clustering_run_create(dataset_slug="planted", params={"k": 5, "min_cluster_size": 5})
    run = clustering_run_execute(run_id=run.pk, progress=_raise_at_step(exc, 3))
    assert run.status == RunStatus.FAILED
    assert run.error.startswith(reason)
    assert run.progress_message.startswith(f"Failed: {reason}")
    named = "570 s (CELERY_TASK_TIME_LIMIT)" if "time" in reason else "2048 MB"
    assert named in run.error.splitlines()[0]
    assert not Cluster.objects.filter(run=run).exists()


def test_the_worker_child_memory_limit_is_real() -> None:
    """In a fresh process, the limit the worker children get makes a 1 GB allocation fail with
    MemoryError while a small one still works."""
    code = (
        "import numpy as np\n"
        "from config.celery import memory_limit_apply\n"
        "memory_limit_apply(600)\n"
        "np.ones(10_000_000)\n"
        "try:\n"
        "    np.ones(1024 * 1024 * 128)\n"
        "except MemoryError:\n"
        "    print('MemoryError')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "MemoryError"
