"""`python manage.py setup_maintenance`: register the maintenance beat schedules (the reconciler
and the batch poller; also done after every `migrate` and on every beat start), bring their
intervals back to the settings, and print them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from llm.services.maintenance import maintenance_schedules_ensure


class Command(BaseCommand):
    help = "Register the beat schedules of llm.reconcile and llm.poll_batches."

    def handle(self, *args: Any, **options: Any) -> None:
        verbs = {
            "registered": "registered",
            "updated": "interval updated from the settings",
            "unchanged": "already registered",
        }
        for task, state in maintenance_schedules_ensure():
            verb = verbs[state]
            state = "enabled" if task.enabled else "disabled (enable it in the admin)"
            self.stdout.write(f"{verb}: {task.name!r} -> {task.task}, {task.interval}, {state}")
