"""Rows by a set of values, in as few queries as the database's bound-variable limit allows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

T = TypeVar("T")
IN_CHUNK = 1000  # values per IN (...): well under SQLite's 32,766 bound variables


def in_chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    """The distinct ``values``, sorted, in lists short enough for one ``IN (...)``."""
    ordered = sorted(set(values))
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start:start + IN_CHUNK]


def where_in(session: Session, model: type[T], column: Any, values: set[Any]) -> list[T]:
    """Every ``model`` row whose ``column`` is one of ``values``."""
    found: list[T] = []
    for chunk in in_chunks(values):
        found.extend(session.scalars(select(model).where(column.in_(chunk))))
    return found


def by_id(session: Session, model: Any, ids: set[Any]) -> dict[Any, Any]:
    """``model`` rows by primary key ``id``; ids with no row are left out."""
    return {row.id: row for row in where_in(session, model, model.id, ids)}
