"""A batch's rows of one table as plain Python objects, written back with one executemany each.

process-events reads and writes a few thousand rows per batch. As ORM instances, building them
(attribute instrumentation, the identity map) and flushing them (the unit of work, one state
object per row) cost more than the batch's own logic. Here a loaded row is a slotted object with
the model's attribute names, so code written against the model reads and sets it unchanged; new
rows are inserted, and changed loaded rows updated column by column, with Core ``executemany``.

Change tracking compares each loaded row with the values it was loaded with, so a value must be
replaced, not changed in place (``order.items.append`` would go unnoticed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import field, make_dataclass
from functools import cache
from operator import attrgetter
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, ColumnDefault, ColumnElement, bindparam, insert, select, update
from sqlalchemy.orm import Session

from aftersale.db.lookup import in_chunks

M = TypeVar("M")
_WAS = "_loaded_as"  # the values a loaded row came with; None on a row not yet stored


class RowSet(Generic[M]):
    """The rows of ``model`` one batch has loaded or added, one object per primary key.

    The objects are not ``model`` instances, only shaped like them: typed as ``M`` so the code
    that uses them reads as it would with the model."""

    def __init__(self, model: type[M]) -> None:
        mapper = model.__mapper__  # type: ignore[attr-defined]  # M: a mapped model (bound, its Table would type as FromClause)
        self.table = mapper.local_table
        self.model = model
        # attribute name -> column: the attribute a model declares can differ from its column.
        self.columns: dict[str, Column[Any]] = {
            attr.key: attr.columns[0] for attr in mapper.column_attrs}
        (self.key, self.key_column), = ((k, c) for k, c in self.columns.items() if c.primary_key)
        self.defaults = {key: column.default.arg for key, column in self.columns.items()
                         if isinstance(column.default, ColumnDefault) and column.default.is_scalar}
        self._names = tuple(self.columns)
        self.row_type = _plain_type(model.__name__, self._names)
        self._values_of = attrgetter(*self._names)  # a row's values as a tuple, in C
        self._key_at = self._names.index(self.key)
        self._column_names = tuple(column.name for column in self.columns.values())
        self.by_key: dict[Any, M] = {}
        self.added: list[M] = []

    def load(self, session: Session, column: Any, values: Iterable[Any],
             *criteria: ColumnElement[bool]) -> list[M]:
        """Every row whose ``column`` is one of ``values`` (and that meets ``criteria``). A
        row already here is returned as it is now (with this batch's changes), not as the
        database has it."""
        found: list[M] = []
        query = select(*self.columns.values()).where(*criteria)
        for chunk in in_chunks(values):
            found.extend(self._loaded(tuple(row))
                         for row in session.execute(query.where(column.in_(chunk))))
        return found

    def by_keys(self, session: Session, keys: Iterable[Any]) -> dict[Any, M]:
        """The rows with these primary keys; a key with no row is left out."""
        return {getattr(row, self.key): row
                for row in self.load(session, self.key_column, keys)}

    def _loaded(self, values: tuple[Any, ...]) -> M:
        key = values[self._key_at]
        existing = self.by_key.get(key)
        if existing is not None:
            return existing
        row = self.row_type(*values)
        setattr(row, _WAS, values)
        self.by_key[key] = row
        return row

    def add(self, **values: Any) -> M:
        """A new row, inserted by :meth:`write`; columns not given take their default."""
        unknown = values.keys() - self.columns.keys()
        if unknown:
            raise TypeError(f"{self.model.__name__} has no column {sorted(unknown)}")
        row = self.row_type(**(self.defaults | values))
        self.added.append(row)
        key = values.get(self.key)
        if key is not None:
            self.by_key[key] = row
        return row

    def write(self, session: Session) -> None:
        """Insert the new rows, then update the changed columns of the loaded ones."""
        if self.added:
            rows = [self._values(row) for row in self.added]
            # An autoincrement key left empty is the database's to give.
            key = self.key_column.name
            if all(row[key] is None for row in rows):
                for values in rows:
                    del values[key]
            session.execute(insert(self.table), rows)
            for row in self.added:  # stored now: a later change to it is an update
                if getattr(row, self.key) is not None:  # (a row keyed by the database is not)
                    setattr(row, _WAS, self._values_of(row))
            self.added = []
        self._update(session)

    def _values(self, row: M) -> dict[str, Any]:
        return dict(zip(self._column_names, self._values_of(row), strict=True))

    def _update(self, session: Session) -> None:
        names = self._names
        by_change: defaultdict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in self.by_key.values():
            was = getattr(row, _WAS)
            if was is None:
                continue
            now = self._values_of(row)
            if now == was:
                continue
            changes = {n: new for n, old, new in zip(names, was, now, strict=True) if old != new}
            by_change[tuple(changes)].append(
                {"_key": now[self._key_at]} | {f"_{n}": v for n, v in changes.items()})
            setattr(row, _WAS, now)
        for changed, rows in by_change.items():
            statement = (update(self.table).where(self.key_column == bindparam("_key"))
                         .values({self.columns[n].name: bindparam(f"_{n}") for n in changed}))
            session.execute(statement, rows)


@cache
def _plain_type(name: str, attributes: tuple[str, ...]) -> type:
    """One slotted class per model (and its columns), made once per process. A generated
    ``__init__`` fills it faster than setattr can; equality stays identity, as for the ORM."""
    fields: list[Any] = [(a, Any, field(default=None)) for a in attributes]
    return make_dataclass(f"{name}Row", [*fields, (_WAS, Any, field(default=None, repr=False))],
                          slots=True, eq=False, namespace={"__module__": __name__})
