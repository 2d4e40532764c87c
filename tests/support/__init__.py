"""Test support shared by the suite, the drills and the benchmarks: waiting on conditions
(``waiting``) and launching Celery worker and beat subprocesses (``workers``)."""
