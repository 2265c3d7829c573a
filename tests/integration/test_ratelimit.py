"""The per-provider send rate holds across senders sharing a database, and sends within a
batch run concurrently."""

from __future__ import annotations

import itertools
import threading
import time

from aftersale.channels.base import OutboundMessage
from aftersale.channels.ratelimit import RateLimiter
from aftersale.channels.twilio import TwilioSmsChannel
from aftersale.config import Settings
from aftersale.emulators.server import Reply
from aftersale.emulators.twilio import TwilioEmulator
from aftersale.pipeline.runtime import Runtime

ACCOUNT = "AC" + "2" * 32


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_two_senders_on_one_database_share_the_slots(rt: Runtime) -> None:
    clock = FakeTime()
    first = RateLimiter(rt.factory, "twilio", 10, now=clock)
    second = RateLimiter(rt.factory, "twilio", 10, now=clock)  # another worker process
    assert first.reserve(3) == [1000.0, 1000.1, 1000.2]
    assert second.reserve(2) == [1000.3, 1000.4]
    clock.now = 2000.0  # idle for a while: no burst credit carried over, start now
    assert first.reserve(1) == [2000.0]
    assert RateLimiter(rt.factory, "sendgrid", 10, now=clock).reserve(1) == [2000.0]


def test_slots_after_the_deadline_are_given_back(rt: Runtime) -> None:
    clock = FakeTime()
    limiter = RateLimiter(rt.factory, "twilio", 1, now=clock)
    assert limiter.reserve(10, deadline=1003.5) == [1000.0, 1001.0, 1002.0, 1003.0]
    # The six slots it did not keep are the next sender's, not a gap.
    assert limiter.reserve(2) == [1004.0, 1005.0]
    assert limiter.reserve(2, deadline=2000.0) == [1006.0, 1007.0]
    # No slot before the deadline: nothing kept, nothing taken from the next sender.
    assert RateLimiter(rt.factory, "twilio", 1, now=clock).reserve(1, deadline=1000.0) == []
    assert limiter.reserve(1) == [1008.0]


def test_concurrent_reservations_never_overlap(rt: Runtime) -> None:
    limiter = RateLimiter(rt.factory, "twilio", 1000)
    slots: list[float] = []
    lock = threading.Lock()

    def grab() -> None:
        got = RateLimiter(rt.factory, "twilio", 1000).reserve(5)
        with lock:
            slots.extend(got)

    threads = [threading.Thread(target=grab) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.per_second == 1000
    ordered = sorted(slots)
    assert len(ordered) == 30
    # epoch seconds as floats resolve to about 1e-7 s
    assert all(b - a >= 0.001 - 1e-6 for a, b in itertools.pairwise(ordered))


def slow_sms(rt: Runtime, settings: Settings, twilio: TwilioEmulator, count: int,
             answer_after: float, rate: float, concurrency: int
             ) -> tuple[TwilioSmsChannel, list[OutboundMessage]]:
    """An SMS channel to ``twilio`` at ``rate`` and ``concurrency``, and ``count`` messages,
    each answered ``answer_after`` seconds late."""
    channel = TwilioSmsChannel(Settings(_env_file=None, **settings.model_dump() | {  # type: ignore[call-arg]
        "sms_provider": "twilio", "twilio_account_sid": ACCOUNT, "twilio_auth_token": "t",
        "twilio_base_url": twilio.base_url, "twilio_from": "+15017122661"}), timeout=5)
    channel.limiter = RateLimiter(rt.factory, "twilio", rate)
    channel.concurrency = concurrency
    for _ in range(count):
        twilio.enqueue(Reply(201, None, delay=answer_after))
    return channel, [OutboundMessage(id=f"m-{n}", channel="sms", recipient="+905321234567",
                                     text="hi") for n in range(count)]


def test_a_batch_is_sent_concurrently_but_never_faster_than_the_rate(
        rt: Runtime, settings: Settings) -> None:
    with TwilioEmulator(account_sid=ACCOUNT, auth_token="t") as twilio:
        # A slow provider (0.2 s answers): concurrency helps.
        channel, messages = slow_sms(rt, settings, twilio, count=20, answer_after=0.2,
                                     rate=40, concurrency=8)
        started = time.monotonic()
        results = channel.send_batch(messages)
        elapsed = time.monotonic() - started
    assert [r.message_id for r in results] == [m.id for m in messages]  # order kept
    assert len(twilio.requests) == 20
    # 20 sends at 40/s take at least 19/40 s; one at a time with 0.2 s answers would take 4 s
    assert 19 / 40 <= elapsed < 2.0


def test_no_call_starts_after_the_deadline_however_slow_the_provider(
        rt: Runtime, settings: Settings) -> None:
    """Slots in time, but the calls ahead of them are slow: a message whose turn comes after
    the deadline is not sent; it comes back ``later``, and the provider never saw it."""
    with TwilioEmulator(account_sid=ACCOUNT, auth_token="t") as twilio:
        channel, messages = slow_sms(rt, settings, twilio, count=10, answer_after=0.5,
                                     rate=1000, concurrency=2)
        results = channel.send_batch(messages, deadline=time.time() + 0.8)
    sent = [r for r in results if r.status == "sent"]
    later = [r for r in results if r.status == "later"]
    assert len(sent) + len(later) == 10 and 2 <= len(sent) <= 4
    assert {r.error for r in later} == {"slow provider"}
    assert len(twilio.requests) == len(sent)
