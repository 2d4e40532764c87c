"""The `cluster` and `dataset_import` commands: output and exit codes."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from clustering.models import Cluster, ClusteringRun, Dataset

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_cluster_command_prints_a_table(planted_csv: Path) -> None:
    code, out, _ = _run(
        "dataset_import", str(planted_csv), "--slug", "planted", "--type", "functional"
    )
    assert code == 0 and "36 entities" in out
    code, out, err = _run("cluster", "--dataset", "planted", "--k", "5", "--min-cluster-size", "5")
    assert code == 0, err
    assert "3 clusters" in out
    for cluster in Cluster.objects.all():
        assert cluster.composition_hash[:12] in out
    assert "FDR" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--dataset", "hpo-ndd", "--resolution", "0"], "--resolution must be a positive"),
        (["--dataset", "hpo-ndd", "--resolution", "-2"], "--resolution must be a positive"),
        (["--dataset", "hpo-ndd", "--k", "1"], "--k must be an integer >= 2"),
        (["--dataset", "hpo-ndd", "--seed", "-1"], "--seed must be"),
    ],
)
def test_cluster_command_bad_input_exits_2(args: list[str], message: str) -> None:
    code, _, err = _run("cluster", *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not ClusteringRun.objects.exists()


def test_dataset_import_command_reports_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("entity_id,symbol,term_id,term_name,category\ne1,A,t1,one,C\ne2,B,,two,C\n")
    code, _, err = _run("dataset_import", str(path), "--slug", "bad", "--type", "phenotype")
    assert code == 2
    assert "line 3: empty term_id" in err and "nothing imported" in err
    assert not Dataset.objects.filter(slug="bad").exists()
