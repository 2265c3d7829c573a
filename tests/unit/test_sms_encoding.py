from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.sms_encoding import GSM7_BASIC, GSM7_EXTENSION, is_gsm7, sms_segments

ASCII_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
GSM_ASCII = "".join(c for c in ASCII_PRINTABLE if c in GSM7_BASIC)  # no ` (backtick)


@pytest.mark.parametrize(("text", "expected"), [
    ("", ("GSM-7", 0)),
    ("Your order #1001 has shipped.", ("GSM-7", 1)),
    ("a" * 160, ("GSM-7", 1)),
    ("a" * 161, ("GSM-7", 2)),
    ("a" * 306, ("GSM-7", 2)),
    ("a" * 307, ("GSM-7", 3)),
    # Extension characters count twice ...
    ("€" * 80, ("GSM-7", 1)),
    ("€" * 81, ("GSM-7", 2)),
    ("a" * 159 + "[", ("GSM-7", 2)),
    # ... and an escape pair is never split: 152 + 2 does not fit the first 153.
    ("a" * 152 + "€" + "a" * 152, ("GSM-7", 3)),
    ("a" * 151 + "€" + "a" * 153, ("GSM-7", 2)),
    # Accented letters that ARE in the GSM-7 table.
    ("Gönderiniz yolda: ÖÜöüñÑéÉäÄàèùìòÇØøÅåÆæß", ("GSM-7", 1)),
    ("ΔΦΓΛΩΠΨΣΘΞ ¡¿§¤£¥", ("GSM-7", 1)),
    # Turkish letters outside the table force UCS-2 (ç lower-case too: only Ç is in it).
    ("Siparişiniz kargoda", ("UCS-2", 1)),
    ("Müşteri", ("UCS-2", 1)),
    ("ğ", ("UCS-2", 1)),
    ("ı", ("UCS-2", 1)),
    ("İstanbul", ("UCS-2", 1)),
    ("çok", ("UCS-2", 1)),
    ("Çok", ("GSM-7", 1)),
    # Polish: every letter below is outside the table (ó as well; ò is in it).
    *[(letter, ("UCS-2", 1)) for letter in "ąęłżśćńóźĄĘŁŻŚĆŃÓŹ"],
    ("ò", ("GSM-7", 1)),
    ("Zamówienie " + "a" * 59, ("UCS-2", 1)),  # 70 code units
    ("Zamówienie " + "a" * 60, ("UCS-2", 2)),  # 71
    ("ş" * 134, ("UCS-2", 2)),
    ("ş" * 135, ("UCS-2", 3)),
    # An emoji is a surrogate pair: two code units, never split across segments.
    ("😀" * 35, ("UCS-2", 1)),
    ("😀" * 36, ("UCS-2", 2)),
    ("ş" * 66 + "😀" + "ş" * 66, ("UCS-2", 3)),
    ("`", ("UCS-2", 1)),  # the backtick is not in GSM-7
])
def test_segments_and_encoding_follow_gsm_03_38(text: str, expected: tuple[str, int]) -> None:
    assert sms_segments(text) == expected


def test_the_tables_have_the_standard_sizes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 positions minus the escape
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_every_extension_character_costs_two_septets() -> None:
    for char in GSM7_EXTENSION:
        assert is_gsm7(char)
        assert sms_segments(char * 80) == ("GSM-7", 1)
        assert sms_segments(char * 81) == ("GSM-7", 2)


@given(st.text(min_size=1))
def test_any_non_empty_text_is_at_least_one_segment(text: str) -> None:
    encoding, segments = sms_segments(text)
    assert segments >= 1
    assert encoding == ("GSM-7" if is_gsm7(text) else "UCS-2")


@given(st.text(alphabet=GSM_ASCII, min_size=1, max_size=1200), st.text(alphabet=GSM_ASCII, max_size=300))
def test_segments_never_decrease_as_plain_ascii_text_grows(text: str, more: str) -> None:
    assert sms_segments(text)[0] == "GSM-7"
    assert sms_segments(text + more)[1] >= sms_segments(text)[1]


@given(st.text(min_size=1, max_size=600))
def test_segments_never_fall_below_the_encoding_capacity(text: str) -> None:
    encoding, segments = sms_segments(text)
    if encoding == "GSM-7":
        units = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    if units <= single:
        assert segments == 1
    else:
        assert segments >= -(-units // part)  # at least the ceiling; more when pairs cannot split
