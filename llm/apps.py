from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class LlmConfig(AppConfig):
    """Summaries, judging, composition cache, provider calls and provider batches."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "llm"
    verbose_name = "LLM summaries"

    def ready(self) -> None:
        from clustering.services import active_run_check_register
        from llm.selectors import run_summarising

        # a run stays active while it summarises: one active run per dataset and cluster type
        active_run_check_register(run_summarising)
        post_migrate.connect(
            _register_maintenance_schedule,
            sender=self,
            dispatch_uid="llm.register_maintenance_schedule",
        )
        post_migrate.connect(
            _ensure_curators_group, sender=self, dispatch_uid="llm.ensure_curators_group"
        )


def _register_maintenance_schedule(
    sender: AppConfig, using: str = "default", apps: Any = None, **kwargs: Any
) -> None:
    """After ``migrate``: register the maintenance beat schedules (reconciler, batch poller)
    unless they exist. Skipped while django-celery-beat's tables are not migrated yet."""
    if apps is not None:
        try:
            apps.get_model("django_celery_beat", "PeriodicTask")
        except LookupError:
            return
    from llm.services.maintenance import maintenance_schedules_ensure

    maintenance_schedules_ensure(using=using)


def _ensure_curators_group(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """After ``migrate``: create the ``curators`` group, or reset it to exactly the review
    desk's permissions (``llm.services.curators``). Runs after Django has created this app's
    permissions (auth's handler is connected first)."""
    from llm.services.curators import curators_group_ensure

    curators_group_ensure(using=using)
