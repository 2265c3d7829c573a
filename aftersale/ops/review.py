"""What waits for an operator, and the decisions they can take on it.

Two things are never retried by themselves, on purpose:

* a message whose send is ``unknown``: the sender stopped after calling the provider and before
  recording its answer, so the customer may have it. Only someone who looked in the provider's
  log can say; they then mark it ``sent`` or send it again.
* an inbox event that ``failed``: its data broke a rule (an unknown order, a bad field). Once
  the cause is fixed (the order imported, a journey corrected) it can be queued again; applying
  an event is idempotent, and a failed one changed nothing. A requeued event counts as received
  now, so an event whose order is still missing waits for it again (three days) instead of
  failing at once: the order imported alongside the requeue is applied first.

Every decision is all or nothing: one id that is not in the state the decision needs changes
nothing and names it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aftersale.db.models import InboxEvent, Message
from aftersale.db.session import rowcount


class NotUnderReview(ValueError):
    """Some ids are not in the state the decision is for."""


@dataclass(frozen=True)
class Overview:
    inbox: dict[str, int]  # status -> events
    messages: dict[str, int]  # status -> messages
    oldest_pending_event: datetime | None
    unknown: list[Message]
    failed: list[InboxEvent]


def overview(session: Session, limit: int = 50) -> Overview:
    """Counts by status, and the first ``limit`` items that need a decision."""
    inbox = dict(session.execute(select(InboxEvent.status, func.count())
                                 .group_by(InboxEvent.status)).tuples().all())
    messages = dict(session.execute(select(Message.status, func.count())
                                    .group_by(Message.status)).tuples().all())
    oldest = session.scalar(select(func.min(InboxEvent.received_at))
                            .where(InboxEvent.status == "pending"))
    unknown = list(session.scalars(select(Message).where(Message.status == "unknown")
                                   .order_by(Message.sending_at, Message.id).limit(limit)))
    failed = list(session.scalars(select(InboxEvent).where(InboxEvent.status == "failed")
                                  .order_by(InboxEvent.seq).limit(limit)))
    return Overview(inbox, messages, oldest, unknown, failed)


def _unknown_messages(session: Session, ids: Collection[str]) -> list[Message]:
    rows = list(session.scalars(select(Message).where(Message.id.in_(set(ids)))
                                .with_for_update()))
    wrong = sorted(set(ids) - {m.id for m in rows if m.status == "unknown"})
    if wrong:
        raise NotUnderReview(f"not messages whose send is unknown: {', '.join(wrong)}")
    return rows


def resend(session: Session, ids: Collection[str], now: datetime) -> int:
    """Send these ``unknown`` messages again at the next dispatch: the provider's log shows
    they never went out. One the provider has answered for (its message id, or a delivery
    callback) did go out, and is refused."""
    messages = _unknown_messages(session, ids)
    went_out = sorted(m.id for m in messages if m.provider_message_id or m.delivery_status)
    if went_out:
        raise NotUnderReview(f"the provider reported these as sent: {', '.join(went_out)} "
                             "(record them with 'aftersale review sent')")
    for message in messages:
        message.status, message.due_at, message.sending_at = "pending", now, None
        message.status_reason = f"sent again after review ({message.status_reason})"[:2000]
    return len(messages)


def confirm_sent(session: Session, ids: Collection[str], now: datetime) -> int:
    """Record these ``unknown`` messages as sent: the provider's log shows they went out."""
    messages = _unknown_messages(session, ids)
    for message in messages:
        message.status, message.sent_at = "sent", message.sending_at or now
        message.status_reason = "confirmed sent after review"
    return len(messages)


def requeue(session: Session, event_ids: Collection[str] | None, now: datetime) -> int:
    """Queue these failed events again (``None``: every failed event)."""
    failed = InboxEvent.status == "failed"
    if event_ids is not None:
        found = set(session.scalars(select(InboxEvent.event_id).where(
            InboxEvent.event_id.in_(set(event_ids)), failed)))
        wrong = sorted(set(event_ids) - found)
        if wrong:
            raise NotUnderReview(f"not failed events: {', '.join(wrong)}")
    query = update(InboxEvent).where(failed)
    if event_ids is not None:
        query = query.where(InboxEvent.event_id.in_(set(event_ids)))
    queued = rowcount(session.execute(query.values(status="pending", error=None, processed_at=None,
                                                   received_at=now))) or 0
    if event_ids is not None and queued != len(set(event_ids)):
        # Another operator requeued some between the check and the update: the caller's
        # transaction rolls back rather than report a count that is not what was asked.
        raise NotUnderReview("some of these events were queued again meanwhile; run it again")
    return queued
