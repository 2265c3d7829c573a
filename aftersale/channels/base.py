"""The channel interface every provider implements."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from aftersale.core.errors import PermanentProviderError, TransientProviderError

if TYPE_CHECKING:
    from aftersale.channels.ratelimit import RateLimiter

ChannelName = Literal["email", "sms", "whatsapp"]


@dataclass(frozen=True)
class OutboundMessage:
    id: str  # ours; providers echo it back in webhooks
    channel: ChannelName
    recipient: str
    text: str
    subject: str | None = None
    html: str | None = None
    transactional: bool = False
    journey: str = ""
    template: str = ""
    customer_id: str = ""
    unsubscribe_url: str | None = None  # marketing e-mail carries List-Unsubscribe with it
    # WhatsApp outside the 24-hour window: an approved template instead of free text.
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None


@dataclass(frozen=True)
class SendResult:
    message_id: str
    # "later": not sent, not tried; its rate slot fell after the sender's deadline
    status: Literal["sent", "failed", "retry", "later"]
    provider_message_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    retry_after: float | None = None


class CallGate(Protocol):
    """What a sender needs to know of each provider call before it starts
    (:class:`aftersale.pipeline.call_marks.CallMarks`)."""

    #: Set when the sender is stopping: no further call starts.
    stop: threading.Event

    def enter(self, message_id: str) -> str | None:
        """Just before the call: None to make it, else the reason not to (it comes back
        ``later`` with that reason)."""
        ...

    def done(self, result: SendResult) -> None:
        """The answer to a call that ``enter`` let through, as soon as it is known."""
        ...


class Channel(Protocol):
    @property  # read-only, so a channel that is always "sms" (Literal["sms"]) is one too
    def name(self) -> ChannelName: ...

    provider: str

    def send_batch(self, messages: Sequence[OutboundMessage], deadline: float | None = None,
                   gate: CallGate | None = None) -> list[SendResult]:
        """Send each message once; one result per message, in order. Never raises for a
        single message's failure: it is reported in that message's result. No provider call
        starts after ``deadline`` (epoch seconds), nor without passing ``gate``: those
        messages come back ``later``."""
        ...


class SingleSendChannel:
    """Base for providers that send one message per API call: sends a batch concurrently, at
    the provider's rate, and maps errors to results."""

    name: ChannelName
    provider: str
    #: Shared send rate (set by the runtime); None sends as fast as the provider answers.
    limiter: RateLimiter | None = None
    #: Requests in flight at once within a batch.
    concurrency: int = 1

    def send_one(self, message: OutboundMessage) -> str | None:
        """Send; return the provider's message id. Raise Transient/PermanentProviderError."""
        raise NotImplementedError  # pragma: no cover - abstract

    def send_batch(self, messages: Sequence[OutboundMessage], deadline: float | None = None,
                   gate: CallGate | None = None) -> list[SendResult]:
        if self.limiter is None:
            slots = [0.0] * len(messages)
        else:
            slots = self.limiter.reserve(len(messages), deadline)
        now, later = list(messages[:len(slots)]), messages[len(slots):]
        # Due again once the slots this batch kept have passed.
        wait = max((slots[-1] if slots else deadline or 0.0) - time.time(), 1.0)
        waiting = [SendResult(m.id, "later", error="rate limit", retry_after=wait) for m in later]
        if self.concurrency <= 1 or len(now) <= 1:
            return [self._send_at(m, slot, deadline, gate)
                    for m, slot in zip(now, slots, strict=True)] + waiting
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(now)),
                                thread_name_prefix=f"send-{self.provider}") as pool:
            return list(pool.map(self._send_at, now, slots, [deadline] * len(now),
                                 [gate] * len(now))) + waiting

    def _send_at(self, message: OutboundMessage, slot: float, deadline: float | None = None,
                 gate: CallGate | None = None) -> SendResult:
        if self.limiter is not None:
            self.limiter.wait_until(slot, None if gate is None else gate.stop)
        if deadline is not None and time.time() > deadline:
            # Its slot was in time but the calls before it were slow (timeouts): past the
            # deadline the claim may expire mid-call, so it waits for a later batch.
            return SendResult(message.id, "later", error="slow provider", retry_after=1.0)
        if gate is None:
            return self._call(message)
        refused = gate.enter(message.id)
        if refused is not None:
            return SendResult(message.id, "later", error=refused, retry_after=0.0)
        result = self._call(message)
        gate.done(result)
        return result

    def _call(self, message: OutboundMessage) -> SendResult:
        try:
            return SendResult(message.id, "sent", self.send_one(message))
        except TransientProviderError as exc:
            return SendResult(message.id, "retry", error=str(exc), error_code=exc.code,
                              retry_after=exc.retry_after)
        except PermanentProviderError as exc:
            return SendResult(message.id, "failed", error=str(exc), error_code=exc.code)
