"""Durations as marketers write them: ``30m``, ``6h``, ``1d``, ``2w``, ``1d12h``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(\d+\s*[smhdw]\s*)+$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str | int) -> timedelta:
    """Parse ``"7d"``-style text; raises ValueError with the accepted forms."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"expected a duration such as 30m, 6h, 1d or 2w, got {text!r}")
    if isinstance(text, int):
        raise ValueError(f"a duration needs a unit: write {text}d or {text}h, not {text}")
    if not _WHOLE.match(text):
        raise ValueError(f"'{text}' is not a duration; write e.g. 30m, 6h, 1d, 2w or 1d12h")
    total = timedelta()
    try:
        for amount, unit in _PART.findall(text):
            total += timedelta(**{_UNIT[unit]: int(amount)})
    except OverflowError:
        raise ValueError(f"'{text}' is too long; keep durations under a few years") from None
    if total <= timedelta(0):
        raise ValueError(f"'{text}' is zero; a duration must be positive")
    return total
