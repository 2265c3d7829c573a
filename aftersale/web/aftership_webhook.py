"""``POST /webhooks/aftership``: verify, map, store in the inbox, nudge process-events.

The same answers as ``POST /webhooks/shopify``, for the same reason: AfterShip retries a
delivery that is not answered 2xx (up to 14 times over about three days). An event that is no
carrier moment is a 200 ("ignored"), a tracking we cannot map a 400 with the field (retrying
will not fix it), a storage failure a 500 with nothing written, so the retry stores it. A bad or
missing signature is a 401 and nothing is parsed or stored.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from aftersale.config import Settings
from aftersale.intake import aftership
from aftersale.pipeline.runtime import Runtime
from aftersale.web.platform_webhooks import (
    Refusal,
    error,
    json_object,
    store_and_nudge,
    verified_body,
)

log = logging.getLogger(__name__)

PATH = "/webhooks/aftership"
MAX_BODY = 5 * 1024 * 1024  # a tracking with hundreds of checkpoints is far below this
SOURCE = "aftership"


def aftership_router(settings: Settings, runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.post(PATH)
    async def aftership_webhook(request: Request) -> JSONResponse:
        try:
            payload = json_object(await verified_body(
                request, settings.aftership_webhook_secret, provider="AfterShip",
                setting="AFTERSALE_AFTERSHIP_WEBHOOK_SECRET", header=aftership.HMAC_HEADER,
                max_body=MAX_BODY, verify=aftership.verify_hmac))
            now = runtime.now()
            try:
                event = aftership.to_event(payload, now)
            except aftership.UnknownEvent as exc:
                log.info("AfterShip event '%s' ignored (event id %s): not a carrier moment we "
                         "map", exc.event, payload.get("event_id"))
                return JSONResponse({"ignored": exc.event})
            except aftership.PayloadError as exc:
                log.warning("AfterShip webhook %s not mapped: %s", payload.get("event_id"), exc)
                return error(str(exc), 400)
            result = await store_and_nudge(runtime, settings, [event], SOURCE, now,
                                           f"AfterShip webhook {payload.get('event_id')}")
        except Refusal as refusal:
            return refusal.response
        return JSONResponse({"event": payload["event"], "id": event.id,
                             "received": result.received, "stored": result.stored,
                             "duplicates": result.duplicates})

    return router
