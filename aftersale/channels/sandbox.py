"""The sandbox channel: the default provider, for the demo, development and tests.

It "delivers" by recording each message in the ``sandbox_outbox`` table (and, when a folder is
configured, as a file per message), in a transaction of its own like a real provider's log. It
is idempotent by our message id, as real providers are with an idempotency key: a repeated
send of the same message records nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from aftersale.channels.base import CallGate, ChannelName, OutboundMessage, SendResult
from aftersale.core.clock import Clock
from aftersale.db.models import SandboxOutbox
from aftersale.db.upsert import insert


class SandboxChannel:
    provider = "sandbox"

    def __init__(self, name: ChannelName, factory: sessionmaker[Session], clock: Clock,
                 folder: Path | None = None):
        self.name = name
        self._factory = factory
        self._clock = clock
        self._folder = folder

    def send_batch(self, messages: Sequence[OutboundMessage], deadline: float | None = None,
                   gate: CallGate | None = None) -> list[SendResult]:
        if not messages:
            return []
        if gate is not None and gate.stop.is_set():
            return [SendResult(m.id, "later", error="sender stopped", retry_after=0.0)
                    for m in messages]
        # No call marks: the outbox is idempotent by our id, so a batch sent again after a
        # crash records nothing twice, and its rows may go back to the queue.
        now = self._clock.now()
        rows = [{"message_id": m.id, "channel": self.name, "recipient": m.recipient,
                 "subject": m.subject, "body_text": m.text, "body_html": m.html,
                 "delivered_at": now} for m in messages]
        with self._factory() as session, session.begin():
            session.execute(insert(session, SandboxOutbox).values(rows)
                            .on_conflict_do_nothing(index_elements=["message_id"]))
        if self._folder is not None:
            self._write_files(messages)
        return [SendResult(m.id, "sent", provider_message_id=f"sandbox-{m.id}") for m in messages]

    def _write_files(self, messages: Sequence[OutboundMessage]) -> None:
        assert self._folder is not None
        self._folder.mkdir(parents=True, exist_ok=True)
        for m in messages:
            header = f"To: {m.recipient}\nChannel: {self.name}\n"
            if m.subject:
                header += f"Subject: {m.subject}\n"
            (self._folder / f"{m.id}.{self.name}.txt").write_text(
                f"{header}\n{m.text}\n", encoding="utf-8")
            if m.html:
                (self._folder / f"{m.id}.{self.name}.html").write_text(m.html, encoding="utf-8")
