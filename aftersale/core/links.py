"""Signed links we put in messages: survey answers, unsubscribe, referral.

A token is ``base64url(json payload).base64url(HMAC-SHA256)`` keyed by ``SECRET_KEY``: it names
the customer and message, so it cannot be forged or reused for someone else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


#: The query parameter of a survey e-mail's hidden link (:meth:`Links.honeypot`).
HONEYPOT_PARAM = "hp"


class BadToken(ValueError):
    """Tampered, malformed or signed with another key."""


@dataclass(frozen=True)
class Signer:
    secret: bytes

    def sign(self, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        mac = hmac.new(self.secret, body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def verify(self, token: str) -> dict[str, Any]:
        try:
            body, mac = token.split(".", 1)
            expected = hmac.new(self.secret, body.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(mac)):
                raise BadToken("signature does not match")
            payload = json.loads(_unb64(body))
        except (ValueError, json.JSONDecodeError) as exc:
            raise BadToken(str(exc)) from None
        if not isinstance(payload, dict):
            raise BadToken("payload is not an object")
        return payload


@dataclass(frozen=True)
class Links:
    public_url: str
    signer: Signer

    def survey(self, message_id: str, customer_id: str, kind: str, score: int) -> str:
        return f"{self._survey_page(message_id, customer_id, kind)}?score={score}"

    def honeypot(self, message_id: str, customer_id: str, kind: str) -> str:
        """The survey e-mail's hidden link: no person sees it, so whatever fetches it is a
        machine (aftersale.core.scanners)."""
        return f"{self._survey_page(message_id, customer_id, kind)}?{HONEYPOT_PARAM}=1"

    def _survey_page(self, message_id: str, customer_id: str, kind: str) -> str:
        token = self.signer.sign({"m": message_id, "c": customer_id, "k": kind})
        return f"{self.public_url.rstrip('/')}/s/{token}"

    def unsubscribe(self, message_id: str, customer_id: str, channel: str) -> str:
        token = self.signer.sign({"m": message_id, "c": customer_id, "ch": channel})
        return f"{self.public_url.rstrip('/')}/u/{token}"

    def referral(self, customer_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/r/{referral_code(customer_id)}"


def referral_code(customer_id: str) -> str:
    """Stable and short; the same customer always shares the same code."""
    digest = hashlib.sha256(f"referral:{customer_id}".encode()).digest()
    return "R" + base64.b32encode(digest[:6]).decode().rstrip("=")
