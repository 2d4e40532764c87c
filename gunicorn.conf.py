"""gunicorn's settings, read from the working directory by ``gunicorn config.wsgi`` (Procfile).

Importing ``config`` validates every setting in the master process, before any worker is
forked: an invalid variable stops gunicorn with one line naming it and exit code 2 (a worker
that failed to import the app would instead be respawned in a loop).
"""

import config  # noqa: F401

# the access log goes to stdout beside the error log (stderr): `make up` shows both
accesslog = "-"
# a worker busy longer than this (seconds) is restarted; no request of ours takes that long
timeout = 60
