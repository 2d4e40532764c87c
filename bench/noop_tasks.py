"""No-op Celery tasks for ``bench/pipeline.py`` and ``bench/overhead.py``: the baseline cost of a
bare chord.

Workers load them with ``celery -A config worker -I bench.noop_tasks`` (``bench/_harness.py``
starts them so). They touch neither the database nor a provider, so a chord of them measures only
the broker, the result backend and the chord bookkeeping (Redis) on the same workers as the
summary pipeline.
"""

from __future__ import annotations

import time

from config.celery import app


@app.task(name="bench.noop", acks_late=True)
def noop(index: int) -> int:
    """Do nothing; returns ``index`` (the summary task returns an id, so the result is as small)."""
    return index


@app.task(name="bench.chord_done", acks_late=True)
def chord_done() -> float:
    """The chord's callback: returns when it ran, as ``time.time()`` (seconds since the epoch)."""
    return time.time()
