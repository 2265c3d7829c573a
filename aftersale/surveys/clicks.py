"""Survey links clicked in e-mails: judged on arrival, an answer only once it is a person's.

A click is stored in ``survey_clicks`` before anything else happens (the rules are in
:mod:`aftersale.core.scanners`):

- suspect (a mail scanner, most likely): kept with its reason and nothing more: no
  ``survey.responded`` event, so no journey resumes, no alert, no metric. A scanner hammering
  a link leaves one mark per score and reason, not one per request;
- pending (a person, it seems): it becomes the answer :data:`SETTLE_AFTER` later
  (:func:`settle_clicks`), unless a burst of other scores turns it suspect meanwhile;
- a comment sent from the thank-you page is a person's act: it is the answer at once, and
  the message's pending clicks are settled into it (:func:`confirm_pending`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from aftersale.core.scanners import BURST_SECONDS, Click, Seen, burst_partners, suspect_reason
from aftersale.db.models import Message, SurveyClick
from aftersale.db.session import rowcount
from aftersale.surveys.answers import SurveyMessage, store_answer, survey_message

PENDING, ANSWER, SUSPECT, VOID = "pending", "answer", "suspect", "void"
#: A pending click becomes the answer this long after it: twice the burst window, so that a
#: burst partner stamped inside the window whose request then waited (for the message's lock,
#: in a scanner's storm of requests) still finds it pending and can mark it.
SETTLE_AFTER = timedelta(seconds=2 * BURST_SECONDS)
SETTLE_BATCH = 500


def record_click(session: Session, survey: SurveyMessage, click: Click) -> str:
    """Store ``click`` on ``survey`` in the caller's transaction; its verdict (pending or
    suspect). Clicks on one message are judged one at a time: on PostgreSQL the message row
    is locked first, on SQLite the insert takes the database's write lock before the other
    clicks are read, so two requests of one burst always see each other."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Message.id).where(Message.id == survey.message_id)
                        .with_for_update())
    row = SurveyClick(message_id=survey.message_id, customer_id=survey.customer_id,
                      kind=survey.kind, score=None if click.honeypot else click.score,
                      clicked_at=click.at, verdict=PENDING, reason=None, event_id=None)
    session.add(row)
    session.flush()
    others = session.execute(
        select(SurveyClick.id, SurveyClick.clicked_at, SurveyClick.score, SurveyClick.verdict,
               SurveyClick.reason)
        .where(SurveyClick.message_id == survey.message_id, SurveyClick.id != row.id)).all()
    window = timedelta(seconds=BURST_SECONDS)
    recent = [Seen(o.clicked_at, o.score, o.id) for o in others
              if abs(o.clicked_at - click.at) <= window and o.verdict != VOID]
    reason = suspect_reason(click, recent)
    partners = [seen.key for seen in burst_partners(click, recent)]
    if partners:  # the earlier clicks of a burst were a scanner's too
        session.execute(update(SurveyClick)
                        .where(SurveyClick.id.in_(partners), SurveyClick.verdict == PENDING)
                        .values(verdict=SUSPECT, reason="burst")
                        .execution_options(synchronize_session=False))
    if reason is None:
        if any(o.verdict == PENDING and o.score == row.score for o in others):
            session.delete(row)  # a double click: the first one is already waiting
        return PENDING
    row.verdict, row.reason = SUSPECT, reason
    if any(o.verdict == SUSPECT and o.score == row.score and o.reason == reason for o in others):
        session.delete(row)  # marked already: a scanner's repeats write nothing more
    return SUSPECT


def settle_clicks(session: Session, now: datetime, limit: int = SETTLE_BATCH) -> int:
    """Pending clicks older than SETTLE_AFTER become answers, oldest first: each a
    ``survey.responded`` inbox event dated at its click. Returns how many. Safe to run from
    several processes at once: a click is claimed by a conditional update before its event
    is stored."""
    due_before = now - SETTLE_AFTER
    query = (select(SurveyClick.id, SurveyClick.message_id, SurveyClick.kind, SurveyClick.score,
                    SurveyClick.clicked_at)
             .where(SurveyClick.verdict == PENDING, SurveyClick.clicked_at <= due_before)
             .order_by(SurveyClick.clicked_at, SurveyClick.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    settled = 0
    for click in session.execute(query).all():
        survey = survey_message(session, click.message_id, click.kind)
        claimed = rowcount(session.execute(
            update(SurveyClick).where(SurveyClick.id == click.id, SurveyClick.verdict == PENDING)
            .values(verdict=VOID if survey is None or click.score is None else ANSWER)
            .execution_options(synchronize_session=False)))
        if not claimed or survey is None or click.score is None:
            continue
        event = store_answer(session, survey, click.score, None, source="email",
                             now=now, occurred_at=click.clicked_at)
        session.execute(update(SurveyClick).where(SurveyClick.id == click.id)
                        .values(event_id=event.id).execution_options(synchronize_session=False))
        settled += 1
    return settled


def settle_due(factory: sessionmaker[Session], now: datetime) -> int:
    """:func:`settle_clicks` in a transaction of its own: what the web process's timer and
    every process-events run call."""
    with factory() as session, session.begin():
        return settle_clicks(session, now)


def confirm_pending(session: Session, message_id: str, event_id: str) -> int:
    """A person's act (a comment) answered ``message_id`` as ``event_id``: its pending clicks
    are part of that answer and make no event of their own."""
    return rowcount(session.execute(
        update(SurveyClick).where(SurveyClick.message_id == message_id,
                                  SurveyClick.verdict == PENDING)
        .values(verdict=ANSWER, event_id=event_id)
        .execution_options(synchronize_session=False)))
