"""The API's JSON error shape everywhere under /api/: unrouted paths and bad ids with unsafe
methods (no HTML "CSRF verification failed" page, also for a logged-in browser session without
a CSRF token), the schema and docs pages with other methods than GET, and empty typed filters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client

from clustering.models import ClusteringRun
from tests.support.world import assert_error_shape, build_world, make_user

pytestmark = pytest.mark.django_db

PATHS = [
    "/api",
    "/api/runs",
    "/api/nothing/",
    "/api/runs/1.5/rerun/",
    "/api/runs/1/cancel",
    "/api/summaries/-1/regenerate",
    "/api/clusters/abc/",
]


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize("logged_in", [False, True])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", PATHS)
def test_unsafe_methods_on_unrouted_paths_get_the_json_404(
    path: str, method: str, logged_in: bool
) -> None:
    build_world()
    client = Client(enforce_csrf_checks=True)
    if logged_in:
        client.force_login(make_user("staff"))
    response = getattr(client, method)(path, data="{}", content_type="application/json")
    assert response.status_code == 404, response.content[:200]
    assert response["Content-Type"] == "application/json"
    assert_error_shape(response.json(), code="not_found")
    assert ClusteringRun.objects.count() == 1


@pytest.mark.parametrize("logged_in", [False, True])
@pytest.mark.parametrize("path", ["/api/runs/%20/cancel/", "/api/jobs/x/cancel/"])
def test_unsafe_methods_with_a_bad_id_get_a_json_error(path: str, logged_in: bool) -> None:
    build_world()
    client = Client(enforce_csrf_checks=True)
    if logged_in:
        client.force_login(make_user("staff"))
    response = client.post(path, data="{}", content_type="application/json")
    # a session without its CSRF token is refused by DRF, in JSON; otherwise authentication
    assert response.status_code == 403 if logged_in else 401
    assert response["Content-Type"] == "application/json"
    assert_error_shape(response.json())


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_the_schema_and_docs_refuse_other_methods_in_json(path: str, method: str) -> None:
    response = getattr(Client(enforce_csrf_checks=True), method)(path)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert_error_shape(response.json(), code="method_not_allowed")


def test_a_csrf_failure_under_api_is_json(rf) -> None:
    from config.api_errors import csrf_failure

    response = csrf_failure(rf.post("/api/runs/"), reason="CSRF cookie not set.")
    assert response.status_code == 403
    assert_error_shape(__import__("json").loads(response.content), code="permission_denied")
    assert b"<html" in csrf_failure(rf.post("/admin/login/"), reason="x").content.lower()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/runs/?status=", "status"),
        ("/api/runs/?cluster_type=", "cluster_type"),
        ("/api/summaries/?validation_status=", "validation_status"),
        ("/api/summaries/?is_current=", "is_current"),
        ("/api/jobs/?run=", "run"),
    ],
)
def test_an_empty_typed_filter_is_a_400_naming_it(path: str, field: str) -> None:
    build_world()
    response = Client().get(path)
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert list(response.json()["errors"]) == [field]


def test_an_empty_text_filter_is_no_filter() -> None:
    build_world()
    assert Client().get("/api/runs/?dataset=").json()["count"] == 1


def test_a_page_out_of_range_is_a_documented_json_404() -> None:
    from drf_spectacular.generators import SchemaGenerator

    build_world()
    response = Client().get("/api/runs/?page=999")
    assert response.status_code == 404
    assert_error_shape(response.json(), code="not_found")
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path in ("/api/runs/", "/api/summaries/", "/api/jobs/", "/api/calls/"):
        assert "404" in schema["paths"][path]["get"]["responses"], path
    # anonymous reads: authentication optional; writes: required
    assert {} in schema["paths"]["/api/runs/"]["get"]["security"]
    assert {} not in schema["paths"]["/api/runs/"]["post"]["security"]
    assert {} not in schema["paths"]["/api/calls/"]["get"]["security"]


@pytest.mark.parametrize("query", ["page=", "page=true", "page=1&page=2", "page=-1", "page=0"])
def test_a_malformed_page_is_the_invalid_page_404(query: str) -> None:
    build_world()
    response = Client().get(f"/api/runs/?{query}")
    assert response.status_code == 404
    assert_error_shape(response.json(), code="not_found")
    assert Client().get("/api/runs/?page=1").status_code == 200


@pytest.mark.parametrize("value", ["null", "maybe", "-7.9e307"])
def test_a_boolean_filter_other_than_true_or_false_is_a_400(value: str) -> None:
    build_world()
    response = Client().get(f"/api/summaries/?is_current={value}")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["is_current"]
    assert Client().get("/api/summaries/?is_current=false").status_code == 200
