"""Engines and sessions: one place that knows SQLite from PostgreSQL."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the web app write the inbox while a flow reads it; foreign keys are off
            # by default in SQLite and we rely on them.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # No autoflush: batch code flushes where a later query must see earlier writes, instead
    # of paying a flush before every one of thousands of small queries.
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run by ``Session.execute`` matched. SQLAlchemy 2.0
    types that call's answer as a ``Result``; for these statements it is a ``CursorResult``,
    the one that has the count."""
    return cast(CursorResult[Any], result).rowcount
