"""`python manage.py schedule_rerun --dataset D [--type T] --cron "0 3 * * 1" [--timezone UTC]
[--param NAME=VALUE ...] [--provider P] [--disable]` creates or updates the dataset's rerun
schedule (one per dataset and cluster type) with the clustering parameters it reruns with;
`--list` prints every rerun schedule and its parameters. Beat (`celery -A config beat`) runs
them."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from llm.services.schedules import (
    ScheduleError,
    param_assignments_parse,
    rerun_schedule_list,
    rerun_schedule_save,
)


class Command(BaseCommand):
    help = (
        "Schedule periodic reruns of a dataset (recluster, summarise changed clusters only), "
        "or list the schedules."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", help="dataset slug, e.g. hpo-ndd")
        parser.add_argument(
            "--type", dest="cluster_type", help="phenotype or functional (default: the dataset's)"
        )
        parser.add_argument(
            "--cron",
            help='five cron fields "minute hour day-of-month month day-of-week", e.g. "0 3 * * 1"'
            " (03:00 on Mondays); may be left out to update an existing schedule",
        )
        parser.add_argument(
            "--timezone", help="IANA time zone of the cron fields (default UTC, or kept)"
        )
        parser.add_argument(
            "--disable", action="store_true", help="keep the schedule but stop running it"
        )
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a clustering parameter the schedule reruns with, e.g. --param k=20 --param "
            "resolution=1.5 (repeatable; merged over the stored ones; a new schedule starts "
            "from the latest succeeded run's parameters, else the defaults)",
        )
        parser.add_argument(
            "--provider", help="provider of the scheduled runs (default: LLM_PROVIDER then)"
        )
        parser.add_argument("--list", action="store_true", help="print the rerun schedules")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self._list()
            return
        if not options["dataset"]:
            self.stderr.write("error: --dataset is required (or use --list)")
            sys.exit(2)
        try:
            saved = rerun_schedule_save(
                dataset_slug=options["dataset"],
                cluster_type=options["cluster_type"],
                cron=options["cron"],
                tz=options["timezone"],
                enabled=not options["disable"],
                params=param_assignments_parse(options["param"]) or None,
                provider=options["provider"],
            )
        except ScheduleError as exc:
            self.stderr.write(f"error: {exc}")
            sys.exit(2)
        verb = "created" if saved.created else "updated"
        state = "enabled" if saved.task.enabled else "disabled"
        self.stdout.write(
            f"{verb} schedule {saved.task.name!r}: {saved.cron} ({saved.timezone}), {state}, "
            f"task {saved.task.task} {saved.task.kwargs}"
        )

    def _list(self) -> None:
        schedules = rerun_schedule_list()
        if not schedules:
            self.stdout.write("no rerun schedules")
            return
        rows = [("name", "cron", "timezone", "state", "last run", "runs", "params")]
        for task in schedules:
            cron = task.crontab
            expression = (
                " ".join(
                    (
                        cron.minute,
                        cron.hour,
                        cron.day_of_month,
                        cron.month_of_year,
                        cron.day_of_week,
                    )
                )
                if cron is not None
                else "(not a crontab)"
            )
            rows.append(
                (
                    task.name,
                    expression,
                    str(cron.timezone) if cron is not None else "",
                    "enabled" if task.enabled else "disabled",
                    task.last_run_at.isoformat(timespec="seconds") if task.last_run_at else "never",
                    str(task.total_run_count),
                    _params_shown(task.kwargs),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )


def _params_shown(kwargs: str) -> str:
    """The schedule's parameters (and provider) as compact JSON, for ``--list``."""
    try:
        value = json.loads(kwargs or "{}")
    except ValueError:
        return "(unreadable kwargs)"
    if not isinstance(value, dict):
        return "(unreadable kwargs)"
    shown: dict[str, Any] = dict(value.get("params") or {})
    if value.get("provider"):
        shown["provider"] = value["provider"]
    return json.dumps(shown, sort_keys=True, separators=(",", ":")) if shown else "(latest run's)"
