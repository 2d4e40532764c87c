"""The `cluster` and `dataset_import` commands: output and exit codes."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command, load_command_class

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
        (["--dataset", "nope"], "--dataset: unknown dataset 'nope'"),
        (
            ["--dataset", "hpo-ndd", "--resolution", "0"],
            "--resolution must be a number in (0, 100]",
        ),
        (["--dataset", "hpo-ndd", "--resolution", "-2"], "--resolution must be a number in (0"),
        (["--dataset", "hpo-ndd", "--resolution", "inf"], "--resolution must be a number in (0"),
        (["--dataset", "hpo-ndd", "--resolution", "nan"], "--resolution must be a number in (0"),
        (["--dataset", "hpo-ndd", "--resolution", "1e308"], "--resolution must be a number in"),
        (["--dataset", "hpo-ndd", "--resolution", "high"], "--resolution must be a number in"),
        (["--dataset", "hpo-ndd", "--k", "1"], "--k must be an integer from 2 to 200"),
        (["--dataset", "hpo-ndd", "--k", "1000000"], "--k must be an integer from 2 to 200"),
        (["--dataset", "hpo-ndd", "--k", "5.5"], "--k must be an integer from 2 to 200"),
        (
            ["--dataset", "hpo-ndd", "--seed", "-1"],
            "--seed must be an integer from 0 to 4294967295",
        ),
        (["--dataset", "hpo-ndd", "--seed", str(2**64)], "--seed must be an integer from 0 to"),
        (["--dataset", "hpo-ndd", "--min-cluster-size", "100000"], "--min-cluster-size must be"),
        (["--dataset", "hpo-ndd", "--min-cluster-size", "1"], "--min-cluster-size must be"),
        (["--dataset", "hpo-ndd", "--top", "-1"], "--top must be an integer from 1 to 50"),
        (["--dataset", "hpo-ndd", "--top", "0"], "--top must be an integer from 1 to 50"),
    ],
)
def test_cluster_command_bad_input_exits_2(args: list[str], message: str) -> None:
    datasets = Dataset.objects.count()
    code, _, err = _run("cluster", *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: --")
    assert not ClusteringRun.objects.exists()
    assert Dataset.objects.count() == datasets


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "36"], "--k must be below the dataset's 36 entities, got 36"),
        (
            ["--min-cluster-size", "37"],
            "--min-cluster-size must be at most the dataset's 36 entities, got 37",
        ),
    ],
)
def test_cluster_command_bounds_that_depend_on_the_dataset(
    planted_csv: Path, args: list[str], message: str
) -> None:
    assert (
        _run("dataset_import", str(planted_csv), "--slug", "planted", "--type", "functional")[0]
        == 0
    )
    code, _, err = _run("cluster", "--dataset", "planted", *args)
    assert code == 2
    assert err.strip() == f"error: {message}"
    assert not ClusteringRun.objects.exists()
    # the largest allowed values are accepted
    code, _, err = _run("cluster", "--dataset", "planted", "--k", "35", "--min-cluster-size", "36")
    assert code == 0, err
    assert ClusteringRun.objects.get().params["k"] == 35


def test_cluster_command_refuses_while_a_run_is_active(planted_csv: Path) -> None:
    _run("dataset_import", str(planted_csv), "--slug", "planted", "--type", "functional")
    busy = ClusteringRun.objects.create(
        dataset=Dataset.objects.get(slug="planted"), cluster_type="functional", params={}
    )
    code, _, err = _run("cluster", "--dataset", "planted")
    assert code == 2
    assert err.strip() == (
        f"error: --dataset: run {busy.pk} of planted is still active; wait for it or cancel it"
    )
    assert ClusteringRun.objects.count() == 1


def test_dataset_import_command_reports_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("entity_id,symbol,term_id,term_name,category\ne1,A,t1,one,C\ne2,B,,two,C\n")
    code, _, err = _run("dataset_import", str(path), "--slug", "bad", "--type", "phenotype")
    assert code == 2
    assert "line 3: empty term_id" in err and "nothing imported" in err
    assert not Dataset.objects.filter(slug="bad").exists()


def test_dataset_import_command_refuses_bidi_and_control_characters(tmp_path: Path) -> None:
    path = tmp_path / "spoof.csv"
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n"
        "e1,SCN1A,t1,one,C\n"
        "e2,SCN\u202e2A,t1,one,C\n"
        'e3,"MECP\n2",t1,one,C\n'
        "e4,CDKL5\u200f,t1,one,C\n",
        encoding="utf-8",
    )
    code, _, err = _run("dataset_import", str(path), "--slug", "spoof", "--type", "functional")
    assert code == 2
    assert "line 3: forbidden character in symbol (bidirectional control character U+202E)" in err
    assert "line 5: forbidden character in symbol (control character U+000A)" in err
    assert "line 6: forbidden character in symbol (bidirectional control character U+200F)" in err
    assert not Dataset.objects.exists()


def test_the_readme_shows_the_bounds_table_and_every_parameter_has_an_option() -> None:
    from clustering.domain.bounds import PARAM_BOUNDS, bounds_markdown

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    assert bounds_markdown() in readme
    for command in ("cluster", "run_pipeline"):
        app = "clustering" if command == "cluster" else "llm"
        text = load_command_class(app, command).create_parser("manage.py", command).format_help()
        for bound in PARAM_BOUNDS.values():
            assert bound.option in text, (command, bound.option)
