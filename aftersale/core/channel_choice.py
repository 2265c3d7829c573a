"""Which channel a message goes out on: the first of the step's list the customer allows and
can receive. Pure, so every rule is unit-tested and every skip has a reason.

Consent has a purpose. ``Contact.consent`` is marketing consent per channel; ``order_updates``
is the transactional opt-in ("text me about my order") for SMS and WhatsApp. What each purpose
needs, and where the rule comes from:

- e-mail: marketing needs ``consent.email``; order updates need nothing (ePrivacy and CAN-SPAM
  regulate direct marketing, not a message about the customer's own order).
- SMS: marketing needs ``consent.sms``; order updates need SMS consent or the SMS
  order-updates opt-in (TCPA practice in the US: no text without the person's consent, written
  consent for marketing; ePrivacy in the EU for marketing). A ``false`` or unknown SMS consent
  without the opt-in means no SMS at all.
- WhatsApp: every business-initiated message, utility ones included, needs a WhatsApp opt-in
  (Meta's WhatsApp Business policy): ``consent.whatsapp`` or the WhatsApp order-updates
  opt-in for order updates, ``consent.whatsapp`` for marketing. An order update inside the
  24-hour window the customer opened by writing to us is a reply and needs none.
- A suppression (bounce, STOP, unsubscribe) wins over every consent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Contact:
    email: str | None
    phone: str | None
    consent: dict[str, bool]  # marketing consent per channel; missing means no
    suppressed: dict[str, str] = field(default_factory=dict)  # channel -> why (bounce, STOP...)
    whatsapp_window_open: bool = False  # closed unless the caller knows: fails safe
    order_updates: dict[str, bool] = field(default_factory=dict)  # sms / whatsapp opt-ins


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
    """The first channel that is configured, has content, an address, no suppression, the
    consent its purpose needs (see the module's rules) and, for WhatsApp, the 24-hour window
    open or an approved template."""
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
        elif (why := _not_allowed(channel, contact, transactional)) is not None:
            skipped.append((channel, why))
        elif (channel == "whatsapp" and not contact.whatsapp_window_open
              and not has_approved_whatsapp_template):
            skipped.append((channel, "outside the 24-hour window and no approved template"))
        else:
            recipient = f"whatsapp:{address}" if channel == "whatsapp" else address
            return Choice(channel, recipient, skipped)
    return Choice(None, None, skipped)


def _not_allowed(channel: str, contact: Contact, transactional: bool) -> str | None:
    """Why the customer's consent does not cover this message on ``channel``, or None."""
    if contact.consent.get(channel, False):
        return None  # marketing consent covers order updates too
    if not transactional:
        return "no consent"
    if channel == "email":
        return None
    if contact.order_updates.get(channel, False):
        return None
    if channel == "whatsapp" and contact.whatsapp_window_open:
        return None  # the customer wrote to us: a reply, not a business-initiated message
    return "no consent and no order-updates opt-in"
