"""Read JSON Lines event files, validating every line before anything is stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from aftersale.core.errors import EventError
from aftersale.core.events import Event, parse_event
from aftersale.intake.jsontext import JSONTextError, loads

T = TypeVar("T")


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ParsedFile:
    events: list[Event]
    errors: list[LineError]
    duplicates_in_file: int = 0


def parse_lines(lines: Iterable[str], start: int = 1) -> Iterator[tuple[int, Event | LineError]]:
    """Yield (line number, event or error) for every non-blank line; the first is ``start``."""
    for number, raw in enumerate(lines, start=start):
        text = raw.strip()
        if not text:
            continue
        try:
            data = loads(text)
        except JSONTextError as exc:
            yield number, LineError(number, f"not valid JSON ({exc})")
            continue
        try:
            yield number, parse_event(data)
        except EventError as exc:
            yield number, LineError(number, str(exc))


def first_copies(items: Iterable[T | LineError], id_of: Callable[[T], object],
                 ) -> Iterator[T | LineError | None]:
    """``items`` in order, with ``None`` in place of one whose id came earlier in the file (a
    repeated id is kept once: the first copy); errors pass through. The one in-file duplicate
    rule, for events (:func:`distinct_lines`) and for the import's inbox rows."""
    seen: set[object] = set()
    for item in items:
        if not isinstance(item, LineError):
            key = id_of(item)
            if key in seen:
                yield None
                continue
            seen.add(key)
        yield item


def distinct_lines(lines: Iterable[str]) -> Iterator[Event | LineError | None]:
    """Every line's event or error, in order; ``None`` for an id seen earlier in the file."""
    return first_copies((item for _, item in parse_lines(lines)), lambda event: event.id)


def parse_file(lines: Iterable[str]) -> ParsedFile:
    """All events and all errors of a file, read at once (see :func:`distinct_lines`)."""
    parsed = ParsedFile([], [])
    for item in distinct_lines(lines):
        if item is None:
            parsed.duplicates_in_file += 1
        elif isinstance(item, LineError):
            parsed.errors.append(item)
        else:
            parsed.events.append(item)
    return parsed
