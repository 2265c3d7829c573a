"""One test tells the database being away from a statement being wrong."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)

from aftersale.db.errors import is_storage_outage
from aftersale.db.retry import while_away


def _error(kind: type[DBAPIError], message: str, invalidated: bool = False) -> DBAPIError:
    return kind("UPDATE messages SET status=?", {}, sqlite3.Error(message),
                connection_invalidated=invalidated)


@pytest.mark.parametrize(("exc", "outage"), [
    (_error(OperationalError, "database is locked"), True),
    (_error(OperationalError, "server closed the connection unexpectedly"), True),
    (_error(InterfaceError, "connection already closed"), True),
    (_error(DBAPIError, "SSL SYSCALL error: EOF detected", invalidated=True), True),
    (_error(DBAPIError, "something the driver did not classify"), False),
    (_error(IntegrityError, "UNIQUE constraint failed: messages.id"), False),
    (_error(DataError, "value too long for type character varying(32)"), False),
    (_error(ProgrammingError, "no such table: messages"), False),
    (SQLAlchemyError("not a driver error"), False),
    (ValueError("database is locked"), False),  # the words alone are not enough
])
def test_only_a_lost_busy_or_invalidated_connection_is_an_outage(
        exc: BaseException, outage: bool) -> None:
    assert is_storage_outage(exc) is outage


def test_a_write_is_tried_again_while_the_database_is_away() -> None:
    failures = [_error(OperationalError, "database is locked"),
                _error(DBAPIError, "connection lost", invalidated=True)]
    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "written"

    assert while_away(write, "a test write", delays=(0.0, 0.0, 0.0)) == "written"
    assert len(calls) == 3


def test_a_write_that_is_wrong_is_not_tried_again() -> None:
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        raise _error(IntegrityError, "UNIQUE constraint failed: messages.id")

    with pytest.raises(IntegrityError):
        while_away(write, "a test write", delays=(0.0, 0.0))
    assert len(calls) == 1


def test_the_last_outage_is_raised_when_the_tries_run_out() -> None:
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        raise _error(OperationalError, "database is locked")

    with pytest.raises(OperationalError, match="database is locked"):
        while_away(write, "a test write", delays=(0.0, 0.0))
    assert len(calls) == 3
