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

from sqlalchemy.orm import Session, sessionmaker

from aftersale.intake.inbox import event_row, insert_ignoring_duplicates
from aftersale.intake.jsonl import LineError, parse_lines

CHUNK = 5000


@dataclass
class ImportResult:
    received: int = 0  # valid events read, duplicates inside the file included
    stored: int = 0  # new in the inbox
    already_stored: int = 0  # valid, distinct in the file, but the inbox had them
    duplicates_in_file: int = 0
    errors: list[LineError] = field(default_factory=list)
    rejected: bool = False  # invalid lines and not skip_invalid: nothing was stored


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(lines)
    while chunk := list(islice(iterator, size)):
        yield chunk


def import_jsonl(factory: sessionmaker[Session], lines: Iterable[str], *, source: str,
                 received_at: datetime, skip_invalid: bool = False,
                 chunk: int = CHUNK) -> ImportResult:
    """Validate and store every event of ``lines``; see the module's docstring."""
    result = ImportResult()
    seen: set[str] = set()
    with factory() as session:
        session.begin()
        first_line = 1
        for texts in _chunks(lines, chunk):
            rows: list[dict[str, object]] = []
            for number, item in parse_lines(texts):
                number += first_line - 1
                if isinstance(item, LineError):
                    result.errors.append(LineError(number, item.reason))
                    continue
                result.received += 1
                if item.id in seen:
                    result.duplicates_in_file += 1
                    continue
                seen.add(item.id)
                if result.errors and not skip_invalid:
                    continue  # the file is rejected: validate the rest, store nothing
                rows.append(event_row(item, source, received_at))
            first_line += len(texts)
            if not (result.errors and not skip_invalid):
                result.stored += insert_ignoring_duplicates(session, rows)
        if result.errors and not skip_invalid:
            session.rollback()
            result.rejected, result.stored = True, 0
        else:
            session.commit()
    result.already_stored = result.received - result.duplicates_in_file - result.stored
    return result
