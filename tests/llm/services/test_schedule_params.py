"""Schedules own their parameters (issue 12, item 5): `schedule_rerun --param` stores them in
the beat row, beat's entry passes them to ``llm.scheduled_rerun``, ad-hoc runs do not change
them, the admin shows and checks them, and bad ones are refused with one line (exit 2)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.forms.models import model_to_dict
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from clustering.domain.params import ClusteringParams
from clustering.models import ClusteringRun, RunStatus
from config.celery import app
from llm.schedule_admin import RerunAwarePeriodicTaskForm
from llm.services.pipeline import pipeline_start
from llm.services.schedules import RERUN_TASK
from llm.tasks import scheduled_rerun
from tests.support.planted_runs import PARAMS, complete_eagerly, import_planted

pytestmark = pytest.mark.django_db

DEFAULTS = ClusteringParams().to_dict()


def _run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def _schedule() -> PeriodicTask:
    return PeriodicTask.objects.get(task=RERUN_TASK)


def _trigger(task: PeriodicTask, callbacks_fixture: Any) -> ClusteringRun:
    """Run the task with what beat's database scheduler would send for the row."""
    entry = ModelEntry(task, app=app)
    assert entry.task == RERUN_TASK
    with callbacks_fixture(execute=False):
        run_id = scheduled_rerun(*entry.args, **entry.kwargs)
    assert run_id is not None
    return ClusteringRun.objects.get(pk=run_id)


def test_the_scheduled_run_uses_the_schedules_params_not_an_adhoc_runs(
    planted_csv: Path, django_capture_on_commit_callbacks: Any
) -> None:
    planted = import_planted(planted_csv)
    code, out, err = _run(
        "schedule_rerun",
        "--dataset",
        planted,
        "--cron",
        "0 3 * * 1",
        "--param",
        "k=5",
        "--param",
        "min_cluster_size=5",
        "--param",
        "seed=3",
        "--param",
        "resolution=0.8",
    )
    assert code == 0, err
    wanted = {**DEFAULTS, "k": 5, "min_cluster_size": 5, "seed": 3, "resolution": 0.8}
    kwargs = json.loads(_schedule().kwargs)
    assert kwargs == {"dataset": planted, "cluster_type": "functional", "params": wanted}
    assert '"seed": 3' in out

    # an exploratory ad-hoc run with other parameters, completed
    with django_capture_on_commit_callbacks(execute=False):
        adhoc = pipeline_start(dataset_slug=planted, params={**PARAMS, "seed": 99, "k": 7})
    assert complete_eagerly(adhoc).status == "succeeded"
    assert ClusteringRun.objects.get(pk=adhoc.pk).status == RunStatus.SUCCEEDED

    run = _trigger(_schedule(), django_capture_on_commit_callbacks)
    assert run.params == wanted
    assert run.params != ClusteringRun.objects.get(pk=adhoc.pk).params
    assert json.loads(_schedule().kwargs)["params"] == wanted  # the schedule is unchanged


def test_a_new_schedule_copies_the_latest_succeeded_run_once(
    planted_csv: Path, django_capture_on_commit_callbacks: Any
) -> None:
    planted = import_planted(planted_csv)
    with django_capture_on_commit_callbacks(execute=False):
        first = pipeline_start(dataset_slug=planted, params={**PARAMS, "seed": 11})
    ClusteringRun.objects.filter(pk=first.pk).update(status=RunStatus.SUCCEEDED)
    assert _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * 1")[0] == 0
    stored = json.loads(_schedule().kwargs)["params"]
    assert stored == first.params

    with django_capture_on_commit_callbacks(execute=False):
        later = pipeline_start(dataset_slug=planted, params={**PARAMS, "seed": 12})
    ClusteringRun.objects.filter(pk=later.pk).update(status=RunStatus.SUCCEEDED)
    run = _trigger(_schedule(), django_capture_on_commit_callbacks)
    assert run.params == first.params and run.params["seed"] == 11


def test_params_update_merges_and_keeps_the_rest(planted_csv: Path) -> None:
    planted = import_planted(planted_csv)
    args = ["schedule_rerun", "--dataset", planted]
    assert _run(*args, "--cron", "0 3 * * 1", "--param", "seed=5", "--param", "k=6")[0] == 0
    code, _, err = _run(*args, "--param", "k=9", "--provider", "gemini")
    assert code == 0, err
    kwargs = json.loads(_schedule().kwargs)
    assert kwargs["params"] == {**DEFAULTS, "seed": 5, "k": 9}
    assert kwargs["provider"] == "gemini"
    # a later update without --provider keeps the provider; the crontab is kept too
    assert _run(*args, "--disable")[0] == 0
    task = _schedule()
    assert json.loads(task.kwargs)["provider"] == "gemini" and not task.enabled
    assert task.crontab is not None and task.crontab.hour == "3"


def test_the_provider_of_a_schedule_is_the_runs_intent(
    planted_csv: Path, django_capture_on_commit_callbacks: Any
) -> None:
    planted = import_planted(planted_csv)
    _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * 1", "--provider", "gemini")
    run = _trigger(_schedule(), django_capture_on_commit_callbacks)
    assert run.intent["provider"] == "gemini" and run.intent["force"] is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--param", "k=1"], "--param k: must be an integer from 2 to 200"),
        (["--param", "k=ten"], "--param k:"),
        (["--param", "nope=3"], "--param nope: unknown parameter"),
        (["--param", "k"], "--param must look like NAME=VALUE"),
        (["--param", "=3"], "--param must look like NAME=VALUE"),
        (["--param", "stability_fraction=true"], "--param stability_fraction"),
        (["--provider", "nope"], "--provider must be one of"),
    ],
)
def test_bad_params_exit_2_with_one_line_and_store_nothing(
    planted_csv: Path, extra: list[str], message: str
) -> None:
    planted = import_planted(planted_csv)
    code, out, err = _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * 1", *extra)
    assert code == 2
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert out == ""
    assert not PeriodicTask.objects.filter(task=RERUN_TASK).exists()
    assert CrontabSchedule.objects.count() == 0


def test_bad_params_leave_an_existing_schedule_alone(planted_csv: Path) -> None:
    planted = import_planted(planted_csv)
    args = ["schedule_rerun", "--dataset", planted]
    assert _run(*args, "--cron", "0 3 * * 1", "--param", "seed=5")[0] == 0
    before = _schedule().kwargs
    code, _, err = _run(*args, "--param", "seed=-1", "--cron", "0 4 * * 1")
    assert code == 2 and "--param seed" in err
    task = _schedule()
    assert task.kwargs == before and task.crontab is not None and task.crontab.hour == "3"


def test_a_schedule_stored_without_params_is_pinned_at_its_first_rerun(
    planted_csv: Path, django_capture_on_commit_callbacks: Any
) -> None:
    planted = import_planted(planted_csv)
    assert _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * 1")[0] == 0
    task = _schedule()
    task.kwargs = json.dumps({"dataset": planted, "cluster_type": "functional"})  # as before
    task.save()
    with django_capture_on_commit_callbacks(execute=False):
        old = pipeline_start(dataset_slug=planted, params={**PARAMS, "seed": 21})
    ClusteringRun.objects.filter(pk=old.pk).update(status=RunStatus.SUCCEEDED)
    first = _trigger(_schedule(), django_capture_on_commit_callbacks)
    assert first.params == old.params
    assert json.loads(_schedule().kwargs)["params"] == old.params
    ClusteringRun.objects.filter(pk=first.pk).update(status=RunStatus.CANCELLED)
    with django_capture_on_commit_callbacks(execute=False):
        adhoc = pipeline_start(dataset_slug=planted, params={**PARAMS, "seed": 22})
    ClusteringRun.objects.filter(pk=adhoc.pk).update(status=RunStatus.SUCCEEDED)
    second = _trigger(_schedule(), django_capture_on_commit_callbacks)
    assert second.params == old.params


def test_list_shows_the_params(planted_csv: Path) -> None:
    planted = import_planted(planted_csv)
    _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * 1", "--param", "seed=8")
    code, out, _ = _run("schedule_rerun", "--list")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split()[-1] == "params"
    assert '"seed":8' in row


def _form_data(task: PeriodicTask, **changes: Any) -> dict[str, Any]:
    data = {k: ("" if v is None else v) for k, v in model_to_dict(task).items()}
    data.update(changes)
    return data


def test_admin_shows_and_checks_the_params(planted_csv: Path, admin_client: Any) -> None:
    planted = import_planted(planted_csv)
    _run("schedule_rerun", "--dataset", planted, "--cron", "0 3 * * 1", "--param", "seed=8")
    task = _schedule()
    listing = admin_client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert "Rerun parameters" in listing and "seed=8" in listing
    page = admin_client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")
    assert page.status_code == 200 and "&quot;seed&quot;: 8" in page.content.decode()

    bad = {"dataset": planted, "cluster_type": "functional", "params": {"k": 0}}
    form = RerunAwarePeriodicTaskForm(data=_form_data(task, kwargs=json.dumps(bad)), instance=task)
    assert not form.is_valid()
    assert "--param k: must be an integer from 2 to 200" in form.errors["kwargs"][0]
    assert json.loads(_schedule().kwargs)["params"]["seed"] == 8

    good = {"dataset": planted, "cluster_type": "functional", "params": {"seed": 4}}
    form = RerunAwarePeriodicTaskForm(data=_form_data(task, kwargs=json.dumps(good)), instance=task)
    assert form.is_valid(), form.errors
    form.save()
    assert json.loads(_schedule().kwargs)["params"] == {**DEFAULTS, "seed": 4}

    # other periodic tasks are edited as before
    other = PeriodicTask.objects.exclude(task=RERUN_TASK).first()
    assert other is not None
    form = RerunAwarePeriodicTaskForm(
        data=_form_data(other, kwargs=json.dumps({"anything": 1})), instance=other
    )
    assert form.is_valid(), form.errors
