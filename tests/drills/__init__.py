"""Fault drills (issue 6): each drill starts its own redis-server, Celery workers (and beat) as
subprocesses on spare loopback ports and a provider emulator, then kills or restarts one of them
in the middle of a run and checks that the run still completes correctly. Run them alone with
``pytest -m drill``; the fixtures are in ``conftest.py``."""
