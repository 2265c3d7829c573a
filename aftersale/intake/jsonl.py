"""Read JSON Lines event files, validating every line before anything is stored."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from aftersale.errors import EventError
from aftersale.events import Event, parse_event
from aftersale.intake.jsontext import JSONTextError, loads


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


def parse_lines(lines: Iterable[str]) -> Iterator[tuple[int, Event | LineError]]:
    """Yield (line number, event or error) for every non-blank line."""
    for number, raw in enumerate(lines, start=1):
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


def parse_file(lines: Iterable[str]) -> ParsedFile:
    """All events and all errors of a file; a repeated id inside the file is kept once."""
    parsed = ParsedFile([], [])
    seen: set[str] = set()
    for _, item in parse_lines(lines):
        if isinstance(item, LineError):
            parsed.errors.append(item)
        elif item.id in seen:
            parsed.duplicates_in_file += 1
        else:
            seen.add(item.id)
            parsed.events.append(item)
    return parsed
