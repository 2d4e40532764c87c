"""The OpenAPI schema generator of the API (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``).

drf-spectacular's ``AutoSchema`` plus what it cannot infer from our own permission and
pagination classes:

* reads that anonymous visitors may make (permission ``CanRead`` while ``API_ANONYMOUS_READ``
  is true) list the empty security requirement ``{}``: authentication is optional there;
* a paginated list documents the 404 of a page out of range (``?page=999``), with the error
  body of every API error.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import SAFE_METHODS


class ApiAutoSchema(AutoSchema):
    """``AutoSchema`` with optional authentication on anonymous reads and the 404 of an
    out-of-range page on paginated lists."""

    def get_auth(self) -> list[dict[str, Any]]:
        auths: list[dict[str, Any]] = super().get_auth()
        from llm.api import CanRead

        permissions = self.view.get_permissions()
        anonymous = (
            self.method in SAFE_METHODS
            and bool(getattr(settings, "API_ANONYMOUS_READ", True))
            and bool(permissions)
            and all(isinstance(p, CanRead) for p in permissions)
        )
        if anonymous and {} not in auths:
            auths.append({})
        return auths

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        paginated = getattr(self.view, "pagination_class", None) is not None
        if self.method == "GET" and paginated and self._is_list_view() and "404" not in responses:
            from llm.serializers import ErrorSerializer

            responses["404"] = self._get_response_for_code(ErrorSerializer, "404", None, direction)
            responses["404"]["description"] = "Page out of range (`page` beyond the last page)."
        return responses
