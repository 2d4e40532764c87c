"""Composition hash: the cache key of a cluster summary."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable


def composition_hash(member_ids: Iterable[str], cluster_type: str) -> str:
    """SHA-256 hex digest identifying a cluster by its members and type, independent of order.

    Exact recipe (keep it stable: stored summaries are looked up by it)::

        payload = {"cluster_type": cluster_type, "members": sorted(set(member_ids))}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        sha256(text.encode("utf-8")).hexdigest()

    Member ids are compared as exact strings (no case folding); duplicates count once.

    Raises:
        ValueError: no members, or an empty cluster type.
    """
    members = sorted(set(member_ids))
    if not members:
        raise ValueError("a composition hash needs at least one member")
    if not cluster_type:
        raise ValueError("a composition hash needs a cluster type")
    payload = {"cluster_type": cluster_type, "members": members}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
