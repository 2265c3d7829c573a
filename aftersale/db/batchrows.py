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
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, bindparam, insert, select, update
from sqlalchemy.orm import Session

from aftersale.db.lookup import IN_CHUNK

M = TypeVar("M")
_WAS = "_loaded_as"  # the values a loaded row came with; absent on a new row


class RowSet(Generic[M]):
    """The rows of ``model`` one batch has loaded or added, one object per primary key.

    The objects are not ``model`` instances, only shaped like them: typed as ``M`` so the code
    that uses them reads as it would with the model."""

    def __init__(self, model: type[M]) -> None:
        mapper = model.__mapper__  # type: ignore[attr-defined]
        self.table = mapper.local_table
        self.model = model
        # attribute name -> column: the attribute a model declares can differ from its column.
        self.columns: dict[str, Column[Any]] = {
            attr.key: attr.columns[0] for attr in mapper.column_attrs}
        (self.key, self.key_column), = ((k, c) for k, c in self.columns.items() if c.primary_key)
        self.defaults = {key: column.default.arg for key, column in self.columns.items()
                         if column.default is not None and column.default.is_scalar}
        self.row_type = _plain_type(model.__name__, tuple(self.columns))
        self._names = list(self.columns)
        self._key_at = self._names.index(self.key)
        self.by_key: dict[Any, M] = {}
        self.added: list[M] = []

    def load(self, session: Session, column: Any, values: Iterable[Any]) -> list[M]:
        """Every row whose ``column`` is one of ``values``. A row already here is returned as
        it is now (with this batch's changes), not as the database has it."""
        found: list[M] = []
        ordered = sorted(set(values))
        query = select(*self.columns.values())
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start:start + IN_CHUNK]
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
        row = self.row_type()
        for name, value in zip(self._names, values, strict=True):
            setattr(row, name, value)
        setattr(row, _WAS, values)
        self.by_key[key] = row
        return row  # type: ignore[no-any-return]

    def add(self, **values: Any) -> M:
        """A new row, inserted by :meth:`write`; columns not given take their default."""
        unknown = values.keys() - self.columns.keys()
        if unknown:
            raise TypeError(f"{self.model.__name__} has no column {sorted(unknown)}")
        row = self.row_type()
        for name in self.columns:
            setattr(row, name, values[name] if name in values else self.defaults.get(name))
        self.added.append(row)
        key = values.get(self.key)
        if key is not None:
            self.by_key[key] = row
        return row  # type: ignore[no-any-return]

    def write(self, session: Session) -> None:
        """Insert the new rows, then update the changed columns of the loaded ones."""
        if self.added:
            rows = [self._values(row) for row in self.added]
            # An autoincrement key left empty is the database's to give.
            if all(row[self.key] is None for row in rows):
                for row in rows:
                    del row[self.key]
            session.execute(insert(self.table), rows)
            for row in self.added:  # stored now: a later change to it is an update
                if getattr(row, self.key) is not None:  # (a row keyed by the database is not)
                    setattr(row, _WAS, tuple(getattr(row, name) for name in self._names))
            self.added = []
        self._update(session)

    def _values(self, row: M) -> dict[str, Any]:
        return {self.columns[name].name: getattr(row, name) for name in self.columns}

    def _update(self, session: Session) -> None:
        names = self._names
        by_change: defaultdict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in self.by_key.values():
            was = getattr(row, _WAS, None)
            if was is None:
                continue
            now = tuple(getattr(row, name) for name in names)
            if now == was:
                continue
            changed = tuple(n for n, old, new in zip(names, was, now, strict=True) if old != new)
            by_change[changed].append(
                {"_key": getattr(row, self.key)} | {f"_{n}": getattr(row, n) for n in changed})
            setattr(row, _WAS, now)
        for changed, rows in by_change.items():
            statement = (update(self.table).where(self.key_column == bindparam("_key"))
                         .values({self.columns[n].name: bindparam(f"_{n}") for n in changed}))
            session.execute(statement, rows)


_TYPES: dict[tuple[str, tuple[str, ...]], type] = {}


def _plain_type(name: str, attributes: tuple[str, ...]) -> type:
    """One slotted class per model (and its columns), made once per process."""
    known = _TYPES.get((name, attributes))
    if known is None:
        known = _TYPES[(name, attributes)] = type(
            f"{name}Row", (), {"__slots__": (*attributes, _WAS), "__module__": __name__,
                               "__repr__": _repr})
    return known


def _repr(row: Any) -> str:
    shown = ", ".join(f"{name}={getattr(row, name, None)!r}" for name in row.__slots__[:4])
    return f"{type(row).__name__}({shown}, ...)"
