"""The lease under which one batch driver at a time advances a job, and how long a batch may
stay open at each provider (:func:`batch_timeout`)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from llm.models import GenerationJob
from llm.providers.specs import PROVIDER_SPECS

#: each provider's documented batch window (seconds), from its spec: Gemini batches expire after
#: 48 h pending or running, OpenAI's completion window and Anthropic's expiry are 24 h
DEFAULT_BATCH_TIMEOUTS = {spec.name: spec.batch_timeout for spec in PROVIDER_SPECS if spec.batch}


def batch_timeout(provider: str) -> int:
    """Seconds a batch of ``provider`` may stay open before it is cancelled (``timed_out``) and
    its items redone in realtime: ``BATCH_TIMEOUT`` when set (a global override), else
    ``BATCH_TIMEOUT_<PROVIDER>`` (defaults: :data:`DEFAULT_BATCH_TIMEOUTS`); 24 h for a provider
    without its own setting."""
    override = getattr(settings, "BATCH_TIMEOUT", None)
    if override:
        return int(override)
    default = DEFAULT_BATCH_TIMEOUTS.get(provider, 24 * 3600)
    return int(getattr(settings, f"BATCH_TIMEOUT_{provider.upper()}", default) or default)


def timeout_setting(provider: str) -> str:
    if getattr(settings, "BATCH_TIMEOUT", None):
        return "BATCH_TIMEOUT"
    return f"BATCH_TIMEOUT_{provider.upper()}"


#: A driver renews its lease once this fraction of it has passed since the last renewal.
RENEW_FRACTION = 0.25


class DriverLeaseLost(Exception):
    """The job's driver lease expired and another driver took it: stop working on the job."""


class DriverLease:
    """The lease under which one driver at a time advances a batch-mode job.

    Taken with one conditional ``UPDATE`` (free or expired) that writes an owner token and an
    expiry ``BATCH_DRIVER_LEASE_SECONDS`` (120 s) ahead; :meth:`renew` pushes the expiry forward
    during long steps (building, submitting and collecting thousands of requests), so a live
    driver keeps its lease however long the step, while a crashed driver's lease frees the job
    within ``BATCH_DRIVER_LEASE_SECONDS``. :meth:`release` clears it only while this driver
    still owns it.
    """

    def __init__(self, job_id: int, owner: str) -> None:
        self.job_id = job_id
        self.owner = owner
        self._renewed = time.monotonic()

    @staticmethod
    def seconds() -> int:
        """The lease's length in seconds (``settings.BATCH_DRIVER_LEASE_SECONDS``)."""
        return int(settings.BATCH_DRIVER_LEASE_SECONDS)

    @classmethod
    def take(cls, job_id: int) -> DriverLease | None:
        """The job's lease, or None while another driver holds a live one."""
        now = timezone.now()
        owner = uuid.uuid4().hex
        taken = (
            GenerationJob.objects.filter(pk=job_id)
            .filter(Q(driver_lease_until__isnull=True) | Q(driver_lease_until__lt=now))
            .update(
                driver_lease_until=now + timedelta(seconds=cls.seconds()),
                driver_lease_owner=owner,
            )
        )
        return cls(job_id, owner) if taken else None

    def renew(self, *, force: bool = False) -> None:
        """Push the expiry ``BATCH_DRIVER_LEASE_SECONDS`` ahead; a no-op when the last renewal
        is less than a quarter of the lease ago (unless ``force``), so calling it for every
        chunk costs one ``UPDATE`` a half minute at most.

        Raises:
            DriverLeaseLost: the lease expired and another driver took the job.
        """
        if not force and time.monotonic() - self._renewed < self.seconds() * RENEW_FRACTION:
            return
        now = timezone.now()
        kept = GenerationJob.objects.filter(pk=self.job_id, driver_lease_owner=self.owner).update(
            driver_lease_until=now + timedelta(seconds=self.seconds())
        )
        if not kept:
            raise DriverLeaseLost(f"job {self.job_id}: another driver took the batch lease")
        self._renewed = time.monotonic()

    def release(self) -> None:
        """Free the job for the next driver, unless another driver owns the lease by now."""
        GenerationJob.objects.filter(pk=self.job_id, driver_lease_owner=self.owner).update(
            driver_lease_until=None, driver_lease_owner=""
        )
