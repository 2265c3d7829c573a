"""JSON from outside, read so that what passes can be stored on both databases.

``json.loads`` accepts more than we can keep, and fails in ways that are not a
``JSONDecodeError``: a number of more than 4,300 digits is a plain ``ValueError``, deep nesting
a ``RecursionError``, ``NaN`` and ``Infinity`` are not JSON at all (PostgreSQL refuses them in a
``json`` column), a ``"\\ud800"`` escape gives a string that cannot be encoded as UTF-8, and a
``"\\u0000"`` one a string PostgreSQL cannot store in a text column. :func:`loads` turns every
one of those into :class:`JSONTextError` with a reason a sender can act on.

Our own API and files (``POST /events``, ``aftersale ingest``) refuse such text; a provider's
webhook (Shopify, SendGrid) cannot fix what it sends, so ``clean=True`` drops NUL characters and
replaces lone surrogates with U+FFFD instead (the signature was checked over the raw bytes).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_core import from_json

MAX_DEPTH = 64  # far beyond any event or webhook we read; the parser itself stops near 1,000
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT_DIGITS = 4300  # int()'s limit: json.loads refuses a longer number, jiter would not
# pydantic's JSON parser (jiter) reads JSON exactly as json.loads does, big ints included, and
# refuses a raw NUL, a lone surrogate and what json refuses, in half json's time and with no
# walk after it. Only an escaped NUL or surrogate, deep nesting and an over-long number get
# past it; text that could hold one of them takes the checked path.
_BAD_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_SLOW = object()


def _fast(text: str) -> Any:
    """The value of ``text`` when jiter can read it and nothing in it needs checking."""
    if (len(text) > _INT_DIGITS or text.count("{") + text.count("[") >= MAX_DEPTH
            or ("\\u" in text and _BAD_ESCAPE.search(text))):
        return _SLOW
    try:
        return from_json(text, allow_inf_nan=False, cache_strings="keys")
    except (ValueError, TypeError):  # TypeError: a str holding a lone surrogate
        return _SLOW  # the checked path words the reason


class JSONTextError(ValueError):
    """Not JSON we can take; the message says why (and where, for a bad string)."""


def _no_constant(name: str) -> Any:
    raise JSONTextError(f"{name} is not a JSON number")


def loads(data: bytes | str, *, clean: bool = False) -> Any:
    """Parse ``data`` (UTF-8 when bytes); raises :class:`JSONTextError` and nothing else."""
    try:
        # UTF-8 only (RFC 8259): json.loads would also guess UTF-16 and UTF-32 from bytes.
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        if (value := _fast(text)) is not _SLOW:
            return value
        value = json.loads(text, parse_constant=_no_constant)
    except JSONTextError:
        raise
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        raise JSONTextError(f"{exc.msg} at {where}") from None
    except UnicodeDecodeError:
        raise JSONTextError("not UTF-8 text") from None
    except RecursionError:
        raise JSONTextError(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise JSONTextError("a number has too many digits") from None
    return _checked(value, clean)


def _checked(value: Any, clean: bool) -> Any:
    """``value`` with every string checked (or cleaned); iterative, so depth cannot hurt."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, str, int]] = [(root, 0, "$", 0)]  # (container, key, where, depth)
    while stack:
        container, key, where, depth = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = _string(item, where, clean)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise JSONTextError(f"nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, list):
                stack.extend((item, i, f"{where}[{i}]", depth + 1) for i in range(len(item)))
            else:
                if any(_BAD_CHARS.search(k) for k in item):
                    item = _clean_keys(item, where, clean)
                    container[key] = item
                stack.extend((item, k, f"{where}.{k}", depth + 1) for k in item)
    return root[0]


def _clean_keys(obj: dict[str, Any], where: str, clean: bool) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for name, item in obj.items():
        cleaned.setdefault(_string(name, f"a key in {where}", clean), item)
    return cleaned


def _string(text: str, where: str, clean: bool) -> str:
    if not _BAD_CHARS.search(text):
        return text
    if clean:
        return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))
    shown = where.encode("ascii", "backslashreplace").decode()
    shown = shown if len(shown) <= 120 else shown[:119] + "…"
    if "\x00" in text:
        raise JSONTextError(f"{shown} contains a NUL character (\\u0000), which cannot be stored")
    raise JSONTextError(f"{shown} contains a lone surrogate escape (\\ud800-\\udfff), "
                        "which is not a character")
