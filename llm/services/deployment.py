"""This deployment's identity: a random instance id created once in the database.

Batch display names (``clustersum-<inst>-j{job}-...``) and custom ids (``<inst>-j1-t1-g1``) carry
it, so that two databases sharing one provider key (staging and production, or a database
recreated after a reset, whose row ids start again at 1) never produce the same names: crash
recovery never adopts another deployment's batch and a result whose custom id is not one of this
deployment's rows is never stored.
"""

from __future__ import annotations

import re
import secrets

from django.db import IntegrityError, transaction

from llm.models import Deployment

#: 8 lowercase hex characters: within every provider's custom-id charset (Anthropic allows
#: letters, digits, ``_`` and ``-``), short enough to leave room in its 64 characters.
IDENTITY_RE = re.compile(r"[0-9a-f]{8}")


def deployment_identity() -> str:
    """The instance id of this deployment (8 hex characters), creating it on first use.

    One query once the row exists; safe when several processes create it at once (the row's
    primary key is fixed, so one insert wins and the others read it). Not cached in the
    process: a database recreated under a running worker gets (and is used with) its own id.
    """
    row = Deployment.objects.filter(pk=Deployment.SINGLETON_PK).only("instance_id").first()
    if row is not None:
        return row.instance_id
    try:
        with transaction.atomic():
            row = Deployment.objects.create(
                pk=Deployment.SINGLETON_PK, instance_id=secrets.token_hex(4)
            )
    except IntegrityError:
        row = Deployment.objects.get(pk=Deployment.SINGLETON_PK)
    return row.instance_id


def batch_display_name(identity: str, job_id: int, kind: str, round_no: int, chunk: int) -> str:
    """``clustersum-<inst>-j{job}-{kind}-r{round}-c{chunk}``: the deterministic name of a batch
    (at most 128 characters; OpenAI keeps it as metadata, Gemini as the display name)."""
    return f"clustersum-{identity}-j{job_id}-{kind}-r{round_no}-c{chunk}"


def scoped_custom_id(identity: str, custom_id: str) -> str:
    """``<inst>-<custom_id>`` (e.g. ``1a2b3c4d-j1-t1-g1``): a request's id inside a batch."""
    return f"{identity}-{custom_id}"


def belongs_to(identity: str, custom_id: str) -> bool:
    """Whether ``custom_id`` was made by the deployment ``identity``."""
    return custom_id.startswith(f"{identity}-")
