"""``POST /webhooks/shopify``: verify, map, store in the inbox, nudge process-events.

Shopify retries a delivery that is not answered 2xx (for up to 48 hours, then it may remove the
subscription), so the answers are chosen for that: a topic we do not handle is a 200 ("ignored"),
a payload we cannot map a 400 with the reason (retrying will not fix it), and only a storage
failure a 500, with the transaction rolled back, so the retry stores it. A bad signature is a
401 and nothing is parsed or stored.
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
from aftersale.intake import jsontext, shopify
from aftersale.intake.inbox import StoreResult, store_events
from aftersale.intake.notify import inbox_received
from aftersale.pipeline.runtime import Runtime
from aftersale.web.bodies import read_limited

log = logging.getLogger(__name__)

PATH = "/webhooks/shopify"
MAX_BODY = 10 * 1024 * 1024  # an order with hundreds of line items is still far below this
SOURCE = "shopify"


def shopify_router(settings: Settings, runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.post(PATH)
    async def shopify_webhook(request: Request) -> JSONResponse:
        secret = settings.shopify_webhook_secret
        if secret is None:
            # 503, not 401: Shopify keeps retrying while the operator fixes the setting.
            log.error("Shopify webhook received but AFTERSALE_SHOPIFY_WEBHOOK_SECRET is not set")
            return _error("AFTERSALE_SHOPIFY_WEBHOOK_SECRET is not set: Shopify webhooks cannot "
                          "be verified", 503)
        body = await read_limited(request, MAX_BODY)
        if body is None:
            return _error(f"body too large; at most {MAX_BODY // (1024 * 1024)} MB", 413)
        headers = request.headers
        if not shopify.verify_hmac(secret.get_secret_value().encode(), body,
                                   headers.get(shopify.HMAC_HEADER)):
            log.warning("Shopify webhook rejected: missing or wrong %s (shop %s, topic %s)",
                        shopify.HMAC_HEADER, headers.get(shopify.SHOP_HEADER),
                        headers.get(shopify.TOPIC_HEADER))
            return _error(f"missing or wrong {shopify.HMAC_HEADER}", 401)
        topic = (headers.get(shopify.TOPIC_HEADER) or "").strip()
        if not topic:
            return _error(f"the {shopify.TOPIC_HEADER} header is missing", 400)
        try:
            # Shopify cannot change what it sends: NULs are dropped, lone surrogates replaced.
            payload: Any = jsontext.loads(body, clean=True)
        except jsontext.JSONTextError as exc:
            return _error(f"body is not JSON: {exc}", 400)
        if not isinstance(payload, dict):
            return _error("body must be a JSON object", 400)

        event_id, webhook_id = headers.get(shopify.EVENT_ID_HEADER), headers.get(
            shopify.WEBHOOK_ID_HEADER)
        now = runtime.now()
        try:
            events = shopify.to_events(
                topic, payload, shopify.delivery_key(event_id, webhook_id), now,
                source_ids={"shopify_event_id": event_id, "shopify_webhook_id": webhook_id,
                            "shopify_shop_domain": headers.get(shopify.SHOP_HEADER)})
        except shopify.UnknownTopic:
            log.info("Shopify topic '%s' ignored (webhook %s): not one we map", topic, webhook_id)
            return JSONResponse({"ignored": topic})
        except shopify.PayloadError as exc:
            log.warning("Shopify %s webhook %s not mapped: %s", topic, webhook_id, exc)
            return _error(str(exc), 400)

        try:
            result = await run_in_threadpool(_store, runtime, events, now)
        except Exception:  # rolled back; a 5xx makes Shopify retry the delivery
            log.exception("storing Shopify %s webhook %s failed", topic, webhook_id)
            return _error("internal error; nothing was stored, please retry", 500)
        if result.stored:
            await run_in_threadpool(inbox_received, settings, result.stored, SOURCE)
        return JSONResponse({"topic": shopify.canonical_topic(topic), "received": result.received,
                             "stored": result.stored, "duplicates": result.duplicates})

    return router


def _store(runtime: Runtime, events: list[Event], now: datetime) -> StoreResult:
    with runtime.factory() as session, session.begin():
        return store_events(session, events, SOURCE, now)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
