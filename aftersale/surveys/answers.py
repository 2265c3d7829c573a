"""Every answer, whatever way it came in, becomes a ``survey.responded`` event in the inbox.

The inbox is the one way in (stored before acted on), so a click, a text reply and an event
from the shop's own tools all resume journeys and feed branches the same way, in
``process-events``. Answers are keyed by the survey message: processing upserts the one answer
per message, so a second click changes the answer rather than adding one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from aftersale.core.events import Event, EventType
from aftersale.core.survey_scales import SURVEY_SCALES, clean_comment, in_scale
from aftersale.db.models import Enrollment, Message, SurveyResponse
from aftersale.intake.inbox import store_events


@dataclass(frozen=True)
class SurveyMessage:
    """The survey question a link or a reply answers."""

    message_id: str
    customer_id: str
    order_id: str | None
    kind: str
    channel: str | None
    sent_at: datetime | None

    def expired(self, now: datetime, days: int) -> bool:
        return self.sent_at is None or now - self.sent_at > timedelta(days=days)


def survey_message(session: Session, message_id: str, kind: str) -> SurveyMessage | None:
    row = session.execute(
        select(Message.id, Message.customer_id, Enrollment.order_id, Message.channel,
               Message.sent_at)
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .where(Message.id == message_id)).first()
    if row is None:
        return None
    return SurveyMessage(row[0], row[1], row[2], kind, row[3], row[4])


def current_answer(session: Session, message_id: str) -> SurveyResponse | None:
    return session.scalars(select(SurveyResponse)
                           .where(SurveyResponse.message_id == message_id)).first()


def store_answer(session: Session, survey: SurveyMessage, score: int, comment: str | None,
                 source: str, now: datetime, occurred_at: datetime | None = None) -> Event:
    """Store the answer as an inbox event in the caller's transaction and return it.

    Each click or reply is its own event (a fresh id), because each may change the answer;
    processing keeps one answer per message, the latest. ``occurred_at`` (default ``now``):
    when the customer answered, for a click that became the answer later."""
    if not in_scale(survey.kind, score):
        low, high = SURVEY_SCALES[survey.kind]
        raise ValueError(f"{survey.kind} score must be between {low} and {high}")
    event = Event.model_validate({
        "id": f"answer-{survey.message_id}-{uuid.uuid4().hex[:12]}",
        "type": EventType.SURVEY_RESPONDED.value,
        "occurred_at": occurred_at or now,
        "customer": {"id": survey.customer_id},
        "survey": {"kind": survey.kind, "score": score, "comment": clean_comment(comment),
                   "order_id": survey.order_id, "message_id": survey.message_id,
                   "source": source},
    })
    store_events(session, [event], source, now)
    return event
