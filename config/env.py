"""Strict parsing of environment variables.

django-environ does the URL parsing; these wrappers make every bad value fail at start-up with
an :class:`~django.core.exceptions.ImproperlyConfigured` that names the variable, instead of
silently falling back to a default (django-environ reads ``DEBUG=maybe`` as False).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()


class SettingError(ImproperlyConfigured):
    """An environment variable has an invalid value. The message is one line that starts with
    the variable's name and says what value is expected (never echoing a secret)."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean variable; accepts 1/0, true/false, yes/no, on/off (any case).

    Raises:
        SettingError: the value is none of those, naming the variable.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(f"{name}: expected a boolean (true/false, 1/0), got {raw!r}")


def _redacted(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***`` (for error messages)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" between {minimum} and {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Read an integer variable, optionally bounded (inclusive).

    Raises:
        SettingError: not an integer or out of bounds, naming the variable.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(
            f"{name}: expected an integer{_bounds(minimum, maximum)}, got {raw!r}"
        ) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise SettingError(f"{name}: expected an integer{_bounds(minimum, maximum)}, got {value}")
    return value


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """Read a finite float variable, optionally bounded (inclusive); ``nan`` and ``inf`` are
    refused.

    Raises:
        SettingError: not a finite number or out of bounds, naming the variable.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    expected = f"{name}: expected a finite number{_bounds(minimum, maximum)}, got {raw!r}"
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(expected) from None
    if not math.isfinite(value):
        raise SettingError(expected)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise SettingError(expected)
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list; blanks are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


#: A host name, IP address (IPv6 in brackets) or Django wildcard (".example.com", "*").
_HOST = re.compile(r"^(\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])$")


def env_hosts(name: str, default: list[str]) -> list[str]:
    """Read ``ALLOWED_HOSTS``: comma-separated host names (``example.org``, ``.example.org`` for
    subdomains, ``127.0.0.1``, ``[::1]``, ``*``), no scheme, port or path.

    Raises:
        SettingError: empty, or an item that is not a host name, naming the variable.
    """
    hosts = env_list(name, default)
    bad = [host for host in hosts if not _HOST.match(host)]
    if bad or not hosts:
        shown = bad[0] if bad else os.environ.get(name, "")
        raise SettingError(
            f"{name}: expected comma-separated host names like example.org or 127.0.0.1 "
            f"(no scheme, port or path), got {shown!r}"
        )
    return hosts


def env_path(name: str, default: Path) -> Path:
    """Read an absolute filesystem path; ``default`` when unset or blank.

    Raises:
        SettingError: a relative path or one with control characters, naming the variable.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not os.path.isabs(raw) or any(not c.isprintable() for c in raw):
        raise SettingError(f"{name}: expected an absolute path like /srv/static, got {raw!r}")
    return Path(raw)


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """Read one of ``choices`` (case-sensitive); blank means ``default``.

    Raises:
        SettingError: any other value, naming the variable and the choices.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise SettingError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
    return raw


def env_url(name: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """Read an optional absolute URL (``http://127.0.0.1:8765``); "" when unset or blank.

    Raises:
        SettingError: not an absolute URL of one of ``schemes`` with a host (and a valid
        port), naming the variable.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    expected = f"{name}: expected an {' or '.join(schemes)} URL like http://127.0.0.1:8765"
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise SettingError(f"{expected}, got {_redacted(raw)!r}") from None
    if parts.scheme not in schemes or not parts.hostname or any(c.isspace() for c in raw):
        raise SettingError(f"{expected}, got {_redacted(raw)!r}")
    return raw


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$")


def env_name(name: str, what: str = "a model name like gemini-2.5-flash") -> str:
    """Read an optional identifier (a model name): at most 100 letters, digits and
    ``. _ : / @ + -``, no spaces; "" when unset or blank.

    Raises:
        SettingError: any other value, naming the variable.
    """
    raw = os.environ.get(name, "").strip()
    if raw and not _NAME.match(raw):
        raise SettingError(
            f"{name}: expected {what} (at most 100 letters, digits and . _ : / @ + -, "
            f"no spaces), got {raw!r}"
        )
    return raw


def env_secret(name: str, *, fallback: str = "", min_length: int = 1) -> str:
    """Read a secret (an API key, the secret key): "" when unset or empty. The value is never
    echoed in an error.

    Raises:
        SettingError: it contains whitespace or control characters (e.g. the line break of a
        key read with ``$(cat file)`` plus an extra newline) or is shorter than ``min_length``,
        naming the variable only.
    """
    raw = os.environ.get(name, "")
    if raw == "" and fallback:
        raw = os.environ.get(fallback, "")
        name = fallback
    if raw == "":
        return ""
    if any(c.isspace() or not c.isprintable() for c in raw) or len(raw) < min_length:
        longer = f", at least {min_length} characters" if min_length > 1 else ""
        raise SettingError(
            f"{name}: expected a secret without spaces, line breaks or control characters"
            f"{longer} (the value is not shown)"
        )
    return raw


def env_rate(name: str, default: str) -> str:
    """Read a request rate the ``limits`` library parses: ``30/minute``, ``6 per 2 seconds``,
    with a positive count.

    Raises:
        SettingError: unparsable or a zero count, naming the variable.
    """
    from limits import parse

    raw = os.environ.get(name, "").strip() or default
    expected = f"{name}: expected a rate like 30/minute or 6 per 2 seconds, got {raw!r}"
    try:
        item = parse(raw)
    except ValueError:
        raise SettingError(expected) from None
    if item.amount < 1 or item.multiples < 1:
        raise SettingError(expected)
    return raw


_THROTTLE = re.compile(r"^([1-9][0-9]*)/(s|sec|second|m|min|minute|h|hour|d|day)s?$")


def env_throttle_rate(name: str, default: str) -> str:
    """Read a Django REST framework throttle rate: ``COUNT/PERIOD`` with a positive count and
    a period of second, minute, hour or day (``60/hour``, ``10/s``).

    Raises:
        SettingError: any other value, naming the variable.
    """
    raw = os.environ.get(name, "").strip() or default
    if not _THROTTLE.match(raw):
        raise SettingError(
            f"{name}: expected COUNT/PERIOD with a period of second, minute, hour or day, "
            f"e.g. 60/hour, got {raw!r}"
        )
    return raw


def env_price_table(name: str) -> dict[str, list[float]]:
    """Read a price table: a JSON object ``{"model": [usd_per_M_input, usd_per_M_output]}``
    with finite, non-negative prices (USD per million tokens); ``{}`` when unset.

    Raises:
        SettingError: not JSON, not that shape, or a negative or non-finite price, naming the
        variable (and the first bad model).
    """
    value = env_json(name, {})
    expected = f'{name}: expected a JSON object {{"model": [usd_per_M_input, usd_per_M_output]}}'
    if not isinstance(value, dict):
        raise SettingError(f"{expected}, got a JSON {type(value).__name__}")
    for model, pair in value.items():
        ok = (
            isinstance(pair, list)
            and len(pair) == 2
            and all(
                isinstance(p, int | float)
                and not isinstance(p, bool)
                and math.isfinite(p)
                and p >= 0
                for p in pair
            )
        )
        if not ok or not model:
            raise SettingError(
                f"{expected} with two non-negative numbers per model, got {model!r}: "
                f"{json.dumps(pair)}"
            )
    return {str(model): [float(p) for p in pair] for model, pair in value.items()}


def env_database(name: str, default: str) -> dict[str, Any]:
    """Parse a database URL (``postgres://user@host:5432/db``, ``sqlite:///path``).

    Raises:
        SettingError: unknown scheme or unparsable URL, naming the variable.
    """
    raw = os.environ.get(name) or default
    expected = (
        f"{name}: expected a database URL like postgres://user@127.0.0.1:5432/clustersum or "
        "sqlite:///path/db.sqlite3"
    )
    try:
        config = env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise SettingError(f"{expected}, got {_redacted(raw)!r} ({exc})") from None
    scheme = raw.split(":", 1)[0]
    if scheme not in environ.Env.DB_SCHEMES or not config.get("ENGINE"):
        raise SettingError(f"{expected}, got {_redacted(raw)!r} (unsupported scheme {scheme!r})")
    if "sqlite" not in config["ENGINE"] and not config.get("NAME"):
        raise SettingError(f"{expected}, got {_redacted(raw)!r} (no database name)")
    return config


def env_redis_url(name: str) -> str | None:
    """Read an optional Redis URL (``redis://host:port/db``); None when unset or empty.

    Raises:
        SettingError: not a redis://, rediss:// or unix:// URL, naming the variable.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    expected = (
        f"{name}: expected a redis:// URL like redis://127.0.0.1:6379/0, got {_redacted(raw)!r}"
    )
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise SettingError(expected)
    if raw.startswith("unix://"):
        return raw
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise SettingError(expected) from None
    database = parts.path.strip("/")
    if not parts.hostname or (database and not database.isdigit()):
        raise SettingError(expected)
    return raw


def env_json(name: str, default: Any) -> Any:
    """Read a JSON value (object, list, number ...).

    Raises:
        SettingError: not valid JSON, naming the variable.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingError(
            f"{name}: expected valid JSON, got {raw!r} ({exc.msg} at {exc.pos})"
        ) from None


def env_cache(name: str) -> dict[str, Any]:
    """Parse a cache URL (``redis://host:6379/1``, ``locmem://``) with django-environ.

    Raises:
        SettingError: unparsable URL, naming the variable.
    """
    raw = os.environ.get(name, "").strip()
    expected = f"{name}: expected a cache URL like redis://127.0.0.1:6379/1 or locmemcache://"
    try:
        config = env.cache_url_config(raw)
        parts = urlsplit(raw)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except Exception:  # django-environ raises several types for bad URLs
        raise SettingError(f"{expected}, got {_redacted(raw)!r}") from None
    local = parts.scheme in {"locmemcache", "dummycache", "filecache", "dbcache"}
    if not local and not parts.hostname and not parts.scheme.endswith("unix"):
        raise SettingError(f"{expected}, got {_redacted(raw)!r} (no host)")
    return config
