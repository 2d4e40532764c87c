"""Strict parsing of environment variables.

django-environ does the URL parsing; these wrappers make every bad value fail at start-up with
an :class:`~django.core.exceptions.ImproperlyConfigured` that names the variable, instead of
silently falling back to a default (django-environ reads ``DEBUG=maybe`` as False).
"""

from __future__ import annotations

import os
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean variable; accepts 1/0, true/false, yes/no, on/off (any case).

    Raises:
        ImproperlyConfigured: the value is none of those, naming the variable.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean (true/false, 1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Read an integer variable, optionally with a lower bound.

    Raises:
        ImproperlyConfigured: not an integer or below ``minimum``, naming the variable.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}: must be >= {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """Read a float variable, optionally with a lower bound.

    Raises:
        ImproperlyConfigured: not a number or below ``minimum``, naming the variable.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}: must be >= {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list; blanks are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_database(name: str, default: str) -> dict[str, Any]:
    """Parse a database URL (``postgres://user@host:5432/db``, ``sqlite:///path``).

    Raises:
        ImproperlyConfigured: unknown scheme or unparsable URL, naming the variable.
    """
    raw = os.environ.get(name) or default
    try:
        config = env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ImproperlyConfigured(f"{name}: cannot parse database URL ({exc})") from None
    scheme = raw.split(":", 1)[0]
    if scheme not in environ.Env.DB_SCHEMES or not config.get("ENGINE"):
        raise ImproperlyConfigured(
            f"{name}: unsupported database URL scheme {scheme!r} "
            "(use postgres://, postgresql://, sqlite:// ...)"
        )
    if "sqlite" not in config["ENGINE"] and not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}: the database URL names no database")
    return config


def env_redis_url(name: str) -> str | None:
    """Read an optional Redis URL (``redis://host:port/db``); None when unset or empty.

    Raises:
        ImproperlyConfigured: not a redis://, rediss:// or unix:// URL, naming the variable.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"{name}: expected a redis:// URL, got {raw!r}")
    return raw


def env_json(name: str, default: Any) -> Any:
    """Read a JSON value (object, list, number ...).

    Raises:
        ImproperlyConfigured: not valid JSON, naming the variable.
    """
    import json

    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name}: not valid JSON ({exc.msg} at {exc.pos})") from None


def env_cache(name: str) -> dict[str, Any]:
    """Parse a cache URL (``redis://host:6379/1``, ``locmem://``) with django-environ.

    Raises:
        ImproperlyConfigured: unparsable URL, naming the variable.
    """
    raw = os.environ.get(name, "")
    try:
        return env.cache_url_config(raw)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ImproperlyConfigured(f"{name}: cannot parse cache URL ({exc})") from None
