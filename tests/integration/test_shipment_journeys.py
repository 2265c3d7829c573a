"""Journeys started by a parcel's moments, through the real pipeline on both databases: one
enrollment per shipment and moment, the entry ``when``, ``wait_for: shipment.updated``, and
the parcel in the messages.

Needs process-events to apply ``shipment.updated`` (shipment rows, the order's customer) and
the clock check that derives ``shipment.stalled``."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aftersale.db.models import Enrollment
from aftersale.ops.preview import preview_journey
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import days, placed
from tests.integration.helpers import feed, run_to, sent

JOURNEY = """\
    journey: parcel-care
    trigger: [shipment.updated, shipment.stalled]
    when: shipment.status != "in_transit" and shipment.status != "delivered"
    reentry: once_per_shipment_moment
    steps:
      - send: parcel_note
      - wait_for: shipment.updated
        timeout: 3d
        on_timeout: end
      - send: parcel_followup
        when: shipment.status == "ready_for_pickup"
    """

# An order journey may wait for any of its parcels' moments too.
ORDER_JOURNEY = """\
    journey: order-parcel
    trigger: order.placed
    steps:
      - wait_for: shipment.updated
        timeout: 5d
        on_timeout: end
      - send: parcel_followup
    """

# A journey with its own stall threshold: two business days instead of the settings' three.
EARLY_STALL = """\
    journey: stall-early
    trigger: shipment.stalled
    reentry: once_per_shipment_moment
    stalled_after: {domestic: 2}
    steps:
      - send: parcel_note
    """

NOTE = """\
    transactional: true
    email:
      subject: "{{ order.number }}: {{ shipment.moment }}"
      text: |
        {{ shipment.carrier }} says: {{ shipment.last_message }} ({{ shipment.status }})
        {% if shipment.estimated_delivery_at %}New date: {{ shipment.estimated_delivery_at | date }}{% endif %}
        Track it: {{ shipment.tracking_url }}
    """

FOLLOWUP = """\
    transactional: true
    email:
      subject: "{{ order.number }} is waiting for you"
      text: "Pick it up: {{ shipment.last_message }}"
    """


@pytest.fixture
def journeys(definitions_dirs: tuple[Path, Path]) -> None:
    journeys_dir, content_dir = definitions_dirs
    (journeys_dir / "parcel_care.yaml").write_text(textwrap.dedent(JOURNEY), encoding="utf-8")
    (journeys_dir / "order_parcel.yaml").write_text(textwrap.dedent(ORDER_JOURNEY),
                                                    encoding="utf-8")
    (journeys_dir / "stall_early.yaml").write_text(textwrap.dedent(EARLY_STALL),
                                                   encoding="utf-8")
    for name, text in (("parcel_note", NOTE), ("parcel_followup", FOLLOWUP)):
        (content_dir / name).mkdir()
        (content_dir / name / "en.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


def update(eid: str, status: str, at: datetime, shipment_id: str = "shopify:5001",
           oid: str = "o-1", **fields: Any) -> dict[str, Any]:
    return {"id": eid, "type": "shipment.updated", "occurred_at": at.isoformat(),
            "order": {"id": oid},
            "shipment": {"id": shipment_id, "status": status, "carrier": "UPS",
                         "tracking_number": "1Z999", "tracking_url": "https://ups.example/1Z999",
                         "message": f"carrier: {status}", **fields}}


def enrollments(rt: Runtime, journey: str = "parcel-care") -> list[tuple[str, str | None, str]]:
    with rt.factory() as session:
        return [(e.entry_key, e.shipment_id, e.status) for e in session.scalars(
            select(Enrollment).where(Enrollment.journey == journey).order_by(Enrollment.id))]


def parcel_messages(rt: Runtime, journey: str = "parcel-care"
                    ) -> list[tuple[str, str | None, str | None]]:
    return [(m.template, m.subject, m.body_text) for m in sent(rt) if m.journey == journey]


@pytest.mark.usefixtures("journeys")
def test_each_moment_of_a_parcel_enrolls_once_and_the_entry_when_filters(rt: Runtime) -> None:
    definitions = rt.definitions()
    assert sorted(j.name for j in definitions.triggered_by("shipment.stalled")) == [
        "delivery-care", "parcel-care", "stall-early"]  # delivery-care is shipped
    feed(rt, placed("o-1", START, "c-1"))
    run_to(rt, definitions, START)
    feed(rt, update("u-1", "in_transit", START + days(1)))  # filtered by the entry `when`
    run_to(rt, definitions, START + days(1))
    assert enrollments(rt) == []
    feed(rt, update("u-2", "attempted_delivery", START + days(2)),
         update("u-3", "attempted_delivery", START + days(2.1)))  # same moment again
    run_to(rt, definitions, START + days(2.5))
    feed(rt, update("u-4", "ready_for_pickup", START + days(3)))
    run_to(rt, definitions, START + days(3))
    assert [key for key, _, _ in enrollments(rt)] == [
        "shipment:shopify:5001:attempted_delivery", "shipment:shopify:5001:ready_for_pickup"]
    assert {shipment for _, shipment, _ in enrollments(rt)} == {"shopify:5001"}


@pytest.mark.usefixtures("journeys")
def test_wait_for_a_shipment_update_wakes_the_journey_and_messages_show_the_parcel(
        rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1"))
    run_to(rt, definitions, START)
    feed(rt, update("u-1", "attempted_delivery", START + days(1),
                    estimated_delivery_at=(START + days(3)).isoformat()))
    run_to(rt, definitions, START + days(1))
    first = parcel_messages(rt)
    assert [(t, s) for t, s, _ in first] == [("parcel_note", "#o-1: attempted_delivery")]
    assert "UPS says: carrier: attempted_delivery (attempted_delivery)" in (first[0][2] or "")
    # the parcel's link is aftersale's tracking page (AFTERSALE_TRACKING_LINK=page), not UPS's
    assert "https://shop.example.com/t/" in (first[0][2] or "")
    assert "https://ups.example/1Z999" not in (first[0][2] or "")
    assert "New date:" in (first[0][2] or "")
    feed(rt, update("u-2", "ready_for_pickup", START + days(2)))
    run_to(rt, definitions, START + days(2))
    # the first enrollment woke on the update and followed up (it reads the parcel as it is
    # now); the new moment started its own enrollment with its own note
    assert sorted((t, s) for t, s, _ in parcel_messages(rt)) == [
        ("parcel_followup", "#o-1 is waiting for you"),
        ("parcel_note", "#o-1: attempted_delivery"),
        ("parcel_note", "#o-1: ready_for_pickup")]
    assert [status for _, _, status in enrollments(rt)] == ["completed", "active"]


@pytest.mark.usefixtures("journeys")
def test_a_parcel_that_goes_quiet_ends_the_wait_at_its_timeout_and_stalls(rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1"))  # a Monday
    run_to(rt, definitions, START)
    feed(rt, update("u-1", "delayed", START + days(1)))
    run_to(rt, definitions, START + days(5), tick=days(0.5))
    # the wait for its next update ended after 3 days; 3 business days without a word (the
    # settings' threshold: Tuesday to Friday) are a stall, a moment of its own
    assert [s for _, s, _ in parcel_messages(rt)] == ["#o-1: delayed", "#o-1: stalled"]
    assert enrollments(rt) == [("shipment:shopify:5001:delayed", "shopify:5001", "completed"),
                               ("shipment:shopify:5001:stalled:3", "shopify:5001", "active")]
    # a journey with stalled_after {domestic: 2} heard of it a day earlier, and only then
    assert enrollments(rt, "stall-early") == [
        ("shipment:shopify:5001:stalled:2", "shopify:5001", "completed")]


@pytest.mark.usefixtures("journeys")
def test_an_order_journey_waiting_for_a_parcel_update_wakes_on_any_of_its_parcels(
        rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1"))
    run_to(rt, definitions, START + days(1))
    assert parcel_messages(rt, "order-parcel") == []
    feed(rt, update("u-1", "in_transit", START + days(2), shipment_id="shopify:5002"))
    run_to(rt, definitions, START + days(2))
    assert [t for t, _, _ in parcel_messages(rt, "order-parcel")] == ["parcel_followup"]


@pytest.mark.usefixtures("journeys")
def test_a_shipment_journey_previews_with_the_orders_parcel(rt: Runtime) -> None:
    timeline = preview_journey(rt, "parcel-care", None)
    sends = [e for e in timeline.entries if e.kind == "send"]
    assert sends and sends[0].subject == "#1001: in_transit"
    assert "Yurtiçi Kargo says:" in sends[0].text
