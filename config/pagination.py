"""Page-number pagination of the API that reads ``page`` strictly."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class StrictPageNumberPagination(PageNumberPagination):
    """``?page=N`` (a positive integer, or ``last``), given at most once; anything else (an
    empty value, ``true``, a repeated ``page``) is the same 404 "Invalid page." as a page out
    of range, instead of silently the first page."""

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        values = request.query_params.getlist(self.page_query_param)
        if values:
            value = values[0].strip()
            valid = value.isdigit() or value in self.last_page_strings
            if len(values) != 1 or not valid:
                raise NotFound(self.invalid_page_message.format(page_number=values[-1][:20]))
        return super().get_page_number(request, paginator)
