"""A canary API key never surfaces: not in logs, errors, the database, Redis or any page.

The key is a unique string that matches none of the "looks like a key" patterns of
``llm.providers.base.redact``, so only exact-value redaction can hide it. The pipeline runs on a
real Celery worker (Redis, transactional PostgreSQL) with the real google-genai SDK talking HTTP
to the Gemini emulator, scripted to fail in the ways that produce error text: a 500 and a 401
whose messages echo the key (as some vendors do), a timeout, a truncated answer, and a judge
call refused with a 400 that names the key header. The emulator records the key it was sent, to
show the canary really was in use.

Then the canary must be in none of: the log records of every logger at DEBUG (message, arguments
and formatted tracebacks), the test's stdout/stderr, the ProviderErrors the provider raised
(message, repr, raw text and their whole traceback chain), any text or JSON column of any model,
any key or value in the Redis database, any response of the REST API (every GET operation of the
schema, every row) or of the admin and report pages a curator reads.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.apps import apps
from django.contrib.auth.models import User
from django.db import models
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from clustering.models import Cluster, ClusteringRun
from clustering.services import dataset_import
from llm.emulators.gemini import GeminiEmulator
from llm.emulators.transport import Request
from llm.models import (
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    ProviderBatch,
    SummaryTask,
)
from llm.providers.base import ProviderError, ProviderRequest, ProviderResult
from llm.providers.gemini import GeminiProvider
from llm.services.pipeline import pipeline_start
from tests.conftest import planted_rows
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.security,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]

CANARY = f"canary-{uuid.uuid4().hex}-secret"
PARAMS = {"k": 5, "min_cluster_size": 5}


class KeyRecordingGemini(GeminiEmulator):
    """The Gemini emulator, also recording every API key it is sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys_seen: list[str] = []

    def check_key(self, request: Request) -> Any:
        """Record the key, then authenticate as Gemini does."""
        self.keys_seen.append(request.header("x-goog-api-key") or request.arg("key") or "")
        return super().check_key(request)


@pytest.fixture
def gemini(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyRecordingGemini]:
    """The gemini provider with the canary key, pointed at a recording emulator."""
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    with KeyRecordingGemini() as emulator:
        settings.LLM_PROVIDER = "gemini"
        settings.LLM_MODEL = "gemini-2.5-flash"
        settings.LLM_JUDGE_MODEL = ""
        settings.GEMINI_API_KEY = CANARY
        settings.LLM_BASE_URL = emulator.url
        settings.LLM_TIMEOUT = 1.0
        settings.LLM_RATE_LIMIT = "1000/second"
        settings.LLM_CALL_TRIES = 2
        settings.LLM_BACKOFF_BASE = 0.05
        yield emulator


@pytest.fixture
def all_loggers_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger (the root and each named one) at DEBUG, restored afterwards."""
    named = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in named]
    caplog.set_level(logging.DEBUG)
    for logger in named:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    try:
        yield caplog
    finally:
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


@pytest.fixture
def provider_errors(monkeypatch: pytest.MonkeyPatch) -> list[ProviderError]:
    """Every ProviderError the Gemini provider raises during the test (any thread)."""
    raised: list[ProviderError] = []
    original = GeminiProvider.generate

    def recording(self: GeminiProvider, request: ProviderRequest[Any]) -> ProviderResult[Any]:
        try:
            return original(self, request)
        except ProviderError as error:
            raised.append(error)
            raise

    monkeypatch.setattr(GeminiProvider, "generate", recording)
    return raised


def _dataset(tmp_path: Path) -> str:
    """Two planted clusters of twelve, imported as a user's dataset."""
    path = tmp_path / "two.csv"
    rows = planted_rows(groups=2, size=12)
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug="canary-two", kind="functional")
    return "canary-two"


def _run_pipeline(dataset: str, timeout: float = 90.0) -> GenerationJob:
    """Start the pipeline and wait until its generation job is final."""
    run = pipeline_start(dataset_slug=dataset, params=PARAMS)

    def final() -> GenerationJob | None:
        job = GenerationJob.objects.filter(run=run, scope=GenerationJob.Scope.RUN).first()
        done = job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
        return job if done else None

    return wait_until(final, timeout, f"the job of run {run.pk} finished")


def _text_of(value: Any) -> str:
    """A searchable text form of a database value."""
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def database_hits(secret: str) -> list[str]:
    """``model.field`` for every text or JSON value of every model that holds ``secret``."""
    hits: list[str] = []
    for model in apps.get_models():
        names = [
            field.attname
            for field in model._meta.concrete_fields
            if isinstance(
                field, models.CharField | models.TextField | models.JSONField | models.BinaryField
            )
        ]
        if not names:
            continue
        for row in model._default_manager.values_list(*names).iterator():
            for name, value in zip(names, row, strict=True):
                if secret in _text_of(value):
                    hits.append(f"{model._meta.label}.{name}")
    return hits


def redis_hits(url: str, secret: str) -> list[str]:
    """Redis keys of the database at ``url`` whose name or value holds ``secret``."""
    client: Any = redis.Redis.from_url(url)  # bytes in, bytes out
    needle = secret.encode()
    hits: list[str] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "list":
            values = list(client.lrange(key, 0, -1))
        elif kind == "hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        if needle in key or any(needle in value for value in values):
            hits.append(key.decode(errors="replace"))
    return hits


#: Rows behind the path parameters of the API's detail endpoints, by collection.
_COLLECTIONS: dict[str, type[models.Model]] = {
    "runs": ClusteringRun,
    "clusters": Cluster,
    "summaries": ClusterSummary,
    "jobs": GenerationJob,
    "calls": LLMCall,
    "batches": ProviderBatch,
}


def api_urls() -> list[str]:
    """Every GET URL of the REST API: each operation of the schema, for every row it can show
    (list endpoints also with ``is_current=false``, which lists summary history)."""
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    urls = ["/api/", "/api/schema/", "/api/docs/"]
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        if "{" not in path:
            urls += [path, f"{path}?is_current=false"]
            continue
        collection = path.split("/")[2]
        assert collection in _COLLECTIONS, f"unknown collection in {path}: add it to the scan"
        parameter = path[path.index("{") : path.index("}") + 1]
        for pk in _COLLECTIONS[collection]._default_manager.values_list("pk", flat=True):
            urls.append(path.replace(parameter, str(pk)))
    return urls


def page_urls() -> list[str]:
    """The admin and report pages a curator reads that show runs, jobs, tasks, calls and
    summaries (change lists and every row's page)."""
    urls = [reverse("reports:index")]
    urls += [
        reverse("reports:run", args=[pk])
        for pk in ClusteringRun.objects.values_list("pk", flat=True)
    ]
    for model in (ClusteringRun, GenerationJob, SummaryTask, LLMCall, ClusterSummary):
        label = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls.append(reverse(f"{label}_changelist"))
        urls += [
            reverse(f"{label}_change", args=[pk])
            for pk in model._default_manager.values_list("pk", flat=True)
        ]
    return urls


def test_canary_key_never_surfaces(
    celery_worker: Any,
    gemini: KeyRecordingGemini,
    all_loggers_at_debug: pytest.LogCaptureFixture,
    provider_errors: list[ProviderError],
    capfd: pytest.CaptureFixture[str],
    settings: Any,
    tmp_path: Path,
) -> None:
    caplog = all_loggers_at_debug
    dataset = _dataset(tmp_path)
    gemini.add_faults(
        [
            {"kind": "status", "code": 500, "message": f"backend error for key={CANARY}"},
            {"kind": "timeout", "seconds": 3, "target": "generate"},
            {"kind": "truncated", "target": "generate"},
            {"kind": "status", "code": 401, "message": f"API key {CANARY} is not valid"},
            {"kind": "status", "code": 400, "target": "judge", "message": f"{CANARY} refused"},
        ]
    )
    job = _run_pipeline(dataset)

    # the canary was in use, and the scripted failures happened
    assert gemini.keys_seen and set(gemini.keys_seen) == {CANARY}
    assert job.total == 2 and job.succeeded + job.failed == 2
    calls = LLMCall.objects.filter(job=job)
    assert {"api_error", "timeout", "validation_failed"} <= set(
        calls.values_list("status", flat=True)
    )
    assert sum("[REDACTED]" in m for m in calls.values_list("error_message", flat=True)) >= 2
    assert len(provider_errors) >= 4

    # errors the provider raised, with their whole traceback chain
    for error in provider_errors:
        texts = [error.message, str(error), repr(error), error.raw_text, *map(str, error.args)]
        texts.append("".join(traceback.format_exception(error)))
        assert not [text for text in texts if CANARY in text], error

    # logs of every logger, and the process output
    assert caplog.records
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        assert CANARY not in formatter.format(record), record.name
        assert CANARY not in repr(record.args), record.name
    out, err = capfd.readouterr()
    assert CANARY not in out and CANARY not in err

    # every text and JSON column of every model; Redis (broker and result backend)
    assert database_hits(CANARY) == []
    assert database_hits("[REDACTED]")  # the redacted messages are the ones stored
    assert redis_hits(settings.REDIS_URL, CANARY) == []

    # every API response as staff, and the pages curators read
    staff = User.objects.create_superuser("curator", "curator@example.org", "pw-curator-1")
    api = APIClient()
    api.force_authenticate(staff)
    for url in api_urls():
        response = api.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert CANARY not in response.content.decode(), url
    browser = Client()
    browser.force_login(staff)
    for url in page_urls():
        response = browser.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert CANARY not in response.content.decode(), url
    shown = api.get(f"/api/calls/?job={job.pk}").content.decode()
    assert "[REDACTED]" in shown  # the calls' errors are shown, redacted
