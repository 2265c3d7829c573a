"""A per-provider send rate shared by every sender, in every thread and process.

Each batch reserves a block of send slots in one short transaction on a row per provider
(``rate_limits.next_at``, wall-clock seconds); the senders then wait for their slot. Reserving
a block rather than a slot per message keeps the database out of the hot path, and the row
makes the limit hold across workers on the same database. Prefect's own ``rate_limit`` is not
used: on a SQLite Prefect server it delivers a fraction of the asked rate (see PREFECT.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import case, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from aftersale.db.models import RateLimitState


class RateLimiter:
    def __init__(self, factory: sessionmaker[Session], provider: str, per_second: float,
                 now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.provider, self.per_second = provider, per_second
        self._factory, self._now, self._sleep = factory, now, sleep
        self._lock = threading.Lock()

    def reserve(self, count: int, deadline: float | None = None) -> list[float]:
        """Wall-clock times (epoch seconds) at which ``count`` sends may start; with a
        ``deadline``, only the slots up to it. A sender must not call a provider once its
        claim may have expired (the message would be flagged ``unknown`` and could be sent
        again by review), so the slots after the deadline are given back when no one has
        reserved after them, and those messages wait for a later batch."""
        if count <= 0:
            return []
        gap = 1.0 / self.per_second
        now = self._now()
        # One UPDATE ... RETURNING: atomic on SQLite and PostgreSQL alike, with no window
        # between reading the next slot and moving it on.
        later = case((RateLimitState.next_at > now, RateLimitState.next_at), else_=now)
        statement = (update(RateLimitState).where(RateLimitState.provider == self.provider)
                     .values(next_at=later + count * gap).returning(RateLimitState.next_at))
        with self._lock, self._factory() as session, session.begin():
            end = session.execute(statement).scalar()
            if end is None:
                dialect = session.get_bind().dialect.name
                builder = pg_insert if dialect == "postgresql" else sqlite_insert
                session.execute(builder(RateLimitState).values(provider=self.provider, next_at=0.0)
                                .on_conflict_do_nothing(index_elements=["provider"]))
                end = session.execute(statement).scalar_one()
        start = end - count * gap
        slots = [start + i * gap for i in range(count)]
        if deadline is None or slots[-1] <= deadline:
            return slots
        kept = [slot for slot in slots if slot <= deadline]
        with self._lock, self._factory() as session, session.begin():
            session.execute(update(RateLimitState).where(
                RateLimitState.provider == self.provider, RateLimitState.next_at == end)
                .values(next_at=slots[len(kept)]))
        return kept

    def wait_until(self, moment: float) -> None:
        delay = moment - self._now()
        if delay > 0:
            self._sleep(delay)
