"""`run_pipeline` refuses out-of-bound options (the bounds table shared with the API and
`cluster`) with one line naming the option, exit code 2, and writes no row."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from clustering.models import ClusteringRun, Dataset
from clustering.services import dataset_import
from llm.models import GenerationJob

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[int, str]:
    err = StringIO()
    try:
        call_command("run_pipeline", *args, stdout=StringIO(), stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), err.getvalue()
    return 0, err.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resolution", "inf"], "error: --resolution must be a number in (0, 100]"),
        (["--resolution", "1e308"], "error: --resolution must be a number in (0, 100]"),
        (["--seed", str(2**64)], "error: --seed must be an integer from 0 to 4294967295"),
        (["--k", "1000000"], "error: --k must be an integer from 2 to 200"),
        (["--min-cluster-size", "100000"], "error: --min-cluster-size must be an integer"),
        (["--k", "36"], "error: --k must be below the dataset's 36 entities, got 36"),
    ],
)
def test_out_of_bound_options_exit_2_and_write_nothing(
    planted_csv: Path, args: list[str], message: str
) -> None:
    dataset_import(path=planted_csv, slug="planted", kind="functional")
    code, err = _run("--dataset", "planted", "--provider", "extractive", *args)
    assert code == 2
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not ClusteringRun.objects.exists() and not GenerationJob.objects.exists()
    assert Dataset.objects.count() == 1


def test_a_second_start_while_one_is_active_exits_2(planted_csv: Path) -> None:
    dataset = dataset_import(path=planted_csv, slug="planted", kind="functional")
    busy = ClusteringRun.objects.create(dataset=dataset, cluster_type="functional", params={})
    code, err = _run("--dataset", "planted", "--provider", "extractive")
    assert code == 2
    assert err.strip() == (
        f"error: --dataset: run {busy.pk} of planted is still active; wait for it or cancel it"
    )
    assert ClusteringRun.objects.count() == 1
