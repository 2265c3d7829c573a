"""The survey scales, defined once: NPS 0-10, CSAT 1-5, CES 1-7, and what their scores mean.

Pure: no database, no web. Events validate against these ranges, pages and messages show one
button or link per score, replies are read within them and metrics count their bands here.
"""

from __future__ import annotations

from typing import Literal

SurveyKind = Literal["nps", "csat", "ces"]
SURVEY_KINDS: tuple[SurveyKind, ...] = ("nps", "csat", "ces")
#: kind -> (lowest, highest) score, both included.
SURVEY_SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}

# NPS bands: promoters 9-10, passives 7-8, detractors 0-6.
NPS_PROMOTER_MIN = 9
NPS_PASSIVE_MIN = 7
NPS_DETRACTOR_MAX = NPS_PASSIVE_MIN - 1
# CSAT is the share of answers scoring 4-5; 1-2 is a detractor worth an alert.
CSAT_SATISFIED_MIN = 4
CSAT_DETRACTOR_MAX = 2

# Comments longer than this are cut (with an ellipsis) before they are stored: enough for a
# paragraph of feedback, short enough for an alert e-mail and a Slack message.
COMMENT_LIMIT = 2000


def in_scale(kind: str, score: int) -> bool:
    low, high = SURVEY_SCALES[kind]
    return low <= score <= high


def scale(kind: str) -> list[int]:
    """Every score of ``kind``'s scale, lowest first: one button or link each."""
    low, high = SURVEY_SCALES[kind]
    return list(range(low, high + 1))


def clean_comment(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.replace("\x00", "").strip()
    if not text:
        return None
    return text if len(text) <= COMMENT_LIMIT else text[: COMMENT_LIMIT - 1].rstrip() + "…"
