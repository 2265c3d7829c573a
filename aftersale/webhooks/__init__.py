"""Provider webhooks: verify first, then parse into the normalized models of
:mod:`aftersale.delivery` (one module per provider, as django-anymail does).

Verification never trusts the request for what was signed: the SendGrid check runs over the
exact raw body, the Twilio check over ``PUBLIC_URL`` + the path and query Twilio called.
"""

from __future__ import annotations

from aftersale.errors import AftersaleError


class WebhookRejected(AftersaleError):
    """A webhook failed verification (or cannot be verified): answer ``status``, store nothing.

    403 for a request that is not provably from the provider (bad or missing signature, stale
    timestamp); 503 when we cannot verify at all because a setting is missing, so the provider
    keeps retrying until the operator fixes the configuration.
    """

    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason
        super().__init__(reason)


__all__ = ["WebhookRejected"]
