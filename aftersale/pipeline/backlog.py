"""Is there work waiting? Cheap indexed EXISTS checks the flows poll while they linger.

A triggered run stays a few seconds after its last piece of work and asks these once a second,
so a burst of webhooks is one run rather than one run per webhook. They select exactly what
``process_batch`` (pending inbox rows) and ``dispatch_due`` (due enrollments, due pending
messages) would pick up, through the same indexes, and hold no lock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker

from aftersale.core.journeys.engine import Status
from aftersale.db.models import Enrollment, InboxEvent, Message, SurveyClick


def inbox_pending(factory: sessionmaker[Session]) -> bool:
    """Pending inbox events, or survey clicks about to become answers (they wait a few
    seconds for a scanner's burst, and process-events settles them)."""
    with factory() as session:
        return bool(session.scalar(select(exists().where(InboxEvent.status == "pending")))
                    or session.scalar(select(exists().where(SurveyClick.verdict == "pending"))))


def dispatch_due_now(factory: sessionmaker[Session], now: datetime) -> bool:
    with factory() as session:
        enrollment = exists().where(Enrollment.status == Status.ACTIVE.value, Enrollment.due_at <= now)
        message = exists().where(Message.status == "pending", Message.due_at <= now)
        return bool(session.scalar(select(enrollment)) or session.scalar(select(message)))
