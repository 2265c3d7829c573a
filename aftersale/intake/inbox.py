"""The durable inbox: store validated events once by id, before anything acts on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from aftersale.db.models import InboxEvent
from aftersale.events import Event

CHUNK = 2000


@dataclass(frozen=True)
class StoreResult:
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


def event_row(event: Event, source: str, received_at: datetime) -> dict[str, object]:
    return {
        "event_id": event.id,
        "type": event.type.value,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "source": source,
        "payload": event.model_dump(mode="json", exclude_none=True),
        "status": "pending",
    }


def insert_ignoring_duplicates(session: Session, rows: Sequence[dict[str, object]]) -> int:
    """INSERT ... ON CONFLICT (event_id) DO NOTHING; returns how many rows were new.

    One statement executed with the rows as a list, which SQLAlchemy sends as batches of a
    statement compiled once ("insertmanyvalues"), rather than a multi-row statement compiled
    afresh for every chunk's values: three times faster. RETURNING counts what was new on
    both databases (psycopg reports no rowcount for it)."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    builder = pg_insert if dialect == "postgresql" else sqlite_insert
    table = InboxEvent.__table__
    statement = (builder(table).on_conflict_do_nothing(index_elements=["event_id"])
                 .returning(table.c.seq))
    stored = 0
    for start in range(0, len(rows), CHUNK):
        stored += len(session.execute(statement, list(rows[start : start + CHUNK])).all())
    return stored


def store_events(session: Session, events: Sequence[Event], source: str,
                 received_at: datetime) -> StoreResult:
    """Store in the caller's transaction: either the whole batch is stored or none of it."""
    rows = [event_row(e, source, received_at) for e in events]
    return StoreResult(received=len(rows), stored=insert_ignoring_duplicates(session, rows))


def pending_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            select(func.count()).select_from(InboxEvent).where(InboxEvent.status == "pending")
        ).scalar_one()

