"""Helpers for the scale-out and fault-injection tests: due messages in bulk, a dispatcher in
its own OS process, a PostgreSQL database per test, and a TCP proxy that can cut the
application off from PostgreSQL without touching the server other tests share."""

from __future__ import annotations

import contextlib
import multiprocessing
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import make_url

from aftersale.channels.base import CallGate, Channel, OutboundMessage, SendResult
from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.models import Customer, Enrollment, JourneyVersion, Message, Order, RateLimitState
from aftersale.emulators.sendgrid import SendGridEmulator
from aftersale.emulators.twilio import TwilioEmulator
from aftersale.orchestration.passes import dispatch_due
from aftersale.pipeline.runtime import Runtime, open_runtime

ACCOUNT = "AC" + "2" * 32
TOKEN = "twilio-fault-token"
KEY = "SG.fault-key"

SPAWN = multiprocessing.get_context("spawn")


# -- databases -------------------------------------------------------------------------------
def via(url: str, host: str, port: int) -> str:
    """The same database URL through another host and port (a proxy)."""
    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


# -- providers -------------------------------------------------------------------------------
def with_providers(settings: Settings, sendgrid: SendGridEmulator | None = None,
                   twilio: TwilioEmulator | None = None, **extra: Any) -> Settings:
    """``settings`` sending e-mail through ``sendgrid`` and SMS through ``twilio``."""
    changes: dict[str, Any] = {"provider_timeout_seconds": 1.0}
    if sendgrid is not None:
        changes |= {"email_provider": "sendgrid", "sendgrid_api_key": sendgrid.api_key,
                    "sendgrid_base_url": sendgrid.base_url}
    if twilio is not None:
        changes |= {"sms_provider": "twilio", "twilio_account_sid": twilio.account_sid,
                    "twilio_auth_token": twilio.auth_token, "twilio_base_url": twilio.base_url,
                    "twilio_from": "+15017122661"}
    return Settings(_env_file=None, **settings.model_dump() | changes | extra)  # type: ignore[call-arg]


def accepted_ids(emulator: SendGridEmulator | TwilioEmulator) -> Counter[str]:
    """How many times the provider accepted each of our message ids."""
    if isinstance(emulator, SendGridEmulator):
        return Counter(body["custom_args"]["aftersale_message_id"] for _, body in emulator.sent)
    return Counter(parse_qs(urlsplit(url).query)["m"][0] for url in emulator.callbacks if url)


def accepted_once_each(emulator: SendGridEmulator | TwilioEmulator,
                       ids: Iterable[str]) -> Counter[str]:
    """:func:`accepted_ids`, after checking the provider accepted every one of ``ids`` and each
    exactly once: nothing lost, nothing doubled."""
    accepted = accepted_ids(emulator)
    assert set(accepted) == set(ids) and max(accepted.values()) == 1, accepted.most_common(3)
    return accepted


# -- due messages in bulk --------------------------------------------------------------------
def seed_due_messages(rt: Runtime, count: int, now: datetime, channel: str = "email",
                      prefix: str = "s") -> list[str]:
    """``count`` customers, each with a shipped order, an enrollment in order_updates and its
    shipping update due now (``pending``), inserted in bulk. Returns the message ids."""
    rt.definitions()  # records the journey versions the enrollments point at
    with rt.factory() as session, session.begin():
        version = session.scalars(select(JourneyVersion.id).where(
            JourneyVersion.journey == "order-updates").order_by(JourneyVersion.id.desc())).first()
        first_id = (session.scalar(select(Enrollment.id).order_by(Enrollment.id.desc())) or 0) + 1
    assert version is not None
    customers, orders, enrollments, messages = [], [], [], []
    ids = []
    for n in range(count):
        cid, oid, eid, mid = f"{prefix}-c{n}", f"{prefix}-o{n}", first_id + n, f"msg_{prefix}{n:07d}"
        ids.append(mid)
        customers.append({
            "id": cid, "email": f"{cid}@example.com" if channel == "email" else None,
            "phone": f"+90532{n:07d}" if channel == "sms" else None, "first_name": "Ayşe",
            "locale": "en", "timezone": "Europe/Istanbul", "country": "TR",
            "consent_email": True, "consent_sms": True, "consent_whatsapp": False,
            "created_at": now, "updated_at": now})
        orders.append({
            "id": oid, "customer_id": cid, "number": f"#{oid}", "placed_at": now,
            "total": Decimal("129.90"), "currency": "TRY", "status": "shipped", "shipped_at": now,
            "items": [{"sku": "MUG-1", "title": "Mug", "category": "mugs", "quantity": 1,
                       "price": "129.90"}], "discount_codes": [],
            "carrier": "Yurtiçi Kargo", "tracking_number": f"YK{n}",
            "tracking_url": f"https://track.example.com/{oid}"})
        enrollments.append({
            "id": eid, "journey": "order-updates", "journey_version_id": version,
            "customer_id": cid, "order_id": oid, "entry_key": f"order:{oid}", "segment": "first_time",
            "holdout": False, "status": "active", "pc": 2, "due_at": None, "enrolled_at": now})
        messages.append({
            "id": mid, "enrollment_id": eid, "step_key": "1", "customer_id": cid,
            "journey": "order-updates", "template": "shipping_update", "channels": [channel],
            "status": "pending", "attempts": 0, "created_at": now, "due_at": now})
    with rt.engine.begin() as connection:
        for model, rows in ((Customer, customers), (Order, orders), (Enrollment, enrollments),
                            (Message, messages)):
            for start in range(0, len(rows), 5000):
                connection.execute(insert(model), rows[start:start + 5000])
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT setval(pg_get_serial_sequence('enrollments', 'id'), "
                                    "(SELECT max(id) FROM enrollments))"))
    return ids


def statuses(rt: Runtime) -> dict[str, str]:
    with rt.factory() as session:
        return dict(session.execute(select(Message.id, Message.status)).tuples().all())


def hold_rate_limit(rt: Runtime, provider: str, seconds: float) -> None:
    """Reserve the provider's send slots for the next ``seconds`` (wall clock), as a burst
    of other senders would: the next sender waits that long before calling the provider."""
    set_rate_limit(rt, provider, time.time() + seconds)


def set_rate_limit(rt: Runtime, provider: str, next_at: float) -> None:
    with rt.factory() as session, session.begin():
        updated = session.execute(update(RateLimitState).where(RateLimitState.provider == provider)
                                  .values(next_at=next_at)).rowcount
        if not updated:
            session.add(RateLimitState(provider=provider, next_at=next_at))


# -- a dispatcher in its own process ---------------------------------------------------------
@dataclass
class Recording:
    """Our channel as it is, noting which message ids it was told were sent."""

    inner: Channel
    sent: list[str]

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def provider(self) -> str:
        return self.inner.provider

    def send_batch(self, messages: Sequence[OutboundMessage], deadline: float | None = None,
                   gate: CallGate | None = None) -> list[SendResult]:
        results = self.inner.send_batch(messages, deadline, gate)
        self.sent += [r.message_id for r in results if r.status == "sent"]
        return results


def dispatcher(settings: dict[str, Any], now: datetime, name: str = "", ready: Any = None,
               go: Any = None, results: Any = None) -> None:
    """One dispatch run (``aftersale.orchestration.passes.dispatch_due``, as the dispatch-messages flow
    does) in this process, on a clock stopped at ``now``. With ``ready``/``go`` (events) it
    waits for the starting signal; with ``results`` (a queue) it reports what it sent."""
    rt = open_runtime(Settings(_env_file=None, **settings), SimulatedClock(now),  # type: ignore[call-arg]
                      migrate=False)
    definitions = rt.definitions()
    sent: list[str] = []
    rt._channels = {k: Recording(c, sent) for k, c in rt.channels().items()}  # type: ignore[misc]
    rt.links()
    if ready is not None:
        ready.set()
    if go is not None:
        go.wait(60)
    started = time.monotonic()
    counts = dispatch_due(rt, definitions)
    if results is not None:
        results.put({"name": name, "sent": sent, "claimed": counts.claimed,
                     "counted_sent": counts.sent, "seconds": time.monotonic() - started})
    rt.engine.dispose()


def start_dispatcher(settings: Settings, now: datetime, **kwargs: Any) -> Any:
    process = SPAWN.Process(target=dispatcher, args=(settings.model_dump(), now),
                            kwargs=kwargs, daemon=True)
    process.start()
    return process


def kill(process: Any) -> None:
    """SIGKILL: no cleanup, no finally, no flush, as when the machine or the OOM killer stops it."""
    process.kill()
    process.join(10)
    assert process.exitcode == -9, process.exitcode


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition",
               every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


# -- a TCP proxy in front of PostgreSQL ------------------------------------------------------
class CutProxy:
    """Forwards 127.0.0.1:port to ``upstream``. ``cut_when(pattern)`` arms it: when a chunk
    from the application contains ``pattern``, that chunk is dropped, every connection is cut
    and new ones are closed at once (the database is away) until ``restore()``."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._pattern: bytes | None = None
        self.down = False
        self.cuts = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cut-proxy:{self.port}", daemon=True)

    def __enter__(self) -> CutProxy:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in list(self._peers):
            sock.close()
        self._listener.close()

    def cut_when(self, pattern: bytes) -> None:
        with self._lock:
            self._pattern = pattern

    def restore(self) -> None:
        with self._lock:
            self.down = False

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                elif sock in self._peers:
                    self._pump(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        with self._lock:
            refusing = self.down
        if refusing:
            self.refused += 1
            client.close()
            return
        server = socket.create_connection(self.upstream)
        for one, other in ((client, server), (server, client)):
            one.setblocking(False)
            self._peers[one] = other
            self._selector.register(one, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        other = self._peers[sock]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(sock)
            return
        with self._lock:
            hit = (self._pattern is not None and self._pattern in data
                   and sock.getsockname()[1] == self.port)  # from the application
            if hit:
                self._pattern, self.down = None, True
        if hit:
            self.cuts += 1
            for peer in list(self._peers):
                self._close(peer)
            return
        other.setblocking(True)
        try:
            other.sendall(data)
        except OSError:
            self._close(sock)
        finally:
            with contextlib.suppress(OSError):
                other.setblocking(False)

    def _close(self, sock: socket.socket) -> None:
        for one in (sock, self._peers.get(sock)):
            if one is None or one not in self._peers:
                continue
            self._peers.pop(one, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(one)
            with contextlib.suppress(OSError):
                one.shutdown(socket.SHUT_RDWR)
            one.close()
