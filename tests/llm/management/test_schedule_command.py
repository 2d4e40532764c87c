"""`schedule_rerun` and `setup_maintenance`: stored beat rows, idempotence, bad input, the admin,
and what beat's database scheduler makes of the rows."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from clustering.domain.params import ClusteringParams
from clustering.models import Dataset
from config.celery import app
from llm.services.reconcile import RECONCILE_SCHEDULE_NAME, RECONCILE_TASK
from llm.services.schedules import RERUN_TASK, ScheduleError, cron_parse
from tests.support.planted_runs import import_planted

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def _reruns() -> list[PeriodicTask]:
    return list(PeriodicTask.objects.filter(task=RERUN_TASK))


def test_creates_one_schedule_with_crontab_and_kwargs(planted_csv: Path) -> None:
    planted = import_planted(planted_csv)
    code, out, err = _run(
        "schedule_rerun", "--dataset", planted, "--type", "functional", "--cron", "0 3 * * 1"
    )
    assert code == 0, err
    assert "created schedule 'rerun planted functional'" in out
    [task] = _reruns()
    assert task.name == "rerun planted functional"
    assert task.enabled and not task.one_off
    defaults = ClusteringParams().to_dict()  # no run yet: the schedule stores the defaults
    kwargs = {"dataset": "planted", "cluster_type": "functional", "params": defaults}
    assert json.loads(task.kwargs) == kwargs
    assert json.loads(task.args) == []
    assert task.crontab is not None and task.interval is None
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "0",
        "3",
        "*",
        "*",
        "1",
    )
    assert str(cron.timezone) == "UTC"
    # beat's database scheduler turns the row into an entry it can evaluate
    entry = ModelEntry(task, app=app)
    assert entry.task == RERUN_TASK
    assert entry.kwargs == kwargs
    assert entry.options["queue"] == "default"
    assert entry.is_due().next > 0


def test_same_command_again_is_idempotent_and_updates_in_place(planted_csv: Path) -> None:
    planted = import_planted(planted_csv)
    args = ["schedule_rerun", "--dataset", planted, "--type", "functional"]
    assert _run(*args, "--cron", "0 3 * * 1")[0] == 0
    code, out, _ = _run(*args, "--cron", "0 3 * * 1")
    assert code == 0 and "updated schedule" in out
    assert len(_reruns()) == 1 and CrontabSchedule.objects.count() == 1
    first_id = _reruns()[0].pk
    # a new cron and time zone update the same row; the unused crontab is removed
    code, out, err = _run(*args, "--cron", "30 2 1 * *", "--timezone", "Europe/Berlin")
    assert code == 0, err
    [task] = _reruns()
    assert task.pk == first_id
    assert task.crontab is not None
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_month) == ("30", "2", "1")
    assert str(task.crontab.timezone) == "Europe/Berlin"
    assert CrontabSchedule.objects.count() == 1
    # --disable without --cron keeps the crontab and time zone
    code, out, _ = _run(*args, "--disable")
    assert code == 0 and "disabled" in out
    [task] = _reruns()
    assert not task.enabled and task.crontab is not None and task.crontab.minute == "30"
    assert str(task.crontab.timezone) == "Europe/Berlin"
    # and running it again without --disable enables it
    assert _run(*args)[0] == 0
    assert _reruns()[0].enabled


def test_type_defaults_to_the_dataset_kind_and_types_get_separate_schedules(
    planted_csv: Path,
) -> None:
    planted = import_planted(planted_csv)
    assert _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * *")[0] == 0
    assert (
        _run("schedule_rerun", "--dataset", planted, "--type", "phenotype", "--cron", "0 4 * * *")[
            0
        ]
        == 0
    )
    names = sorted(t.name for t in _reruns())
    assert names == ["rerun planted functional", "rerun planted phenotype"]


def test_builtin_dataset_is_accepted_without_registering_it() -> None:
    code, _, err = _run("schedule_rerun", "--dataset", "hpo-ndd", "--cron", "0 3 * * 1")
    assert code == 0, err
    assert _reruns()[0].name == "rerun hpo-ndd phenotype"
    assert not Dataset.objects.filter(slug="hpo-ndd").exists()  # registered on first run only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope", "--cron", "0 3 * * 1"], "unknown dataset 'nope'"),
        (["--dataset", "planted", "--type", "genes", "--cron", "0 3 * * 1"], "--type must be"),
        (["--dataset", "planted", "--cron", "0 3 * *"], "exactly 5 fields"),
        (["--dataset", "planted", "--cron", "0 3 * * 1 2"], "exactly 5 fields"),
        (["--dataset", "planted", "--cron", "60 3 * * 1"], "minute field '60'"),
        (["--dataset", "planted", "--cron", "0 24 * * 1"], "hour field '24'"),
        (["--dataset", "planted", "--cron", "0 3 0 * *"], "day-of-month field '0'"),
        (["--dataset", "planted", "--cron", "0 3 * 13 *"], "month field '13'"),
        (["--dataset", "planted", "--cron", "0 3 * * 8"], "day-of-week field '8'"),
        (["--dataset", "planted", "--cron", "x 3 * * 1"], "minute field 'x'"),
        (["--dataset", "planted", "--cron", "@daily"], "exactly 5 fields"),
        (["--dataset", "planted", "--cron", "0 3 * * 1", "--timezone", "Mars/Base"], "--timezone"),
        (["--dataset", "planted"], "--cron is required"),
        (["--cron", "0 3 * * 1"], "--dataset is required"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_stores_nothing(
    planted_csv: Path, args: list[str], message: str
) -> None:
    import_planted(planted_csv)
    datasets_before = Dataset.objects.count()
    code, out, err = _run("schedule_rerun", *args)
    assert code == 2
    assert message in err, err
    assert len(err.strip().splitlines()) == 1
    assert out == ""
    assert not _reruns() and CrontabSchedule.objects.count() == 0
    assert Dataset.objects.count() == datasets_before


def test_bad_update_leaves_the_existing_schedule_alone(planted_csv: Path) -> None:
    planted = import_planted(planted_csv)
    assert _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * 1")[0] == 0
    code, _, _ = _run("schedule_rerun", "--dataset", planted, "--cron", "0 99 * * 1", "--disable")
    assert code == 2
    [task] = _reruns()
    assert task.enabled and task.crontab is not None and task.crontab.hour == "3"


@pytest.mark.parametrize(
    "expression", ["*/15 * * * *", "0 3 * * mon-fri", "0,30 1-5/2 1 jan *", "0 0 1 1 0"]
)
def test_cron_accepts_ranges_steps_and_names(expression: str) -> None:
    assert str(cron_parse(expression)) == expression


def test_cron_rejects_sunday_as_7_which_celery_cannot_evaluate() -> None:
    with pytest.raises(ScheduleError, match="day-of-week"):
        cron_parse("0 3 * * 7")


def test_list_prints_the_schedules(planted_csv: Path) -> None:
    planted = import_planted(planted_csv)
    code, out, _ = _run("schedule_rerun", "--list")
    assert code == 0 and "no rerun schedules" in out
    _run("schedule_rerun", "--dataset", planted, "--cron", "15 4 * * 1", "--timezone", "UTC")
    _run("schedule_rerun", "--dataset", planted, "--type", "phenotype", "--cron", "0 5 * * *")
    _run("schedule_rerun", "--dataset", planted, "--type", "phenotype", "--disable")
    code, out, _ = _run("schedule_rerun", "--list")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["name", "cron", "timezone"]
    assert "rerun planted functional" in lines[1] and "15 4 * * 1" in lines[1]
    assert "enabled" in lines[1] and "never" in lines[1]
    assert "rerun planted phenotype" in lines[2] and "disabled" in lines[2]


def test_admin_lists_and_edits_the_schedules(planted_csv: Path, admin_client) -> None:
    planted = import_planted(planted_csv)
    _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * 1")
    task = _reruns()[0]
    response = admin_client.get("/admin/django_celery_beat/periodictask/")
    assert response.status_code == 200
    assert "rerun planted functional" in response.content.decode()
    response = admin_client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")
    assert response.status_code == 200
    assert admin_client.get("/admin/django_celery_beat/crontabschedule/").status_code == 200


def test_maintenance_schedule_is_registered_by_migrate() -> None:
    task = PeriodicTask.objects.get(name=RECONCILE_SCHEDULE_NAME)
    assert task.task == RECONCILE_TASK and task.enabled
    assert task.interval is not None
    assert (task.interval.every, task.interval.period) == (60, IntervalSchedule.SECONDS)
    entry = ModelEntry(task, app=app)
    assert entry.options["queue"] == "default"
    assert entry.options["expires"] == 120


def test_setup_maintenance_is_idempotent_and_keeps_admin_changes() -> None:
    PeriodicTask.objects.filter(name=RECONCILE_SCHEDULE_NAME).update(enabled=False)
    code, out, _ = _run("setup_maintenance")
    assert code == 0 and "already registered" in out and "disabled" in out
    assert PeriodicTask.objects.filter(task=RECONCILE_TASK).count() == 1
    assert not PeriodicTask.objects.get(name=RECONCILE_SCHEDULE_NAME).enabled
    PeriodicTask.objects.filter(name=RECONCILE_SCHEDULE_NAME).delete()
    code, out, _ = _run("setup_maintenance")
    assert code == 0 and out.startswith("registered")
    assert PeriodicTask.objects.get(name=RECONCILE_SCHEDULE_NAME).enabled
    assert IntervalSchedule.objects.filter(every=60, period="seconds").count() == 1
