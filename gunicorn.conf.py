"""gunicorn's settings, read from the working directory by ``gunicorn config.wsgi`` (Procfile).

Importing ``config`` validates every setting in the master process, before any worker is
forked: an invalid variable stops gunicorn with one line naming it and exit code 2 (a worker
that failed to import the app would instead be respawned in a loop).
"""

# (bound under another name: every module-level name here is read as a gunicorn setting, and
# "config" is one)
from config.startup import settings_validate_or_exit

settings_validate_or_exit()

# the access log goes to stdout beside the error log (stderr): `make up` shows both
accesslog = "-"
# a worker busy longer than this (seconds) is restarted; no request of ours takes that long
timeout = 60
control_socket_disable = True  # gunicorn >= 25: no control socket; several stacks may share a home
