"""Reading a survey score out of an SMS/WhatsApp reply. Pure: text in, score and comment out.

The score must come first (the question says "reply with a number"), optionally behind a label
("Score: 9") and optionally with the scale ("9/10", "9 out of 10", "9 na 10", "10 üzerinden 9");
whatever follows is the comment: ``"9, great service"`` is 9 with "great service".

Digits, keycap emoji (9️⃣, 🔟) and number words in English, Turkish and Polish are read; words in
any case and with or without diacritics ("DOKUZ", "Dört", "dziewiec"), with Turkish dotted and
dotless i folded together ("ALTI", "İKİ").

A number *word* is a score only when it stands alone: the whole answer, or followed by
punctuation, an emoji or the scale ("dokuz!", "nine, great", "dziewięć na dziesięć"). Followed
by another word it is usually a sentence, not an answer: "bir sorun var" (Turkish "there is a
problem", "bir" = 1), "one thing...", "iki gün sonra" ("two days later") and above all the
Turkish ten, "on", which is also the English "on" ("on time!"). Reading those as scores would
record a 1 and raise a detractor alert from a customer who did not answer; the customer who did
mean "on harika" gets one polite clarification instead. Digits are taken at their word: "2
days late" is a 2, which is what "reply with a number" asks for.

Not a score (None, which the caller answers with one clarification): an empty reply, emoji
only, a number outside the survey's scale, a decimal ("7.5", "7,5"), a time ("10:30"), more
than two digits (a phone number, "100"), two scores ("7 or 8", "7-8", "7, 8"), a scale that is
not the survey's ("4/5" to an NPS question) and the STOP/START/HELP keywords (handled before).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from aftersale.core.reply_keywords import classify_keyword
from aftersale.core.survey_scales import SURVEY_SCALES, clean_comment, in_scale

# The score, its scale and a second score are all near the start: only this much of a reply
# is folded and matched, so a 1,600-character SMS costs no more than a short one.
HEAD = 120

#: Number words, folded (lower case, no diacritics, Turkish ı/İ as i).
NUMBER_WORDS: dict[str, int] = {
    # English
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10,
    # Turkish (sıfır, bir, iki, üç, dört, beş, altı, yedi, sekiz, dokuz, on)
    "sifir": 0, "bir": 1, "iki": 2, "uc": 3, "dort": 4, "bes": 5, "alti": 6, "yedi": 7,
    "sekiz": 8, "dokuz": 9, "on": 10,
    # Polish, with the feminine/neuter forms people also write
    # (zero, jeden/jedna/jedno, dwa/dwie, trzy, cztery, pięć, sześć, siedem, osiem, dziewięć, dziesięć)
    "jeden": 1, "jedna": 1, "jedno": 1, "dwa": 2, "dwie": 2, "trzy": 3, "cztery": 4, "piec": 5,
    "szesc": 6, "siedem": 7, "osiem": 8, "dziewiec": 9, "dziesiec": 10,
}

_KEYCAP = re.compile("([0-9])\ufe0f?\u20e3")  # 9️⃣ is "9", VS-16, COMBINING ENCLOSING KEYCAP
_KEYCAP_TEN = "\U0001f51f"  # 🔟
_TOKEN = r"(?:[0-9]+|[^\W\d_]+)"
# "Score: 9", "my rating 9", "puanım: 9", "ocena 9" (folded text).
_LABEL = re.compile(r"(?:(?:my|moja)\s+)?(?:score|rating|nps|csat|ces|puanim|puan|ocena|ocene)"
                    r"(?![^\W\d_])\s*[:=]?\s*")
_NUMBER = re.compile(_TOKEN)
# "10 üzerinden 9": Turkish puts the scale first.
_SCALE_FIRST = re.compile(rf"(?P<scale>{_TOKEN})\s+uzerinden\s+(?P<score>{_TOKEN})")
# "9/10", "9 / 10", "9 out of 10", "9 of 10", "9 na 10", "9 z 10".
_SCALE_AFTER = re.compile(rf"\s*(?:/|out\s+of\s|of\s|na\s|z\s)\s*(?P<scale>{_TOKEN})")
# A second score right after the first: "7 or 8", "7-8", "7 ya da 8", "7 lub 8", "7 albo 8".
_ALTERNATIVE = re.compile(r"\s*(?:[-–—~]|(?:or|to|ya\s*da|yada|veya|yoksa|lub|albo|czy|do)"
                          rf"(?![^\W\d_]))\s*(?P<token>{_TOKEN})")
# ... or a second number that ends the reply: "7 8", "7, 8", "9 and 10", "9 ve 10", "9 i 10".
_TRAILING = re.compile(rf"[\s,;]*(?:(?:and|ve|i)\s+)?(?P<token>{_TOKEN})[\s.!?]*$")
_MAX_DIGITS = 2
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # keeps \t and \n


@dataclass(frozen=True)
class ParsedReply:
    score: int
    comment: str | None


def parse_reply(text: str | None, kind: str) -> ParsedReply | None:
    """The score (within ``kind``'s scale) and the comment a reply carries, or None."""
    if kind not in SURVEY_SCALES:
        raise ValueError(f"unknown survey kind {kind!r}; expected one of {sorted(SURVEY_SCALES)}")
    if not text or not text.strip() or classify_keyword(text) is not None:
        return None
    text = unicodedata.normalize("NFC", text)
    text = _KEYCAP.sub(r"\1", text).replace(_KEYCAP_TEN, "10")
    text = _CONTROL.sub("", text)
    # A mark where the head was cut, so "$" in the patterns only matches the real end.
    folded = fold(text[:HEAD]) + ("…" if len(text) > HEAD else "")
    start = _skip_leading(folded)
    label = _LABEL.match(folded, start)
    number = _NUMBER.match(folded, label.end()) if label else None
    if label and number and _value(number.group()) is not None:
        start = label.end()
    read = _read_score(folded, start, SURVEY_SCALES[kind][1])
    if read is None:
        return None
    score, end = read
    if not in_scale(kind, score) or _second_score(folded[end:]):
        return None
    return ParsedReply(score, clean_comment(_strip_separators(text[end:])))


def fold(text: str) -> str:
    """Lower case without diacritics, one character for one, so positions in the folded text
    are positions in the original (the comment is cut from the original)."""
    return "".join(_fold_char(c) for c in text)


def _fold_char(char: str) -> str:
    # Turkish: I/ı and İ/i are two different letters, but people type either (phones
    # autocorrect, keyboards lack them); folding both to "i" reads "ALTI", "altı", "İKİ", "iki".
    if char in "Iİı":
        return "i"
    if char in "Łł":
        return "l"  # no decomposition: ł is a letter of its own in Unicode
    lower = char.lower()
    if len(lower) != 1:
        return char
    base = "".join(c for c in unicodedata.normalize("NFD", lower) if not unicodedata.combining(c))
    return base if len(base) == 1 else lower


def _skip_leading(folded: str) -> int:
    """Past whitespace, invisible format characters and opening quotes or brackets: "(9)",
    "«9»". A minus or plus is kept, so "-1" and "+90 532..." stay unreadable."""
    position = 0
    while position < len(folded):
        char = folded[position]
        category = unicodedata.category(char)
        if not (char.isspace() or category in ("Cf", "Pi", "Ps") or char in "\"'*#"):
            break
        position += 1
    return position


def _read_score(folded: str, start: int, high: int) -> tuple[int, int] | None:
    """(score, where the score and its scale end) or None."""
    scale_first = _SCALE_FIRST.match(folded, start)
    if scale_first:
        said, score = _value(scale_first.group("scale")), _value(scale_first.group("score"))
        if said != high or score is None or not _ends_cleanly(folded, scale_first.end(),
                                                                scale_first.group("score")):
            return None
        return score, scale_first.end()
    token = _NUMBER.match(folded, start)
    if token is None:
        return None
    score = _value(token.group())
    if score is None or not _ends_cleanly(folded, token.end(), token.group(), word_alone=False):
        return None
    end = token.end()
    scale = _SCALE_AFTER.match(folded, end)
    if scale is not None and _value(scale.group("scale")) is not None:
        if _value(scale.group("scale")) != high:
            return None  # "4/5" to a 0-10 question: a different scale, or a fraction
        if not _ends_cleanly(folded, scale.end(), scale.group("scale")):
            return None
        return score, scale.end()
    if not _digits(token.group()) and _followed_by_word(folded, end):
        return None  # "bir sorun var", "on time": a sentence, not a score (module docstring)
    return score, end


def _value(token: str) -> int | None:
    if _digits(token):
        return int(token) if len(token) <= _MAX_DIGITS else None
    return NUMBER_WORDS.get(token)


def _digits(token: str) -> bool:
    """ASCII digits only: "²" and other digit-like characters are not a score."""
    return token.isascii() and token.isdigit()


def _ends_cleanly(folded: str, end: int, token: str, word_alone: bool = True) -> bool:
    """A digit token must not run into a decimal, a time or a unit ("7.5", "10:30", "9th");
    ``word_alone`` also refuses a number word followed by another word."""
    rest = folded[end:]
    if _digits(token) and re.match(r"[.,:][0-9]", rest):
        return False
    if rest[:1].isalnum():
        return False  # "9th", "10x"; a word token already ends at a non-letter
    return not (word_alone and not _digits(token) and _followed_by_word(folded, end))


def _followed_by_word(folded: str, end: int) -> bool:
    return re.match(r"\s+[^\W\d_]", folded[end:]) is not None


def _second_score(rest: str) -> bool:
    """Whether another score follows at once, which makes the answer ambiguous."""
    alternative = _ALTERNATIVE.match(rest)
    if alternative is not None:
        token = alternative.group("token")
        if _digits(token):
            return True  # "7 or 8", "7-8"; a "9 - 2 days late" is asked again, rarely
        if token in NUMBER_WORDS and not _followed_by_word(rest, alternative.end()):
            return True  # "7 or eight"; but "9 - on time" is a comment
    trailing = _TRAILING.match(rest)
    return trailing is not None and _value(trailing.group("token")) is not None


def _strip_separators(rest: str) -> str:
    """What follows the score without the punctuation that joined it: "9, great" -> "great",
    "9 - great" -> "great", "9!" -> "". Opening brackets and emoji are kept: "9 (great)"."""
    position = 0
    while position < len(rest):
        char = rest[position]
        if not (char.isspace() or unicodedata.category(char) in ("Po", "Pd", "Pe", "Pf", "Cf")):
            break
        position += 1
    return rest[position:]


__all__ = ["HEAD", "NUMBER_WORDS", "ParsedReply", "fold", "parse_reply"]
