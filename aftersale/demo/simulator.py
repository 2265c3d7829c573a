"""The demo's outside world: the simulator hands the shop's events to the inbox when their
time comes, and after each dispatch it lets the customers who got a message react (answer a
survey, buy again) by sending events through the same intake.

Deliveries colour the reactions: the simulator knows, from the carriers' own updates, when an
order's delivery went wrong (shop.delivery_problems), and sees every message sent, so it knows
whether the customer read a delivery-care message about it first. A survey about that
order is answered accordingly (behaviour.react's `experience`), and a customer let down may
stop placing the orders they meant to (behaviour.keeps_buying).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aftersale.core.clock import SimulatedClock, as_utc
from aftersale.core.errors import EventError
from aftersale.core.events import parse_event
from aftersale.db.models import Enrollment, Message
from aftersale.demo.behaviour import ON_TIME, experience_of, keeps_buying, react
from aftersale.demo.shop import (
    SyntheticShop,
    basket,
    currency_for,
    delivery_problems,
    fulfilment_events,
    order_event,
)
from aftersale.intake.inbox import store_events
from aftersale.metrics.experiment_decisions import decide
from aftersale.orchestration.passes import dispatch_due, drain_inbox
from aftersale.pipeline.advance import DispatchCounts
from aftersale.pipeline.apply_events import ProcessCounts
from aftersale.pipeline.definitions import Definitions
from aftersale.pipeline.runtime import Runtime
from aftersale.pipeline.send_outcomes import Delivery, DeliveryKind, Inbound, apply_deliveries, apply_inbound
from aftersale.pipeline.suppression import set_consent, suppress
from aftersale.surveys.answers import store_answer, survey_message
from aftersale.surveys.sms_answers import SurveyReplies

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TICK = timedelta(hours=4)  # fine enough for waits measured in days
TAIL = timedelta(days=60)  # after the last order, let journeys run to their end
CARE_JOURNEY = "delivery-care"  # its messages about an order's delivery problem handle it


@dataclass(frozen=True)
class Reply:
    """A customer's own message to us, as the Twilio inbound webhook would deliver it."""

    customer_id: str
    channel: str  # sms | whatsapp | email (email: the unsubscribe link)
    body: str
    key: str


@dataclass(frozen=True)
class Click:
    """A score link in a survey e-mail, clicked: what ``GET /s/{token}?score=N`` stores."""

    message_id: str
    kind: str
    score: int
    comment: str | None


Item = dict[str, Any] | Reply | Click | Delivery


@dataclass(order=True)
class _Scheduled:
    at: datetime
    seq: int
    item: Item = field(compare=False)

WHATSAPP_QUESTION = {"en": "Hi! Any news on my order?", "tr": "Merhaba, siparişim ne durumda?",
                     "pl": "Dzień dobry, co z moim zamówieniem?"}


@dataclass
class Simulator:
    """The outside world: the shop's own events and customers' reactions, fed on time."""

    shop: SyntheticShop
    rng: random.Random
    queue: list[_Scheduled] = field(default_factory=list)
    next_order: int = 0
    watermark: datetime = EPOCH  # messages sent after it are new to the customers
    seq: int = 0
    rejected: list[str] = field(default_factory=list)
    surveys: SurveyReplies | None = None  # what the Twilio inbound webhook answers surveys with
    problems: dict[str, datetime] = field(default_factory=dict)  # order -> when it went wrong
    problems_of: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)  # customer
    cared: dict[str, datetime] = field(default_factory=dict)  # order -> care message first read
    judged: set[str] = field(default_factory=set)  # problem orders a customer has weighed
    gave_up: set[str] = field(default_factory=set)  # customers who stopped buying after one
    dropped: set[str] = field(default_factory=set)  # the orders they did not place after all
    decided_on: date | None = None  # the simulated day experiments were last judged

    def __post_init__(self) -> None:
        self.note_problems(self.shop.events)

    def note_problems(self, events: list[dict]) -> None:
        customers = {e["order"]["id"]: e["customer"]["id"] for e in events if "order" in e}
        for order, at in delivery_problems(events).items():
            self.problems[order] = at
            self.problems_of.setdefault(customers[order], []).append((at, order))

    def experience(self, order_id: str | None, at: datetime) -> str:
        """The customer's delivery experience of an order, as it stands at `at`."""
        if order_id is None:
            return ON_TIME
        return experience_of(self.problems.get(order_id), self.cared.get(order_id), at)

    def still_buys(self, placed: dict[str, Any]) -> bool:
        """Whether a customer places this order they meant to: once per delivery problem in
        the window before it, they weigh it (how it was handled, as of now)."""
        customer, when = placed["customer"]["id"], as_utc(
            datetime.fromisoformat(placed["occurred_at"]))
        if when <= self.shop.start:
            return True  # the shop's history happened as it did
        if customer in self.gave_up:
            return False
        for at, order in self.problems_of.get(customer, ()):
            if at <= self.shop.start or at > when or order in self.judged or order in self.dropped:
                continue
            self.judged.add(order)
            if not keeps_buying(self.shop.personas[customer], self.experience(order, when),
                                self.rng):
                self.gave_up.add(customer)
                return False
        return True

    def schedule(self, at: datetime, item: Item) -> None:
        self.seq += 1
        heapq.heappush(self.queue, _Scheduled(as_utc(at), self.seq, item))

    def due(self, after: datetime, until: datetime) -> list[Item]:
        items: list[Item] = []
        for event in self.shop.events_between(after, until):
            order = event["order"]["id"]
            if order in self.dropped:
                continue
            if event["type"] == "order.placed":
                if not self.still_buys(event):
                    self.dropped.add(order)
                    continue
                self.maybe_ask_on_whatsapp(event)
            items.append(event)
        while self.queue and self.queue[0].at <= until:
            items.append(heapq.heappop(self.queue).item)
        return items

    def maybe_ask_on_whatsapp(self, event: dict[str, Any]) -> None:
        """Some customers who use WhatsApp write to the shop after ordering, which opens the
        24-hour window for free-form WhatsApp messages."""
        persona = self.shop.personas.get(event["customer"]["id"])
        if persona is None or not persona.phone or not persona.consent.get("whatsapp"):
            return
        if self.rng.random() < 0.5:
            when = datetime.fromisoformat(event["occurred_at"]) + timedelta(
                hours=self.rng.uniform(20, 60))
            self.schedule(when, Reply(persona.customer_id, "whatsapp",
                                      WHATSAPP_QUESTION.get(persona.language, "Hi!"),
                                      f"wa-{event['id']}"))

    def react_to(self, message: Message, definitions: Definitions, sent_at: datetime,
                 order_id: str | None = None) -> None:
        """A customer reacts to a message about `order_id` (the enrollment's order)."""
        persona = self.shop.personas.get(message.customer_id)
        if persona is None or message.channel is None:
            return
        sent_at = as_utc(sent_at)
        kind = definitions.content.survey_kind(message.template)
        reaction = react(persona, message.template, message.channel, kind, self.rng,
                         self.experience(order_id, sent_at))
        if message.journey == CARE_JOURNEY and order_id is not None and reaction.opened:
            # an apology handles the problem once it is read (an unread e-mail does not)
            seen = sent_at + reaction.reply_delay
            self.cared[order_id] = min(self.cared.get(order_id, seen), seen)
        self.report_delivery(message, sent_at, reaction.reply_delay, reaction.opened,
                             reaction.clicked)
        if kind is not None and reaction.survey_score is not None:
            # Answered the way a real customer would: a score link in an e-mail, a text reply
            # ("9 great service") on SMS and WhatsApp.
            answer: Click | Reply
            if message.channel == "email":
                answer = Click(message.id, kind, reaction.survey_score, reaction.comment)
            else:
                text = f"{reaction.survey_score} {reaction.comment or ''}".strip()
                answer = Reply(persona.customer_id, message.channel, text, f"answer-{message.id}")
            self.schedule(sent_at + reaction.reply_delay, answer)
        if reaction.buys_again_in is not None:
            self.buy(persona.customer_id, sent_at + reaction.buys_again_in)
        if reaction.unsubscribed:
            body = "STOP" if message.channel != "email" else "unsubscribe"
            self.schedule(sent_at + reaction.reply_delay,
                          Reply(persona.customer_id, message.channel, body, f"stop-{message.id}"))

    def report_delivery(self, message: Message, sent_at: datetime, delay: timedelta,
                        opened: bool, clicked: bool) -> None:
        """What the provider's webhook would report: delivered, then opened (read, on
        WhatsApp) and clicked, as the customer did. SMS reports no opens."""
        kinds = [(DeliveryKind.DELIVERED, sent_at + timedelta(minutes=1))]
        if opened and message.channel != "sms":
            kinds.append((DeliveryKind.READ if message.channel == "whatsapp" else DeliveryKind.OPENED,
                          sent_at + delay))
        if clicked:
            kinds.append((DeliveryKind.CLICKED, sent_at + delay + timedelta(minutes=1)))
        for kind, when in kinds:
            self.schedule(when, Delivery(
                provider="demo", provider_event_id=f"{message.id}-{kind.value}", kind=kind,
                message_id=message.id, provider_message_id=None, recipient=message.recipient,
                occurred_at=when, channel=message.channel))

    def buy(self, customer_id: str, when: datetime) -> None:
        persona = self.shop.personas[customer_id]
        self.next_order += 1
        number = self.shop.order_count + self.next_order
        order_id = f"o-{number:06d}"
        currency = currency_for(persona.country)
        items = basket(persona, self.rng, currency)
        placed = order_event(persona, order_id, f"#{1000 + number}", when, items, currency, [],
                             None, f"evt-{order_id}-placed")
        self.schedule(when, placed)
        follows = fulfilment_events(persona, order_id, when, self.rng, len(items))
        self.note_problems([placed, *follows])
        for follow in follows:
            self.schedule(datetime.fromisoformat(follow["occurred_at"]), follow)


def feed(rt: Runtime, sim: Simulator, items: list[Item]) -> int:
    """Events go through the real intake (the validation a POST /events gets); replies and
    clicks through what the Twilio inbound webhook, the survey and the unsubscribe pages do once
    a request is verified."""
    parsed = []
    for raw in items:
        if not isinstance(raw, dict):
            continue
        try:
            parsed.append(parse_event(raw))
        except EventError as exc:
            sim.rejected.append(f"{raw.get('id')}: {exc}")
    with rt.factory() as session, session.begin():
        stored = store_events(session, parsed, "demo", rt.now()).stored
        reports: list[Delivery] = []  # consecutive reports go together, as a webhook batch
        for item in items:
            if isinstance(item, Delivery):
                reports.append(item)
                continue
            if reports:
                apply_deliveries(session, reports, rt.now())
                reports = []
            if isinstance(item, Reply):
                _reply(session, sim, item, rt.now())
            elif isinstance(item, Click):
                survey = survey_message(session, item.message_id, item.kind)
                if survey is not None:
                    store_answer(session, survey, item.score, item.comment, "email", rt.now())
        if reports:
            apply_deliveries(session, reports, rt.now())
    return stored


def _reply(session: Session, sim: Simulator, reply: Reply, now: datetime) -> None:
    persona = sim.shop.personas[reply.customer_id]
    if reply.channel == "email":
        if persona.email:
            suppress(session, "email", persona.email, persona.customer_id, "unsubscribe",
                     "unsubscribe_link", now)
            set_consent(session, "email", False, now, customer_id=persona.customer_id)
        return
    if persona.phone:
        apply_inbound(session, Inbound(
            provider="demo", provider_message_id=reply.key, channel=reply.channel,  # type: ignore[arg-type]  # sms or whatsapp: email returned above
            from_address=persona.phone, to_address=None, body=reply.body), now,
            surveys=sim.surveys)


def let_customers_react(rt: Runtime, sim: Simulator, definitions: Definitions) -> None:
    """Customers see the messages sent since the last look (simulated time only moves on)."""
    with rt.factory() as session:
        rows = session.execute(
            select(Message, Enrollment.order_id)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Message.status == "sent", Message.sent_at > sim.watermark,
                   Message.sent_at <= rt.now())
            .order_by(Message.sent_at, Message.enrollment_id, Message.step_key)).tuples().all()
    sim.watermark = rt.now()
    for message, order_id in rows:
        sim.react_to(message, definitions, message.sent_at or rt.now(), order_id)


def simulate(rt: Runtime, sim: Simulator, definitions: Definitions, until: datetime
             ) -> tuple[ProcessCounts, DispatchCounts]:
    """Step the clock to ``until``: feed what happened, process, dispatch, react."""
    assert isinstance(rt.clock, SimulatedClock)
    processed, dispatched = ProcessCounts(), DispatchCounts()
    while rt.now() < until:
        before = rt.now()
        rt.clock.set(min(before + TICK, until))
        feed(rt, sim, sim.due(before, rt.now()))
        processed.add(drain_inbox(rt, definitions, due_by=rt.now()))
        counts = dispatch_due(rt, definitions)
        dispatched.add(counts)
        if counts.sent:
            let_customers_react(rt, sim, definitions)
        if rt.now().date() != sim.decided_on:
            decide_daily(rt, sim, definitions)
    return processed, dispatched


def decide_daily(rt: Runtime, sim: Simulator, definitions: Definitions) -> None:
    """What the daily compute-metrics run does for experiments, on the simulated clock: an
    ``auto`` experiment whose winner is clear is decided, and new arrivals get the winner."""
    sim.decided_on = rt.now().date()
    with rt.factory() as session, session.begin():
        decide(session, definitions, rt.now())
