"""What the platform webhooks (Shopify, AfterShip) share: a verified raw body, read as a JSON
object, stored in the inbox and the flows nudged. Each refusal is a :class:`Refusal` carrying
the answer, chosen for platforms that retry whatever is not answered 2xx: 503 while the secret
is not configured (retrying helps once it is), 413/400 for a body no retry will fix, 401 for a
bad signature (nothing parsed or stored), 500 only when storing failed (rolled back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

from aftersale.config import Settings
from aftersale.core.events import Event
from aftersale.intake import jsontext
from aftersale.intake.inbox import StoreResult, store_events
from aftersale.intake.notify import inbox_received
from aftersale.pipeline.runtime import Runtime
from aftersale.web.bodies import read_limited

log = logging.getLogger(__name__)


class Refusal(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.response = error(message, status)


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def verified_body(request: Request, secret: SecretStr | None, *, provider: str,
                        setting: str, header: str, max_body: int,
                        verify: Callable[[bytes, bytes, str | None], bool],
                        context: str = "") -> bytes:
    """The raw body once its signature checks out (over the exact bytes received)."""
    if secret is None:
        log.error("%s webhook received but %s is not set", provider, setting)
        raise Refusal(f"{setting} is not set: {provider} webhooks cannot be verified", 503)
    body = await read_limited(request, max_body)
    if body is None:
        raise Refusal(f"body too large; at most {max_body // (1024 * 1024)} MB", 413)
    if not verify(secret.get_secret_value().encode(), body, request.headers.get(header)):
        log.warning("%s webhook rejected: missing or wrong %s%s", provider, header, context)
        raise Refusal(f"missing or wrong {header}", 401)
    return body


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object. The platform cannot change what it sent: NULs are dropped
    and lone surrogates replaced rather than refused."""
    try:
        payload: Any = jsontext.loads(body, clean=True)
    except jsontext.JSONTextError as exc:
        raise Refusal(f"body is not JSON: {exc}", 400) from None
    if not isinstance(payload, dict):
        raise Refusal("body must be a JSON object", 400)
    return payload


async def store_and_nudge(runtime: Runtime, settings: Settings, events: list[Event],
                          source: str, now: datetime, what: str) -> StoreResult:
    """Store ``events`` in one transaction and tell the flows; a failure is rolled back and
    answered 500, so the platform's retry stores it."""
    try:
        result = await run_in_threadpool(_store, runtime, events, source, now)
    except Exception:
        log.exception("storing %s failed", what)
        raise Refusal("internal error; nothing was stored, please retry", 500) from None
    if result.stored:
        await run_in_threadpool(inbox_received, settings, result.stored, source)
    return result


def _store(runtime: Runtime, events: list[Event], source: str, now: datetime) -> StoreResult:
    with runtime.factory() as session, session.begin():
        return store_events(session, events, source, now)
