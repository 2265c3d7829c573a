"""A shipment's status never moves backwards (aftersale.core.shipments.takes_over), and a
shipment journey's entry key fits its column whatever the parcel's id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aftersale.core.shipments import ShipmentStatus as S
from aftersale.core.shipments import takes_over
from aftersale.pipeline.contexts import moment_of_entry, shipment_entry_key

T = datetime(2026, 3, 2, 9, tzinfo=UTC)
LATER, EARLIER = T + timedelta(hours=1), T - timedelta(hours=1)


@pytest.mark.parametrize(("current", "new", "at", "wins"), [
    (None, S.IN_TRANSIT, T, True),  # the first word sets it
    (S.IN_TRANSIT, S.OUT_FOR_DELIVERY, LATER, True),
    (S.OUT_FOR_DELIVERY, S.IN_TRANSIT, EARLIER, False),  # an older scan arriving late
    (S.EXCEPTION, S.IN_TRANSIT, LATER, True),  # the carrier sorted it out
    (S.DELIVERED, S.IN_TRANSIT, LATER, False),  # delivered is final, even against a newer word
    (S.RETURNED_TO_SENDER, S.DELIVERED, LATER, False),
    (S.IN_TRANSIT, S.UNKNOWN, LATER, False),  # a word nobody mapped never replaces a known one
    (S.IN_TRANSIT, S.LABEL_CREATED, LATER, False),  # a label reported late does not un-ship
    (S.LABEL_CREATED, S.IN_TRANSIT, LATER, True),
    (S.IN_TRANSIT, S.OUT_FOR_DELIVERY, T, True),  # a tie goes to the status further along
    (S.OUT_FOR_DELIVERY, S.IN_TRANSIT, T, False),
])
def test_the_newer_word_wins_but_never_backwards(current: S | None, new: S, at: datetime,
                                                 wins: bool) -> None:
    assert takes_over(current, None if current is None else T, new, at) is wins


@pytest.mark.parametrize("moment", ["returned_to_sender", "late:2026-03-05", "stalled:10"])
def test_an_entry_key_fits_its_column_and_names_its_moment(moment: str) -> None:
    long_id = "aftership:" + "x" * 118  # 128 characters, the longest id the contract takes
    for shipment_id in ("shopify:4987654321012", long_id):
        key = shipment_entry_key(shipment_id, moment)
        assert len(key) <= 140
        assert moment_of_entry(key, shipment_id) == moment
    assert shipment_entry_key(long_id, moment) != shipment_entry_key(long_id[:-1] + "y", moment)


def test_a_late_moment_names_the_date_it_missed_and_only_a_later_one_as_new() -> None:
    from aftersale.db.models import Shipment
    from aftersale.pipeline.contexts import shipment_context

    missed, later = T, T + timedelta(days=3)
    parcel = Shipment(id="s-1", order_id="o-1", status="in_transit", status_at=EARLIER,
                      last_update_at=EARLIER, first_estimated_delivery_at=missed,
                      estimated_delivery_at=missed, late_for=missed)
    late = shipment_context(parcel, "late:2026-03-02", LATER)
    assert (late["moment"], late["missed_date"], late["new_estimate"]) == ("late", missed, None)
    parcel.estimated_delivery_at = later  # the carrier gave a new date, still to come
    late = shipment_context(parcel, "late:2026-03-02", LATER)
    assert (late["missed_date"], late["new_estimate"]) == (missed, later)
    delayed = shipment_context(parcel, "delayed", LATER)
    assert (delayed["missed_date"], delayed["new_estimate"]) == (None, later)
