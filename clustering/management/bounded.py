"""Command-line options for run parameters, from the bounds table
(:mod:`clustering.domain.bounds`) shared with the REST API.

The options are read as text and converted here, so that a bad value (not a number, out of its
bound, ``inf``, ``nan``, ``2**64``) is refused with one line naming the option and exit code 2,
before anything is written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from django.core.management.base import CommandParser, OutputWrapper

from clustering.domain.bounds import COMMAND_BOUNDS, PARAM_BOUNDS, Bound
from clustering.domain.params import ClusteringParams, InvalidParameters


def _bound(name: str) -> Bound:
    return PARAM_BOUNDS.get(name) or COMMAND_BOUNDS[name]


def add_bounded_arguments(
    parser: CommandParser, names: Iterable[str], *, defaults: Mapping[str, Any] | None = None
) -> None:
    """Add ``--name`` options (hyphens for underscores) for the parameters ``names``; the
    default is ``defaults[name]`` or the :class:`ClusteringParams` default, the help text the
    parameter's meaning and bound."""
    param_defaults = ClusteringParams().to_dict()
    for name in names:
        bound = _bound(name)
        default = (defaults or {}).get(name, param_defaults.get(name))
        parser.add_argument(
            bound.option,
            dest=name,
            default=None,
            metavar="N" if bound.kind is int else "X",
            help=f"{bound.help} {bound.describe().capitalize()} (default {default}).",
        )
        parser.set_defaults(**{f"_default_{name}": default})


def _convert(bound: Bound, text: str) -> Any:
    """The option's text as a number of the bound's kind; ``None`` when it is not one."""
    try:
        return int(text.strip()) if bound.kind is int else float(text)
    except ValueError:
        return None


def bounded_values(
    options: Mapping[str, Any], names: Iterable[str], *, stderr: OutputWrapper
) -> dict[str, Any]:
    """``name -> value`` of the options ``names`` (added by :func:`add_bounded_arguments`),
    converted and checked against their static bounds.

    Exits with code 2 after one ``error: --option ...`` line per bad option.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in names:
        bound = _bound(name)
        raw = options.get(name)
        if raw is None:
            values[name] = options[f"_default_{name}"]
            continue
        value = _convert(bound, str(raw))
        message = (
            f"must be {bound.describe()}, got {str(raw)[:40]!r}"
            if value is None
            else bound.check(value)
        )
        if message is not None:
            errors[name] = message
        else:
            values[name] = value
    if errors:
        usage_exit(InvalidParameters(errors), stderr)
    return values


def usage_exit(exc: InvalidParameters, stderr: OutputWrapper) -> NoReturn:
    """Write one ``error: --option message`` line per field of ``exc`` and exit with code 2."""
    for name, message in exc.errors.items():
        option = _bound(name).option if name in PARAM_BOUNDS or name in COMMAND_BOUNDS else name
        if not option.startswith("--"):
            option = "--" + option.replace("_", "-")
        stderr.write(f"error: {option} {message}")
    sys.exit(2)
