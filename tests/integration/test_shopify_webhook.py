"""``POST /webhooks/shopify``, called in this process, on SQLite and PostgreSQL:
the HMAC over the raw body, dedupe on the event and webhook ids, the answers Shopify's retry
logic needs, and the shop's webhooks ending up as orders, shipments and consent after the real
process-events pass."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from aftersale.config import Settings
from aftersale.db.models import Customer, Enrollment, InboxEvent, Message, Order
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.runtime import Runtime
from aftersale.web import shopify_webhook as shopify_web
from aftersale.web.shopify_webhook import shopify_router
from tests.conftest import START
from tests.factories import days
from tests.integration.helpers import in_process, run_to

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "shopify"
SECRET = "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"
AYSE = "7390123456789"
GUEST = "shopify-guest-5612345678902"
URL_PATH = "/webhooks/shopify"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def app_for(settings: Settings, rt: Runtime) -> FastAPI:
    app = FastAPI()
    app.include_router(shopify_router(settings, rt))
    return app


@pytest.fixture
def shop_settings(settings: Settings) -> Settings:
    # model_copy would not validate the SecretStr; build the settings the way the app does.
    return Settings(_env_file=None, **settings.model_dump() | {  # type: ignore[call-arg]
        "shopify_webhook_secret": SECRET, "prefect_events": False})


@pytest.fixture
def web(shop_settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(app_for(shop_settings, rt)) as client:
        yield client


def signature(raw: bytes, secret: str = SECRET) -> str:
    """What Shopify puts in X-Shopify-Hmac-Sha256 (computed here, not with our own code)."""
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def deliver(web: TestClient, name: str, *, payload: dict[str, Any] | None = None,
            raw: bytes | None = None, secret: str = SECRET,
            headers: dict[str, str | None] | None = None) -> httpx2.Response:
    """POST a fixture the way Shopify does: its headers, its JSON body, signed over the bytes."""
    data = fixture(name)
    body = raw if raw is not None else json.dumps(
        payload if payload is not None else data["payload"], ensure_ascii=False).encode()
    sent = {**data["headers"], "Content-Type": "application/json",
            "X-Shopify-Hmac-Sha256": signature(body, secret)}
    for key, value in (headers or {}).items():
        if value is None:
            sent.pop(key, None)
        else:
            sent[key] = value
    return web.post(URL_PATH, content=body, headers=sent)


def inbox(rt: Runtime) -> list[InboxEvent]:
    with rt.factory() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.seq)))


# --- the signature ---------------------------------------------------------------------------------


def test_a_signed_delivery_is_stored_with_its_shopify_ids(web: TestClient, rt: Runtime) -> None:
    response = deliver(web, "orders_create")
    assert response.status_code == 200
    assert response.json() == {"topic": "orders/create", "received": 1, "stored": 1,
                               "duplicates": 0}
    [row] = inbox(rt)
    assert row.event_id == "shopify:orders/create:7f3c1a52-2e8d-4f4b-9a61-3d5e0c9b8a10:0"
    assert (row.type, row.source, row.status) == ("order.placed", "shopify", "pending")
    assert row.payload["source_ids"] == {
        "shopify_topic": "orders/create",
        "shopify_event_id": "7f3c1a52-2e8d-4f4b-9a61-3d5e0c9b8a10",
        "shopify_webhook_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "shopify_shop_domain": "aftersale-demo.myshopify.com"}
    assert row.payload["customer"]["email"] == "ayse.yilmaz@example.com.tr"


@pytest.mark.parametrize("case", ["wrong secret", "missing header", "empty header",
                                  "body changed after signing", "signature of another body"])
def test_a_wrong_or_missing_signature_is_401_and_stores_nothing(
        web: TestClient, rt: Runtime, case: str) -> None:
    raw = json.dumps(fixture("orders_create")["payload"], ensure_ascii=False).encode()
    if case == "wrong secret":
        response = deliver(web, "orders_create", secret="shpss_someone_else")
    elif case == "missing header":
        response = deliver(web, "orders_create", headers={"X-Shopify-Hmac-Sha256": None})
    elif case == "empty header":
        response = deliver(web, "orders_create", headers={"X-Shopify-Hmac-Sha256": ""})
    elif case == "body changed after signing":
        response = deliver(web, "orders_create", raw=raw.replace(b'"8549.05"', b'"1.00"'),
                           headers={"X-Shopify-Hmac-Sha256": signature(raw)})
    else:
        other = json.dumps(fixture("orders_paid")["payload"]).encode()
        response = deliver(web, "orders_create", headers={
            "X-Shopify-Hmac-Sha256": signature(other)})
    assert response.status_code == 401
    assert response.json() == {"error": "missing or wrong X-Shopify-Hmac-Sha256"}
    assert inbox(rt) == []


def test_the_signature_is_over_the_raw_bytes_not_the_parsed_json(web: TestClient,
                                                                 rt: Runtime) -> None:
    payload = fixture("orders_create")["payload"]
    pretty = json.dumps(payload, indent=4, ensure_ascii=True).encode()  # \u015f, not ş
    assert deliver(web, "orders_create", raw=pretty).status_code == 200
    compact = json.dumps(payload, separators=(",", ":")).encode()
    assert deliver(web, "orders_create", raw=compact,
                   headers={"X-Shopify-Hmac-Sha256": signature(pretty)}).status_code == 401
    assert len(inbox(rt)) == 1


def test_without_a_configured_secret_the_endpoint_answers_503(settings: Settings,
                                                              rt: Runtime) -> None:
    assert settings.shopify_webhook_secret is None
    with in_process(app_for(settings, rt)) as client:
        response = deliver(client, "orders_create")
    assert response.status_code == 503
    assert "AFTERSALE_SHOPIFY_WEBHOOK_SECRET" in response.json()["error"]
    assert inbox(rt) == []


# --- duplicates -------------------------------------------------------------------------------------


def test_a_retried_delivery_is_stored_once(web: TestClient, rt: Runtime) -> None:
    first = deliver(web, "fulfillments_update_delivered")
    assert first.json() == {"topic": "fulfillments/update", "received": 1, "stored": 1,
                            "duplicates": 0}
    retry = deliver(web, "fulfillments_update_delivered")
    assert retry.status_code == 200
    assert retry.json() == {"topic": "fulfillments/update", "received": 1, "stored": 0,
                            "duplicates": 1}
    # a second subscription to the topic: its own webhook id, the same event id
    other = deliver(web, "fulfillments_update_delivered",
                    headers={"X-Shopify-Webhook-Id": "00000000-1111-4222-8333-444444444444"})
    assert other.json()["stored"] == 0
    [row] = inbox(rt)
    assert row.type == "shipment.updated"
    assert (row.payload["shipment"]["id"], row.payload["shipment"]["status"]) == (
        "shopify:4987654321012", "delivered")


def test_every_carrier_moment_is_one_shipment_update_in_the_inbox(web: TestClient,
                                                                   rt: Runtime) -> None:
    for name in ("fulfillments_create", "fulfillments_update_in_transit",
                 "fulfillment_events_create", "fulfillments_update_failure"):
        response = deliver(web, name)
        assert response.status_code == 200 and response.json()["stored"] == 1, name
    rows = inbox(rt)
    assert {r.type for r in rows} == {"shipment.updated"}
    assert [(r.payload["shipment"]["id"], r.payload["shipment"]["status"],
             r.payload["shipment"].get("raw_status")) for r in rows] == [
        ("shopify:4987654321012", "in_transit", None),
        ("shopify:4987654321012", "in_transit", "in_transit"),
        ("shopify:4987654321012", "attempted_delivery", "attempted_delivery"),
        ("shopify:4987654321013", "exception", "failure")]
    scan = rows[2].payload["shipment"]
    assert scan["message"] == "Alıcı adreste bulunamadı; kargo şubeye teslim edilecek"
    assert scan["estimated_delivery_at"].startswith("2026-03-04T15:00:00")
    assert rows[2].payload["source_ids"]["shopify_topic"] == "fulfillment_events/create"


def test_an_unknown_shipment_status_is_stored_as_unknown_not_refused(web: TestClient,
                                                                     rt: Runtime) -> None:
    payload = fixture("fulfillments_update_in_transit")["payload"] | {
        "shipment_status": "held_by_dragons"}
    assert deliver(web, "fulfillments_update_in_transit", payload=payload).status_code == 200
    [row] = inbox(rt)
    assert (row.payload["shipment"]["status"], row.payload["shipment"]["raw_status"]) == (
        "unknown", "held_by_dragons")


def test_without_an_event_id_the_webhook_id_dedupes(web: TestClient, rt: Runtime) -> None:
    no_event_id = {"X-Shopify-Event-Id": None}
    assert deliver(web, "orders_create", headers=no_event_id).json()["stored"] == 1
    assert deliver(web, "orders_create", headers=no_event_id).json()["duplicates"] == 1
    [row] = inbox(rt)
    assert row.event_id == "shopify:orders/create:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043:0"
    assert "shopify_event_id" not in row.payload["source_ids"]


# --- what Shopify must not retry, and what it must ---------------------------------------------------


def test_an_unknown_topic_is_200_ignored_and_logged(web: TestClient, rt: Runtime,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="aftersale.web.shopify_webhook"):
        response = deliver(web, "products_update")
    assert response.status_code == 200
    assert response.json() == {"ignored": "products/update"}
    assert inbox(rt) == []
    assert any("products/update" in r.getMessage() and "ignored" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize(("raw", "headers", "reason"), [
    (b'{"id": 5612345678901, "line_items": [', {}, "body is not JSON"),
    (b"\xff\xfe not utf-8", {}, "body is not JSON"),
    (b"[1, 2, 3]", {}, "body must be a JSON object"),
    (b'{"id": 1}', {"X-Shopify-Topic": None}, "the X-Shopify-Topic header is missing"),
])
def test_a_malformed_body_is_400_and_stores_nothing(web: TestClient, rt: Runtime, raw: bytes,
                                                    headers: dict[str, str | None],
                                                    reason: str) -> None:
    response = deliver(web, "orders_create", raw=raw, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"].startswith(reason)
    assert inbox(rt) == []


def test_a_payload_that_cannot_be_mapped_is_400_with_the_field(web: TestClient,
                                                                rt: Runtime) -> None:
    payload = fixture("orders_create")["payload"] | {"created_at": "2026-03-01 10:00"}
    response = deliver(web, "orders_create", payload=payload)
    assert response.status_code == 400
    assert response.json() == {
        "error": "orders/create: created_at: '2026-03-01 10:00' has no UTC offset"}
    assert inbox(rt) == []


def test_a_body_over_the_limit_is_413(web: TestClient, rt: Runtime,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shopify_web, "MAX_BODY", 2048)
    assert deliver(web, "orders_create").status_code == 413
    assert deliver(web, "customers_marketing_consent_update").status_code == 200
    assert [r.type for r in inbox(rt)] == ["consent.changed"]


def test_a_storage_failure_is_500_then_the_retry_stores_it(web: TestClient, rt: Runtime) -> None:
    with rt.engine.begin() as connection:  # the database is there but refuses the write
        connection.execute(text("ALTER TABLE inbox_events RENAME TO inbox_events_away"))
    failed = deliver(web, "fulfillments_update_delivered")
    assert failed.status_code == 500
    assert failed.json() == {"error": "internal error; nothing was stored, please retry"}
    with rt.engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbox_events_away RENAME TO inbox_events"))
    assert inbox(rt) == []
    retry = deliver(web, "fulfillments_update_delivered")
    assert retry.json()["stored"] == 1


# --- through processing -------------------------------------------------------------------------------


def test_the_shops_webhooks_become_orders_shipments_cancellations_and_consent(
        web: TestClient, rt: Runtime) -> None:
    sequence = ["orders_create", "orders_paid", "customers_email_marketing_consent_update",
                "customers_marketing_consent_update", "orders_create_no_contact",
                "orders_cancelled", "fulfillments_create", "fulfillments_update_in_transit",
                "fulfillments_update_out_for_delivery", "fulfillments_update_delivered",
                "orders_create_repeat", "fulfillments_update_failure", "refunds_create",
                "products_update"]
    for name in sequence:
        assert deliver(web, name).status_code == 200, name
    counts = drain_inbox(rt, rt.definitions())
    # 8 order, refund and consent events; 5 fulfillments, each one shipment.updated (the
    # failure too: a parcel that failed is a carrier moment); and 3 derived by processing:
    # order.shipped of #1001 and of the repeat order (its failed parcel had left), and
    # order.delivered of #1001 (its only parcel was delivered).
    assert (counts.events, counts.processed, counts.failed) == (16, 16, 0)

    with rt.factory() as session:
        first = session.get(Order, "5612345678901")
        assert first is not None
        assert (first.customer_id, first.number, first.total, first.currency) == (
            AYSE, "#1001", Decimal("8549.05"), "TRY")
        assert (first.discount_codes, first.referral_code) == (["HOSGELDIN10"], "RKZ4XQ2MAB3")
        assert [i["sku"] for i in first.items] == ["DRN-SKYHAWK-MINI", "ACC-PROP-4"]
        assert first.status == "delivered"
        assert (first.carrier, first.tracking_number, first.tracking_url) == (
            "DHL Express", "4817263950",
            "https://www.dhl.com/tr-en/home/tracking.html?tracking-id=4817263950")
        assert _utc(first.placed_at) == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
        assert _utc(first.shipped_at) == datetime(2026, 3, 2, 11, 30, tzinfo=UTC)
        assert _utc(first.delivered_at) == datetime(2026, 3, 4, 8, 15, 27, tzinfo=UTC)

        guest_order = session.get(Order, "5612345678902")
        assert guest_order is not None
        assert (guest_order.customer_id, guest_order.status) == (GUEST, "cancelled")
        assert _utc(guest_order.cancelled_at) == datetime(2026, 3, 1, 14, 20, tzinfo=UTC)
        assert guest_order.referral_code == "RMEHMET7Q2X"
        guest = session.get(Customer, GUEST)
        assert guest is not None and (guest.email, guest.phone) == (None, None)

        repeat = session.get(Order, "5612345678903")
        assert repeat is not None and (repeat.customer_id, repeat.status) == (AYSE, "refunded")

        ayse = session.get(Customer, AYSE)
        assert ayse is not None
        assert (ayse.email, ayse.phone, ayse.locale, ayse.country) == (
            "ayse.yilmaz@example.com.tr", "+905321234567", "tr-TR", "TR")
        # set by the consent topics; the later order (no consent in 2026 payloads) kept them
        assert (ayse.consent_email, ayse.consent_sms, ayse.consent_whatsapp) == (True, True, False)
        assert session.scalars(select(Order.id).where(Order.customer_id == AYSE)
                               .order_by(Order.id)).all() == ["5612345678901", "5612345678903"]


def test_a_later_unsubscribe_from_shopify_withdraws_consent(web: TestClient, rt: Runtime) -> None:
    deliver(web, "orders_create")
    deliver(web, "customers_email_marketing_consent_update")
    payload = copy.deepcopy(fixture("customers_email_marketing_consent_update")["payload"])
    payload["email_marketing_consent"] |= {"state": "unsubscribed",
                                           "consent_updated_at": "2026-03-03T09:00:00+03:00"}
    assert deliver(web, "customers_email_marketing_consent_update", payload=payload, headers={
        "X-Shopify-Event-Id": "11111111-2222-4333-8444-555555555555",
        "X-Shopify-Webhook-Id": "66666666-7777-4888-9999-000000000000"}).json()["stored"] == 1
    deliver(web, "orders_create_repeat")
    drain_inbox(rt, rt.definitions())
    with rt.factory() as session:
        ayse = session.get(Customer, AYSE)
        assert ayse is not None and (ayse.consent_email, ayse.consent_sms) == (False, False)


def test_an_order_without_contact_details_runs_its_journeys_and_skips_every_channel(
        web: TestClient, rt: Runtime) -> None:
    deliver(web, "orders_create_no_contact")
    shipped = fixture("fulfillments_create")["payload"] | {"id": 4987654321099,
                                                           "order_id": 5612345678902,
                                                           "name": "#1002.1"}
    assert deliver(web, "fulfillments_create", payload=shipped, headers={
        "X-Shopify-Event-Id": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        "X-Shopify-Webhook-Id": "ffffffff-0000-4111-8222-333333333333"}).json()["stored"] == 1
    deliver(web, "orders_create")
    deliver(web, "fulfillments_create")
    run_to(rt, rt.definitions(), START + days(1))
    with rt.factory() as session:
        journeys = session.scalars(select(Enrollment.journey)
                                   .where(Enrollment.customer_id == GUEST)).all()
        assert "order-updates" in journeys
        [guest_update] = session.scalars(select(Message).where(
            Message.customer_id == GUEST, Message.template == "shipping_update")).all()
        assert guest_update.status == "not_sent" and guest_update.recipient is None
        assert [s[1] for s in guest_update.skips or []] == [
            "no phone number", "no phone number", "no e-mail address"]
        [ayse_update] = session.scalars(select(Message).where(
            Message.customer_id == AYSE, Message.template == "shipping_update")).all()
        assert ayse_update.recipient is not None
        body = (ayse_update.body_text or "") + (ayse_update.body_html or "")
        assert "4817263950" in body


def _utc(when: datetime | None) -> datetime | None:
    # SQLite hands back naive UTC datetimes
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
