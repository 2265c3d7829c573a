"""Counts a batch reports: numbers that add up across batches, and tallies by key."""

from __future__ import annotations

from collections import Counter
from dataclasses import Field, fields
from typing import Any, ClassVar, Self


class Counts:
    """Mixin for dataclasses whose fields are ints and Counters."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # declared only: what fields() needs

    def add(self, other: Self) -> None:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, f.name, mine + theirs)

    def summary(self) -> dict[str, Any]:
        """Plain values for logs, flow results and artifacts (tallies as dicts)."""
        return {f.name: dict(v) if isinstance(v := getattr(self, f.name), Counter) else v
                for f in fields(self)}
