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
    suppressed: dict[str, str] = field(default_factory=dict)  # channel -> why (bounce, STOP...)
    whatsapp_window_open: bool = True


@dataclass(frozen=True)
class Choice:
    channel: str | None
    recipient: str | None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(f"{c}: {r}" for c, r in self.skipped) or "no channel listed"


def choose_channel(channels: tuple[str, ...] | list[str], contact: Contact, transactional: bool,
                   available: set[str], has_content: Callable[[str], bool],
                   has_approved_whatsapp_template: bool = False) -> Choice:
    """Transactional messages (a tracking link) need only an address; marketing needs consent.
    A suppressed address (bounced, STOP, unsubscribed) is never used, transactional or not.
    WhatsApp free text needs the 24-hour window open; outside it only an approved template."""
    skipped: list[tuple[str, str]] = []
    for channel in channels:
        address = contact.email if channel == "email" else contact.phone
        if channel not in available:
            skipped.append((channel, "channel not configured"))
        elif not has_content(channel):
            skipped.append((channel, "no content for this channel"))
        elif not address:
            skipped.append((channel, "no e-mail address" if channel == "email" else "no phone number"))
        elif channel in contact.suppressed:
            skipped.append((channel, f"suppressed ({contact.suppressed[channel]})"))
        elif not transactional and not contact.consent.get(channel, False):
            skipped.append((channel, "no consent"))
        elif (channel == "whatsapp" and not contact.whatsapp_window_open
              and not has_approved_whatsapp_template):
            skipped.append((channel, "outside the 24-hour window and no approved template"))
        else:
            recipient = f"whatsapp:{address}" if channel == "whatsapp" else address
            return Choice(channel, recipient, skipped)
    return Choice(None, None, skipped)
