"""Reading a score out of an SMS/WhatsApp reply: the table of what is read and what is not, in
English, Turkish and Polish, per survey kind (NPS 0-10, CSAT 1-5, CES 1-7)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from aftersale.core.reply_scores import NUMBER_WORDS, ParsedReply, fold, parse_reply
from aftersale.core.survey_scales import COMMENT_LIMIT, SURVEY_SCALES

READ = [
    # (reply, kind, score, comment)
    # -- digits, any language
    ("9", "nps", 9, None),
    ("0", "nps", 0, None),
    ("10", "nps", 10, None),
    (" 9 ", "nps", 9, None),
    ("09", "nps", 9, None),
    ("9!", "nps", 9, None),
    ("9.", "nps", 9, None),
    ("(9)", "nps", 9, None),
    ("9/10", "nps", 9, None),
    ("9 / 10", "nps", 9, None),
    ("10/10 would recommend", "nps", 10, "would recommend"),
    ("4/5", "csat", 4, None),
    ("6/7", "ces", 6, None),
    ("5", "csat", 5, None),
    ("1", "ces", 1, None),
    ("7", "ces", 7, None),
    ("9\ufe0f\u20e3", "nps", 9, None),  # keycap 9️⃣
    ("\U0001f51f", "nps", 10, None),  # 🔟
    ("1\ufe0f\u20e30\ufe0f\u20e3", "nps", 10, None),  # 1️⃣0️⃣
    ("9 👍", "nps", 9, "👍"),
    # -- English
    ("9 great service", "nps", 9, "great service"),
    ("9, great service", "nps", 9, "great service"),
    ("9 - great service", "nps", 9, "great service"),
    ("9! Fast delivery.", "nps", 9, "Fast delivery."),
    ("9\n\nThe drone is great", "nps", 9, "The drone is great"),
    ("9 out of 10", "nps", 9, None),
    ("9 of 10, nice", "nps", 9, "nice"),
    ("Score: 9", "nps", 9, None),
    ("my rating 4", "csat", 4, None),
    ("nine", "nps", 9, None),
    ("NINE!", "nps", 9, None),
    ("Zero", "nps", 0, None),
    ("ten", "nps", 10, None),
    ("nine out of ten", "nps", 9, None),
    ("nine, great service", "nps", 9, "great service"),
    ("three", "csat", 3, None),
    ("seven", "ces", 7, None),
    ("2 days late, not happy", "nps", 2, "days late, not happy"),
    ("9 - on time", "nps", 9, "on time"),
    ("9 (great)", "nps", 9, "(great)"),
    ("9 <b>great</b> <script>x</script>", "nps", 9, "<b>great</b> <script>x</script>"),
    # -- Turkish
    ("dokuz", "nps", 9, None),
    ("DOKUZ", "nps", 9, None),
    ("Dokuz!", "nps", 9, None),
    ("dokuz, harika", "nps", 9, "harika"),
    ("Dört", "csat", 4, None),
    ("DÖRT", "csat", 4, None),
    ("dort", "csat", 4, None),
    ("sıfır", "nps", 0, None),
    ("SIFIR", "nps", 0, None),
    ("bir", "csat", 1, None),
    ("iki", "ces", 2, None),
    ("İKİ", "ces", 2, None),
    ("üç", "csat", 3, None),
    ("ÜÇ", "csat", 3, None),
    ("beş", "csat", 5, None),
    ("altı", "nps", 6, None),
    ("ALTI", "nps", 6, None),
    ("yedi", "ces", 7, None),
    ("sekiz", "nps", 8, None),
    ("on", "nps", 10, None),  # the Turkish ten, alone
    ("On!", "nps", 10, None),
    ("9 çok memnun kaldım", "nps", 9, "çok memnun kaldım"),
    ("10 üzerinden 9", "nps", 9, None),
    ("5 üzerinden 4, güzel", "csat", 4, "güzel"),
    ("Puanım: 8", "nps", 8, None),
    ("puan 3", "csat", 3, None),
    # -- Polish
    ("dziewięć", "nps", 9, None),
    ("dziewiec", "nps", 9, None),
    ("DZIEWIĘĆ", "nps", 9, None),
    ("Dziesięć!", "nps", 10, None),
    ("dziesiec", "nps", 10, None),
    ("zero", "nps", 0, None),
    ("jeden", "csat", 1, None),
    ("jedna", "csat", 1, None),
    ("dwa", "ces", 2, None),
    ("dwie", "ces", 2, None),
    ("trzy", "csat", 3, None),
    ("cztery", "csat", 4, None),
    ("pięć", "csat", 5, None),
    ("piec", "csat", 5, None),
    ("sześć", "ces", 6, None),
    ("szesc", "ces", 6, None),
    ("siedem", "ces", 7, None),
    ("osiem", "nps", 8, None),
    ("9 na 10", "nps", 9, None),
    ("9 z 10, super obsługa", "nps", 9, "super obsługa"),
    ("dziewięć na dziesięć", "nps", 9, None),
    ("Ocena: 9", "nps", 9, None),
    ("«dziewięć»", "nps", 9, None),
    ("9 świetna obsługa", "nps", 9, "świetna obsługa"),
]

NOT_READ = [
    # (reply, kind, why)
    ("", "nps", "empty"),
    ("   \n ", "nps", "blank"),
    ("👍", "nps", "emoji only"),
    ("😡😡😡", "csat", "emoji only"),
    ("11", "nps", "above the scale"),
    ("0", "csat", "below the scale"),
    ("6", "csat", "above the scale"),
    ("8", "ces", "above the scale"),
    ("ten", "csat", "above the scale, as a word"),
    ("dziesięć", "ces", "above the scale, as a word"),
    ("-1", "nps", "negative"),
    ("100", "nps", "three digits"),
    ("905321234567", "nps", "a phone number"),
    ("+90 532 123 45 67", "nps", "a phone number"),
    ("7.5", "nps", "a decimal"),
    ("7,5", "nps", "a decimal with a comma"),
    ("10:30", "nps", "a time"),
    ("9th", "nps", "an ordinal"),
    ("7 or 8", "nps", "two scores"),
    ("7-8", "nps", "a range"),
    ("7 - 8", "nps", "a range"),
    ("7, 8", "nps", "two scores"),
    ("9 10", "nps", "two scores"),
    ("seven or eight", "nps", "two scores, as words"),
    ("7 or eight", "nps", "two scores, mixed"),
    ("7 ya da 8", "nps", "two scores, Turkish"),
    ("7 veya 8", "nps", "two scores, Turkish"),
    ("7 lub 8", "nps", "two scores, Polish"),
    ("7 albo 8", "nps", "two scores, Polish"),
    ("4/5", "nps", "another scale"),
    ("9/10", "ces", "another scale"),
    ("5 üzerinden 4", "nps", "another scale, Turkish order"),
    ("STOP", "nps", "a keyword"),
    ("help", "nps", "a keyword"),
    ("Start", "nps", "a keyword"),
    ("I'd give it a 9", "nps", "the score does not come first"),
    ("great service", "nps", "no score"),
    ("on time!", "nps", "English 'on' is not the Turkish ten"),
    ("on harika", "nps", "a number word followed by a word is a sentence"),
    ("bir sorun var", "nps", "'bir' as an article, not a 1"),
    ("iki gün geç geldi", "nps", "'two days late', not a 2"),
    ("one thing: the box was broken", "nps", "'one' starting a sentence"),
    ("dwa dni później", "nps", "'two days later', not a 2"),
    ("on iki", "nps", "twelve in Turkish"),
    ("dziewięćdziesiąt", "nps", "ninety"),
    ("nine great service", "nps", "a word score must stand alone"),
]


@pytest.mark.parametrize(("reply", "kind", "score", "comment"), READ)
def test_a_reply_is_read(reply: str, kind: str, score: int, comment: str | None) -> None:
    assert parse_reply(reply, kind) == ParsedReply(score, comment)


@pytest.mark.parametrize(("reply", "kind", "why"), NOT_READ)
def test_a_reply_is_not_read(reply: str, kind: str, why: str) -> None:
    assert parse_reply(reply, kind) is None, why


def test_every_number_word_is_read_in_every_kind_whose_scale_has_it() -> None:
    for word, value in NUMBER_WORDS.items():
        for kind, (low, high) in SURVEY_SCALES.items():
            expected = ParsedReply(value, None) if low <= value <= high else None
            assert parse_reply(word, kind) == expected, (word, kind)
            assert parse_reply(word.upper(), kind) == expected, (word, kind)


def test_a_long_comment_is_cut_at_the_documented_limit() -> None:
    parsed = parse_reply("3 " + "the box was crushed. " * 200, "nps")
    assert parsed is not None and parsed.score == 3
    # Cut at COMMENT_LIMIT characters, ellipsis included (a space before it is dropped).
    assert parsed.comment is not None and COMMENT_LIMIT - 2 <= len(parsed.comment) <= COMMENT_LIMIT
    assert parsed.comment.endswith("…") and parsed.comment.startswith("the box was crushed.")


def test_control_characters_are_dropped_from_the_comment() -> None:
    assert parse_reply("9 gr\x00ea\x07t\tservice", "nps") == ParsedReply(9, "great\tservice")


def test_folding_keeps_positions_and_reads_turkish_and_polish_letters() -> None:
    text = "İKİ Dört ALTI dziewięć ŁÓDŹ ıi"
    assert fold(text) == "iki dort alti dziewiec lodz ii"
    assert len(fold(text)) == len(text)


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown survey kind"):
        parse_reply("9", "stars")


@given(st.text(max_size=300), st.sampled_from(sorted(SURVEY_SCALES)))
def test_any_text_gives_a_score_in_the_scale_or_nothing(text: str, kind: str) -> None:
    parsed = parse_reply(text, kind)
    if parsed is not None:
        low, high = SURVEY_SCALES[kind]
        assert low <= parsed.score <= high
        assert parsed.comment is None or 0 < len(parsed.comment) <= COMMENT_LIMIT


@given(st.integers(min_value=0, max_value=10), st.text(max_size=50))
def test_a_digit_then_a_word_is_that_score_with_that_comment(score: int, word: str) -> None:
    comment = "".join(c for c in word if c.isalpha())
    assume(fold(comment) not in NUMBER_WORDS)  # "7 eight" is two scores
    parsed = parse_reply(f"{score} {comment}", "nps")
    assert parsed is not None and parsed.score == score
    assert parsed.comment == (unicodedata.normalize("NFC", comment) or None)  # stored composed
