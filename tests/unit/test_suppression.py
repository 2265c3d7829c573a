"""Opt-out keywords (the whole message, one word, any case) and address normalization."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.reply_keywords import classify_keyword
from aftersale.pipeline.suppression import normalize_address

STOP_WORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
START_WORDS = ["START", "YES", "UNSTOP"]
HELP_WORDS = ["HELP", "INFO"]


@pytest.mark.parametrize(("body", "keyword"), [
    *[(w, "stop") for w in STOP_WORDS],
    *[(w, "start") for w in START_WORDS],
    *[(w, "help") for w in HELP_WORDS],
    ("stop", "stop"), ("Stop", "stop"), (" STOP ", "stop"), ("\tstop\n", "stop"),
    ("Stop.", "stop"), ("STOP!", "stop"), ('"stop"', "stop"), ("¡Stop!", "stop"),
    ("unstop", "start"), ("Yes!", "start"), ("help?", "help"), ("Info", "help"),
    ("stop please", None), ("Please stop", None), ("don't stop", None), ("STOP STOP", None),
    ("S T O P", None), ("stopp", None), ("st0p", None), ("9", None), ("", None), ("   ", None),
    ("...", None), ("OPT-OUT", None), ("no", None), ("yes.", "start"), (None, None),
])
def test_keywords_are_whole_messages_in_any_case(body: str | None, keyword: str | None) -> None:
    assert classify_keyword(body) == keyword


@given(st.sampled_from(STOP_WORDS + START_WORDS + HELP_WORDS), st.text(" \t\n.!?,;:", max_size=4),
       st.text(" \t\n.!?,;:", max_size=4), st.booleans())
def test_surrounding_whitespace_punctuation_and_case_never_matter(
        word: str, before: str, after: str, lower: bool) -> None:
    body = before + (word.lower() if lower else word) + after
    assert classify_keyword(body) == classify_keyword(word) is not None


@given(st.text(min_size=1))
def test_a_message_with_two_words_is_never_a_keyword(text: str) -> None:
    assert classify_keyword(f"stop {text}x") is None


@pytest.mark.parametrize(("channel", "raw", "normalized"), [
    ("email", " Ayse.Yilmaz@Example.COM ", "ayse.yilmaz@example.com"),
    ("sms", "+905321234567", "+905321234567"),
    ("sms", " +90 532 123 45 67 ", "+905321234567"),
    ("whatsapp", "whatsapp:+905321234567", "+905321234567"),
    ("whatsapp", "WhatsApp:+905321234567", "+905321234567"),
    ("whatsapp", "+905321234567", "+905321234567"),
])
def test_addresses_are_normalized_per_channel(channel: str, raw: str, normalized: str) -> None:
    assert normalize_address(channel, raw) == normalized
