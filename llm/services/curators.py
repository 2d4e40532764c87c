"""The ``curators`` group: exactly the permissions the review desk (the Django admin) needs.

A curator sees datasets, clustering runs, clusters with their terms, summaries with their audit
trail, generation jobs with their tasks and the provider call log, and may change summaries
(validate, reject, mark pending, regenerate: ``llm.admin.review.ClusterSummaryAdmin`` offers
those to holders of ``llm.change_clustersummary``) and record validation events. Nothing
else: no deletions, no run management (``clustering.change_clusteringrun``), no batches, no
schedules.

The group is created (and its permissions reset to exactly this set) after every ``migrate``
(post_migrate, ``llm.apps``) and by ``python manage.py curator_add``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

logger = logging.getLogger(__name__)

CURATORS_GROUP = "curators"

#: ``app_label.codename`` of every permission of the group, and why the desk needs it.
CURATOR_PERMISSIONS: dict[str, str] = {
    "clustering.view_dataset": "dataset pages with release and licence",
    "clustering.view_clusteringrun": "runs and their parameters",
    "clustering.view_cluster": "cluster pages (members, quality)",
    "clustering.view_termenrichment": "the terms listed on a cluster page",
    "llm.view_clustersummary": "the summary list, quick view and detail",
    "llm.change_clustersummary": "the review actions (validate, reject, pending, regenerate)",
    "llm.view_validationevent": "the audit trail",
    "llm.add_validationevent": "recording a review in the audit trail",
    "llm.view_generationjob": "generation jobs (totals, cost)",
    "llm.view_summarytask": "the tasks of a job",
    "llm.view_llmcall": "the provider call log",
}


class CuratorError(ValueError):
    """A curator cannot be added as asked; the message is one sentence for the operator."""


def curators_group_ensure(*, using: str = "default") -> Group:
    """Create the ``curators`` group if missing and set its permissions to exactly
    :data:`CURATOR_PERMISSIONS` (a permission added by hand is removed). Idempotent.

    Permissions not created yet (a partial migration) are skipped with a warning.
    """
    wanted = {tuple(name.split(".", 1)) for name in CURATOR_PERMISSIONS}
    with transaction.atomic(using=using):
        group, _ = Group.objects.using(using).get_or_create(name=CURATORS_GROUP)
        found = [
            p
            for p in Permission.objects.using(using)
            .filter(codename__in=[codename for _, codename in wanted])
            .select_related("content_type")
            if (p.content_type.app_label, p.codename) in wanted
        ]
        missing = wanted - {(p.content_type.app_label, p.codename) for p in found}
        if missing:
            logger.warning(
                "curators group: permissions not created yet, skipped: %s",
                ", ".join(sorted(".".join(m) for m in missing)),
            )
        group.permissions.set(found)
    return group


@dataclass(frozen=True)
class CuratorAdded:
    """What :func:`curator_add` did: the user, and whether it was created or its password set."""

    user: Any
    created: bool
    password_set: bool


def curator_add(
    *, username: str, create: bool = False, password: str | None = None
) -> CuratorAdded:
    """Make ``username`` a curator: staff (may log in to the admin), member of ``curators``
    (group ensured first). Idempotent. With ``create`` a missing user is created (with
    ``password``, or no usable password when None); a given ``password`` is set in any case.

    Raises:
        CuratorError: the user does not exist and ``create`` is false, the name is not a valid
            username, or the password is empty. Nothing is written then.
    """
    user_model = get_user_model()
    username = username.strip()
    try:
        user_model.username_validator(username)
    except Exception:
        raise CuratorError(
            f"{username!r} is not a valid username (letters, digits and @ . + - _ only)"
        ) from None
    if password is not None and password == "":
        raise CuratorError("the password is empty")
    with transaction.atomic():
        user = user_model.objects.filter(username=username).first()
        created = False
        if user is None:
            if not create:
                raise CuratorError(f"no user {username!r}; pass --create to create it")
            user = user_model(username=username)
            user.set_unusable_password()
            created = True
        if password is not None:
            user.set_password(password)
        user.is_staff = True
        user.save()
        user.groups.add(curators_group_ensure())
    return CuratorAdded(user=user, created=created, password_set=password is not None)
