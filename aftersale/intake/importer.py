"""Import a JSON Lines file of events into the inbox, streaming (``aftersale ingest``).

Same rules as reading the whole file first (:func:`aftersale.intake.jsonl.parse_file` plus
:func:`aftersale.intake.inbox.store_events`): every line is validated, a repeated id inside the
file is kept once (the first copy), and the file is stored in one transaction, so an invalid
line rejects the whole file unless ``skip_invalid``. What changes is the cost:

- events are validated and written a block of lines at a time (through the same
  :func:`aftersale.intake.inbox.insert_ignoring_duplicates`), so memory stays flat for a file
  of millions of lines;
- validation, two thirds of the work (pydantic, e-mail and phone normalization), runs in
  ``workers`` processes while this one writes: blocks go out in order and come back in order,
  a few ahead at most, so line numbers, the first-copy rule and the stored order are those of
  the file. Small files (one block) are validated here: starting a worker costs about a second.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from multiprocessing import get_context
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from aftersale.intake.inbox import event_row, insert_ignoring_duplicates
from aftersale.intake.jsonl import LineError, first_copies, parse_lines

CHUNK = 5000
Row = dict[str, object]
T = TypeVar("T")


@dataclass
class ImportResult:
    received: int = 0  # valid events read, duplicates inside the file included
    stored: int = 0  # new in the inbox
    already_stored: int = 0  # valid, distinct in the file, but the inbox had them
    duplicates_in_file: int = 0
    errors: list[LineError] = field(default_factory=list)
    rejected: bool = False  # invalid lines and not skip_invalid: nothing was stored


def default_workers() -> int:
    """One validating process per core: the writer mostly waits on the database."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def rows_of_block(lines: list[str], first_line: int, source: str,
                  received_at: datetime) -> list[Row | LineError]:
    """Each non-blank line's inbox row, or its error. A row is plain values (its payload
    already JSON text), cheap to send back from a worker and for the garbage collector."""
    return [item if isinstance(item, LineError) else event_row(item, source, received_at)
            for _, item in parse_lines(lines, start=first_line)]


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _blocks(lines: Iterable[str], size: int) -> Iterator[tuple[int, list[str]]]:
    """Blocks of ``size`` lines, each with the number of its first line."""
    first = 1
    for block in _chunks(lines, size):
        yield first, block
        first += len(block)


def _validated(blocks: Iterator[tuple[int, list[str]]], source: str, received_at: datetime,
               workers: int) -> Iterator[list[Row | LineError]]:
    """Every block's rows, in file order; by ``workers`` processes when there are two blocks
    or more."""
    head = list(islice(blocks, 2))
    if len(head) < 2 or workers < 1:
        for start, block in chain(head, blocks):
            yield rows_of_block(block, start, source, received_at)
        return
    # spawn, not fork: the parent holds database connections and perhaps Prefect's threads.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        ahead: deque[Future[list[Row | LineError]]] = deque()
        for start, block in chain(head, blocks):
            ahead.append(pool.submit(rows_of_block, block, start, source, received_at))
            if len(ahead) > 2 * workers:  # bounded: memory stays flat however long the file
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def import_jsonl(factory: sessionmaker[Session], lines: Iterable[str], *, source: str,
                 received_at: datetime, skip_invalid: bool = False, chunk: int = CHUNK,
                 workers: int = 0) -> ImportResult:
    """Validate and store every event of ``lines``; see the module's docstring.

    ``workers=0`` validates in this process. Workers are spawned, so a script that asks for
    them must guard its entry point (``if __name__ == "__main__":``) as multiprocessing
    requires; ``aftersale ingest`` asks for :func:`default_workers`."""
    result = ImportResult()
    validated = chain.from_iterable(_validated(_blocks(lines, chunk), source, received_at,
                                               workers))
    with factory() as session:
        session.begin()
        firsts = first_copies(validated, lambda row: row["event_id"])
        for items in _chunks(firsts, chunk):
            rows: list[Row] = []
            for item in items:
                if isinstance(item, LineError):
                    result.errors.append(item)
                    continue
                result.received += 1
                if item is None:
                    result.duplicates_in_file += 1
                elif not result.errors or skip_invalid:  # else rejected: validate, store nothing
                    rows.append(item)
            if not result.errors or skip_invalid:
                result.stored += insert_ignoring_duplicates(session, rows)
        if result.errors and not skip_invalid:
            session.rollback()
            result.rejected, result.stored = True, 0
        else:
            session.commit()
    result.already_stored = result.received - result.duplicates_in_file - result.stored
    return result
