"""The composition cache: one place for its rule.

A summary is cached by what it describes, not by the run that asked: the key is
``(cluster_type, composition_hash)`` (the hash of the sorted member ids and the cluster type,
:func:`clustering.domain.hashing.composition_hash`). The rules, as the README's "Summaries,
judging and the cache" section states them:

1. **One current summary per key.** ``ClusterSummary.is_current`` marks it (a partial unique
   index holds it in the database); older rows are kept as history.
2. **Model and prompt version do not invalidate.** They are recorded on the summary, never part
   of the key.
3. **``force`` regenerates**, keeping the old row as history ...
4. **... except a summary a curator decided** (``human_locked``): it is never overwritten, with
   or without ``force``; only a curator's own regenerate lifts the lock.
5. **The first store wins.** A summary stored for the key by another job while this one was
   generating is kept (the new result is dropped), unless this job was forced.

Planning (:func:`llm.services.generation.job_plan`), storing
(:func:`llm.services.generation`'s store step), the API, the admin and the report all read the
rule from here: :func:`current_summaries` selects, :func:`cache_decide` decides one key, and
:func:`cache_winners` / :func:`cache_join_sql` are the same decision over many keys for
set-based planning.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from django.db.models import QuerySet

from llm.models import ClusterSummary

#: ``last_error`` of a task served from the cache.
CACHE_HIT_MESSAGE = "cache hit: same members and cluster type already summarised"
#: ``last_error`` of a task kept because a curator decided its summary (rule 4).
LOCKED_MESSAGE = "kept: a curator set this summary's status; --force does not overwrite it"
#: ``last_error`` of a task whose result lost to a summary stored meanwhile (rule 5).
FILLED_MEANWHILE_MESSAGE = "cache filled meanwhile by another job"


class CacheDecision(StrEnum):
    """What the cache says for one key: serve the current summary (``hit``), keep it because a
    curator decided it (``locked``), or generate (``miss``)."""

    HIT = "hit"
    LOCKED = "locked"
    MISS = "miss"


def current_summaries(
    *, cluster_type: str | Iterable[str], hashes: Iterable[str] | None = None
) -> QuerySet[ClusterSummary]:
    """The current summaries of ``cluster_type`` (one type or several), optionally only those
    of the composition ``hashes``: at most one row per (type, hash) (rule 1). Lazy queryset."""
    types = [cluster_type] if isinstance(cluster_type, str) else list(cluster_type)
    rows = ClusterSummary.objects.filter(is_current=True, cluster_type__in=types)
    if hashes is not None:
        rows = rows.filter(composition_hash__in=list(hashes))
    return rows


def cache_decide(current: ClusterSummary | None, *, force: bool) -> CacheDecision:
    """The decision for one key, given its current summary (None when the key has none)."""
    if current is None:
        return CacheDecision.MISS
    if current.human_locked:
        return CacheDecision.LOCKED
    return CacheDecision.MISS if force else CacheDecision.HIT


def cache_winners(current: QuerySet[ClusterSummary], *, force: bool) -> QuerySet[ClusterSummary]:
    """Of ``current`` (see :func:`current_summaries`), the summaries that are served instead of
    generating: all of them, or with ``force`` only the curator-locked ones (rules 3-4)."""
    return current.filter(human_locked=True) if force else current


def cache_join_sql(summary_alias: str, *, force: bool) -> str:
    """The same rule as :func:`cache_winners` as a SQL join condition on the summary table
    aliased ``summary_alias`` (the key columns are joined by the caller), for set-based
    planning in one statement."""
    locked_only = f" AND {summary_alias}.human_locked" if force else ""
    return f"{summary_alias}.is_current{locked_only}"


def cache_message(*, force: bool) -> str:
    """The ``last_error`` a planned task gets when the cache serves it: a hit, or with
    ``force`` a curator-locked summary kept."""
    return LOCKED_MESSAGE if force else CACHE_HIT_MESSAGE


def stored_meanwhile_wins(current: ClusterSummary | None, *, force: bool) -> str | None:
    """At store time: the reason to keep ``current`` (a summary of the key stored while this
    task generated) and drop the new result, or None to store it (rules 3-5)."""
    decision = cache_decide(current, force=force)
    if decision is CacheDecision.LOCKED:
        return "kept: a curator set this summary's status"
    if decision is CacheDecision.HIT:
        return FILLED_MEANWHILE_MESSAGE
    return None
