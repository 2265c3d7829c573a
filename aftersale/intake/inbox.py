"""The durable inbox: store validated events once by id, before anything acts on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import cast

from sqlalchemy import Table, Text, bindparam
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from aftersale.core.events import Event
from aftersale.db.models import InboxEvent

CHUNK = 2000


@dataclass(frozen=True)
class StoreResult:
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


def event_row(event: Event, source: str, received_at: datetime) -> dict[str, object]:
    """The inbox row of ``event``, its payload already JSON text: pydantic writes it in Rust,
    about five times faster than a dict dumped by the JSON column, and a row of plain values
    leaves the garbage collector nothing to walk (an import holds thousands at a time)."""
    return {
        "event_id": event.id,
        "type": event.type.value,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "source": source,
        "payload_json": event.model_dump_json(exclude_none=True),
        "status": "pending",
    }


def insert_ignoring_duplicates(session: Session, rows: Sequence[dict[str, object]]) -> int:
    """INSERT ... ON CONFLICT (event_id) DO NOTHING; returns how many rows were new."""
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        return _insert_postgresql(session, rows)
    # One statement executed with the rows as a list, which SQLAlchemy sends as batches of a
    # statement compiled once ("insertmanyvalues"); RETURNING counts what was new. The
    # payload comes as JSON text (event_row), which is how SQLite keeps JSON anyway.
    table = cast(Table, InboxEvent.__table__)  # declarative makes a Table; typed as a FromClause
    statement = (sqlite_insert(table).values(payload=bindparam("payload_json", type_=Text))
                 .on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.seq))
    stored = 0
    for start in range(0, len(rows), CHUNK):
        stored += len(session.execute(statement, list(rows[start : start + CHUNK])).all())
    return stored


_PG_INSERT = (
    f"INSERT INTO {InboxEvent.__tablename__} "
    "(event_id, type, occurred_at, received_at, source, payload, status) "
    "VALUES (%s, %s, %s, %s, %s, %s::json, %s) ON CONFLICT (event_id) DO NOTHING")
# event_row's values in the order of the columns above (itemgetter builds each tuple in C).
_pg_values = itemgetter("event_id", "type", "occurred_at", "received_at", "source",
                        "payload_json", "status")


def _insert_postgresql(session: Session, rows: Sequence[dict[str, object]]) -> int:
    """psycopg's own executemany: one prepared statement, pipelined, and its rowcount is the
    number of new rows. SQLAlchemy's insertmanyvalues would send 1,000-row VALUES statements
    that psycopg re-parses in Python, 70% of an import's time on PostgreSQL."""
    return session.connection().exec_driver_sql(_PG_INSERT, list(map(_pg_values, rows))).rowcount


def store_events(session: Session, events: Sequence[Event], source: str,
                 received_at: datetime) -> StoreResult:
    """Store in the caller's transaction: either the whole batch is stored or none of it."""
    rows = [event_row(e, source, received_at) for e in events]
    return StoreResult(received=len(rows), stored=insert_ignoring_duplicates(session, rows))
