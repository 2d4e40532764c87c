"""`python manage.py setup_maintenance`: register the reconciler's beat schedule (also done after
every `migrate`) and print it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from llm.services.reconcile import reconcile_schedule_ensure


class Command(BaseCommand):
    help = "Register the beat schedule of the reconciler (llm.reconcile, every minute)."

    def handle(self, *args: Any, **options: Any) -> None:
        task, created = reconcile_schedule_ensure()
        verb = "registered" if created else "already registered"
        state = "enabled" if task.enabled else "disabled (enable it in the admin)"
        self.stdout.write(f"{verb}: {task.name!r} -> {task.task}, {task.interval}, {state}")
