"""``aftersale preview``: the timeline a journey would produce for one customer.

It runs the same pure engine as production on a simulated clock, assuming the order ships two
days after it was placed and arrives three days later, and that surveys go unanswered unless
``--response nps=3`` says otherwise, then renders each message as the customer would get it.
A journey started by a parcel's moment previews with the order's latest shipment (a sample
one in transit if it has none), entering on that moment; its parcel is assumed to get a
carrier update two days later.

A journey with experiments previews the variant this customer would get at each of them, and
says why (the rules of :func:`aftersale.core.experiments.choose`: the winner named in the YAML,
the decided winner of the current version, the variant assigned to them before, or the hash),
with what that variant sends; the timeline then follows that variant. Nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.panel import Panel
from rich.text import Text
from sqlalchemy import select

from aftersale.core.channel_choice import Contact, choose_channel
from aftersale.core.events import SHIPMENT_EVENTS, EventType
from aftersale.core.experiments import Experiment
from aftersale.core.journeys.engine import (
    AlertAction,
    Assigned,
    Facts,
    Position,
    SendAction,
    Skip,
    Status,
    advance,
)
from aftersale.core.journeys.model import Journey, Send
from aftersale.db.models import Customer, Order, Shipment
from aftersale.pipeline.assignments import Assignments
from aftersale.pipeline.contexts import segment_context, shipment_context
from aftersale.pipeline.runtime import Runtime
from aftersale.pipeline.send import render_context

SHIP_AFTER = timedelta(days=2)
DELIVER_AFTER = timedelta(days=3)


class PreviewError(Exception):
    """Unknown journey, customer or order: the message lists what exists."""


@dataclass(frozen=True)
class Entry:
    at: datetime  # customer's local time
    step: str
    kind: str  # send | alert | skip | end
    channel: str | None = None
    subject: str | None = None
    text: str = ""
    variant: str | None = None  # the experiment variant this message belongs to


@dataclass(frozen=True)
class VariantNote:
    """The variant the customer would get at one experiment, why, and what it sends."""

    experiment: str
    kind: str  # message | path
    step: str
    variant: str
    why: str
    # A message split's variant: its template and channels (the step's where it keeps them)
    # and its own subject lines, if any. None for a path split (its steps are the timeline).
    template: str | None = None
    channels: tuple[str, ...] = ()
    subject: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Timeline:
    journey: str
    customer: str
    segment: str | None
    entries: list[Entry]
    outcome: str
    variants: list[VariantNote] = field(default_factory=list)


def preview_journey(rt: Runtime, journey_name: str, customer_id: str | None,
                    order_id: str | None = None,
                    responses: dict[str, int] | None = None) -> Timeline:
    definitions = rt.definitions()
    journey = definitions.journeys.get(journey_name)
    if journey is None:
        raise PreviewError(f"unknown journey '{journey_name}'; known: "
                           f"{', '.join(sorted(definitions.journeys))}")
    with rt.factory() as session:
        customer, order = _customer_and_order(session, customer_id, order_id)
        start = order.placed_at if order.placed_at else rt.now()
        context = segment_context(session, customer, order, definitions.segments, start) \
            if customer_id else _sample_context(customer, order)
        shipment = _shipment_of(session, journey, order, start, customer_id is not None)
        experiments = Assignments.load(session, [customer.id] if customer_id else [], [journey])
    notes = [_variant_note(journey, e, customer.id, experiments) for e in journey.experiments()]
    variants = experiments.choices(journey, customer.id)
    segment = definitions.segments.assign(context)
    zone = ZoneInfo(customer.timezone or "UTC")
    seen_at = {"order.placed": start, "order.shipped": start + SHIP_AFTER,
               "order.delivered": start + SHIP_AFTER + DELIVER_AFTER}
    context["segment"] = segment
    context["shop"] = definitions.content.shop_switches()
    context["response"] = {}
    if shipment is not None:
        context["shipment"] = shipment_context(shipment, _moment(journey, shipment), start,
                                               definitions.shop_country)
        seen_at["shipment.updated"] = start + SHIP_AFTER
    entries: list[Entry] = []
    position, now, outcome_text = Position(), start, "still waiting"
    has_guide = bool(definitions.content.guides_for(order.items, customer.locale or "en"))
    context["order"]["has_guide"] = has_guide
    for _ in range(200):
        seen = {event: when for event, when in seen_at.items() if when <= now}
        outcome = advance(journey, position, Facts(context, seen, variants), now)
        for action in outcome.actions:
            if isinstance(action, Assigned):
                continue  # said once, in the variant notes
            entry = _entry(action, now.astimezone(zone), customer, order, definitions, rt,
                           context.get("shipment"))
            entries.append(replace(entry, variant=_variant_of(entry.step, notes)))
        last = outcome.actions[-1] if outcome.actions else None
        if isinstance(last, SendAction) and responses:
            # An assumed answer arrives an hour after the survey that asks for it.
            kind = definitions.content.survey_kind(last.template)
            if kind in responses:
                context["response"][kind] = responses[kind]
                seen_at["survey.responded"] = now + timedelta(hours=1)
        if outcome.status != Status.ACTIVE:
            outcome_text = outcome.reason
            break
        position = outcome.position
        next_event = min((w for w in seen_at.values() if w > now), default=None)
        if outcome.due_at is None and next_event is None:
            break
        now = min(t for t in (outcome.due_at, next_event) if t is not None)
    return Timeline(journey.name, customer.id, segment, entries, outcome_text, notes)


def _variant_note(journey: Journey, experiment: Experiment, customer_id: str,
                  experiments: Assignments) -> VariantNote:
    choice = experiments.choice(journey, experiment, customer_id)
    why = experiments.why(journey, experiment, customer_id)
    variant = experiment.variant(choice.variant)
    if experiment.kind != "message":
        return VariantNote(experiment.name, experiment.kind, experiment.step_key, variant.name,
                           why)
    step = next(i for i in journey.program
                if isinstance(i, Send) and i.experiment is not None
                and i.experiment.name == experiment.name)
    return VariantNote(experiment.name, experiment.kind, experiment.step_key, variant.name, why,
                       variant.template or step.template, variant.channels or step.channels,
                       variant.subject)


def _variant_of(step: str, notes: list[VariantNote]) -> str | None:
    """The variant a timeline step belongs to (its send step's, or the path it lies on)."""
    for note in notes:
        if step == note.step or step.startswith(f"{note.step}."):
            return f"{note.experiment}: {note.variant}"
    return None


def _entry(action: object, local: datetime, customer: Customer, order: Order,
           definitions: object, rt: Runtime, shipment: dict[str, Any] | None = None) -> Entry:
    from aftersale.pipeline.definitions import Definitions

    assert isinstance(definitions, Definitions)
    if isinstance(action, Skip):
        return Entry(local, action.step_key, "skip", text=action.reason)
    if isinstance(action, AlertAction):
        return Entry(local, action.step_key, "alert", text=f"team alert: {action.kind}")
    assert isinstance(action, SendAction)
    content = definitions.content
    transactional = content.is_transactional(action.template)
    # A preview cannot know whether the customer will have written to us by then: it assumes
    # not (so WhatsApp needs their opt-in) and that the WhatsApp content may be sent.
    contact = Contact(customer.email, customer.phone,
                      {"email": customer.consent_email, "sms": customer.consent_sms,
                       "whatsapp": customer.consent_whatsapp},
                      whatsapp_window_open=False,
                      order_updates={"sms": customer.order_updates_sms,
                                     "whatsapp": customer.order_updates_whatsapp})
    choice = choose_channel(action.channels, contact, transactional, {"email", "sms", "whatsapp"},
                            lambda channel: content.has(action.template, channel),
                            has_approved_whatsapp_template=True)
    if choice.channel is None:
        return Entry(local, action.step_key, "skip",
                     text=f"{action.template} not sent: {choice.reason}")
    context = render_context(customer, order, "preview", action.template, choice.channel,
                             transactional, definitions, rt.links(), shipment)
    rendered = content.render(action.template, choice.channel, customer.locale, context,
                              action.subject)
    return Entry(local, action.step_key, "send", choice.channel, rendered.subject, rendered.text)


def _shipment_of(session: object, journey: Journey, order: Order, start: datetime,
                 stored: bool) -> Shipment | None:
    """The parcel a shipment journey previews with: the order's latest, or a sample one."""
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    if not any(t in SHIPMENT_EVENTS for t in journey.triggers):
        return None
    found = session.scalars(select(Shipment).where(Shipment.order_id == order.id)
                            .order_by(Shipment.created_at.desc()).limit(1)).first() \
        if stored else None
    return found or Shipment(
        id="sample-shipment", order_id=order.id, carrier=order.carrier or "Yurtiçi Kargo",
        tracking_number=order.tracking_number, tracking_url=order.tracking_url,
        status="in_transit", status_at=start, last_update_at=start, shipped_at=start,
        estimated_delivery_at=start + DELIVER_AFTER,
        first_estimated_delivery_at=start + DELIVER_AFTER, created_at=start, updated_at=start)


def _moment(journey: Journey, shipment: Shipment) -> str:
    """The moment the journey's first trigger would enter on."""
    if journey.trigger == EventType.SHIPMENT_STALLED:
        return "stalled"
    if journey.trigger == EventType.SHIPMENT_LATE:
        estimate = shipment.estimated_delivery_at
        return f"late:{estimate.date().isoformat()}" if estimate else "late"
    return shipment.status


def _customer_and_order(session: object, customer_id: str | None,
                        order_id: str | None) -> tuple[Customer, Order]:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    if customer_id is None:
        return _sample()
    customer = session.get(Customer, customer_id)
    if customer is None:
        some = session.scalars(select(Customer.id).limit(5)).all()
        hint = f"; for example: {', '.join(some)}" if some else "; the database has none yet"
        raise PreviewError(f"unknown customer '{customer_id}'{hint}")
    query = select(Order).where(Order.customer_id == customer.id)
    if order_id:
        query = query.where(Order.id == order_id)
    order = session.scalars(query.order_by(Order.placed_at.desc()).limit(1)).first()
    if order is None:
        raise PreviewError(f"customer '{customer_id}' has no order"
                           + (f" '{order_id}'" if order_id else ""))
    return customer, order


def _sample() -> tuple[Customer, Order]:
    now = datetime.now().astimezone()
    customer = Customer(id="sample", email="ayse@example.com", phone="+905321234567",
                        first_name="Ayşe", last_name="Yılmaz", locale="tr-TR",
                        timezone="Europe/Istanbul", country="TR", consent_email=True,
                        consent_sms=True, consent_whatsapp=True, order_updates_sms=False,
                        order_updates_whatsapp=False, created_at=now, updated_at=now)
    order = Order(id="sample-order", customer_id="sample", number="#1001", placed_at=now,
                  total=Decimal("5999.00"), currency="TRY",
                  items=[{"sku": "DRN-1", "title": "Drone X", "category": "drones",
                          "quantity": 1, "price": "5999.00"}],
                  discount_codes=[], status="placed", carrier="Yurtiçi Kargo",
                  tracking_number="YK123456789", tracking_url="https://example.com/track/YK123456789")
    return customer, order


def _sample_context(customer: Customer, order: Order) -> dict[str, Any]:
    from aftersale.pipeline.contexts import customer_context, order_context

    context: dict[str, Any] = {"customer": customer_context(customer),
                               "order": order_context(order, is_first=True)}
    context["customer"].update({"orders_count": 1, "total_spent": 160.0,
                                "days_since_previous_order": None, "discount_order_share": 0.0})
    return context


def print_timeline(console: Console, timeline: Timeline) -> None:
    console.print(f"[bold]{timeline.journey}[/] for customer {timeline.customer} "
                  f"(segment: {timeline.segment or 'none - would not enter'})")
    for note in timeline.variants:
        console.print(_describe(note), highlight=False)
    for entry in timeline.entries:
        when = entry.at.strftime("%a %d %b %Y %H:%M %Z")
        if entry.kind == "send":
            title = f"{when} · step {entry.step} · {entry.channel}"
            if entry.variant:
                title += f" · {entry.variant}"
            body = Text()
            if entry.subject:
                body.append(entry.subject + "\n\n", style="bold")
            body.append(entry.text)
            console.print(Panel(body, title=title, title_align="left"))
        else:
            console.print(Text(f"{when} · step {entry.step} · {entry.kind}: {entry.text}"))
    console.print(f"outcome: {timeline.outcome}")



def _describe(note: VariantNote) -> str:
    split = "message split" if note.kind == "message" else "path split"
    line = (f"experiment {note.experiment} ({split} at step {note.step}): variant "
            f"{note.variant}, {note.why}")
    if note.template is not None:
        line += f"; sends {note.template} by {', '.join(note.channels)}"
    if note.subject:
        subjects = ", ".join(f"{locale}: {text!r}" for locale, text in note.subject.items())
        line += f"; subject {subjects}"
    return line
