"""The opt-out keywords a text reply can be: STOP, START and HELP, in any case. Pure.

Suppression (:mod:`aftersale.pipeline.suppression`) acts on them; survey replies
(:mod:`aftersale.core.reply_scores`) must not read them as answers.
"""

from __future__ import annotations

import re
from typing import Literal

Keyword = Literal["stop", "start", "help"]
_KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
                    "stop"),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "start"),
    **dict.fromkeys(("HELP", "INFO"), "help"),
}
# Whitespace and punctuation around the word do not count ("Stop.", " STOP! ").
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def classify_keyword(body: str | None) -> Keyword | None:
    """The opt-out keyword a whole message is, if any: one word, any case, surrounding
    whitespace and punctuation ignored. "Stop sending me these" is not a STOP: carriers and
    Twilio match the whole message too."""
    if not body:
        return None
    word = _EDGES.sub("", body.strip())
    return _KEYWORDS.get(word.upper()) if word and word.isalpha() else None
