"""The bounds of every clustering run parameter: one table read by the parameter checks
(:class:`~clustering.domain.params.ClusteringParams`), the REST API's OpenAPI schema and the
commands ``cluster`` and ``run_pipeline``.

A bound is static (a type and a closed or half-open range) and may also depend on the dataset
(``k`` below the number of entities, ``min_cluster_size`` at most the number of entities). The
static ranges are chosen so that no accepted value can hold a worker for long or exhaust its
memory on the largest dataset we support (10,000 entities): the k-NN graph has ``n * k`` edges,
stability and the null model repeat the work ``stability_repeats`` / ``null_repeats`` times.
The README's "Run parameters" table is this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Largest Leiden seed: the C library takes an unsigned 32-bit seed.
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Bound:
    """The allowed values of one numeric parameter.

    Attributes:
        name: parameter name (``k``); the command-line option is ``--`` + name with hyphens.
        kind: ``int`` (booleans and floats refused) or ``float`` (ints accepted; NaN and
            infinities refused).
        minimum, maximum: the range; ``exclusive_minimum`` / ``exclusive_maximum`` make an end
            open.
        gap: for ``int``, values strictly between ``gap[0]`` and ``gap[1]`` are refused
            (``null_repeats``: 0 or 2..200, so ``gap = (0, 2)``).
        per_dataset: ``"below_entities"`` (value < number of entities) or ``"entities"``
            (value <= number of entities), "" when the bound is static.
        help: what the parameter does, one sentence.
    """

    name: str
    kind: type
    minimum: float
    maximum: float
    help: str
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    gap: tuple[int, int] | None = None
    per_dataset: str = ""

    @property
    def option(self) -> str:
        """The command-line option naming this parameter, e.g. ``--min-cluster-size``."""
        return "--" + self.name.replace("_", "-")

    def describe(self) -> str:
        """The range in words, e.g. ``an integer from 2 to 200`` or ``a number in (0, 100]``."""
        if self.kind is int:
            lo, hi = int(self.minimum), int(self.maximum)
            if self.gap is not None:
                text = f"{lo} or an integer from {self.gap[1]} to {hi}"
            else:
                text = f"an integer from {lo} to {hi}"
        else:
            left = "(" if self.exclusive_minimum else "["
            right = ")" if self.exclusive_maximum else "]"
            text = f"a number in {left}{_num(self.minimum)}, {_num(self.maximum)}{right}"
        if self.per_dataset == "below_entities":
            text += ", below the dataset's number of entities"
        elif self.per_dataset == "entities":
            text += ", at most the dataset's number of entities"
        return text

    def check(self, value: Any) -> str | None:
        """None when ``value`` is within the static bound, else the message ``must be ...``."""
        message = f"must be {self.describe()}, got {_shown(value)}"
        if isinstance(value, bool):
            return message
        if self.kind is int:
            if not isinstance(value, int):
                return message
        elif not isinstance(value, int | float) or not math.isfinite(value):
            return message
        if value < self.minimum or (self.exclusive_minimum and value == self.minimum):
            return message
        if value > self.maximum or (self.exclusive_maximum and value == self.maximum):
            return message
        if self.gap is not None and self.gap[0] < value < self.gap[1]:
            return message
        return None

    def check_dataset(self, value: Any, n_entities: int) -> str | None:
        """None when ``value`` (already statically valid) fits a dataset of ``n_entities``."""
        if self.per_dataset == "below_entities" and value >= n_entities:
            return f"must be below the dataset's {n_entities} entities, got {_shown(value)}"
        if self.per_dataset == "entities" and value > n_entities:
            return f"must be at most the dataset's {n_entities} entities, got {_shown(value)}"
        return None

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.0 schema of the parameter (type, minimum, maximum, description)."""
        schema: dict[str, Any] = {
            "type": "integer" if self.kind is int else "number",
            "minimum": int(self.minimum) if self.kind is int else self.minimum,
            "maximum": int(self.maximum) if self.kind is int else self.maximum,
            "description": f"{self.help} {self.describe().capitalize()}.",
        }
        if self.kind is float:
            schema["format"] = "double"
        if self.exclusive_minimum:
            schema["exclusiveMinimum"] = True
        if self.exclusive_maximum:
            schema["exclusiveMaximum"] = True
        if self.gap is not None:
            # OpenAPI 3.0 cannot say "0 or 2..200": list both forms
            lo, hi = int(self.minimum), int(self.maximum)
            schema = {
                "description": schema["description"],
                "oneOf": [
                    {"type": "integer", "enum": [lo]},
                    {"type": "integer", "minimum": self.gap[1], "maximum": hi},
                ],
            }
        return schema


def _num(value: float) -> str:
    return f"{value:g}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: The run parameters' bounds, in the order of :class:`ClusteringParams`' fields.
PARAM_BOUNDS: dict[str, Bound] = {
    b.name: b
    for b in (
        Bound(
            "k",
            int,
            2,
            200,
            "Neighbours per entity in the cosine k-nearest-neighbour graph.",
            per_dataset="below_entities",
        ),
        Bound(
            "resolution",
            float,
            0,
            100,
            "Leiden resolution (RBConfiguration); higher gives more, smaller clusters.",
            exclusive_minimum=True,
        ),
        Bound("seed", int, 0, SEED_MAX, "Random seed of Leiden, subsamples and rewirings."),
        Bound(
            "min_cluster_size",
            int,
            2,
            10_000,
            "Communities smaller than this are reported as unclustered.",
            per_dataset="entities",
        ),
        Bound(
            "min_term_size",
            int,
            1,
            10_000,
            "A term is a feature if at least this many entities have it.",
            per_dataset="entities",
        ),
        Bound(
            "max_term_fraction",
            float,
            0,
            1,
            "... and if fewer than this fraction of entities have it.",
            exclusive_minimum=True,
        ),
        Bound(
            "fdr_threshold",
            float,
            0,
            1,
            "Enrichment terms stored have a Benjamini-Hochberg FDR below this.",
            exclusive_minimum=True,
        ),
        Bound(
            "stability_repeats",
            int,
            0,
            100,
            "Subsamples for the per-cluster stability (0: not measured).",
        ),
        Bound(
            "stability_fraction",
            float,
            0.5,
            0.95,
            "Share of entities in each stability subsample.",
        ),
        Bound(
            "null_repeats",
            int,
            0,
            200,
            "Degree-preserving rewirings for the modularity z-scores (0: none).",
            gap=(0, 2),
        ),
        Bound(
            "evidence_jaccard",
            float,
            0,
            1,
            "Jaccard index at which the redundancy filter hides a less significant term.",
            exclusive_minimum=True,
        ),
    )
}

#: Values of ``algorithm`` (not numeric, so not in the table above).
ALGORITHMS = ("leiden",)

#: Bounds of command-line options that are not run parameters.
COMMAND_BOUNDS: dict[str, Bound] = {
    "top": Bound("top", int, 1, 50, "Terms shown per cluster by `manage.py cluster`."),
}


def static_errors(values: dict[str, Any]) -> dict[str, str]:
    """``name -> message`` for every value of ``values`` (parameter name -> value) outside its
    static bound; names without a bound are ignored."""
    errors: dict[str, str] = {}
    for name, value in values.items():
        bound = PARAM_BOUNDS.get(name) or COMMAND_BOUNDS.get(name)
        if bound is None:
            continue
        message = bound.check(value)
        if message is not None:
            errors[name] = message
    return errors


def dataset_errors(values: dict[str, Any], *, n_entities: int) -> dict[str, str]:
    """``name -> message`` for parameters that do not fit a dataset of ``n_entities`` entities
    (``values`` must already be statically valid)."""
    errors: dict[str, str] = {}
    for name, value in values.items():
        bound = PARAM_BOUNDS.get(name)
        if bound is None or not bound.per_dataset:
            continue
        message = bound.check_dataset(value, n_entities)
        if message is not None:
            errors[name] = message
    return errors


def bounds_markdown() -> str:
    """The README's table of run parameters: name, option, default, bound, meaning."""
    from .params import ClusteringParams

    defaults = ClusteringParams().to_dict()
    lines = [
        "| parameter | command option | default | allowed values | meaning |",
        "|---|---|---|---|---|",
    ]
    for bound in PARAM_BOUNDS.values():
        lines.append(
            f"| `{bound.name}` | `{bound.option}` | {defaults[bound.name]} | {bound.describe()} "
            f"| {bound.help} |"
        )
    lines.append(
        f"| `algorithm` | - | {defaults['algorithm']} | {', '.join(ALGORITHMS)} "
        "| Community detection algorithm. |"
    )
    return "\n".join(lines)
