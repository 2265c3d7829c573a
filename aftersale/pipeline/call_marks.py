"""Which claimed messages a sender may already have handed to a provider.

A claimed row (``sending``) whose provider call never started is not in doubt: after a crash
it goes back to the queue. A row whose call finished is not in doubt either, once its answer
is recorded. So the sender keeps the two moments in the database as it goes, in one small
transaction per window of calls (the send concurrency): when a call is about to start beyond
the last window, that transaction records the answers that came back since the previous one
and marks ``call_started_at`` on the next ``window`` rows, before any of them is called. A
batch costs one commit per window of calls, not one per message, and a crash leaves in doubt
(flagged ``unknown`` for review) only the calls in flight, the answers of the current window
and the rest of its marks: under two windows' worth, whatever the size of the batch.

A mark is taken only while the row is still this claim's (its token, ``sending``): a row
released or flagged meanwhile is not marked and not sent, so releasing unmarked rows can
never race a call into a duplicate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aftersale.channels.base import SendResult
from aftersale.core.clock import Clock
from aftersale.db.models import Message
from aftersale.db.retry import while_away
from aftersale.pipeline.advance import DispatchCounts
from aftersale.pipeline.stopping import STOP

log = logging.getLogger(__name__)

#: Writes answers to their rows in the session given, counting them; returns the ids written
#: (an answer it leaves is recorded at the end of the batch).
Recorder = Callable[[Session, list[SendResult], DispatchCounts], set[str]]


class CallMarks:
    """The gate a channel passes each message through just before its provider call
    (:class:`aftersale.channels.base.CallGate`), for one channel's part of a claimed batch."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock, token: str,
                 order: Sequence[str], window: int, record: Recorder,
                 stop: threading.Event = STOP):
        self.stop = stop
        self._factory, self._clock, self._token, self._record = factory, clock, token, record
        self._order = list(order)
        self._position = {message_id: i for i, message_id in enumerate(self._order)}
        self._window = max(window, 1)
        self._marked_to = 0  # self._order[:_marked_to] were offered to the database
        self._ours: set[str] = set()
        self._answers: list[SendResult] = []  # answered, not yet recorded
        self._broken = False
        self._lock = threading.Lock()  # one window's transaction at a time
        self._answers_lock = threading.Lock()  # answers come in while a window commits
        #: Answers recorded along the way, and what recording them counted.
        self.recorded: set[str] = set()
        self.counts = DispatchCounts()
        self.transactions = 0

    def enter(self, message_id: str) -> str | None:
        """None: make the call (its start is committed). Otherwise why not to make it."""
        if self.stop.is_set():
            return "sender stopped"
        if message_id in self._ours:  # marked with an earlier window: no wait for this one's
            return None
        with self._lock:
            if self.stop.is_set():
                return "sender stopped"
            position = self._position[message_id]
            if position >= self._marked_to and not self._broken:
                # Calls start in the batch's order, give or take the threads' scheduling.
                end = max(position + 1, self._marked_to + self._window)
                self._flush(self._order[self._marked_to:end])
                self._marked_to = end
            if message_id in self._ours:
                return None
            return ("could not mark the call as started" if self._broken
                    else "no longer claimed by this sender")

    def done(self, result: SendResult) -> None:
        """The answer to a call that :meth:`enter` let through; recorded with the next marks."""
        with self._answers_lock:
            self._answers.append(result)

    def unrecorded(self, results: Sequence[SendResult]) -> list[SendResult]:
        with self._lock:
            return [r for r in results if r.message_id not in self.recorded]

    def _flush(self, ids: Sequence[str]) -> None:
        with self._answers_lock:
            answers = list(self._answers)

        def write() -> tuple[set[str], set[str], DispatchCounts]:
            counted = DispatchCounts()  # a try that rolled back counted nothing
            with self._factory() as session, session.begin():
                recorded = self._record(session, answers, counted) if answers else set()
                return recorded, set(session.scalars(
                    update(Message)
                    .where(Message.id.in_(ids), Message.claim_token == self._token,
                           Message.status == "sending")
                    .values(call_started_at=self._clock.now())
                    .returning(Message.id))), counted

        try:
            # Retried while the database is away for a moment, as recording is: given up, the
            # rest of the batch would go back to the queue.
            recorded, marked, counted = while_away(
                write, f"marking {len(ids)} provider calls as started")
        except SQLAlchemyError as exc:
            # Unmarked, a call would be lost to review after a crash: none starts. The answers
            # are recorded at the end of the batch, where recording is retried.
            log.warning("could not mark provider calls as started (%s); the rest of the batch "
                        "goes back to the queue", str(exc).splitlines()[0])
            self._broken = True
            return
        self.transactions += 1
        self._ours |= marked
        with self._answers_lock:
            del self._answers[:len(answers)]  # answers only ever come in at the end
        self.recorded |= recorded
        self.counts.add(counted)
