"""``POST /webhooks/aftership``: verify, map, store in the inbox, nudge process-events.

The same answers as ``POST /webhooks/shopify``, for the same reason: AfterShip retries a
delivery that is not answered 2xx (up to 14 times over about three days). An event that is no
carrier moment is a 200 ("ignored"), a tracking we cannot map a 400 with the field (retrying
will not fix it), a storage failure a 500 with nothing written, so the retry stores it. A bad or
missing signature is a 401 and nothing is parsed or stored.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from aftersale.config import Settings
from aftersale.core.events import Event
from aftersale.intake import aftership, jsontext
from aftersale.intake.inbox import StoreResult, store_events
from aftersale.intake.notify import inbox_received
from aftersale.pipeline.runtime import Runtime
from aftersale.web.bodies import read_limited

log = logging.getLogger(__name__)

PATH = "/webhooks/aftership"
MAX_BODY = 5 * 1024 * 1024  # a tracking with hundreds of checkpoints is far below this
SOURCE = "aftership"


def aftership_router(settings: Settings, runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.post(PATH)
    async def aftership_webhook(request: Request) -> JSONResponse:
        secret = settings.aftership_webhook_secret
        if secret is None:
            # 503, not 401: AfterShip keeps retrying while the operator fixes the setting.
            log.error("AfterShip webhook received but AFTERSALE_AFTERSHIP_WEBHOOK_SECRET is not set")
            return _error("AFTERSALE_AFTERSHIP_WEBHOOK_SECRET is not set: AfterShip webhooks "
                          "cannot be verified", 503)
        body = await read_limited(request, MAX_BODY)
        if body is None:
            return _error(f"body too large; at most {MAX_BODY // (1024 * 1024)} MB", 413)
        if not aftership.verify_hmac(secret.get_secret_value().encode(), body,
                                     request.headers.get(aftership.HMAC_HEADER)):
            log.warning("AfterShip webhook rejected: missing or wrong %s", aftership.HMAC_HEADER)
            return _error(f"missing or wrong {aftership.HMAC_HEADER}", 401)
        try:
            payload: Any = jsontext.loads(body, clean=True)  # AfterShip cannot change what it sent
        except jsontext.JSONTextError as exc:
            return _error(f"body is not JSON: {exc}", 400)
        if not isinstance(payload, dict):
            return _error("body must be a JSON object", 400)

        now = runtime.now()
        try:
            event = aftership.to_event(payload, now)
        except aftership.UnknownEvent as exc:
            log.info("AfterShip event '%s' ignored (event id %s): not a carrier moment we map",
                     exc.event, payload.get("event_id"))
            return JSONResponse({"ignored": exc.event})
        except aftership.PayloadError as exc:
            log.warning("AfterShip webhook %s not mapped: %s", payload.get("event_id"), exc)
            return _error(str(exc), 400)

        try:
            result = await run_in_threadpool(_store, runtime, [event], now)
        except Exception:  # rolled back; a 5xx makes AfterShip retry the delivery
            log.exception("storing AfterShip webhook %s failed", payload.get("event_id"))
            return _error("internal error; nothing was stored, please retry", 500)
        if result.stored:
            await run_in_threadpool(inbox_received, settings, result.stored, SOURCE)
        return JSONResponse({"event": payload["event"], "id": event.id,
                             "received": result.received, "stored": result.stored,
                             "duplicates": result.duplicates})

    return router


def _store(runtime: Runtime, events: list[Event], now: datetime) -> StoreResult:
    with runtime.factory() as session, session.begin():
        return store_events(session, events, SOURCE, now)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
