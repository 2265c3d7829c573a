"""Which channel a message goes out on: the first of the step's list the customer allows and
can receive. Pure, so every rule is unit-tested and every skip has a reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Contact:
    email: str | None
    phone: str | None
    consent: dict[str, bool]


@dataclass(frozen=True)
class Choice:
    channel: str | None
    recipient: str | None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(f"{c}: {r}" for c, r in self.skipped) or "no channel listed"


def choose_channel(channels: tuple[str, ...] | list[str], contact: Contact, transactional: bool,
                   available: set[str], has_content: Callable[[str], bool]) -> Choice:
    """Transactional messages (a tracking link) need only an address; marketing needs consent."""
    skipped: list[tuple[str, str]] = []
    for channel in channels:
        address = contact.email if channel == "email" else contact.phone
        if channel not in available:
            skipped.append((channel, "channel not configured"))
        elif not has_content(channel):
            skipped.append((channel, "no content for this channel"))
        elif not address:
            skipped.append((channel, "no e-mail address" if channel == "email" else "no phone number"))
        elif not transactional and not contact.consent.get(channel, False):
            skipped.append((channel, "no consent"))
        else:
            recipient = f"whatsapp:{address}" if channel == "whatsapp" else address
            return Choice(channel, recipient, skipped)
    return Choice(None, None, skipped)
