"""AfterShip tracking webhooks -> ``shipment.updated``: the signature, every tag and the subtags
that say more, the times AfterShip sends without an offset, the estimate, the ids that make a
retried webhook harmless, and bad bodies named by their AfterShip field."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aftersale.core.errors import EventError
from aftersale.core.events import Event, EventType
from aftersale.core.shipments import ShipmentStatus
from aftersale.intake import aftership
from aftersale.intake.aftership import PayloadError, UnknownEvent, to_event, verify_hmac

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "aftership" / "tracking_update.json"
RECEIVED = datetime(2026, 3, 3, 11, 0, tzinfo=UTC)
TRACKING = "bff5a3bac79b472991a204172473a635"


def body(**msg_changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(json.loads(FIXTURE.read_text(encoding="utf-8"))["body"])
    data["msg"].update(msg_changes)
    return data


def status_of(tag: str, subtag: str | None = None) -> tuple[str, str | None]:
    event = to_event(body(tag=tag, subtag=subtag), RECEIVED)
    assert event.shipment is not None and event.shipment.status is not None
    return event.shipment.status.value, event.shipment.raw_status


# --- the signature -----------------------------------------------------------------------------


def test_the_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    raw = b'{"event":"tracking_update","msg":{"tag":"InTransit"}}'
    expected = base64.b64encode(hmac.new(b"as-secret", raw, hashlib.sha256).digest()).decode()
    assert aftership.sign(b"as-secret", raw) == expected
    assert verify_hmac(b"as-secret", raw, expected)
    assert verify_hmac(b"as-secret", raw, f"  {expected} ")
    for secret, signed, header in [(b"other", raw, expected), (b"as-secret", raw + b" ", expected),
                                   (b"as-secret", raw, None), (b"as-secret", raw, ""),
                                   (b"", raw, expected), (b"as-secret", raw, expected[:-1] + "ş"),
                                   (b"as-secret", raw, hashlib.sha256(raw).hexdigest())]:
        assert not verify_hmac(secret, signed, header)


# --- the fixture, field by field ----------------------------------------------------------------


def test_a_failed_attempt_becomes_one_shipment_update_with_every_field() -> None:
    event = to_event(body(), RECEIVED)
    assert event.type == EventType.SHIPMENT_UPDATED
    assert event.id == f"aftership:{TRACKING}:AttemptFail:2026-03-03T13:04:00"
    assert event.order is not None and event.order.id == "5612345678901"
    shipment = event.shipment
    assert shipment is not None
    assert (shipment.id, shipment.status, shipment.raw_status) == (
        f"aftership:{TRACKING}", ShipmentStatus.ATTEMPTED_DELIVERY, "AttemptFail_001")
    assert (shipment.carrier, shipment.tracking_number, shipment.tracking_url) == (
        "dhl", "4817263950", "https://www.dhl.com/tr-en/home/tracking.html?tracking-id=4817263950")
    assert shipment.message == "Delivery attempted; recipient not home"
    assert shipment.destination_country == "TR"  # TUR
    # the checkpoint's local time (no offset) read in its country, Türkiye (+03:00)
    assert shipment.happened_at == event.occurred_at == datetime(2026, 3, 3, 10, 4, tzinfo=UTC)
    # the date-only estimate: the end of 4 March in Istanbul
    assert shipment.estimated_delivery_at == datetime(2026, 3, 4, 20, 59, 59, tzinfo=UTC)
    assert event.model_extra == {"source_ids": {
        "aftership_event": "tracking_update",
        "aftership_event_id": "94dadd60-ed26-46d0-aa52-3ced925a50ff",
        "aftership_tracking_id": TRACKING}}


# --- every tag ------------------------------------------------------------------------------------

# Every tag of AfterShip's "Delivery Statuses" page, written out here, not read from the table.
TAGS = [
    ("Pending", "label_created"),
    ("InfoReceived", "label_created"),
    ("InTransit", "in_transit"),
    ("OutForDelivery", "out_for_delivery"),
    ("AttemptFail", "attempted_delivery"),
    ("AvailableForPickup", "ready_for_pickup"),
    ("Exception", "exception"),
    ("Delivered", "delivered"),
    ("Expired", "unknown"),  # AfterShip stopped tracking: nothing known, no status change
]


@pytest.mark.parametrize(("tag", "status"), TAGS)
def test_every_aftership_tag_has_its_normalized_status(tag: str, status: str) -> None:
    assert status_of(tag) == (status, tag)


def test_the_tag_table_is_exactly_the_documented_tags() -> None:
    assert set(aftership.TAGS) == {tag for tag, _ in TAGS}


@pytest.mark.parametrize(("subtag", "status"), [
    ("Exception_001", "exception"),
    ("Exception_003", "exception"),  # refused
    ("Exception_004", "delayed"),  # customs clearance
    ("Exception_005", "delayed"),  # external factors
    ("Exception_007", "exception"),  # incorrect address
    ("Exception_010", "returned_to_sender"),  # returning to sender
    ("Exception_011", "returned_to_sender"),  # returned to sender
    ("Exception_012", "exception"),  # damaged
    ("Exception_013", "exception"),  # lost
    ("Exception_016", "delayed"),  # processing issue
    ("Exception_017", "delayed"),  # weather
    ("Exception_019", "delayed"),  # late flight
    ("Exception_099", "exception"),  # a subtag added later
])
def test_exception_subtags_that_say_more_are_mapped(subtag: str, status: str) -> None:
    assert status_of("Exception", subtag) == (status, subtag)


def test_a_delayed_subtag_under_another_tag_is_that_tag() -> None:
    assert status_of("InTransit", "Exception_004") == ("in_transit", "Exception_004")


def test_an_unknown_tag_is_stored_as_unknown_with_its_word() -> None:
    assert status_of("Teleported") == ("unknown", "Teleported")


# --- times and the estimate -------------------------------------------------------------------------


def test_a_checkpoint_time_with_an_offset_is_taken_as_it_is() -> None:
    data = body()
    data["msg"]["checkpoints"][-1]["checkpoint_time"] = "2026-03-03T13:04:00-05:00"
    event = to_event(data, RECEIVED)
    assert event.shipment is not None
    assert event.shipment.happened_at == datetime(2026, 3, 3, 18, 4, tzinfo=UTC)


def test_without_checkpoints_the_update_time_and_the_subtag_message_are_used() -> None:
    event = to_event(body(checkpoints=[]), RECEIVED)
    assert event.shipment is not None
    assert event.shipment.happened_at == datetime(2026, 3, 3, 10, 25, tzinfo=UTC)
    assert event.shipment.message == "Failed Attempt"
    assert event.id == f"aftership:{TRACKING}:AttemptFail:2026-03-03T10:25:00+00:00"


@pytest.mark.parametrize(("changes", "expected"), [
    # a carrier's own estimate wins over AfterShip's AI when there is no latest one
    ({"latest_estimated_delivery": None,
      "courier_estimated_delivery_date": {"estimated_delivery_date": "2026-03-06T18:00:00+03:00"}},
     datetime(2026, 3, 6, 15, 0, tzinfo=UTC)),
    # a range counts by its end
    ({"latest_estimated_delivery": {"type": "range", "datetime": None,
                                    "datetime_min": "2026-03-05", "datetime_max": "2026-03-07"}},
     datetime(2026, 3, 7, 20, 59, 59, tzinfo=UTC)),
    # the legacy field, in a country with several zones: the westernmost (Hawaii-Aleutian)
    ({"latest_estimated_delivery": None, "aftership_estimated_delivery_date": None,
      "destination_country_region": None, "destination_country_iso3": "USA",
      "expected_delivery": "2026-03-09"},
     datetime(2026, 3, 10, 9, 59, 59, tzinfo=UTC)),
    # no country at all: UTC
    ({"latest_estimated_delivery": None, "aftership_estimated_delivery_date": None,
      "destination_country_region": None, "expected_delivery": "2026-03-09"},
     datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC)),
    ({"latest_estimated_delivery": None, "aftership_estimated_delivery_date": None}, None),
])
def test_the_newest_estimate_is_read_in_the_destinations_time(
        changes: dict[str, Any], expected: datetime | None) -> None:
    event = to_event(body(**changes), RECEIVED)
    assert event.shipment is not None
    assert event.shipment.estimated_delivery_at == expected


@pytest.mark.parametrize(("code", "expected"), [
    ("TUR", "TR"), ("USA", "US"), ("POL", "PL"), ("gbr", "GB"), ("DE", "DE"),
    ("SUN", None),  # the Soviet Union: many countries now, so none
    ("XYZ", None), ("", None), ("TÜR", None), (7, None),
])
def test_alpha3_destinations_become_alpha2(code: Any, expected: str | None) -> None:
    event = to_event(body(destination_country_region=code), RECEIVED)
    assert event.shipment is not None and event.shipment.destination_country == expected


# --- ids -------------------------------------------------------------------------------------------


def test_the_same_moment_sent_again_has_the_same_id_and_a_new_moment_a_new_one() -> None:
    first = to_event(body(), RECEIVED)
    again = body()
    again["event_id"] = "another-delivery-of-the-same-moment"
    assert to_event(again, datetime(2026, 3, 4, tzinfo=UTC)).id == first.id
    later = body(tag="Delivered", subtag="Delivered_001")
    later["msg"]["checkpoints"].append({"checkpoint_time": "2026-03-04T10:30:00+03:00",
                                        "message": "Delivered", "tag": "Delivered"})
    delivered = to_event(later, RECEIVED)
    assert delivered.id == f"aftership:{TRACKING}:Delivered:2026-03-04T10:30:00+03:00"
    assert delivered.shipment is not None
    assert delivered.shipment.status == ShipmentStatus.DELIVERED


def test_a_revised_estimate_is_its_own_moment_once_per_date() -> None:
    data = body()
    data["event"] = "edd_revise"
    data["msg"]["latest_estimated_delivery"]["datetime"] = "2026-03-06"
    event = to_event(data, RECEIVED)
    assert event.id == f"aftership:{TRACKING}:edd:2026-03-06T20:59:59+00:00"
    assert event.shipment is not None
    assert event.shipment.status == ShipmentStatus.ATTEMPTED_DELIVERY  # the tag is unchanged
    assert event.shipment.estimated_delivery_at == datetime(2026, 3, 6, 20, 59, 59, tzinfo=UTC)
    assert event.occurred_at == datetime(2026, 3, 3, 10, 25, tzinfo=UTC)  # msg.updated_at
    assert to_event(copy.deepcopy(data), RECEIVED).id == event.id


def test_a_very_long_tracking_id_still_gives_a_valid_event_id() -> None:
    event = to_event(body(id="x" * 110), RECEIVED)
    assert len(event.id) <= 200 and event.id.startswith("aftership:")


# --- what is not mapped ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tracking_pending_time", "return.approved", None])
def test_an_event_that_is_no_carrier_moment_is_unknown(kind: str | None) -> None:
    data = body()
    data["event"] = kind
    with pytest.raises(UnknownEvent) as caught:
        to_event(data, RECEIVED)
    assert caught.value.event == str(kind)


@pytest.mark.parametrize(("change", "message"), [
    ({"msg": None}, "msg: missing or not an object (the Tracking)"),
    ({"event": 5}, "event: must be a string such as 'tracking_update', got 5"),
    ({"msg.order_id": None}, "msg.order_id: missing or empty (got None)"),
    ({"msg.id": " "}, "msg.id: missing or empty (got ' ')"),
    ({"msg.tag": None}, "msg.tag: missing or empty (got None)"),
    ({"msg.updated_at": "yesterday"}, "msg.updated_at: 'yesterday' is not an ISO 8601 date or time"),
    ({"msg.expected_delivery": 20260304, "msg.latest_estimated_delivery": None,
      "msg.aftership_estimated_delivery_date": None},
     "msg.expected_delivery: must be an ISO 8601 date or time, got 20260304"),
    ({"msg.checkpoints": {"a": 1}}, "msg.checkpoints: must be a list"),
    ({"msg.slug": "s" * 101}, "shipment.carrier: String should have at most 100 characters"),
])
def test_a_body_that_cannot_be_mapped_names_the_aftership_field(change: dict[str, Any],
                                                                 message: str) -> None:
    data = body()
    for key, value in change.items():
        if key.startswith("msg."):
            data["msg"][key[4:]] = value
        else:
            data[key] = value
    with pytest.raises(PayloadError) as caught:
        to_event(data, RECEIVED)
    assert str(caught.value) == message
    assert isinstance(caught.value, EventError)


def test_a_checkpoint_time_that_is_not_a_time_is_named() -> None:
    data = body()
    data["msg"]["checkpoints"][-1]["checkpoint_time"] = "soon"
    with pytest.raises(PayloadError, match=r"^msg\.checkpoints\[-1\]\.checkpoint_time: 'soon'"):
        to_event(data, RECEIVED)


# --- hostile bodies ----------------------------------------------------------------------------------

MSG_KEYS = ["id", "order_id", "tag", "subtag", "subtag_message", "slug", "tracking_number",
            "courier_tracking_link", "updated_at", "checkpoints", "checkpoint_time", "message",
            "country_region", "destination_country_region", "destination_country_iso3",
            "expected_delivery", "latest_estimated_delivery", "datetime", "datetime_max",
            "courier_estimated_delivery_date", "estimated_delivery_date"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=20), st.sampled_from(
                        ["InTransit", "Exception", "Exception_011", "2026-03-01",
                         "2026-03-01T10:00:00", "2026-03-01T10:00:00+03:00", "USA", "TUR",
                         "0001-01-01T00:00:00", "9999-12-31", "x" * 300]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(MSG_KEYS), inner, max_size=6),
                      max_leaves=25)
bodies = st.fixed_dictionaries({
    "event": st.sampled_from(["tracking_update", "edd_revise", "other"]) | scalars,
    "msg": st.dictionaries(st.sampled_from(MSG_KEYS), values, max_size=12) | scalars,
    "ts": scalars})


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_any_body_gives_an_event_or_one_of_the_two_errors(data: dict[str, Any]) -> None:
    try:
        event = to_event(data, RECEIVED)
    except (UnknownEvent, PayloadError) as exc:
        assert str(exc)
        return
    assert isinstance(event, Event) and len(event.id) <= 200
    assert event.shipment is not None and event.shipment.status is not None
