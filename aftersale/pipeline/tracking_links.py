"""Messages link to our tracking page rather than the carrier's (AFTERSALE_TRACKING_LINK).

The send path builds a message's context (:func:`aftersale.pipeline.send.render_context`) and
hands it to :meth:`ShipmentLinks.apply`, which swaps the carrier's URL for a signed
``/t/{token}`` link wherever a template reads it: ``order.tracking.url`` and
``shipment.tracking_url``. The token names the shipment, the customer and the message, so a
person's visit counts as that message's click (:mod:`aftersale.web.tracking`). An order with no
shipment row (a legacy ``order.shipped`` event) keeps the carrier's link, and so does every
message with ``AFTERSALE_TRACKING_LINK=carrier``.

Which shipment a message is about: the enrollment's own (journeys triggered by a shipment
moment), else the order's shipment whose tracking number the order shows, else the order's
shipment with the newest carrier news.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aftersale.core.links import Links
from aftersale.db.lookup import in_chunks
from aftersale.db.models import Enrollment, Order, Shipment


@dataclass(frozen=True)
class ShipmentRef:
    """What a link and a context need of a shipment row."""

    id: str
    order_id: str
    carrier: str | None
    tracking_number: str | None
    last_update_at: datetime


@dataclass
class ShipmentLinks:
    """The shipments of one batch's orders, loaded with one query per chunk of orders."""

    links: Links
    by_order: dict[str, list[ShipmentRef]] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, links: Links,
             enrollments: Iterable[Enrollment]) -> ShipmentLinks:
        loaded = cls(links)
        if not links.tracking_page:
            return loaded  # the carrier's links stay: nothing to look up
        order_ids = {e.order_id for e in enrollments if e.order_id}
        for chunk in in_chunks(order_ids):
            for row in session.execute(
                    select(Shipment.id, Shipment.order_id, Shipment.carrier,
                           Shipment.tracking_number, Shipment.last_update_at)
                    .where(Shipment.order_id.in_(chunk))):
                loaded.by_order.setdefault(row.order_id, []).append(ShipmentRef(*row))
        return loaded

    def shipment_for(self, enrollment: Enrollment, order: Order | None) -> ShipmentRef | None:
        shipments = self.by_order.get(enrollment.order_id or "", [])
        if not shipments:
            return None
        if enrollment.shipment_id:
            own = next((s for s in shipments if s.id == enrollment.shipment_id), None)
            if own is not None:
                return own
        if order is not None and order.tracking_number:
            shown = next((s for s in shipments if s.tracking_number == order.tracking_number),
                         None)
            if shown is not None:
                return shown
        return max(shipments, key=lambda s: (s.last_update_at, s.id))

    def apply(self, context: dict[str, Any], message_id: str, customer_id: str,
              enrollment: Enrollment, order: Order | None, now: datetime) -> dict[str, Any]:
        """``context`` with the tracking page's link in place of the carrier's (changed in
        place and returned); unchanged when the setting keeps the carrier's or the order has
        no shipment row."""
        shipment = self.shipment_for(enrollment, order) if self.links.tracking_page else None
        if shipment is None:
            return context
        url = self.links.tracking(shipment.id, customer_id, message_id, now.date())
        return with_tracking_url(context, url, shipment)


def with_tracking_url(context: dict[str, Any], url: str, shipment: ShipmentRef) -> dict[str, Any]:
    """``order.tracking.url`` and ``shipment.tracking_url`` set to ``url``. An order that shows
    no tracking yet gets it from its shipment, so ``{% if order.tracking %}`` links the page."""
    order = context.get("order")
    if isinstance(order, Mapping):
        tracking = order.get("tracking")
        if isinstance(tracking, Mapping):
            tracking = {**tracking, "url": url}
        elif shipment.carrier or shipment.tracking_number:
            tracking = {"carrier": shipment.carrier, "number": shipment.tracking_number,
                        "url": url}
        if tracking is not None:
            # A copy: the order's context may be shared with other renderings.
            context["order"] = _with(order, "tracking", tracking)
    current = context.get("shipment")
    if isinstance(current, Mapping) and current.get("id", shipment.id) == shipment.id:
        context["shipment"] = _with(current, "tracking_url", url)
    return context


def _with(mapping: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    copied = dict(mapping)
    copied[key] = value
    return copied
