"""The clock check: parcels that should have moved and have not. It derives ``shipment.stalled``
and ``shipment.late`` into the inbox, each once (see :mod:`aftersale.core.delivery_clock` for
when), and process-events applies them like any event: journeys trigger on them and wait for
them.

It runs as the first step of every drain of the inbox (``aftersale.orchestration.passes``),
so on the wall clock in the process-events flow and on the simulated one in ``run --until``
and the demo: no process sleeps until a parcel is due. Each run reads only the open parcels
(not delivered, not returned, of an order neither cancelled nor refunded) that could be due:
silent for at least the smallest threshold in calendar days and not yet raised at the largest,
or with an estimated date passed that no late was raised for. Pages of ``PAGE`` shipments, one
query each and one statement per table written, in the drain's own transactions.

Once each: ``stalled_days`` keeps the largest threshold raised (each journey may have its
own, and a stall is raised once per distinct threshold, id ``derived:{shipment}:stalled:{n}``),
``late_for`` the estimate the last late was about (id ``derived:{shipment}:late:{date}``), and
the inbox stores an id once, whatever happens. A stall's payload says which threshold it is
about: ``shipment.stalled_after`` (N), ``shipment.shop_threshold`` (N is the settings' one for
its scope) and ``shipment.days_silent``; a journey with its own ``stalled_after`` enters on
the stall at its N, any other on the one at the shop's threshold. The stall at the shop's own threshold (the
settings) and every late mark the shipment (``stalled_at``, ``problem_at``) and its order
(``delivery_problem_at``) as having had a delivery problem; a journey's earlier threshold is
only that journey's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, false, or_, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from aftersale.core.clock import as_utc
from aftersale.core.counts import Counts
from aftersale.core.delivery_clock import (
    StallDefaults,
    calendar_for,
    late_due,
    silent_days,
    stalled_due,
    stalled_thresholds,
)
from aftersale.core.events import Event, EventType
from aftersale.core.journeys.model import Journey
from aftersale.core.shipments import FINAL_STATUSES, ShipmentStatus, is_international
from aftersale.db.models import Customer, Order, Shipment
from aftersale.intake.inbox import store_events
from aftersale.pipeline.apply_events import DERIVED_SOURCE, derived_id

PAGE = 1000


@dataclass
class CheckCounts(Counts):
    examined: int = 0
    stalled: int = 0  # shipment.stalled events stored (one per shipment and threshold)
    late: int = 0


def journey_overrides(journeys: Iterable[Journey]) -> list[Any]:
    """The ``stalled_after`` of each journey that ``shipment.stalled`` starts."""
    return [getattr(j, "stalled_after", None) for j in journeys
            if EventType.SHIPMENT_STALLED.value in j.triggers]


@dataclass(frozen=True)
class _Rules:
    default: StallDefaults
    domestic: frozenset[int]
    international: frozenset[int]
    shop_country: str | None

    def thresholds(self, international: bool) -> frozenset[int]:
        return self.international if international else self.domestic


_COLUMNS = (Shipment.id, Shipment.order_id, Shipment.status, Shipment.carrier,
            Shipment.tracking_number, Shipment.tracking_url, Shipment.destination_country,
            Shipment.last_update_at, Shipment.first_estimated_delivery_at,
            Shipment.estimated_delivery_at, Shipment.stalled_days, Shipment.stalled_at,
            Shipment.late_for, Shipment.late_at, Shipment.problem_at, Customer.timezone)


def check_shipments(factory: sessionmaker[Session], journeys: Iterable[Journey], now: datetime,
                    default: StallDefaults, shop_country: str | None = None,
                    page: int = PAGE) -> CheckCounts:
    """Derive every ``shipment.stalled`` and ``shipment.late`` due by ``now``."""
    domestic, international = stalled_thresholds(default, journey_overrides(journeys))
    rules = _Rules(default, domestic, international, shop_country)
    counts = CheckCounts()
    after = ""
    while True:
        with factory() as session, session.begin():
            query = (select(*_COLUMNS).join(Order, Order.id == Shipment.order_id)
                     .outerjoin(Customer, Customer.id == Order.customer_id)
                     .where(Shipment.id > after, Shipment.delivered_at.is_(None),
                            Shipment.status.not_in([s.value for s in FINAL_STATUSES]),
                            Order.status.not_in(("cancelled", "refunded")),
                            or_(_may_stall(rules, now), _may_be_late(now)))
                     .order_by(Shipment.id).limit(page))
            if session.get_bind().dialect.name == "postgresql":
                # Two drains at once: each parcel is looked at by one of them.
                query = query.with_for_update(skip_locked=True, of=Shipment)
            rows = list(session.execute(query))
            _derive(session, rows, rules, now, counts)
        if len(rows) < page:
            return counts
        after = rows[-1].id


def _is_international(shop_country: str | None) -> ColumnElement[bool]:
    if shop_country is None:
        return false()
    return and_(Shipment.destination_country.is_not(None),
                Shipment.destination_country != shop_country)


# Not stalled or late, whatever the clock says: waiting for the customer at a pickup point, or
# already reported as failed (the exception was its problem moment).
_NOT_TRAVELLING = (ShipmentStatus.READY_FOR_PICKUP.value, ShipmentStatus.EXCEPTION.value)


def _may_stall(rules: _Rules, now: datetime) -> ColumnElement[bool]:
    """Silent for at least the smallest threshold in calendar days (there are never fewer of
    them than business days), and not yet raised at the largest, for its scope."""
    international = _is_international(rules.shop_country)
    scopes = []
    for abroad, thresholds in ((False, rules.domestic), (True, rules.international)):
        scope: ColumnElement[bool]
        if rules.shop_country is None:  # every parcel is domestic
            scope = false() if abroad else true()
        else:
            scope = international if abroad else ~international
        scopes.append(and_(scope, Shipment.last_update_at <= now - timedelta(days=min(thresholds)),
                           or_(Shipment.stalled_days.is_(None),
                               Shipment.stalled_days < max(thresholds))))
    # A parcel waiting at a pickup point is not stuck (it waits for its customer), and one the
    # carrier reported as failed has had its problem moment already.
    return and_(Shipment.status.not_in(_NOT_TRAVELLING), or_(*scopes))


def _may_be_late(now: datetime) -> ColumnElement[bool]:
    """An estimate at or before now that no late was raised for (its day may not be over)."""
    first, latest, late_for = (Shipment.first_estimated_delivery_at,
                               Shipment.estimated_delivery_at, Shipment.late_for)
    return and_(Shipment.status.not_in(_NOT_TRAVELLING),
                or_(and_(first <= now, late_for.is_(None)),
                    and_(latest <= now, or_(late_for.is_(None), latest > late_for))))


def _derive(session: Session, rows: list[Any], rules: _Rules, now: datetime,
            counts: CheckCounts) -> None:
    events: list[Event] = []
    changed: list[dict[str, Any]] = []
    problem_orders: list[dict[str, Any]] = []
    for row in rows:
        counts.examined += 1
        abroad = is_international(row.destination_country, rules.shop_country)
        calendar = calendar_for(row.destination_country or rules.shop_country, row.timezone)
        stalled_days, stalled_at, late_for = row.stalled_days, row.stalled_at, row.late_for
        late_at = row.late_at
        problem = False
        silent = (0 if row.status == ShipmentStatus.READY_FOR_PICKUP.value
                  else silent_days(row.last_update_at, now, calendar))
        shops = rules.default.days(abroad)
        for n in stalled_due(rules.thresholds(abroad), stalled_days, silent):
            events.append(_event(row, EventType.SHIPMENT_STALLED, f"stalled:{n}", now,
                                 days_silent=silent, stalled_after=n,
                                 silent_since=as_utc(row.last_update_at).isoformat(),
                                 shop_threshold=n == shops, is_international=abroad))
            counts.stalled += 1
            stalled_days = n
            if n >= shops and stalled_at is None:
                stalled_at, problem = now, True
        late = late_due(row.first_estimated_delivery_at, row.estimated_delivery_at, late_for,
                        now, calendar)
        if late is not None:
            latest = row.estimated_delivery_at
            new_date = latest if latest and calendar.local_date(latest) >= calendar.local_date(
                now) else None
            events.append(_event(row, EventType.SHIPMENT_LATE, f"late:{late.day.isoformat()}",
                                 now, days_late=late.days_late, late_for=late.day.isoformat(),
                                 estimated_delivery_at=new_date, is_international=abroad))
            counts.late += 1
            late_for, late_at, problem = late.estimate, now, True
        if (stalled_days, stalled_at, late_for) == (row.stalled_days, row.stalled_at,
                                                    row.late_for):
            continue
        changed.append({"b_id": row.id, "b_stalled_days": stalled_days,
                        "b_stalled_at": stalled_at, "b_late_for": late_for, "b_late_at": late_at,
                        "b_problem_at": row.problem_at or (now if problem else None)})
        if problem:
            problem_orders.append({"b_id": row.order_id, "b_at": now})
    # Core statements on the tables: executemany, no ORM bookkeeping.
    shipments, orders = cast(Table, Shipment.__table__), cast(Table, Order.__table__)
    if changed:
        session.execute(update(shipments).where(shipments.c.id == bindparam("b_id")).values(
            stalled_days=bindparam("b_stalled_days"), stalled_at=bindparam("b_stalled_at"),
            late_for=bindparam("b_late_for"), late_at=bindparam("b_late_at"),
            problem_at=bindparam("b_problem_at"),
            updated_at=now), changed)
    if problem_orders:
        session.execute(update(orders).where(orders.c.id == bindparam("b_id"),
                                             orders.c.delivery_problem_at.is_(None))
                        .values(delivery_problem_at=bindparam("b_at")), problem_orders)
    if events:
        store_events(session, events, DERIVED_SOURCE, now)


def _event(row: Any, type_: EventType, moment: str, now: datetime,
           **shipment: Any) -> Event:
    return Event.model_validate({
        "id": derived_id(row.id, moment), "type": type_.value, "occurred_at": now,
        "order": {"id": row.order_id},
        "shipment": {"id": row.id, "status": row.status, "carrier": row.carrier,
                     "tracking_number": row.tracking_number, "tracking_url": row.tracking_url,
                     "destination_country": row.destination_country,
                     **{k: v for k, v in shipment.items() if v is not None}}})
