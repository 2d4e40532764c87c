"""The shared limiter paces calls (GCRA on Redis's clock) and learns from 429s (AIMD).

Against the suite's real Redis unless a test says otherwise. Timing assertions are lower bounds
(a limiter that lets calls through too early fails them however loaded the machine is) plus
generous upper bounds that only catch a limiter that never lets anything through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from llm.ratelimit import FLOOR, LATENESS_SECONDS, RateLimitWaitExceeded, SharedRateLimiter

ROOT = Path(__file__).resolve().parents[2]


def _key() -> str:
    return f"test:{uuid.uuid4()}"


def test_calls_are_spaced_one_interval_apart(settings) -> None:
    """8 calls from 3 threads at "5 per 1 second" (no margin, burst 1): the first at once,
    then one every 0.2 s (the schedule may start up to LATENESS_SECONDS early), so 7 intervals
    at least."""
    assert settings.REDIS_URL, "the suite runs against Redis"
    limiter = SharedRateLimiter(key=_key(), rate="5 per 1 second", margin=0.0, burst=1)
    assert limiter.interval == pytest.approx(0.2)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(n):
            limiter.acquire(max_wait=30)
            with lock:
                stamps.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in (3, 3, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stamps) == 8
    assert max(stamps) - started >= 7 * 0.2 - LATENESS_SECONDS - 0.02
    assert max(stamps) - started < 20  # it does let calls through


def test_margin_slows_the_pace(settings) -> None:
    """ "2 per 1 second" with a 0.3 s margin: one call every 0.65 s."""
    limiter = SharedRateLimiter(key=_key(), rate="2 per 1 second", margin=0.3, burst=1)
    assert limiter.interval == pytest.approx(0.65)
    started = time.monotonic()
    for _ in range(3):
        limiter.acquire(max_wait=10)
    assert time.monotonic() - started >= 2 * 0.65 - LATENESS_SECONDS - 0.02


def test_burst_lets_that_many_through_then_paces(settings) -> None:
    """Burst 3 at "2 per 1 second": three calls at once after an idle spell, then 0.5 s each."""
    limiter = SharedRateLimiter(key=_key(), rate="2 per 1 second", margin=0.0, burst=3)
    waits = [limiter.acquire(max_wait=10) for _ in range(3)]
    assert all(w < 0.3 for w in waits), waits  # no pacing wait (0.5 s) among the three
    started = time.monotonic()
    limiter.acquire(max_wait=10)
    limiter.acquire(max_wait=10)
    assert time.monotonic() - started >= 0.5 + 0.5 - LATENESS_SECONDS - 0.02


def test_a_late_caller_does_not_push_every_later_slot_back(settings, monkeypatch) -> None:
    """On a fake clock (the in-process twin of the Lua script, same formula): at "2 per 1
    second" a call may start up to LATENESS_SECONDS before its slot, so one that woke 20 ms
    after that keeps the schedule (the next slot stays at 1.0 s) instead of resetting it."""
    settings.REDIS_URL = None
    clock = [100.0]
    monkeypatch.setattr("llm.ratelimit.time.monotonic", lambda: clock[0])
    limiter = SharedRateLimiter(key=_key(), rate="2 per 1 second", margin=0.0, burst=1)
    assert limiter._try(0) is None  # t = 0
    clock[0] = 100.0 + 0.5 - LATENESS_SECONDS - 0.01
    assert limiter._try(0) == pytest.approx(0.01)  # not yet: 10 ms before the allowance
    clock[0] = 100.0 + 0.5 - LATENESS_SECONDS + 0.02  # woke 20 ms late
    assert limiter._try(0) is None
    clock[0] = 100.0 + 0.6
    wait = limiter._try(0)  # the next slot is 1.0 s (less the allowance), not 0.47 + 0.5
    assert wait == pytest.approx(1.0 - LATENESS_SECONDS - 0.6)


def test_limiter_gives_up_after_max_wait(settings) -> None:
    limiter = SharedRateLimiter(key=_key(), rate="1 per 10 seconds")
    limiter.acquire(max_wait=1)
    with pytest.raises(RateLimitWaitExceeded):
        limiter.acquire(max_wait=0.3)


_CHILD = """
import json, os, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from llm.ratelimit import SharedRateLimiter
limiter = SharedRateLimiter(key=sys.argv[1], rate="5 per 1 second", margin=0.0, burst=1)
go = float(sys.argv[2])
while time.time() < go:
    time.sleep(0.005)
stamps = []
for _ in range(5):
    limiter.acquire(max_wait=60)
    stamps.append(time.time())
print(json.dumps(stamps))
"""


def test_two_processes_share_one_pace(settings) -> None:
    """Two processes taking 5 calls each at "5 per 1 second" share the pace: the 10 calls need
    at least 9 intervals (1.8 s); two separate limiters would finish in about 0.8 s."""
    key = _key()
    go = time.time() + 3.0  # both start together, after their (slow, loaded) imports
    env = {**os.environ, "REDIS_URL": settings.REDIS_URL}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, key, str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    stamps = sorted(s for out, _ in outputs for s in json.loads(out))
    assert len(stamps) == 10
    assert stamps[-1] - stamps[0] >= 9 * 0.2 - LATENESS_SECONDS - 0.05, stamps


def test_a_429_slows_every_worker_and_the_rate_recovers(settings) -> None:
    """One 429 multiplies the shared rate by 0.8 for every limiter on the key (another
    worker's instance sees it); a second 429 within the cooldown does not cut again; the rate
    climbs back to the configured one within the recovery time."""
    key = _key()
    mine = SharedRateLimiter(key=key, rate="60 per 1 second", margin=0.0, recovery=2.0)
    theirs = SharedRateLimiter(key=key, rate="60 per 1 second", margin=0.0, recovery=2.0)
    assert theirs.learned().factor == pytest.approx(1.0)
    first = mine.penalize(retry_after=None)
    assert first.factor == pytest.approx(0.8, abs=0.02)
    again = mine.penalize(retry_after=None)  # the same burst of refusals
    assert again.factor >= 0.78
    seen = theirs.learned()
    assert 0.78 <= seen.factor < 0.95
    assert seen.per_minute == pytest.approx(3600 * seen.factor, rel=0.01)
    assert "learned" in seen.describe()
    time.sleep(0.6)  # 0.6 s of a 2 s recovery: +0.3, back to the whole rate
    assert theirs.learned().factor == pytest.approx(1.0)


def test_retry_after_holds_every_worker(settings) -> None:
    """After a 429 saying "retry after 0.8 s", no worker's next call starts sooner."""
    key = _key()
    mine = SharedRateLimiter(key=key, rate="100 per 1 second", margin=0.0)
    theirs = SharedRateLimiter(key=key, rate="100 per 1 second", margin=0.0)
    started = time.monotonic()
    mine.penalize(retry_after=0.8)
    theirs.acquire(max_wait=10)
    assert time.monotonic() - started >= 0.8 - 0.02


def test_provider_limit_caps_the_rate(settings) -> None:
    """A 429 naming a limit of 30/minute when 120/minute is configured caps the pace at a
    quarter (then the decrease), and recovery stops at the cap."""
    limiter = SharedRateLimiter(key=_key(), rate="120/minute", margin=0.0, recovery=1.0)
    learned = limiter.penalize(retry_after=0.01, provider_limit=30)
    assert learned.factor == pytest.approx(0.25 * 0.8, abs=0.01)
    time.sleep(0.3)
    assert limiter.learned().factor == pytest.approx(0.25, abs=0.01)


def test_repeated_429s_never_stop_the_rate(settings, monkeypatch) -> None:
    """However many 429s, the rate stays at or above FLOOR of the configured one."""
    monkeypatch.setattr("llm.ratelimit.COOLDOWN_SECONDS", 0.0)
    limiter = SharedRateLimiter(key=_key(), rate="1000 per 1 second", margin=0.0)
    learned = limiter.learned()
    for _ in range(40):
        time.sleep(2 * limiter.interval / learned.factor + 0.002)  # past the cooldown
        learned = limiter.penalize()
    assert FLOOR <= learned.factor < 0.05


def test_in_process_pace_and_penalty_without_redis(settings) -> None:
    settings.REDIS_URL = None
    limiter = SharedRateLimiter(key=_key(), rate="5 per 1 second", margin=0.0, recovery=100.0)
    started = time.monotonic()
    for _ in range(4):
        limiter.acquire(max_wait=10)
    assert time.monotonic() - started >= 3 * 0.2 - LATENESS_SECONDS - 0.02
    assert limiter.penalize(retry_after=0.5).factor == pytest.approx(0.8, abs=0.01)
    started = time.monotonic()
    limiter.acquire(max_wait=10)
    assert time.monotonic() - started >= 0.5 - 0.02


def test_token_budget_paces_by_estimated_tokens(settings) -> None:
    """600 tokens per minute = 10 per second: calls of 5 tokens go one per 0.5 s although the
    request rate would allow 100 per second."""
    limiter = SharedRateLimiter(
        key=_key(), rate="100 per 1 second", tokens_per_minute=600, margin=0.0
    )
    started = time.monotonic()
    for _ in range(3):
        limiter.acquire(tokens=5, max_wait=10)
    assert time.monotonic() - started >= 2 * 0.5 - 0.02


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": "often"}, "rate"),
        ({"rate": "0/minute"}, "at least one"),
        ({"rate": "1/second", "margin": -1}, "margin"),
        ({"rate": "1/second", "burst": 0}, "burst"),
        ({"rate": "1/second", "recovery": 0}, "recovery"),
    ],
)
def test_bad_limiter_settings_are_rejected(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        SharedRateLimiter(key="x", **kwargs)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LLM_RATE_LIMIT", "often", "LLM_RATE_LIMIT: expected a rate"),
        ("LLM_RATE_LIMIT", "0/minute", "LLM_RATE_LIMIT: expected a rate"),
        (
            "LLM_RATE_LIMIT_BURST",
            "0",
            "LLM_RATE_LIMIT_BURST: expected an integer between 1 and 1000",
        ),
        (
            "LLM_RATE_LIMIT_BUDGET",
            "soon",
            "LLM_RATE_LIMIT_BUDGET: expected a finite number between 1.0 and 86400",
        ),
        (
            "LLM_RATE_LIMIT_RECOVERY",
            "0",
            "LLM_RATE_LIMIT_RECOVERY: expected a finite number between 1.0 and 86400",
        ),
    ],
)
def test_bad_rate_settings_stop_start_up(variable: str, value: str, message: str) -> None:
    env = {**os.environ, variable: value, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-2000:]
