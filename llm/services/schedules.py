"""Scheduled reruns: one django-celery-beat ``PeriodicTask`` per (dataset, cluster type) that
calls ``llm.scheduled_rerun``, and the service that task runs.

A scheduled rerun reclusters the dataset with the schedule's own parameters and summarises again;
the plan step serves every cluster whose composition did not change from the cache, so only
changed clusters reach a provider. It never overlaps an active run of the same dataset and
cluster type (checked under a row lock on the dataset, like ``pipeline_rerun``).

A schedule owns its parameters: the complete clustering parameters (and optionally a provider)
are stored in the beat row's kwargs, ``{"dataset", "cluster_type", "params": {...}[,
"provider"]}``, set by ``schedule_rerun --param KEY=VALUE`` (when a schedule is created without
``--param``, the parameters of the dataset's latest succeeded run, else the defaults, are copied
into it once). Ad-hoc runs never change what a schedule clusters. A schedule stored before
schedules had parameters is pinned the same way at its first rerun.

Schedules are ordinary beat rows: the django-celery-beat admin edits (kwargs checked by
:func:`rerun_kwargs_check` on save), disables or deletes them, and ``celery -A config beat``
(``CELERY_BEAT_SCHEDULER`` = the database scheduler) picks up the change without a restart.
"""

from __future__ import annotations

import json
import logging
import zoneinfo
from dataclasses import dataclass
from typing import Any

from celery.schedules import crontab_parser
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.validators import crontab_validator

from clustering.datasets.registry import BUILTIN_DATASETS
from clustering.domain.params import CLUSTER_TYPES, ClusteringParams, InvalidParameters
from clustering.models import ClusteringRun, Dataset, RunStatus
from clustering.services import dataset_get
from llm.providers.registry import PROVIDERS
from llm.services.pipeline import active_run, pipeline_start

logger = logging.getLogger(__name__)

#: Celery task name a rerun schedule calls (defined in llm/tasks.py).
RERUN_TASK = "llm.scheduled_rerun"


class ScheduleError(ValueError):
    """Bad schedule input; the message is one line naming the option. Nothing was stored."""


@dataclass(frozen=True)
class Cron:
    """A validated five-field cron expression (minute hour day-of-month month day-of-week)."""

    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str

    def __str__(self) -> str:
        return " ".join(
            (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        )


# field name, celery parser bounds (max_, min_) in cron order
_CRON_FIELDS = (
    ("minute", 60, 0),
    ("hour", 24, 0),
    ("day-of-month", 31, 1),
    ("month", 12, 1),
    ("day-of-week", 7, 0),
)


def cron_parse(expression: str) -> Cron:
    """Validate a standard five-field cron expression, e.g. ``"0 3 * * 1"`` (03:00 on Mondays).

    Every field must be accepted both by Celery's crontab parser (what beat evaluates) and by
    django-celery-beat's validators (what its admin checks), so a schedule saved here can be
    edited in the admin and run by beat. Names (``mon``, ``jan``) and ranges/steps are allowed;
    Sunday is 0 (Celery rejects 7).

    Raises:
        ScheduleError: not exactly five fields, or a field out of range; one line.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"--cron must have exactly 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)} in {expression!r}"
        )
    for value, (name, max_, min_) in zip(fields, _CRON_FIELDS, strict=True):
        try:
            crontab_parser(max_, min_).parse(value)
        except Exception as exc:  # celery raises ValueError or its own ParseException
            raise ScheduleError(f"--cron {name} field {value!r} is invalid: {exc}") from None
    try:
        crontab_validator(" ".join(fields))
    except ValidationError as exc:
        raise ScheduleError(
            f"--cron {expression!r} is invalid: {'; '.join(exc.messages)}"
        ) from None
    return Cron(*fields)


def timezone_check(name: str) -> str:
    """The IANA time zone name, checked (e.g. ``"UTC"``, ``"Europe/Berlin"``).

    Raises:
        ScheduleError: unknown time zone.
    """
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"--timezone {name!r} is not a known IANA time zone") from None
    return name


def rerun_schedule_name(*, dataset_slug: str, cluster_type: str) -> str:
    """The deterministic name of a dataset's rerun schedule, e.g. ``"rerun hpo-ndd phenotype"``
    (``PeriodicTask.name`` is unique, so there is one schedule per dataset and cluster type)."""
    return f"rerun {dataset_slug} {cluster_type}"


def _dataset_kind(slug: str) -> str:
    """The kind of a registered or built-in dataset, without registering anything.

    Raises:
        ScheduleError: no such dataset.
    """
    kind = Dataset.objects.filter(slug=slug).values_list("kind", flat=True).first()
    if kind is not None:
        return kind
    spec = BUILTIN_DATASETS.get(slug)
    if spec is not None:
        return spec.kind
    known = sorted(set(BUILTIN_DATASETS) | set(Dataset.objects.values_list("slug", flat=True)))
    raise ScheduleError(
        f"--dataset: unknown dataset {slug!r}; known datasets: {', '.join(known) or 'none'}"
    )


def _crontab_get(cron: Cron, tz: str) -> CrontabSchedule:
    """An existing identical crontab row, else a new one (the table has no unique key)."""
    fields = {
        "minute": cron.minute,
        "hour": cron.hour,
        "day_of_month": cron.day_of_month,
        "month_of_year": cron.month_of_year,
        "day_of_week": cron.day_of_week,
    }
    for row in CrontabSchedule.objects.filter(**fields).order_by("pk"):
        if str(row.timezone) == tz:
            return row
    return CrontabSchedule.objects.create(**fields, timezone=zoneinfo.ZoneInfo(tz))


def schedule_params_check(params: dict[str, Any]) -> dict[str, Any]:
    """The complete clustering parameters of a schedule (defaults filled in), checked like an
    ad-hoc run's.

    Raises:
        ScheduleError: unknown keys or out-of-range values; one line naming each parameter.
    """
    if not isinstance(params, dict):
        raise ScheduleError(f"params must be an object of clustering parameters, got {params!r}")
    try:
        return ClusteringParams.from_dict(params).to_dict()
    except InvalidParameters as exc:
        raise ScheduleError(
            "; ".join(f"--param {key}: {message}" for key, message in exc.errors.items())
        ) from None
    except TypeError as exc:  # e.g. a value of the wrong type compared with a number
        raise ScheduleError(f"--param: {exc}") from None


def param_assignments_parse(assignments: list[str]) -> dict[str, Any]:
    """``["k=20", "resolution=1.5"]`` -> ``{"k": 20, "resolution": 1.5}``: each value is read as
    JSON (numbers, booleans, strings in quotes), else taken as a plain string.

    Raises:
        ScheduleError: an assignment without ``=`` or with an empty name.
    """
    parsed: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ScheduleError(f"--param must look like NAME=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(raw)
        except ValueError:
            parsed[key] = raw
    return parsed


def _provider_check(provider: str | None) -> None:
    if provider is not None and provider not in PROVIDERS:
        raise ScheduleError(f"--provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")


def rerun_kwargs_check(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check the kwargs of a rerun schedule as edited in the admin: ``dataset`` known,
    ``cluster_type`` valid, ``params`` valid clustering parameters (completed with defaults),
    ``provider`` (optional) a known provider, nothing else. Returns the normalised kwargs.

    Raises:
        ScheduleError: the first problem, in one line.
    """
    if not isinstance(kwargs, dict):
        raise ScheduleError("kwargs must be a JSON object")
    unknown = sorted(set(kwargs) - {"dataset", "cluster_type", "params", "provider"})
    if unknown:
        raise ScheduleError(f"unknown key(s) {', '.join(unknown)} in the kwargs")
    slug = kwargs.get("dataset")
    if not isinstance(slug, str) or not slug:
        raise ScheduleError("kwargs need the dataset's slug as 'dataset'")
    kind = _dataset_kind(slug)
    chosen_type = kwargs.get("cluster_type") or kind
    if chosen_type not in CLUSTER_TYPES:
        raise ScheduleError(
            f"--type must be one of {', '.join(CLUSTER_TYPES)}, got {chosen_type!r}"
        )
    checked: dict[str, Any] = {
        "dataset": slug,
        "cluster_type": chosen_type,
        "params": schedule_params_check(kwargs.get("params") or {}),
    }
    provider = kwargs.get("provider")
    _provider_check(provider)
    if provider:
        checked["provider"] = provider
    return checked


@dataclass(frozen=True)
class RerunSchedule:
    """What :func:`rerun_schedule_save` stored; ``created`` is False for an update."""

    task: PeriodicTask
    cron: str
    timezone: str
    created: bool


def rerun_schedule_save(
    *,
    dataset_slug: str,
    cluster_type: str | None = None,
    cron: str | None = None,
    tz: str | None = None,
    enabled: bool = True,
    params: dict[str, Any] | None = None,
    provider: str | None = None,
) -> RerunSchedule:
    """Create or update the one rerun schedule of a dataset and cluster type, idempotently.

    ``cluster_type`` defaults to the dataset's kind. ``cron`` and ``tz`` may be left out when the
    schedule exists (its crontab is kept); a new schedule needs ``cron`` and defaults ``tz`` to
    UTC. ``enabled=False`` keeps the schedule but beat stops sending it. A crontab row no other
    periodic task uses is deleted when the schedule moves to another one.

    ``params`` (clustering parameters by name) are merged over the schedule's stored ones; a
    new schedule (or one stored without parameters) starts from the parameters of the dataset's
    latest succeeded run, else the defaults. The complete parameters are stored in the row's
    kwargs. ``provider`` sets the schedule's provider (default: ``LLM_PROVIDER`` when it runs).

    Raises:
        ScheduleError: unknown dataset, bad cluster type, malformed cron or time zone, no cron
            for a new schedule, bad parameters or provider; nothing is stored.
    """
    kind = _dataset_kind(dataset_slug)
    chosen_type = cluster_type or kind
    if chosen_type not in CLUSTER_TYPES:
        raise ScheduleError(
            f"--type must be one of {', '.join(CLUSTER_TYPES)}, got {chosen_type!r}"
        )
    parsed = cron_parse(cron) if cron is not None else None
    checked_tz = timezone_check(tz) if tz is not None else None
    _provider_check(provider)
    name = rerun_schedule_name(dataset_slug=dataset_slug, cluster_type=chosen_type)
    with transaction.atomic():
        existing = PeriodicTask.objects.select_for_update().filter(name=name).first()
        old_crontab = existing.crontab if existing is not None else None
        stored = _stored_kwargs(existing)
        base = stored.get("params") or _latest_params_of(dataset_slug, chosen_type) or {}
        kwargs: dict[str, Any] = {
            "dataset": dataset_slug,
            "cluster_type": chosen_type,
            "params": schedule_params_check({**base, **(params or {})}),
        }
        chosen_provider = provider or stored.get("provider")
        if chosen_provider:
            kwargs["provider"] = chosen_provider
        if parsed is None:
            if old_crontab is None:
                raise ScheduleError(
                    f"--cron is required: there is no schedule {name!r} yet to update"
                )
            parsed = Cron(
                old_crontab.minute,
                old_crontab.hour,
                old_crontab.day_of_month,
                old_crontab.month_of_year,
                old_crontab.day_of_week,
            )
        if checked_tz is None:
            checked_tz = str(old_crontab.timezone) if old_crontab is not None else "UTC"
        crontab = _crontab_get(parsed, checked_tz)
        task = existing or PeriodicTask(name=name)
        task.task = RERUN_TASK
        task.crontab = crontab
        task.interval = task.solar = task.clocked = None
        task.args = "[]"
        task.kwargs = json.dumps(kwargs)
        task.enabled = enabled
        task.one_off = False
        task.queue = "default"  # cheap bookkeeping: never behind a backlog of provider calls
        task.description = (
            f"Recluster {dataset_slug} ({chosen_type}) with the parameters stored in this "
            'schedule\'s kwargs ("params"; ad-hoc runs do not change them) and summarise again; '
            "clusters whose composition did not change come from the cache. Skipped while a run "
            "of the same dataset and type is active. Managed by `manage.py schedule_rerun`."
        )
        task.save()
        if (
            old_crontab is not None
            and old_crontab.pk != crontab.pk
            and not PeriodicTask.objects.filter(crontab=old_crontab).exists()
        ):
            old_crontab.delete()  # nothing else uses it
    return RerunSchedule(task=task, cron=str(parsed), timezone=checked_tz, created=existing is None)


def rerun_schedule_list() -> list[PeriodicTask]:
    """Every rerun schedule, by name, with its crontab."""
    return list(
        PeriodicTask.objects.filter(task=RERUN_TASK).select_related("crontab").order_by("name")
    )


def _stored_kwargs(task: PeriodicTask | None) -> dict[str, Any]:
    """The kwargs of a schedule row as a dict (empty when there is none or it is unreadable)."""
    if task is None:
        return {}
    try:
        value = json.loads(task.kwargs or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _latest_params_of(dataset_slug: str, cluster_type: str) -> dict[str, object] | None:
    """:func:`_latest_params` of a dataset by slug; None for a dataset not registered yet."""
    dataset = Dataset.objects.filter(slug=dataset_slug).first()
    return _latest_params(dataset, cluster_type) if dataset is not None else None


def _latest_params(dataset: Dataset, cluster_type: str) -> dict[str, object] | None:
    """Parameters of the latest succeeded run, else of the latest run of any status, else None
    (the defaults)."""
    runs = ClusteringRun.objects.filter(dataset=dataset, cluster_type=cluster_type).order_by(
        "-created_at", "-id"
    )
    latest = runs.filter(status=RunStatus.SUCCEEDED).first() or runs.first()
    return dict(latest.params) if latest is not None else None


def scheduled_rerun_start(
    *,
    dataset_slug: str,
    cluster_type: str | None = None,
    params: dict[str, Any] | None = None,
    provider: str | None = None,
) -> ClusteringRun | None:
    """Start a rerun of a dataset for beat: a new run through :func:`pipeline_start` with the
    schedule's ``params`` and ``provider`` (default ``LLM_PROVIDER``); enqueued after commit.

    ``params=None`` comes from a schedule stored before schedules had parameters: the
    parameters of the latest run of this dataset and cluster type (defaults when there is none)
    are used and pinned into that schedule's kwargs, so later ad-hoc runs do not change them.

    Returns the new run, or None when a run of the same dataset and cluster type is still active
    (clustering or summarising): the rerun is skipped and logged, never queued behind it.
    Two beat deliveries at once are serialised by a row lock on the dataset, so at most one run
    starts.

    Raises:
        UnknownDatasetError: no such dataset.
        InvalidParameters: bad cluster type (or stored parameters no longer valid).
        ProviderNotConfigured: an unknown provider.
    """
    dataset = dataset_get(slug=dataset_slug)
    chosen_type = cluster_type or dataset.kind
    with transaction.atomic():
        Dataset.objects.select_for_update().get(pk=dataset.pk)
        busy = active_run(dataset=dataset, cluster_type=chosen_type)
        if busy is not None:
            logger.info(
                "scheduled rerun of %s (%s) skipped: run %s is still active",
                dataset_slug,
                chosen_type,
                busy.pk,
            )
            return None
        if params is None:
            params = ClusteringParams.from_dict(
                _latest_params(dataset, chosen_type) or {}
            ).to_dict()
            _pin_params(dataset_slug, chosen_type, params)
        run = pipeline_start(
            dataset_slug=dataset.slug,
            params=params,
            cluster_type=chosen_type,
            provider=provider,
        )
    logger.info(
        "scheduled rerun of %s (%s): run %s started (provider %s, params %s)",
        dataset_slug,
        chosen_type,
        run.pk,
        provider or settings.LLM_PROVIDER,
        json.dumps(params, sort_keys=True),
    )
    return run


def _pin_params(dataset_slug: str, cluster_type: str, params: dict[str, Any]) -> None:
    """Store ``params`` in the kwargs of the dataset's schedule that has none (a schedule stored
    before schedules owned their parameters)."""
    name = rerun_schedule_name(dataset_slug=dataset_slug, cluster_type=cluster_type)
    task = PeriodicTask.objects.select_for_update().filter(name=name).first()
    if task is None:
        return
    kwargs = _stored_kwargs(task)
    if kwargs.get("params"):
        return
    kwargs.update(dataset=dataset_slug, cluster_type=cluster_type, params=params)
    task.kwargs = json.dumps(kwargs)
    task.save(update_fields=["kwargs"])
    logger.warning("schedule %r had no parameters: pinned %s", name, task.kwargs)
