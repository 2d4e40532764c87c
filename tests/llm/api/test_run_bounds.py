"""Bounded run parameters on the REST API: every parameter of the bounds table answers 400
keyed ``params.<name>`` outside its bound (static and per dataset), nothing is stored, and the
OpenAPI schema carries the same bounds."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from drf_spectacular.generators import SchemaGenerator

from clustering.domain.bounds import PARAM_BOUNDS, SEED_MAX, Bound
from clustering.domain.params import ClusteringParams
from clustering.models import ClusteringRun
from llm.models import GenerationJob, JobStatus
from tests.support.world import assert_error_shape, build_world, client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _outside(bound: Bound) -> list[Any]:
    """Values just outside the bound, far outside it, of the wrong type, and non-finite."""
    if bound.kind is int:
        lo, hi = int(bound.minimum), int(bound.maximum)
        values: list[Any] = [lo - 1, hi + 1, 10**30, -(10**30), 1.5, True, "3", None]
        if bound.gap is not None:
            values.append(bound.gap[0] + 1)
        return values
    below = bound.minimum if bound.exclusive_minimum else bound.minimum - 1e-9
    above = bound.maximum + 1e-9
    return [below, above, 1e308, -1e308, "0.5", False, None, [0.5]]


CASES = [(name, value) for name, bound in PARAM_BOUNDS.items() for value in _outside(bound)]


@pytest.fixture
def idle() -> Any:
    world = build_world()  # demo-genes: 30 entities
    GenerationJob.objects.filter(pk=world.job.pk).update(status=JobStatus.SUCCEEDED)
    return world


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_each_parameter_out_of_bound_is_400_keyed_by_its_path(
    idle: Any, name: str, value: Any
) -> None:
    before = ClusteringRun.objects.count()
    response = client_for(make_user("runner")).post(
        "/api/runs/", {"dataset": "demo-genes", "params": {name: value}}, format="json"
    )
    assert response.status_code == 400, response.json()
    body = response.json()
    assert_error_shape(body, code="invalid")
    assert list(body["errors"]) == [f"params.{name}"]
    assert PARAM_BOUNDS[name].describe() in body["errors"][f"params.{name}"][0]
    assert ClusteringRun.objects.count() == before


@pytest.mark.parametrize(
    ("params", "key", "message"),
    [
        ({"k": 30}, "params.k", "below the dataset's 30 entities"),
        ({"k": 200}, "params.k", "below the dataset's 30 entities"),
        ({"min_cluster_size": 31}, "params.min_cluster_size", "at most the dataset's 30"),
        ({"min_term_size": 31}, "params.min_term_size", "at most the dataset's 30"),
    ],
)
def test_bounds_that_depend_on_the_dataset(
    idle: Any, params: dict[str, int], key: str, message: str
) -> None:
    response = client_for(make_user("runner")).post(
        "/api/runs/", {"dataset": "demo-genes", "params": params}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [key]
    assert message in response.json()["errors"][key][0]
    assert ClusteringRun.objects.count() == 1


def test_the_extreme_allowed_values_are_accepted(idle: Any) -> None:
    params = {
        "k": 29,
        "min_cluster_size": 30,
        "seed": SEED_MAX,
        "resolution": 100,
        "null_repeats": 0,
        "stability_repeats": 0,
        "evidence_jaccard": 1,
    }
    response = client_for(make_user("runner")).post(
        "/api/runs/", {"dataset": "demo-genes", "params": params}, format="json"
    )
    assert response.status_code == 202, response.json()
    stored = ClusteringRun.objects.get(pk=response.json()["id"]).params
    assert {k: stored[k] for k in params} == params


def test_rerun_of_a_run_stored_out_of_bounds_is_400(idle: Any) -> None:
    ClusteringRun.objects.filter(pk=idle.run.pk).update(
        params={**ClusteringParams().to_dict(), "k": 10**30}
    )
    response = client_for(make_user("runner")).post(
        f"/api/runs/{idle.run.pk}/rerun/", {}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["params.k"]
    assert ClusteringRun.objects.count() == 1


def test_the_schema_carries_the_bounds_table() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    request = schema["components"]["schemas"]["RunCreate"]
    params = request["properties"]["params"]
    assert params["additionalProperties"] is False
    for name, bound in PARAM_BOUNDS.items():
        prop = params["properties"][name]
        if bound.gap is not None:
            assert prop["oneOf"][1]["maximum"] == bound.maximum
            continue
        assert prop["minimum"] == bound.minimum and prop["maximum"] == bound.maximum, name
        assert prop.get("exclusiveMinimum", False) == bound.exclusive_minimum
        assert math.isfinite(prop["maximum"])
