"""Twilio's Messages API (2010-04-01), as far as aftersale uses it.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth and a form body
answers ``201`` with a Message resource in Twilio's JSON shape. Errors come as
``{"code", "message", "more_info", "status"}``, like Twilio's. As with Twilio's test
credentials, some To numbers always fail: ``+15005550001`` 21211 (invalid), ``+15005550004``
21610 (replied STOP), ``+15005550009`` 21614 (not a mobile number). Accepted messages are kept
in ``messages``, and the ``StatusCallback`` each asked for in ``callbacks`` (same order).
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aftersale.emulators.server import Emulator, Recorded, Reply

API = "/2010-04-01"
MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAGIC_TO = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}


def error(status: int, code: int, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message, "status": status,
                          "more_info": f"https://www.twilio.com/docs/errors/{code}"})


def rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=False).replace("-0000", "+0000")


class TwilioEmulator(Emulator):
    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "test-auth-token") -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, Any]] = []
        self.callbacks: list[str | None] = []

    def respond(self, request: Recorded) -> Reply:
        if not self._authorized(request):
            return error(401, 20003, "Authenticate")
        match = MESSAGES.match(request.path)
        if request.method != "POST" or match is None:
            return error(404, 20404, f"The requested resource {request.path} was not found")
        if match["sid"] != self.account_sid:
            return error(403, 20003, "Authenticate")
        return self._create(request.form)

    def _authorized(self, request: Recorded) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def _create(self, form: dict[str, list[str]]) -> Reply:
        def one(name: str) -> str | None:
            return form[name][0] if form.get(name) else None

        to, sender, service = one("To"), one("From"), one("MessagingServiceSid")
        body, content_sid = one("Body"), one("ContentSid")
        if not to:
            return error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return error(400, 21603, "A 'From' phone number is required.")
        if not body and not content_sid and not form.get("MediaUrl"):
            return error(400, 21602, "Message body is required.")
        number = to.removeprefix("whatsapp:")
        if not E164.match(number):
            return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if sender and to.startswith("whatsapp:") != sender.startswith("whatsapp:"):
            return error(400, 21910, "Invalid From and To pair. From and To should be of the same channel")
        if number in MAGIC_TO:
            code, text = MAGIC_TO[number]
            return error(400, code, text)
        message = self._resource(to, sender, service, body or "", form)
        self.messages.append(message)
        self.callbacks.append(one("StatusCallback"))
        return Reply(201, message)

    def _resource(self, to: str, sender: str | None, service: str | None, body: str,
                  form: dict[str, list[str]]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = rfc2822(datetime.now(UTC))
        uri = f"{API}/Accounts/{self.account_sid}/Messages/{sid}.json"
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": body,
            "date_created": now, "date_sent": None, "date_updated": now,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": sender, "messaging_service_sid": service,
            "num_media": str(len(form.get("MediaUrl", []))), "num_segments": "1",
            "price": None, "price_unit": "USD", "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to, "uri": uri,
        }
