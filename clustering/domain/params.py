"""Clustering parameters with validation that names every bad field."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
    """Parameters of one clustering run.

    Attributes:
        k: neighbours per entity in the cosine k-nearest-neighbour graph (>= 2).
        resolution: Leiden resolution of the RBConfiguration quality function (> 0).
        seed: Leiden random seed (>= 0); same input and seed give the same partition.
        min_cluster_size: communities smaller than this are reported as unclustered (>= 2).
        min_term_size: a term is a feature if at least this many entities have it (>= 1).
        max_term_fraction: ... and if fewer than this fraction of entities have it (0 < f <= 1).
        fdr_threshold: enrichment terms kept in the database have FDR below this (0 < q <= 1).
        algorithm: only "leiden" for now.
        stability_repeats: subsamples for the per-cluster stability (0 = not measured, <= 100).
        stability_fraction: share of entities in each subsample (0.5 <= f <= 0.95).
        null_repeats: degree-preserving rewirings for the modularity z-scores (0 = none, or
            2..200).
        evidence_jaccard: Jaccard index at which the similarity filter hides a less significant
            term (0 < j <= 1; see clustering.domain.evidence).
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
        errors: dict[str, str] = {}

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_num(value: Any) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        if not is_int(self.k) or self.k < 2:
            errors["k"] = f"must be an integer >= 2, got {self.k!r}"
        if not is_num(self.resolution) or not self.resolution > 0:
            errors["resolution"] = f"must be a positive number, got {self.resolution!r}"
        if not is_int(self.seed) or self.seed < 0:
            errors["seed"] = f"must be a non-negative integer, got {self.seed!r}"
        if not is_int(self.min_cluster_size) or self.min_cluster_size < 2:
            errors["min_cluster_size"] = f"must be an integer >= 2, got {self.min_cluster_size!r}"
        if not is_int(self.min_term_size) or self.min_term_size < 1:
            errors["min_term_size"] = f"must be an integer >= 1, got {self.min_term_size!r}"
        if not is_num(self.max_term_fraction) or not 0 < self.max_term_fraction <= 1:
            errors["max_term_fraction"] = f"must be in (0, 1], got {self.max_term_fraction!r}"
        if not is_num(self.fdr_threshold) or not 0 < self.fdr_threshold <= 1:
            errors["fdr_threshold"] = f"must be in (0, 1], got {self.fdr_threshold!r}"
        if not is_int(self.stability_repeats) or not 0 <= self.stability_repeats <= 100:
            errors["stability_repeats"] = (
                f"must be an integer from 0 to 100, got {self.stability_repeats!r}"
            )
        if not is_num(self.stability_fraction) or not 0.5 <= self.stability_fraction <= 0.95:
            errors["stability_fraction"] = (
                f"must be in [0.5, 0.95], got {self.stability_fraction!r}"
            )
        if not is_int(self.null_repeats) or not (
            self.null_repeats == 0 or 2 <= self.null_repeats <= 200
        ):
            errors["null_repeats"] = (
                f"must be 0 or an integer from 2 to 200, got {self.null_repeats!r}"
            )
        if not is_num(self.evidence_jaccard) or not 0 < self.evidence_jaccard <= 1:
            errors["evidence_jaccard"] = f"must be in (0, 1], got {self.evidence_jaccard!r}"
        if self.algorithm != "leiden":
            errors["algorithm"] = f"only 'leiden' is supported, got {self.algorithm!r}"
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
