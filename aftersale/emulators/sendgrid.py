"""SendGrid v3 Mail Send, as far as aftersale uses it.

``POST /v3/mail/send`` with ``Authorization: Bearer <key>`` and a JSON body answers ``202``
with an empty body and a unique ``X-Message-Id``; a wrong key answers ``401``, a body SendGrid
would refuse ``400``, both as ``{"errors": [{"message", "field", "help"}]}``. Accepted mails
are kept in ``sent`` beside their ``X-Message-Id``.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from aftersale.emulators.server import Emulator, Recorded, Reply

MAIL_SEND = "/v3/mail/send"


def error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": None}]}


class SendGridEmulator(Emulator):
    def __init__(self, api_key: str = "SG.test-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.sent: list[tuple[str, dict[str, Any]]] = []  # (X-Message-Id, body)

    def respond(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply(401, error("The provided authorization grant is invalid, expired, or revoked"))
        if (request.method, request.path) != ("POST", MAIL_SEND):
            return Reply(404, error("resource not found"))
        try:
            body = json.loads(request.body)
        except ValueError:
            return Reply(400, error("Bad Request", None))
        problem = validate(body)
        if problem:
            return Reply(400, problem)
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.sent.append((message_id, body))
        return Reply(202, None, {"X-Message-Id": message_id})


def validate(body: Any) -> dict[str, Any] | None:
    """The checks of SendGrid's that a mistake of ours could trip."""
    if not isinstance(body, dict):
        return error("Bad Request")
    personalizations = body.get("personalizations") or []
    if not personalizations or not all(p.get("to") for p in personalizations):
        return error("The personalizations field is required and must have at least one "
                     "personalization.", "personalizations")
    if not (body.get("from") or {}).get("email"):
        return error("The from object must be provided for every email send.", "from.email")
    if body.get("template_id") is None:
        if not body.get("subject"):
            return error("The subject is required. You can get around this requirement if you use a "
                         "template with a subject defined.", "subject")
        content = body.get("content") or []
        if not content or any(not c.get("value") for c in content):
            return error("Unless a valid template_id is provided, the content parameter is required.",
                         "content")
        types = [c.get("type") for c in content]
        if "text/plain" in types and types.index("text/plain") != 0:
            return error("If present, text/plain and text/html may only be provided in this order "
                         "and must be first.", "content")
    if any(not isinstance(v, str) for v in (body.get("custom_args") or {}).values()):
        return error("Values of custom_args must be strings.", "custom_args")
    if len(body.get("categories") or []) > 10:
        return error("Too many categories on this message. The maximum number of categories is 10.",
                     "categories")
    return None
