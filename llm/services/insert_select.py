"""The column list and values of an ``INSERT INTO <table> (...) SELECT ...`` built from a model.

Used where one statement must write rows and decide in SQL whether to (the planning insert that
joins the cache, the started call row that checks its job is not cancelled). Every concrete
column but the primary key is written, so a column added to the model later is filled as the
ORM would fill it; each value is cast to the backend's own type for the column (on SQLite a
datetime is TEXT: a ``timestamp`` cast there is NUMERIC and keeps only the year).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.db import connection, models


def column_cast(model: type[models.Model], name: str) -> str:
    """The backend's cast type of ``model``'s field ``name`` (e.g. ``timestamp with time zone``
    on PostgreSQL, ``TEXT`` for a datetime on SQLite)."""
    cast = model._meta.get_field(name).cast_db_type(connection)  # type: ignore[union-attr]
    assert cast is not None  # every concrete column of a table has a type
    return str(cast)


def insert_select_parts(
    model: type[models.Model],
    *,
    value_of: Callable[[Any], Any],
    rules: Mapping[str, tuple[str, list[Any]]] | None = None,
) -> tuple[str, str, list[Any]]:
    """``(columns, select_list, params)`` for ``INSERT INTO table (columns) SELECT select_list``.

    Args:
        model: the model whose table is written.
        value_of: the Python value of a field without a rule (called with the field), prepared
            with ``get_db_prep_save`` and cast with :func:`column_cast`.
        rules: field name -> (SQL expression, its parameters), for columns computed in SQL.

    Returns:
        The quoted column list and the SELECT list, comma-joined, and the SELECT list's
        parameters in order.
    """
    quote = connection.ops.quote_name
    rules = rules or {}
    columns: list[str] = []
    values: list[str] = []
    params: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(quote(str(field.column)))
        if field.name in rules:
            sql, extra = rules[field.name]
            values.append(sql)
            params.extend(extra)
            continue
        values.append(f"CAST(%s AS {column_cast(model, field.name)})")
        params.append(field.get_db_prep_save(value_of(field), connection))
    return ", ".join(columns), ", ".join(values), params
