"""Clustering parameters with validation that names every bad field."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .bounds import ALGORITHMS, PARAM_BOUNDS, dataset_errors, static_errors

CLUSTER_TYPES = ("phenotype", "functional")


class InvalidParameters(ValueError):
    """One or more parameters are out of range.

    Attributes:
        errors: field name -> message, one per bad field.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass(frozen=True)
class ClusteringParams:
    """Parameters of one clustering run; the bounds of each are in
    :data:`clustering.domain.bounds.PARAM_BOUNDS` (one table for the API, the commands and the
    README), checked on construction.

    Attributes:
        k: neighbours per entity in the cosine k-nearest-neighbour graph.
        resolution: Leiden resolution of the RBConfiguration quality function.
        seed: Leiden random seed; same input and seed give the same partition.
        min_cluster_size: communities smaller than this are reported as unclustered.
        min_term_size: a term is a feature if at least this many entities have it.
        max_term_fraction: ... and if fewer than this fraction of entities have it.
        fdr_threshold: enrichment terms kept in the database have FDR below this.
        algorithm: only "leiden" for now.
        stability_repeats: subsamples for the per-cluster stability (0 = not measured).
        stability_fraction: share of entities in each subsample.
        null_repeats: degree-preserving rewirings for the modularity z-scores (0 = none).
        evidence_jaccard: Jaccard index at which the similarity filter hides a less significant
            term (see clustering.domain.evidence).

    Raises:
        InvalidParameters: on construction, one message per value outside its bound.
    """

    k: int = 15
    resolution: float = 1.0
    seed: int = 42
    min_cluster_size: int = 10
    min_term_size: int = 3
    max_term_fraction: float = 0.5
    fdr_threshold: float = 0.05
    algorithm: str = "leiden"
    stability_repeats: int = 10
    stability_fraction: float = 0.8
    null_repeats: int = 10
    evidence_jaccard: float = 0.5

    def __post_init__(self) -> None:
        errors = static_errors({name: getattr(self, name) for name in PARAM_BOUNDS})
        if self.algorithm not in ALGORITHMS:
            errors["algorithm"] = f"must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}"
        if errors:
            raise InvalidParameters(errors)

    def dataset_check(self, *, n_entities: int) -> None:
        """Check the bounds that depend on the dataset (``k`` below its number of entities,
        ``min_cluster_size`` and ``min_term_size`` at most that number).

        Raises:
            InvalidParameters: one message per parameter that does not fit.
        """
        errors = dataset_errors(self.to_dict(), n_entities=n_entities)
        if errors:
            raise InvalidParameters(errors)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusteringParams:
        """Build from a dict (e.g. an API payload or a stored run's params).

        Raises:
            InvalidParameters: unknown keys or out-of-range values, one message per field.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameters({key: "unknown parameter" for key in unknown})
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of all parameters."""
        return asdict(self)
