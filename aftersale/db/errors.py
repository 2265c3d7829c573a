"""The database being away, told apart from a statement being wrong.

One classification for every place that must decide whether to try again (or to fail the
run) rather than blame the event or message at hand. It is a test on SQLAlchemy's own errors,
not a type of ours they are wrapped in: callers and the flows' retries see the original error
with its ``connection_invalidated`` and its chained driver error.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_storage_outage(exc: BaseException) -> bool:
    """True when the database went away or is busy: a lost or refused connection, a lock or
    statement timeout, SQLite's "database is locked". Trying the same work again later can
    succeed; an integrity or data error never will, and is not an outage."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)
