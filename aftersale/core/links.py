"""Signed links we put in messages: survey answers, unsubscribe and the tracking page; the
referral link carries
the customer's public code (:func:`referral_code`), which is not a secret and not signed.

A token is itsdangerous' URL-safe signed JSON, ``base64url(json payload).base64url(HMAC-SHA256)``:
it names the customer and message, so it cannot be forged or reused for someone else. Each
:class:`Purpose` signs under its own salt, so a survey token never reads as an unsubscribe token
(or the reverse) whatever its payload says. ``SECRET_KEY`` signs; during a rotation
``SECRET_KEY_PREVIOUS`` still verifies what it signed.

Links sent before purposes existed were signed with the bare key, the same way for every purpose
(HMAC-SHA256 of the body). They still verify, under either key, for the purposes that existed
then (:data:`LEGACY_PURPOSES`), and nothing signs them any more; the pages tell those purposes
apart by their claims, as they always did. A purpose added since (the tracking page) never
accepts that format: no such link was ever sent.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import Any

from itsdangerous import BadData, BadSignature, URLSafeSerializer

#: The query parameter of a survey e-mail's hidden link (:meth:`Links.honeypot`).
HONEYPOT_PARAM = "hp"


class Purpose(StrEnum):
    SURVEY = "survey"  # /s/ links: the score links and their hidden twin
    UNSUBSCRIBE = "unsubscribe"  # /u/ links
    TRACKING = "tracking"  # /t/ links: a shipment's tracking page


#: The purposes whose links were once sent in the format before purposes (see above).
LEGACY_PURPOSES = frozenset({Purpose.SURVEY, Purpose.UNSUBSCRIBE})


# Part of every signature: changing one breaks every link of its purpose already sent, so they
# are fixed words, not module paths that move with the code (tests pin a token of each). Each
# keeps a "." (outside the base64url alphabet), so a salt can never be an old-format token body.
_SALTS = {Purpose.SURVEY: b"aftersale.links.survey",
          Purpose.UNSUBSCRIBE: b"aftersale.links.unsubscribe",
          Purpose.TRACKING: b"aftersale.links.tracking"}
_SIGNER: dict[str, Any] = {"digest_method": hashlib.sha256, "key_derivation": "hmac"}
# The format sent before purposes (see above): the key itself, no salt. itsdangerous tries a
# fallback signer only when verifying, so this format is never signed again.
_LEGACY: dict[str, Any] = {"digest_method": hashlib.sha256, "key_derivation": "none"}


class BadToken(ValueError):
    """Tampered, malformed, for another purpose or signed with another key."""


@dataclass(frozen=True)
class Signer:
    secret: bytes
    previous: bytes | None = None  # still verifies, never signs

    def sign(self, purpose: Purpose, payload: dict[str, Any]) -> str:
        return self._serializer(purpose).dumps(payload)

    def verify(self, purpose: Purpose, token: str) -> dict[str, Any]:
        try:
            payload = self._serializer(purpose).loads(token)
        except BadSignature:
            raise BadToken("signature does not match") from None
        except (BadData, ValueError) as exc:  # not base64/JSON; text that is not UTF-8
            raise BadToken(str(exc)) from None
        if not isinstance(payload, dict):
            raise BadToken("payload is not an object")
        return payload

    def _serializer(self, purpose: Purpose) -> URLSafeSerializer:
        return _serializer(self.secret, self.previous, purpose)


@lru_cache(maxsize=64)  # built once per key pair and purpose: a survey e-mail signs up to 12 links
def _serializer(secret: bytes, previous: bytes | None, purpose: Purpose) -> URLSafeSerializer:
    # itsdangerous signs with the last key and verifies with any of them.
    keys = [secret] if previous is None else [previous, secret]
    return URLSafeSerializer(keys, salt=_SALTS[purpose], signer_kwargs=_SIGNER,
                             fallback_signers=[_LEGACY] if purpose in LEGACY_PURPOSES else [],
                             serializer_kwargs={"sort_keys": True})  # one payload, one token


@dataclass(frozen=True)
class Links:
    public_url: str
    signer: Signer
    #: Messages link to our tracking page (AFTERSALE_TRACKING_LINK=page) rather than the
    #: carrier's; False keeps the carrier's link.
    tracking_page: bool = True

    def survey(self, message_id: str, customer_id: str, kind: str, score: int) -> str:
        return f"{self._survey_page(message_id, customer_id, kind)}?score={score}"

    def honeypot(self, message_id: str, customer_id: str, kind: str) -> str:
        """The survey e-mail's hidden link: no person sees it, so whatever fetches it is a
        machine (aftersale.core.scanners)."""
        return f"{self._survey_page(message_id, customer_id, kind)}?{HONEYPOT_PARAM}=1"

    def _survey_page(self, message_id: str, customer_id: str, kind: str) -> str:
        token = self.signer.sign(Purpose.SURVEY, {"m": message_id, "c": customer_id, "k": kind})
        return f"{self.public_url.rstrip('/')}/s/{token}"

    def unsubscribe(self, message_id: str, customer_id: str, channel: str) -> str:
        token = self.signer.sign(Purpose.UNSUBSCRIBE,
                                 {"m": message_id, "c": customer_id, "ch": channel})
        return f"{self.public_url.rstrip('/')}/u/{token}"

    def tracking(self, shipment_id: str, customer_id: str, message_id: str | None,
                 issued: date) -> str:
        """The shipment's tracking page for this customer. ``message_id``: the message that
        carries the link (a visit counts as its click); ``issued``: the day it was made, which
        the page's expiry counts from (with the parcel's own last news)."""
        payload: dict[str, Any] = {"s": shipment_id, "c": customer_id, "d": issued.isoformat()}
        if message_id is not None:
            payload["m"] = message_id
        token = self.signer.sign(Purpose.TRACKING, payload)
        return f"{self.public_url.rstrip('/')}/t/{token}"

    def referral(self, customer_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/r/{referral_code(customer_id)}"


def referral_code(customer_id: str) -> str:
    """Stable and short; the same customer always shares the same code."""
    digest = hashlib.sha256(f"referral:{customer_id}".encode()).digest()
    return "R" + base64.b32encode(digest[:6]).decode().rstrip("=")
