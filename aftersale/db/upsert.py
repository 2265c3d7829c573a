"""``INSERT ... ON CONFLICT``, which SQLAlchemy builds per dialect: the one place that picks."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def insert(session: Session, table: Any) -> Any:
    """An INSERT into ``table`` (a model or a Table) that has ``on_conflict_do_nothing`` and
    ``on_conflict_do_update``, for the database ``session`` is bound to."""
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
