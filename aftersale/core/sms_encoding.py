"""How many SMS segments a text costs, and in which encoding (GSM 03.38 / 3GPP TS 23.038).

A text that uses only the GSM-7 default alphabet travels 7 bits per character: 160 characters
in one SMS, 153 per segment once it is split (the rest carries the concatenation header).
Characters of the GSM-7 extension table (``^ { } [ ] ~ | \\ €`` and form feed) are sent as an
escape plus the character, so they count twice and are never split across two segments. Any
other character (Turkish ``ş ğ ı İ ç``, Polish ``ą ę ł ż ś ć ń ó ź``, emoji) switches the whole
text to UCS-2: 70 UTF-16 code units in one SMS, 67 per segment, and an emoji's surrogate pair
is never split. National language shift tables are not assumed: carriers and Twilio do not use
them by default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# The default alphabet, in table order (0x1B, the escape, is not a character of its own).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153  # septets
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 default alphabet or its extension table."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _gsm7_costs(text: str) -> list[int]:
    return [2 if c in GSM7_EXTENSION else 1 for c in text]


def _ucs2_costs(text: str) -> list[int]:
    return [2 if ord(c) > 0xFFFF else 1 for c in text]  # a surrogate pair is two code units


def _pack(costs: Iterable[int], per_part: int) -> int:
    """Segments needed when no character (escape pair, surrogate pair) may straddle two."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts


def sms_segments(text: str) -> tuple[Encoding, int]:
    """The encoding a text needs and how many SMS segments it is billed as.

    An empty text is 0 segments (there is nothing to send; Twilio refuses an empty body).
    """
    if is_gsm7(text):
        encoding: Encoding = "GSM-7"
        costs, single, part = _gsm7_costs(text), GSM7_SINGLE, GSM7_PART
    else:
        encoding = "UCS-2"
        costs, single, part = _ucs2_costs(text), UCS2_SINGLE, UCS2_PART
    if not costs:
        return encoding, 0
    if sum(costs) <= single:
        return encoding, 1
    return encoding, _pack(costs, part)
