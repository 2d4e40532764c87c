"""The beat schedules' admin, with the rerun schedules' parameters checked on save.

django-celery-beat's ``PeriodicTask`` admin shows and edits a schedule's kwargs as JSON; for a
rerun schedule (task ``llm.scheduled_rerun``) the kwargs hold the parameters it reruns with
(``{"dataset", "cluster_type", "params": {...}[, "provider"]}``, see llm/services/schedules.py).
This admin re-registers that one with a form that checks them like ``schedule_rerun`` does
(:func:`~llm.services.schedules.rerun_kwargs_check`), so an invalid value is refused with a
field error instead of failing every later rerun, and stores them normalised (defaults filled
in). Every other periodic task is edited exactly as before.
"""

from __future__ import annotations

import json
from typing import Any

import django_celery_beat.admin as beat_admin  # registers the stock admin first
from django.contrib import admin
from django.utils.html import format_html
from django_celery_beat.models import PeriodicTask

from llm.services.schedules import RERUN_TASK, ScheduleError, rerun_kwargs_check


class RerunAwarePeriodicTaskForm(beat_admin.PeriodicTaskForm):
    """The stock form plus a check of a rerun schedule's kwargs."""

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean()
        if data.get("task") != RERUN_TASK or "kwargs" not in data:
            return data
        try:
            checked = rerun_kwargs_check(json.loads(data["kwargs"] or "{}"))
        except (ValueError, ScheduleError) as exc:  # ScheduleError is a ValueError
            self.add_error("kwargs", str(exc))
            return data
        data["kwargs"] = json.dumps(checked)
        return data


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    """django-celery-beat's admin; rerun schedules list the parameters they rerun with."""

    form = RerunAwarePeriodicTaskForm
    list_display = (*beat_admin.PeriodicTaskAdmin.list_display, "rerun_params")

    @admin.display(description="rerun parameters")
    def rerun_params(self, obj: PeriodicTask) -> str:
        if obj.task != RERUN_TASK:
            return "-"
        try:
            kwargs = json.loads(obj.kwargs or "{}")
        except ValueError:
            return "(unreadable kwargs)"
        params = kwargs.get("params") if isinstance(kwargs, dict) else None
        if not params:
            return "(latest run's, pinned at the next rerun)"
        shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        return format_html("<code>{}</code>", shown)
