"""The channel interface every provider implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from aftersale.errors import PermanentProviderError, TransientProviderError

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
    status: Literal["sent", "failed", "retry"]
    provider_message_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    retry_after: float | None = None


class Channel(Protocol):
    name: ChannelName
    provider: str

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send each message once; one result per message, in order. Never raises for a
        single message's failure: it is reported in that message's result."""
        ...


class SingleSendChannel:
    """Base for providers that send one message per API call: maps errors to results."""

    name: ChannelName
    provider: str

    def send_one(self, message: OutboundMessage) -> str | None:
        """Send; return the provider's message id. Raise Transient/PermanentProviderError."""
        raise NotImplementedError  # pragma: no cover - abstract

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results = []
        for message in messages:
            try:
                provider_id = self.send_one(message)
                results.append(SendResult(message.id, "sent", provider_id))
            except TransientProviderError as exc:
                results.append(SendResult(message.id, "retry", error=str(exc), error_code=exc.code,
                                          retry_after=exc.retry_after))
            except PermanentProviderError as exc:
                results.append(SendResult(message.id, "failed", error=str(exc), error_code=exc.code))
        return results
