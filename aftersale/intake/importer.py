"""Import a JSON Lines file of events into the inbox, streaming (``aftersale ingest``).

Same rules as reading the whole file first (:func:`aftersale.intake.jsonl.parse_file` plus
:func:`aftersale.intake.inbox.store_events`): every line is validated, a repeated id inside the
file is kept once (the first copy), and the file is stored in one transaction, so an invalid
line rejects the whole file unless ``skip_invalid``. What changes is the cost: events are
validated and written a chunk at a time (through the same
:func:`aftersale.intake.inbox.insert_ignoring_duplicates`), so memory stays flat for a file of
millions of lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from aftersale.intake.inbox import event_row, insert_ignoring_duplicates
from aftersale.intake.jsonl import LineError, distinct_lines

CHUNK = 5000
T = TypeVar("T")


@dataclass
class ImportResult:
    received: int = 0  # valid events read, duplicates inside the file included
    stored: int = 0  # new in the inbox
    already_stored: int = 0  # valid, distinct in the file, but the inbox had them
    duplicates_in_file: int = 0
    errors: list[LineError] = field(default_factory=list)
    rejected: bool = False  # invalid lines and not skip_invalid: nothing was stored


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def import_jsonl(factory: sessionmaker[Session], lines: Iterable[str], *, source: str,
                 received_at: datetime, skip_invalid: bool = False,
                 chunk: int = CHUNK) -> ImportResult:
    """Validate and store every event of ``lines``; see the module's docstring."""
    result = ImportResult()
    with factory() as session:
        session.begin()
        for items in _chunks(distinct_lines(lines), chunk):
            rows: list[dict[str, object]] = []
            for item in items:
                if isinstance(item, LineError):
                    result.errors.append(item)
                    continue
                result.received += 1
                if item is None:
                    result.duplicates_in_file += 1
                elif not result.errors or skip_invalid:  # else rejected: validate, store nothing
                    rows.append(event_row(item, source, received_at))
            if not result.errors or skip_invalid:
                result.stored += insert_ignoring_duplicates(session, rows)
        if result.errors and not skip_invalid:
            session.rollback()
            result.rejected, result.stored = True, 0
        else:
            session.commit()
    result.already_stored = result.received - result.duplicates_in_file - result.stored
    return result
