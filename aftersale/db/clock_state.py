"""Small runtime state kept in the database (the simulated clock's position)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aftersale.core.clock import as_utc
from aftersale.db.models import RuntimeState

SIM_CLOCK = "simulated_clock"


def load_clock(factory: sessionmaker[Session]) -> datetime | None:
    with factory() as session:
        value = session.scalar(select(RuntimeState.value).where(RuntimeState.key == SIM_CLOCK))
    return as_utc(datetime.fromisoformat(value)) if value else None


def save_clock(factory: sessionmaker[Session], when: datetime) -> None:
    with factory() as session, session.begin():
        row = session.get(RuntimeState, SIM_CLOCK)
        if row is None:
            session.add(RuntimeState(key=SIM_CLOCK, value=when.isoformat()))
        else:
            row.value = when.isoformat()
