"""Every error path answers in one shape: {"detail", "code", "errors"}."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from clustering.models import ClusteringRun
from tests.support.world import assert_error_shape, build_world, client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_unknown_api_path_is_a_json_404() -> None:
    response = client_for(None).get("/api/nothing/here/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert_error_shape(response.json(), code="not_found")


def test_missing_trailing_slash_is_pointed_out() -> None:
    response = client_for(None).get("/api/runs")
    assert response.status_code == 404
    assert_error_shape(response.json(), code="not_found")
    assert "/api/runs/" in response.json()["detail"]


def test_malformed_json_is_a_400() -> None:
    response = client_for(make_user("runner")).post(
        "/api/runs/", data='{"dataset": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert_error_shape(response.json(), code="parse_error")


def test_a_json_list_instead_of_an_object_is_a_400() -> None:
    response = client_for(make_user("runner")).post("/api/runs/", [1, 2], format="json")
    assert response.status_code == 400
    assert_error_shape(response.json(), code="invalid")
    assert "non_field_errors" in response.json()["errors"]


def test_form_bodies_are_refused_with_415() -> None:
    response = client_for(make_user("runner")).post("/api/runs/", {"dataset": "demo-genes"})
    assert response.status_code == 415
    assert_error_shape(response.json(), code="unsupported_media_type")


def test_oversized_body_is_a_clean_413(settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    build_world()
    body = '{"dataset": "demo-genes", "params": {"k": 5}, "padding": "' + "x" * 5000 + '"}'
    for user in (make_user("runner"), None):
        response = client_for(user).post("/api/runs/", data=body, content_type="application/json")
        assert response.status_code == 413
        body_json = response.json()
        assert_error_shape(body_json, code="request_too_large")
        assert "2048" in body_json["detail"]
    assert ClusteringRun.objects.count() == 1


def test_oversized_form_body_on_the_token_endpoint_is_a_clean_413(settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = client_for(None).post("/api/auth/token/", {"username": "u" * 4000, "password": "p"})
    assert response.status_code == 413
    assert_error_shape(response.json(), code="request_too_large")


def test_nested_validation_errors_are_dotted() -> None:
    from config.api_errors import validation_errors

    assert validation_errors({"params": {"k": ["too small"]}, "x": ["bad"]}) == {
        "params.k": ["too small"],
        "x": ["bad"],
    }
    assert validation_errors(["whole payload"]) == {"non_field_errors": ["whole payload"]}
    assert validation_errors({"items": [{"a": ["no"]}]}) == {"items.0.a": ["no"]}


def test_unhandled_errors_are_a_json_500(monkeypatch) -> None:
    world = build_world()

    def boom(**kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("llm.run_api.pipeline_cancel", boom)
    response = client_for(make_user("staff")).post(f"/api/runs/{world.run.pk}/cancel/")
    assert response.status_code == 500
    assert_error_shape(response.json(), code="server_error")
    assert "secret" not in response.json()["detail"]


def test_django_size_errors_raised_inside_a_view_are_mapped() -> None:
    from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent

    from config.api_errors import api_exception_handler

    response = api_exception_handler(RequestDataTooBig("too big"), {})
    assert response.status_code == 413
    assert_error_shape(response.data, code="request_too_large")
    response = api_exception_handler(TooManyFieldsSent("many"), {})
    assert response.status_code == 400
    assert_error_shape(response.data, code="invalid")


def test_the_browsable_api_renders_for_staff() -> None:
    world = build_world()
    client = client_for(make_user("staff"))
    for path in (
        "/api/runs/",
        f"/api/runs/{world.run.pk}/",
        f"/api/summaries/{world.pending.pk}/",
        f"/api/runs/{world.run.pk}/clusters/",
        f"/api/clusters/{world.clusters[0].pk}/",
        "/api/calls/",
        "/api/runs/424242/",
    ):
        response = client.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code in (200, 404), path
        assert response["Content-Type"].startswith("text/html")
