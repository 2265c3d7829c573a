"""Writes that must not be lost to a database away for a moment: tried again a few times."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from aftersale.db.errors import is_storage_outage

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between tries while the database is unreachable (about 15 s in all).
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def while_away(write: Callable[[], T], what: str,
               delays: tuple[float, ...] = RETRY_DELAYS) -> T:
    """``write()`` (one transaction), again after each delay while the database is away
    (:func:`~aftersale.db.errors.is_storage_outage`); any other error, or the last one, is
    raised."""
    for delay in (*delays, None):
        try:
            return write()
        except DBAPIError as exc:
            if delay is None or not is_storage_outage(exc):
                raise
            log.warning("%s failed (%s); again in %.2g s", what, str(exc).splitlines()[0], delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the last try returns or raises
