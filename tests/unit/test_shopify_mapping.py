"""Shopify webhooks -> normalized events: the signature, every topic's mapping (from realistic
fixtures in tests/fixtures/shopify), the ids that make deliveries idempotent, bad payloads named
by their Shopify field, and the ``--format shopify`` file reader."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aftersale.core.errors import EventError
from aftersale.core.events import Event, EventType
from aftersale.core.shipments import ShipmentStatus
from aftersale.intake import shopify
from aftersale.intake.jsonl import LineError, ParsedFile
from aftersale.intake.shopify import (
    PayloadError,
    UnknownTopic,
    delivery_key,
    parse_file,
    referral_code,
    to_events,
    verify_hmac,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "shopify"
RECEIVED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AYSE = "7390123456789"
ORDER_1001 = "5612345678901"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def mapped(name: str, payload: dict[str, Any] | None = None) -> list[Event]:
    """The events one fixture delivery becomes, exactly as the web endpoint maps it."""
    data = fixture(name)
    headers = data["headers"]
    return to_events(headers["X-Shopify-Topic"], payload if payload is not None else data["payload"],
                     delivery_key(headers["X-Shopify-Event-Id"], headers["X-Shopify-Webhook-Id"]),
                     RECEIVED)


def order_payload(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(fixture("orders_create")["payload"])
    payload.update(changes)
    return payload


def placed(payload: dict[str, Any]) -> Event:
    [event] = to_events("orders/create", payload, "evt-1", RECEIVED)
    return event


# --- the signature -----------------------------------------------------------------------------

BODY = b'{"id":820982911946154508,"email":"jon@example.com"}'
# printf '%s' BODY | openssl dgst -sha256 -hmac hush -binary | base64
SIGNATURE = "D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8="


def test_a_signature_computed_by_openssl_verifies() -> None:
    assert verify_hmac(b"hush", BODY, SIGNATURE)
    assert shopify.sign(b"hush", BODY) == SIGNATURE


@pytest.mark.parametrize(("secret", "body", "header"), [
    (b"wrong", BODY, SIGNATURE),                                   # another app's secret
    (b"hush", BODY.replace(b"jon", b"jan"), SIGNATURE),            # one byte changed
    (b"hush", json.dumps(json.loads(BODY)).encode(), SIGNATURE),   # same JSON, re-serialized
    (b"hush", BODY, None),
    (b"hush", BODY, ""),
    (b"hush", BODY, "not base64 at all"),
    (b"hush", BODY, SIGNATURE[:-2]),
    (b"hush", BODY, "D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8=ş"),
    (b"", BODY, SIGNATURE),
])
def test_anything_but_the_exact_signature_over_the_raw_bytes_fails(
        secret: bytes, body: bytes, header: str | None) -> None:
    assert not verify_hmac(secret, body, header)


def test_the_event_id_header_is_the_dedupe_key_and_the_webhook_id_its_fallback() -> None:
    assert delivery_key("evt-1", "wh-1") == "evt-1"
    assert delivery_key(None, "wh-1") == "wh-1"
    assert delivery_key("  ", "wh-1") == "wh-1"
    assert delivery_key(None, None) is None


# --- orders --------------------------------------------------------------------------------------


def test_orders_create_maps_customer_items_total_codes_locale_and_referral() -> None:
    [event] = mapped("orders_create")
    assert event.type == EventType.ORDER_PLACED
    assert event.id == "shopify:orders/create:7f3c1a52-2e8d-4f4b-9a61-3d5e0c9b8a10:0"
    assert event.occurred_at == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)  # created_at, +03:00
    customer = event.customer
    assert customer is not None
    assert (customer.id, customer.email, customer.phone) == (
        AYSE, "ayse.yilmaz@example.com.tr", "+905321234567")
    assert (customer.first_name, customer.last_name) == ("Ayşe", "Yılmaz")
    assert (customer.locale, customer.country, customer.timezone) == ("tr-TR", "TR", None)
    # a 2026 payload carries no marketing consent: none is claimed either way
    assert customer.consent is None
    order = event.order
    assert order is not None
    assert (order.id, order.number, order.total, order.currency) == (
        ORDER_1001, "#1001", Decimal("8549.05"), "TRY")
    assert order.discount_codes == ["HOSGELDIN10"]
    assert order.referral_code == "RKZ4XQ2MAB3"
    assert [(i.sku, i.title, i.quantity, i.price, i.category) for i in order.items] == [
        ("DRN-SKYHAWK-MINI", "SkyHawk Mini Drone", 1, Decimal("8999.00"), None),
        ("ACC-PROP-4", "Yedek Pervane Seti", 2, Decimal("225.00"), None),
    ]
    assert event.model_extra == {"source_ids": {
        "shopify_topic": "orders/create",
        "shopify_delivery_id": "7f3c1a52-2e8d-4f4b-9a61-3d5e0c9b8a10"}}


def test_orders_paid_is_the_same_order_placed_under_its_own_id() -> None:
    [created], [paid] = mapped("orders_create"), mapped("orders_paid")
    assert paid.type == EventType.ORDER_PLACED
    assert paid.id != created.id and paid.id.startswith("shopify:orders/paid:")
    assert paid.order == created.order and paid.customer == created.customer


def test_the_same_event_id_under_two_topics_gives_two_events() -> None:
    payload = fixture("orders_create")["payload"]
    [a] = to_events("orders/create", payload, "same", RECEIVED)
    [b] = to_events("orders/paid", payload, "same", RECEIVED)
    assert a.id != b.id


def test_an_order_without_customer_email_or_phone_is_kept_as_a_guest_without_channels() -> None:
    [event] = mapped("orders_create_no_contact")
    customer = event.customer
    assert customer is not None
    assert customer.id == "shopify-guest-5612345678902"
    # "12345" in the billing address is not a phone number: dropped, the order stays
    assert (customer.email, customer.phone) == (None, None)
    assert (customer.first_name, customer.last_name, customer.country) == ("Mehmet", "Kaya", "TR")
    assert customer.locale is None and customer.consent is None
    assert event.order is not None and event.order.referral_code == "RMEHMET7Q2X"  # note attribute


def test_an_invalid_phone_or_email_is_dropped_and_the_next_valid_one_used() -> None:
    payload = order_payload(email="not-an-address", contact_email="ayse@example.com.tr",
                            phone="+90 532")
    payload["customer"] |= {"email": None, "phone": "0000"}
    payload["billing_address"]["phone"] = "call me"
    payload["shipping_address"]["phone"] = "0533 765 43 21"  # local format: needs the country
    customer = placed(payload).customer
    assert customer is not None
    assert (customer.email, customer.phone) == ("ayse@example.com.tr", "+905337654321")


def test_the_billing_phone_is_preferred_to_the_shipping_phone_of_a_gift() -> None:
    payload = order_payload(phone=None)
    payload["customer"] |= {"phone": None}
    payload["billing_address"]["phone"] = "+905321234567"
    payload["shipping_address"]["phone"] = "+905559998877"
    customer = placed(payload).customer
    assert customer is not None and customer.phone == "+905321234567"


@pytest.mark.parametrize(("landing_site", "attributes", "expected"), [
    ("/?ref=ABC123", [], "ABC123"),
    ("https://shop.example.com/products/x?utm_source=sms&referral=R2", [], "R2"),
    ("/collections/all?referral_code=R3#reviews", [], "R3"),
    ("/?ref=", [{"name": "ref", "value": "FROMNOTE"}], "FROMNOTE"),
    ("/", [{"name": "Referral_Code", "value": " R4 "}], "R4"),
    (None, [{"name": "gift_wrap", "value": "yes"}], None),
    ("/products/x?utm_source=google", [], None),
])
def test_the_referral_code_comes_from_the_landing_site_else_a_note_attribute(
        landing_site: str | None, attributes: list[dict[str, str]], expected: str | None) -> None:
    payload = {"landing_site": landing_site, "note_attributes": attributes}
    assert referral_code(payload) == expected


def test_category_comes_from_product_type_and_removed_lines_are_left_out() -> None:
    payload = order_payload()
    payload["line_items"][0]["product_type"] = "drones"
    payload["line_items"][1]["quantity"] = 0  # removed by an order edit
    order = placed(payload).order
    assert order is not None
    assert [(i.sku, i.category) for i in order.items] == [("DRN-SKYHAWK-MINI", "drones")]


def test_an_old_payload_with_consent_maps_it() -> None:
    [event] = mapped("orders_create_legacy_consent")
    assert event.customer is not None and event.customer.consent is not None
    consent = event.customer.consent
    assert (consent.email, consent.sms, consent.whatsapp) == (True, False, None)


def test_buyer_accepts_marketing_only_ever_adds_email_consent() -> None:
    yes = placed(order_payload(buyer_accepts_marketing=True)).customer
    no = placed(order_payload(buyer_accepts_marketing=False)).customer
    assert yes is not None and yes.consent is not None and yes.consent.email is True
    assert yes.consent.sms is None
    assert no is not None and no.consent is None  # an unticked box withdraws nothing


def test_orders_cancelled_names_only_the_order() -> None:
    [event] = mapped("orders_cancelled")
    assert event.type == EventType.ORDER_CANCELLED
    assert event.customer is None  # processing finds the order's own customer
    assert event.order is not None and (event.order.id, event.order.number) == (
        "5612345678902", "#1002")
    assert event.occurred_at == datetime(2026, 3, 1, 14, 20, tzinfo=UTC)  # cancelled_at


def test_refunds_create_refunds_the_order_even_when_partial() -> None:
    [event] = mapped("refunds_create")
    assert event.type == EventType.ORDER_REFUNDED
    assert event.order is not None and event.order.id == "5612345678903"
    assert event.occurred_at == datetime(2026, 3, 25, 8, 8, 12, tzinfo=UTC)


# --- fulfillments ---------------------------------------------------------------------------------


def test_fulfillments_create_is_one_shipment_update_with_carrier_and_first_tracking() -> None:
    [event] = mapped("fulfillments_create")
    assert event.type == EventType.SHIPMENT_UPDATED
    assert event.id == "shopify:fulfillments/create:9f1a3b5c-7d9e-4f1a-8b3c-5d7e9f1a3b5c:0"
    assert event.order is not None and event.order.id == ORDER_1001
    shipment = event.shipment
    assert shipment is not None
    assert (shipment.id, shipment.status, shipment.raw_status) == (
        "shopify:4987654321012", ShipmentStatus.IN_TRANSIT, None)  # shipped, no carrier word yet
    assert (shipment.carrier, shipment.tracking_number, shipment.tracking_url) == (
        "DHL Express", "4817263950",
        "https://www.dhl.com/tr-en/home/tracking.html?tracking-id=4817263950")
    assert shipment.destination_country == "TR"
    assert shipment.happened_at == event.occurred_at == datetime(2026, 3, 2, 11, 30, tzinfo=UTC)
    assert shipment.estimated_delivery_at is None and shipment.message is None


@pytest.mark.parametrize(("name", "status"), [
    ("fulfillments_update_in_transit", ShipmentStatus.IN_TRANSIT),
    ("fulfillments_update_out_for_delivery", ShipmentStatus.OUT_FOR_DELIVERY),
    ("fulfillments_update_delivered", ShipmentStatus.DELIVERED),
    ("fulfillments_update_failure", ShipmentStatus.EXCEPTION),
])
def test_each_fulfillment_update_is_one_shipment_update_at_its_time(
        name: str, status: ShipmentStatus) -> None:
    [event] = mapped(name)
    assert event.type == EventType.SHIPMENT_UPDATED and event.id.endswith(":0")
    shipment = event.shipment
    assert shipment is not None
    assert shipment.status == status
    assert shipment.raw_status == fixture(name)["payload"]["shipment_status"]
    assert shipment.id == f"shopify:{fixture(name)['payload']['id']}"
    assert shipment.happened_at == event.occurred_at == datetime.fromisoformat(
        fixture(name)["payload"]["updated_at"])


def test_a_delivery_without_tracking_is_still_the_delivery() -> None:
    payload = fixture("fulfillments_update_delivered")["payload"]
    payload |= {"tracking_company": None, "tracking_numbers": [], "tracking_urls": []}
    [event] = to_events("fulfillments/update", payload, "d", RECEIVED)
    assert event.shipment is not None
    assert (event.shipment.status, event.shipment.tracking_number) == (
        ShipmentStatus.DELIVERED, None)


# Every shipment_status Shopify documents (REST Fulfillment, GraphQL FulfillmentEventStatus),
# written out here rather than read from the table it tests.
SHOPIFY_STATUSES = [
    ("label_printed", "label_created"),
    ("label_purchased", "label_created"),
    ("confirmed", "label_created"),
    ("carrier_picked_up", "in_transit"),
    ("in_transit", "in_transit"),
    ("delayed", "delayed"),
    ("out_for_delivery", "out_for_delivery"),
    ("attempted_delivery", "attempted_delivery"),
    ("ready_for_pickup", "ready_for_pickup"),
    ("picked_up", "delivered"),  # the customer collected it at the pickup point
    ("delivered", "delivered"),
    ("failure", "exception"),
    ("returning_to_sender", "returned_to_sender"),
    ("IN_TRANSIT", "in_transit"),  # GraphQL's spelling of the same word
]


@pytest.mark.parametrize(("word", "status"), SHOPIFY_STATUSES)
def test_every_shopify_shipment_status_has_its_normalized_status(word: str, status: str) -> None:
    payload = fixture("fulfillments_update_in_transit")["payload"] | {"shipment_status": word}
    [update] = to_events("fulfillments/update", payload, "d", RECEIVED)
    event_payload = fixture("fulfillment_events_create")["payload"] | {"status": word}
    [scan] = to_events("fulfillment_events/create", event_payload, "d", RECEIVED)
    for event in (update, scan):
        assert event.shipment is not None
        assert (event.shipment.status.value if event.shipment.status else None,
                event.shipment.raw_status) == (status, word.lower())


def test_the_table_covers_exactly_the_documented_words() -> None:
    assert set(shopify.SHIPMENT_STATUSES) == {w.lower() for w, _ in SHOPIFY_STATUSES}


def test_a_status_shopify_adds_later_is_stored_as_unknown_with_its_word() -> None:
    payload = fixture("fulfillments_update_in_transit")["payload"] | {
        "shipment_status": "teleported"}
    [event] = to_events("fulfillments/update", payload, "d", RECEIVED)
    assert event.shipment is not None
    assert (event.shipment.status, event.shipment.raw_status) == (
        ShipmentStatus.UNKNOWN, "teleported")


@pytest.mark.parametrize("status", ["cancelled", "error", "failure"])
def test_a_cancelled_or_failed_fulfillment_withdraws_its_parcel(status: str) -> None:
    """Left open, a withdrawn parcel would stall, go late and keep its order from ever being
    delivered: it becomes ``cancelled`` (no longer counted for the order)."""
    payload = fixture("fulfillments_create")["payload"] | {"status": status}
    [event] = to_events("fulfillments/create", payload, "d", RECEIVED)
    assert event.shipment is not None
    assert (event.type, event.shipment.id, event.shipment.status, event.shipment.raw_status) == (
        "shipment.updated", f"shopify:{payload['id']}", "cancelled", status)


def test_tracking_number_wins_over_tracking_numbers() -> None:
    payload = fixture("fulfillments_create")["payload"] | {
        "tracking_number": "1Z999AA10123456784", "tracking_url": "https://ups.example/1Z"}
    [event] = to_events("fulfillments/create", payload, "d", RECEIVED)
    assert event.shipment is not None
    assert (event.shipment.tracking_number, event.shipment.tracking_url) == (
        "1Z999AA10123456784", "https://ups.example/1Z")


def test_an_estimate_on_the_fulfillment_is_kept_and_a_bad_one_named() -> None:
    payload = fixture("fulfillments_create")["payload"] | {
        "estimated_delivery_at": "2026-03-05T18:00:00+03:00"}
    [event] = to_events("fulfillments/create", payload, "d", RECEIVED)
    assert event.shipment is not None
    assert event.shipment.estimated_delivery_at == datetime(2026, 3, 5, 15, 0, tzinfo=UTC)
    with pytest.raises(PayloadError, match=r"^fulfillments/create: estimated_delivery_at: "
                                           r"'2026-03-05T18:00:00' has no UTC offset$"):
        to_events("fulfillments/create", payload | {
            "estimated_delivery_at": "2026-03-05T18:00:00"}, "d", RECEIVED)


# --- fulfillment events (carrier scans) ------------------------------------------------------------


def test_a_fulfillment_event_is_a_shipment_update_of_its_fulfillment() -> None:
    [event] = mapped("fulfillment_events_create")
    assert event.type == EventType.SHIPMENT_UPDATED
    assert event.id == "shopify:fulfillment_events/create:6d8f0b2c-4e6a-4c8e-8f2a-4b6d8f0b2c4e:0"
    assert event.order is not None and event.order.id == ORDER_1001
    shipment = event.shipment
    assert shipment is not None
    assert (shipment.id, shipment.status, shipment.raw_status) == (
        "shopify:4987654321012", ShipmentStatus.ATTEMPTED_DELIVERY, "attempted_delivery")
    assert shipment.message == "Alıcı adreste bulunamadı; kargo şubeye teslim edilecek"
    assert shipment.happened_at == event.occurred_at == datetime(2026, 3, 3, 10, 4, tzinfo=UTC)
    assert shipment.estimated_delivery_at == datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
    # the scan's country is where the parcel was seen, not where it goes
    assert shipment.destination_country is None and shipment.carrier is None


@pytest.mark.parametrize(("change", "message"), [
    ({"fulfillment_id": None}, "fulfillment_id: missing or not an id (got None)"),
    ({"order_id": None}, "order_id: missing or not an id (got None)"),
    ({"status": None}, "status: missing; a fulfillment event needs its status"),
    ({"happened_at": "2026-03-03T13:04:00"}, "happened_at: '2026-03-03T13:04:00' has no UTC offset"),
])
def test_a_fulfillment_event_that_cannot_be_mapped_names_the_field(
        change: dict[str, Any], message: str) -> None:
    payload = fixture("fulfillment_events_create")["payload"] | change
    with pytest.raises(PayloadError) as caught:
        to_events("fulfillment_events/create", payload, "d", RECEIVED)
    assert str(caught.value) == f"fulfillment_events/create: {message}"


def test_a_very_long_carrier_message_is_cut_not_refused() -> None:
    payload = fixture("fulfillment_events_create")["payload"] | {"message": "ş" * 5000}
    [event] = to_events("fulfillment_events/create", payload, "d", RECEIVED)
    assert event.shipment is not None and event.shipment.message == "ş" * 2000


# --- consent topics ---------------------------------------------------------------------------------


def test_the_email_consent_topic_sets_only_email_consent() -> None:
    [event] = mapped("customers_email_marketing_consent_update")
    assert event.type == EventType.CONSENT_CHANGED
    assert event.customer is not None and event.customer.consent is not None
    assert event.customer.id == AYSE and event.customer.email == "ayse.yilmaz@example.com.tr"
    consent = event.customer.consent
    assert (consent.email, consent.sms, consent.whatsapp) == (True, None, None)
    assert event.occurred_at == datetime(2026, 3, 1, 7, 2, 15, tzinfo=UTC)


def test_the_sms_consent_topic_sets_only_sms_consent() -> None:
    [event] = mapped("customers_marketing_consent_update")
    assert event.customer is not None and event.customer.consent is not None
    assert (event.customer.id, event.customer.phone) == (AYSE, "+905321234567")
    consent = event.customer.consent
    assert (consent.email, consent.sms, consent.whatsapp) == (None, True, None)


@pytest.mark.parametrize(("state", "expected"), [
    ("subscribed", True), ("unsubscribed", False), ("not_subscribed", False),
    ("redacted", False), ("SUBSCRIBED", True), ("pending", None), (None, None),
])
def test_consent_states(state: str | None, expected: bool | None) -> None:
    payload = {"customer_id": 1, "email_address": None,
               "email_marketing_consent": {"state": state, "opt_in_level": None,
                                           "consent_updated_at": None}}
    [event] = to_events(shopify.EMAIL_CONSENT_TOPIC, payload, "d", RECEIVED)
    assert event.customer is not None and event.customer.consent is not None
    assert event.customer.consent.email is expected
    assert event.occurred_at == RECEIVED  # no consent_updated_at: when we received it


def test_the_slash_spellings_of_the_consent_topics_are_accepted() -> None:
    payload = fixture("customers_email_marketing_consent_update")["payload"]
    [event] = to_events("customers/email_marketing_consent/update", payload, "d", RECEIVED)
    assert event.id == "shopify:customers_email_marketing_consent/update:d:0"


# --- unknown topics and bad payloads ---------------------------------------------------------------


def test_an_unknown_topic_raises_unknown_topic() -> None:
    data = fixture("products_update")
    with pytest.raises(UnknownTopic) as caught:
        to_events(data["headers"]["X-Shopify-Topic"], data["payload"], "d", RECEIVED)
    assert caught.value.topic == "products/update"
    assert "orders/create" in str(caught.value)


@pytest.mark.parametrize(("topic", "change", "message"), [
    ("orders/create", {"id": None}, "id: missing or not an id (got None)"),
    ("orders/create", {"total_price": 12.5}, 'total_price: money must be a decimal string such as "129.90", got 12.5'),
    ("orders/create", {"total_price": "twelve"}, "total_price: 'twelve' is not a decimal amount"),
    ("orders/create", {"total_price": "-5.00"}, "total_price: '-5.00' is not a non-negative amount"),
    ("orders/create", {"created_at": "yesterday"}, "created_at: 'yesterday' is not an ISO 8601 time"),
    ("orders/create", {"created_at": "2026-03-01T10:00:00"}, "created_at: '2026-03-01T10:00:00' has no UTC offset"),
    ("orders/create", {"line_items": {"sku": "x"}}, "line_items: must be a list"),
    ("orders/create", {"customer": {"id": True}}, "customer.id: missing or not an id (got True)"),
    ("refunds/create", {"order_id": None}, "order_id: missing or not an id (got None)"),
    ("fulfillments/update", {"order_id": ""}, "order_id: missing or not an id (got '')"),
])
def test_a_payload_that_cannot_be_mapped_names_the_shopify_field(
        topic: str, change: dict[str, Any], message: str) -> None:
    payload = order_payload(**change) if topic.startswith("orders") else (
        fixture("refunds_create" if topic.startswith("refunds") else "fulfillments_create")["payload"]
        | change)
    with pytest.raises(PayloadError) as caught:
        to_events(topic, payload, "d", RECEIVED)
    assert str(caught.value) == f"{topic}: {message}"
    assert isinstance(caught.value, EventError)


def test_a_line_item_price_error_names_the_line() -> None:
    payload = order_payload()
    payload["line_items"][1]["price"] = 225.0
    with pytest.raises(PayloadError, match=r"^orders/create: line_items\[1\]\.price: money must be"):
        placed(payload)


def test_a_consent_payload_without_its_consent_object_is_refused() -> None:
    with pytest.raises(PayloadError, match=r"^customers_marketing_consent/update: sms_marketing_consent: missing"):
        to_events(shopify.SMS_CONSENT_TOPIC, {"id": 1, "phone": "+905321234567"}, "d", RECEIVED)


# --- ids without a delivery id (file imports) --------------------------------------------------------


def test_without_a_delivery_id_the_id_is_stable_and_follows_object_and_time() -> None:
    payload = fixture("fulfillments_update_in_transit")["payload"]
    [a] = to_events("fulfillments/update", payload, None, RECEIVED)
    [b] = to_events("fulfillments/update", copy.deepcopy(payload), None, datetime.now(UTC))
    assert a.id == b.id == "shopify:fulfillments/update:4987654321012@2026-03-03T08:12:44+03:00:0"
    later = payload | {"updated_at": "2026-03-04T09:02:10+03:00"}
    [c] = to_events("fulfillments/update", later, None, RECEIVED)
    assert c.id != a.id


def test_without_a_delivery_id_or_a_time_the_payload_itself_decides() -> None:
    def consent(state: str) -> dict[str, Any]:
        return {"customer_id": 7, "email_address": None,
                "email_marketing_consent": {"state": state, "consent_updated_at": None}}

    [yes] = to_events(shopify.EMAIL_CONSENT_TOPIC, consent("subscribed"), None, RECEIVED)
    [yes_again] = to_events(shopify.EMAIL_CONSENT_TOPIC, consent("subscribed"), None, RECEIVED)
    [no] = to_events(shopify.EMAIL_CONSENT_TOPIC, consent("unsubscribed"), None, RECEIVED)
    assert yes.id == yes_again.id != no.id


def test_a_very_long_delivery_id_still_gives_a_valid_event_id() -> None:
    [event] = to_events("orders/create", order_payload(), "x" * 500, RECEIVED)
    assert len(event.id) <= 200 and event.id.startswith("shopify:orders/create:")


# --- aftersale ingest --format shopify ---------------------------------------------------------------


def file_line(name: str, with_id: bool = True) -> str:
    data = fixture(name)
    line: dict[str, Any] = {"topic": data["headers"]["X-Shopify-Topic"], "payload": data["payload"]}
    if with_id:
        line["id"] = data["headers"]["X-Shopify-Event-Id"]
    return json.dumps(line, ensure_ascii=False) + "\n"


def test_a_file_of_webhooks_gives_their_events_in_order() -> None:
    parsed = parse_file([file_line("orders_create"), "\n", file_line("fulfillments_create"),
                         file_line("fulfillments_update_delivered", with_id=False),
                         file_line("fulfillments_update_failure"),
                         file_line("fulfillment_events_create")], received_at=RECEIVED)
    assert isinstance(parsed, ParsedFile)
    assert parsed.errors == []
    assert [(e.type.value, e.shipment.status.value if e.shipment and e.shipment.status else None)
            for e in parsed.events] == [
        ("order.placed", None), ("shipment.updated", "in_transit"),
        ("shipment.updated", "delivered"), ("shipment.updated", "exception"),
        ("shipment.updated", "attempted_delivery")]
    assert parsed.events[0].id == "shopify:orders/create:7f3c1a52-2e8d-4f4b-9a61-3d5e0c9b8a10:0"
    assert parsed.events[2].id == (
        "shopify:fulfillments/update:4987654321012@2026-03-04T11:15:27+03:00:0")


def test_a_repeated_webhook_in_a_file_is_kept_once() -> None:
    parsed = parse_file([file_line("orders_create"), file_line("orders_create"),
                         file_line("fulfillments_update_delivered", with_id=False),
                         file_line("fulfillments_update_delivered", with_id=False)])
    assert [e.type.value for e in parsed.events] == ["order.placed", "shipment.updated"]
    assert parsed.duplicates_in_file == 2


def test_every_bad_line_is_reported_with_its_number() -> None:
    good = file_line("orders_create")
    bad_total = json.loads(good)
    bad_total["payload"]["total_price"] = 12.5
    parsed = parse_file([
        good,
        "{not json\n",
        "[1, 2]\n",
        json.dumps({"payload": {"id": 1}}) + "\n",
        "\n",
        json.dumps({"topic": "orders/create", "payload": [1]}) + "\n",
        json.dumps({"topic": "products/update", "payload": {"id": 1}}) + "\n",
        json.dumps(bad_total) + "\n",
        json.dumps({"topic": "orders/create", "id": {"x": 1}, "payload": {"id": 1}}) + "\n",
        file_line("refunds_create"),
    ])
    assert [e.type.value for e in parsed.events] == ["order.placed", "order.refunded"]
    assert [(e.line, e.reason) for e in parsed.errors] == [
        (2, "not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
        (3, 'a line must be a JSON object: {"topic": ..., "id": ..., "payload": {...}}'),
        (4, 'topic: missing; give the webhook topic, e.g. "orders/create"'),
        (6, "payload: missing or not a JSON object (the webhook body)"),
        (7, "unknown Shopify topic 'products/update'; known topics: "
            + ", ".join(shopify.KNOWN_TOPICS)),
        (8, 'orders/create: total_price: money must be a decimal string such as "129.90", got 12.5'),
        (9, "id: must be a string (the webhook or event id), got {'x': 1}"),
    ]
    assert str(parsed.errors[0]).startswith("line 2: not valid JSON")
    assert all(isinstance(e, LineError) for e in parsed.errors)
