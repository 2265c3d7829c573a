"""Parcels as aftersale sees them: one normalized status vocabulary for every carrier source,
and the rule that keeps a shipment from moving backwards. Pure: no I/O, no clock.

Every source (Shopify fulfillments and fulfillment events, AfterShip, ``POST /events``) maps
its own words onto :class:`ShipmentStatus`; a word nobody mapped becomes ``unknown`` (kept and
logged, never a crash). The source's own word travels beside it as ``raw_status``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class ShipmentStatus(StrEnum):
    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    ATTEMPTED_DELIVERY = "attempted_delivery"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELAYED = "delayed"
    EXCEPTION = "exception"  # failure, damaged, lost, undeliverable
    RETURNED_TO_SENDER = "returned_to_sender"
    DELIVERED = "delivered"
    # Not a carrier moment: the shop withdrew the parcel (a Shopify fulfillment cancelled,
    # usually a wrong label replaced by a new one). It no longer counts for the order.
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


SHIPMENT_STATUSES = frozenset(s.value for s in ShipmentStatus)

#: Statuses that make an order one "with a delivery problem" (with the derived
#: ``shipment.stalled`` and ``shipment.late`` moments).
PROBLEM_STATUSES = frozenset({
    ShipmentStatus.ATTEMPTED_DELIVERY, ShipmentStatus.DELAYED, ShipmentStatus.EXCEPTION,
    ShipmentStatus.RETURNED_TO_SENDER})

#: A shipment in one of these is done: later carrier words are history, not its status.
FINAL_STATUSES = frozenset({ShipmentStatus.DELIVERED, ShipmentStatus.RETURNED_TO_SENDER,
                            ShipmentStatus.CANCELLED})

#: Statuses that mean the parcel has left the shop: the first one is the order's
#: ``order.shipped`` (a label alone is not a shipment yet).
MOVING_STATUSES = frozenset(SHIPMENT_STATUSES) - {
    ShipmentStatus.LABEL_CREATED, ShipmentStatus.UNKNOWN, ShipmentStatus.CANCELLED}

# Ties (two updates stamped with the same time) go to the status further along.
_RANK = {
    ShipmentStatus.UNKNOWN: 0,
    ShipmentStatus.LABEL_CREATED: 1,
    ShipmentStatus.IN_TRANSIT: 2,
    ShipmentStatus.DELAYED: 3,
    ShipmentStatus.OUT_FOR_DELIVERY: 4,
    ShipmentStatus.ATTEMPTED_DELIVERY: 5,
    ShipmentStatus.READY_FOR_PICKUP: 6,
    ShipmentStatus.EXCEPTION: 7,
    ShipmentStatus.RETURNED_TO_SENDER: 8,
    ShipmentStatus.DELIVERED: 9,
    ShipmentStatus.CANCELLED: 10,
}


def takes_over(current: ShipmentStatus | None, current_at: datetime | None,
               new: ShipmentStatus, new_at: datetime) -> bool:
    """Whether an update with status ``new`` at ``new_at`` becomes the shipment's status.

    Updates arrive late and out of order (webhook retries, two sources): the newer one wins,
    a tie goes to the status further along, a final status (delivered, returned) is never left,
    and ``unknown`` never replaces a known status. Every update is kept in the history anyway.
    """
    if current is None or current_at is None:
        return True
    if current in FINAL_STATUSES or new == ShipmentStatus.UNKNOWN:
        return False
    if new == ShipmentStatus.CANCELLED:
        return True  # the shop's withdrawal wins over any carrier word, whenever reported
    if new == ShipmentStatus.LABEL_CREATED and current in MOVING_STATUSES:
        return False  # a label event reported late (or a second label) does not un-ship it
    if new_at != current_at:
        return new_at > current_at
    return _RANK[new] > _RANK[current]



def is_international(destination_country: str | None, shop_country: str | None) -> bool:
    """Whether a parcel leaves the shop's country. Without a shop country (or a destination),
    every parcel is domestic."""
    return bool(destination_country and shop_country
                and destination_country.upper() != shop_country.upper())
