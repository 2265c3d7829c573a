"""An SMS/WhatsApp reply to a survey: match it to the question, record the answer, or ask once.

The question a reply answers is the customer's latest survey sent on that channel within
``survey_days``: a reply carries no link or token, and people answer the last thing they were
asked. Then:

- a readable score is stored with :func:`~aftersale.surveys.answers.store_answer` (source
  ``sms``/``whatsapp``), in the caller's transaction, and thanked for; a second readable reply
  changes the answer, as a second click does;
- an unreadable reply gets one clarification per survey (``Message.clarified_at``), set by a
  conditional update so two replies racing cannot both be asked; after that, and after the
  survey was answered ("thanks!", "see you"), an unreadable reply is only kept. So we never
  loop with a customer's auto-responder;
- a reply when no survey is open is not ours to answer here.

The texts are ``content/_pages/replies.yaml`` (en/tr/pl), editable like the other content.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from aftersale.content import read_yaml
from aftersale.content.library import ContentLibrary
from aftersale.content.render import pick_locale
from aftersale.core.errors import Problem
from aftersale.core.reply_scores import parse_reply
from aftersale.core.survey_scales import SURVEY_SCALES
from aftersale.db.models import InboxEvent, Message, SurveyResponse
from aftersale.surveys.answers import store_answer, survey_message

log = logging.getLogger(__name__)

REPLY_CHANNELS = ("sms", "whatsapp")
TEXTS_FILE = Path("_pages") / "replies.yaml"
# A report that the survey never reached the phone: a reply cannot be answering it.
_NOT_RECEIVED = ("failed", "undelivered")
# Used when replies.yaml is missing or broken: a clarification must still make sense.
_FALLBACK = {"clarify": "Sorry, we could not read that. Please reply with a number from {low} "
                        "to {high}.",
             "thanks": "Thank you for your answer!"}

Action = Literal["answered", "clarify", "ignored", "not_a_survey_reply"]


@dataclass(frozen=True)
class ReplyOutcome:
    action: Action
    message_id: str | None = None  # the survey message the reply was matched to
    kind: str | None = None
    score: int | None = None
    reply: str | None = None  # what to text back (TwiML), if anything
    event_id: str | None = None  # the survey.responded event stored in the inbox


@dataclass(frozen=True)
class ReplyTexts:
    """language -> {"clarify": ..., "thanks": ...}; ``{low}``/``{high}`` are the scale's ends."""

    texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    default_locale: str = "en"

    def text(self, name: str, locale: str | None, kind: str) -> str | None:
        """The text in the customer's language; None when the shop set it to "" (no reply)."""
        default = self.default_locale if self.default_locale in self.texts else "en"
        template = self.texts.get(pick_locale(self.texts.keys(), locale, default), {}).get(name)
        if template is None:
            template = self.texts.get(default, {}).get(name, _FALLBACK[name])
        if not template.strip():
            return None
        low, high = SURVEY_SCALES[kind]
        try:
            return template.format(low=low, high=high)
        except (KeyError, IndexError, ValueError):  # a stray brace in an edited text
            log.warning("%s text %r does not format; sending the built-in one", name, template)
            return _FALLBACK[name].format(low=low, high=high)


@dataclass(frozen=True)
class SurveyReplies:
    """What reply handling needs besides the reply: the survey templates, how long a question
    stays open and the texts to answer with."""

    kinds: Mapping[str, str]  # template -> nps | csat | ces
    days: int
    texts: ReplyTexts = field(default_factory=ReplyTexts)


def survey_kinds(content: ContentLibrary) -> dict[str, str]:
    """template -> survey kind, for the templates that ask one."""
    kinds = {name: content.survey_kind(name) for name in content.templates()}
    return {name: kind for name, kind in kinds.items() if kind is not None}


def answer_from_reply(session: Session, customer_id: str | None, channel: str, body: str,
                      kinds: Mapping[str, str], now: datetime, survey_days: int, *,
                      texts: ReplyTexts | None = None, locale: str | None = None) -> ReplyOutcome:
    """Act on a reply that is not a STOP/START/HELP keyword, in the caller's transaction.
    ``locale`` is the customer's, used when the survey message does not record its own."""
    if customer_id is None or channel not in REPLY_CHANNELS or not kinds:
        return ReplyOutcome("not_a_survey_reply")
    message = open_survey(session, customer_id, channel, kinds, now, survey_days)
    if message is None:
        return ReplyOutcome("not_a_survey_reply")
    kind = kinds[message.template]
    texts = texts or ReplyTexts()
    language = message.locale or locale
    parsed = parse_reply(body, kind)
    if parsed is not None:
        survey = survey_message(session, message.id, kind)
        if survey is None:  # pragma: no cover - every message belongs to an enrollment
            return ReplyOutcome("not_a_survey_reply")
        event = store_answer(session, survey, parsed.score, parsed.comment, source=channel,
                             now=now)
        return ReplyOutcome("answered", message.id, kind, parsed.score,
                            texts.text("thanks", language, kind), event.id)
    if message.clarified_at is not None or answered(session, message.id):
        return ReplyOutcome("ignored", message.id, kind)
    claimed = session.execute(
        update(Message).where(Message.id == message.id, Message.clarified_at.is_(None))
        .values(clarified_at=now).returning(Message.id)
        .execution_options(synchronize_session=False)).first()
    if claimed is None:  # another reply got there first
        return ReplyOutcome("ignored", message.id, kind)
    return ReplyOutcome("clarify", message.id, kind, reply=texts.text("clarify", language, kind))


def open_survey(session: Session, customer_id: str, channel: str, kinds: Mapping[str, str],
                now: datetime, survey_days: int) -> Message | None:
    """The customer's latest survey sent on ``channel`` within ``survey_days``."""
    return session.scalars(
        select(Message).where(
            Message.customer_id == customer_id, Message.channel == channel,
            Message.status == "sent", Message.template.in_(sorted(kinds)),
            Message.sent_at >= now - timedelta(days=survey_days),
            or_(Message.delivery_status.is_(None), Message.delivery_status.not_in(_NOT_RECEIVED)))
        .order_by(Message.sent_at.desc(), Message.id.desc()).limit(1)).first()


def answered(session: Session, message_id: str) -> bool:
    """An answer to this message is waiting in the inbox (the event ids :func:`store_answer`
    gives start with ``answer-<message id>-``; only pending events are searched, which the
    ``(status, seq)`` index keeps small) or has been recorded. In that order: an answer
    processed between the two queries is then seen by the second."""
    pending = session.scalar(select(InboxEvent.seq).where(
        InboxEvent.status == "pending",
        InboxEvent.event_id.startswith(f"answer-{message_id}-", autoescape=True)).limit(1))
    if pending is not None:
        return True
    return session.scalar(select(SurveyResponse.id).where(SurveyResponse.message_id == message_id)
                          .limit(1)) is not None


# --- loading ----------------------------------------------------------------------------------

_TEXTS_CACHE: dict[Path, tuple[int, ReplyTexts]] = {}


def load_reply_texts(content_dir: Path, default_locale: str = "en") -> ReplyTexts:
    """``_pages/replies.yaml``, re-read when the file changes. A missing or broken file gives the
    built-in English texts: a clarification must still go out."""
    path = Path(content_dir) / TEXTS_FILE
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return ReplyTexts(default_locale=default_locale)
    cached = _TEXTS_CACHE.get(path)
    if cached and cached[0] == stamp and cached[1].default_locale == default_locale:
        return cached[1]
    data, _, problems = read_yaml(path)
    for problem in problems:
        log.warning("%s", problem)
    texts: dict[str, dict[str, str]] = {}
    if isinstance(data, dict):
        for language, values in data.items():
            if isinstance(values, dict):
                # An empty value ("" or nothing) means "send no reply".
                texts[str(language)] = {str(k): "" if v is None else str(v)
                                        for k, v in values.items() if k in _FALLBACK}
    loaded = ReplyTexts(texts, default_locale)
    _TEXTS_CACHE[path] = (stamp, loaded)
    return loaded


_PLACEHOLDER = re.compile(r"\{(\w*)\}")
PLACEHOLDERS = frozenset({"low", "high"})


def check_reply_texts(content_dir: Path) -> list[Problem]:
    """Problems in ``_pages/replies.yaml`` for ``aftersale validate``, with their lines. A
    missing file is not one: the built-in English texts are used."""
    path = Path(content_dir) / TEXTS_FILE
    if not path.exists():
        return []
    data, lines, problems = read_yaml(path)
    if problems:
        return problems
    if not isinstance(data, dict):
        return [Problem(str(path), 1, "expected one block per language (en:, tr:, pl:)")]
    for language, block in data.items():
        line = lines.get((language,), (1, 1))[0]
        if not isinstance(block, dict):
            problems.append(Problem(str(path), line, f"'{language}' should hold the texts"))
            continue
        for key, value in block.items():
            where = lines.get((language, key), (line, line))[0]
            if key not in _FALLBACK:
                problems.append(Problem(str(path), where, f"unknown text '{key}'",
                                        f"use {', '.join(sorted(_FALLBACK))}"))
            elif value is not None and not isinstance(value, str):
                problems.append(Problem(str(path), where, f"'{key}' should be a text"))
            elif isinstance(value, str):
                for name in sorted(set(_PLACEHOLDER.findall(value)) - PLACEHOLDERS):
                    problems.append(Problem(str(path), where, f"unknown placeholder {{{name}}}",
                                            "use {low} and {high}"))
    return problems


class CachedSurveyKinds:
    """template -> survey kind from the running definitions, rebuilt at most every ``ttl``
    seconds: building them reads and checks every journey and template (about 0.2 s), too slow
    for each inbound SMS, and which templates ask a survey rarely changes. Thread-safe."""

    def __init__(self, load: Callable[[], ContentLibrary], ttl: float = 60.0):
        self._load = load
        self._ttl = ttl
        self._lock = threading.Lock()
        self._kinds: dict[str, str] | None = None
        self._loaded_at = 0.0

    def get(self) -> dict[str, str]:
        with self._lock:
            if self._kinds is None or time.monotonic() - self._loaded_at >= self._ttl:
                try:
                    self._kinds = survey_kinds(self._load())
                except Exception:  # keep the last known kinds; try again after ttl
                    log.exception("could not load the survey templates; replies are matched "
                                  "with the last known ones")
                    self._kinds = self._kinds or {}
                self._loaded_at = time.monotonic()
            return self._kinds


__all__ = [
    "CachedSurveyKinds", "ReplyOutcome", "ReplyTexts", "SurveyReplies", "answer_from_reply",
    "answered", "check_reply_texts", "load_reply_texts", "open_survey", "survey_kinds",
]
