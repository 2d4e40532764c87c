"""Django project configuration; importing it validates the settings (one line and exit 2 on
an invalid variable, see :mod:`config.startup`) and makes the Celery app available to shared
tasks."""

from .startup import settings_validate_or_exit

settings_validate_or_exit()

from .celery import app as celery_app  # noqa: E402 -- after the settings are known valid

__all__ = ("celery_app",)
