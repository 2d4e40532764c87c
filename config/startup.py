"""Start-up validation shared by every entry point.

``import config`` (which ``manage.py``, ``config.wsgi`` under gunicorn, and ``celery -A config``
for the worker and beat all do first) imports the settings module right away. An invalid
environment variable then stops the process with ONE line on stderr naming the variable and
the value expected, and exit code 2, instead of a traceback at start-up or, worse, a failure
when the first task reads the value.
"""

from __future__ import annotations

import importlib
import os
import sys

#: The exit code of a process stopped by an invalid setting (as for bad command-line input).
EXIT_INVALID_SETTING = 2


def settings_validate_or_exit() -> None:
    """Import ``DJANGO_SETTINGS_MODULE`` (default ``config.settings``), which validates every
    variable; on a :class:`config.env.SettingError` print ``configuration error: <message>``
    on one line to stderr and exit with :data:`EXIT_INVALID_SETTING`.

    Raises:
        SystemExit: code 2, on an invalid setting. Other import errors propagate unchanged.
    """
    from .env import SettingError

    module = os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        importlib.import_module(module)
    except SettingError as exc:
        message = " ".join(str(exc).split())
        print(f"configuration error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_INVALID_SETTING) from None
