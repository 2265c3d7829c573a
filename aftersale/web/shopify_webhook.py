"""``POST /webhooks/shopify``: verify, map, store in the inbox, nudge process-events.

Shopify retries a delivery that is not answered 2xx (for up to 48 hours, then it may remove the
subscription), so the answers are chosen for that: a topic we do not handle is a 200 ("ignored"),
a payload we cannot map a 400 with the reason (retrying will not fix it), and only a storage
failure a 500, with the transaction rolled back, so the retry stores it. A bad signature is a
401 and nothing is parsed or stored.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from aftersale.config import Settings
from aftersale.intake import shopify
from aftersale.pipeline.runtime import Runtime
from aftersale.web.platform_webhooks import (
    Refusal,
    error,
    json_object,
    store_and_nudge,
    verified_body,
)

log = logging.getLogger(__name__)

PATH = "/webhooks/shopify"
MAX_BODY = 10 * 1024 * 1024  # an order with hundreds of line items is still far below this
SOURCE = "shopify"


def shopify_router(settings: Settings, runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.post(PATH)
    async def shopify_webhook(request: Request) -> JSONResponse:
        headers = request.headers
        topic = (headers.get(shopify.TOPIC_HEADER) or "").strip()
        try:
            body = await verified_body(
                request, settings.shopify_webhook_secret, provider="Shopify",
                setting="AFTERSALE_SHOPIFY_WEBHOOK_SECRET", header=shopify.HMAC_HEADER,
                max_body=MAX_BODY, verify=shopify.verify_hmac,
                context=f" (shop {headers.get(shopify.SHOP_HEADER)}, topic {topic})")
            if not topic:
                return error(f"the {shopify.TOPIC_HEADER} header is missing", 400)
            payload = json_object(body)
            event_id, webhook_id = headers.get(shopify.EVENT_ID_HEADER), headers.get(
                shopify.WEBHOOK_ID_HEADER)
            now = runtime.now()
            try:
                events = shopify.to_events(
                    topic, payload, shopify.delivery_key(event_id, webhook_id), now,
                    source_ids={"shopify_event_id": event_id, "shopify_webhook_id": webhook_id,
                                "shopify_shop_domain": headers.get(shopify.SHOP_HEADER)})
            except shopify.UnknownTopic:
                log.info("Shopify topic '%s' ignored (webhook %s): not one we map", topic,
                         webhook_id)
                return JSONResponse({"ignored": topic})
            except shopify.PayloadError as exc:
                log.warning("Shopify %s webhook %s not mapped: %s", topic, webhook_id, exc)
                return error(str(exc), 400)
            result = await store_and_nudge(runtime, settings, events, SOURCE, now,
                                           f"Shopify {topic} webhook {webhook_id}")
        except Refusal as refusal:
            return refusal.response
        return JSONResponse({"topic": shopify.canonical_topic(topic), "received": result.received,
                             "stored": result.stored, "duplicates": result.duplicates})

    return router
