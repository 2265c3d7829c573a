"""The Alembic history builds exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from aftersale.db.migrate import ensure_current, is_current
from aftersale.db.models import Base
from aftersale.db.session import make_engine


def test_an_empty_database_is_upgraded_to_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    assert not is_current(engine)
    assert ensure_current(engine) is True
    assert ensure_current(engine) is False  # already current: nothing applied twice
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    assert {"inbox_events", "enrollments", "messages"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_the_database_a_test_gets_is_at_the_head_and_the_models_schema(
        migrated_database_url: str) -> None:
    """The per-test copy of the template migrated once (tests/conftest.py) is complete."""
    engine = make_engine(migrated_database_url)
    assert is_current(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
