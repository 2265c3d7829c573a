"""SQLAlchemy 2 models. Every time is stored in UTC.

Uniqueness constraints carry the exactly-once rules, so they hold even with several workers:
an inbound event id is stored once, an enrollment is entered once per its re-entry key, and a
message exists once per (enrollment, step).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from aftersale.core.clock import as_utc


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which forgets the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


# BigInteger ids autoincrement on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON,
    }


class InboxEvent(Base):
    """The durable inbox: every inbound event, stored before anything acts on it."""

    __tablename__ = "inbox_events"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(12), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_inbox_status_seq", "status", "seq"),)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    consent_email: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_whatsapp: Mapped[bool] = mapped_column(Boolean, default=False)
    # consent_* is marketing consent; these are the transactional opt-ins ("text me about my
    # order"), which let order updates go by SMS / WhatsApp (aftersale.core.channel_choice).
    order_updates_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    order_updates_whatsapp: Mapped[bool] = mapped_column(Boolean, default=False)
    # Column -> occurred_at (ISO, UTC) of the newest event that stated it: a late or requeued
    # event must not overwrite a newer fact (aftersale.pipeline.apply_events). NULL: none recorded yet.
    fact_times: Mapped[dict[str, Any] | None]
    # WhatsApp allows free-form text only within 24 h of the customer's last message to us.
    whatsapp_last_inbound_at: Mapped[datetime | None]
    # Stable and unique (aftersale.core.links.referral_code): orders carrying it are referrals.
    referral_code: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Set by ``aftersale forget`` (aftersale.pipeline.erasure): personal data erased, counts kept.
    forgotten_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("referral_code", name="uq_customer_referral_code"),)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    number: Mapped[str | None] = mapped_column(String(64))
    placed_at: Mapped[datetime]
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    items: Mapped[list[Any]]
    discount_codes: Mapped[list[Any]]
    referral_code: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(12), default="placed")
    shipped_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    tracking_url: Mapped[str | None] = mapped_column(Text)
    # The first time any of its parcels had a problem (attempted, delayed, exception,
    # returned, stalled, late): ``order.had_delivery_problem`` and the delivery metrics.
    delivery_problem_at: Mapped[datetime | None]

    # Metrics walk each customer's orders in time (the next order after the anchor).
    __table_args__ = (Index("ix_orders_customer_placed", "customer_id", "placed_at"),)


class Shipment(Base):
    """One parcel of an order (a Shopify fulfillment, an AfterShip tracking). The order is
    delivered when all its shipments are; ``status`` only moves forward
    (aftersale.core.shipments.takes_over), every carrier word is in ``shipment_updates``."""

    __tablename__ = "shipments"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    tracking_url: Mapped[str | None] = mapped_column(Text)
    destination_country: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(24))
    raw_status: Mapped[str | None] = mapped_column(String(64))
    status_at: Mapped[datetime]  # when the carrier reported ``status``
    last_update_at: Mapped[datetime]  # the newest carrier update of any status: stalled reads it
    last_message: Mapped[str | None] = mapped_column(Text)
    first_estimated_delivery_at: Mapped[datetime | None]  # on-time is judged against this one
    estimated_delivery_at: Mapped[datetime | None]  # the latest estimate
    shipped_at: Mapped[datetime | None]  # the first moving status
    delivered_at: Mapped[datetime | None]
    problem_at: Mapped[datetime | None]  # the first problem status or derived moment
    # The derived moments, each raised once: stalled once per shipment, late once per estimate.
    stalled_at: Mapped[datetime | None]
    # The largest stalled threshold (business days of silence) raised for it: journeys may
    # set their own, and each threshold is raised once (aftersale.pipeline.shipment_checks).
    stalled_days: Mapped[int | None] = mapped_column(Integer)
    late_for: Mapped[datetime | None]  # the estimated date the last shipment.late was about
    late_at: Mapped[datetime | None]  # when that shipment.late was raised (wait_for reads it)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_shipments_tracking", "order_id", "tracking_number"),
        # The clock check walks the shipments still on their way.
        Index("ix_shipments_open", "delivered_at", "status"),
    )


class ShipmentUpdate(Base):
    """Every carrier moment of a shipment as it was reported, in or out of order."""

    __tablename__ = "shipment_updates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"))
    event_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(24))
    raw_status: Mapped[str | None] = mapped_column(String(64))
    happened_at: Mapped[datetime]
    message: Mapped[str | None] = mapped_column(Text)
    estimated_delivery_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("shipment_id", "event_id", name="uq_shipment_update_event"),
        Index("ix_shipment_updates_timeline", "shipment_id", "happened_at"),
    )


class SurveyResponse(Base):
    __tablename__ = "survey_responses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    order_id: Mapped[str | None] = mapped_column(String(128), index=True)
    message_id: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(8))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    responded_at: Mapped[datetime]
    # email (survey link), sms or whatsapp (reply), api (an event from the shop's own tools)
    source: Mapped[str | None] = mapped_column(String(12))
    updated_at: Mapped[datetime | None]

    # One answer per survey message: clicking another score changes it, never adds one.
    __table_args__ = (UniqueConstraint("message_id", name="uq_survey_response_message"),
                      Index("ix_survey_responses_customer_kind", "customer_id", "kind",
                            "responded_at"))


class SurveyClick(Base):
    """A fetch of a survey e-mail's link (a score or the hidden honeypot), judged by
    :mod:`aftersale.core.scanners`. ``pending``: looks like a person, waiting out the burst
    window; ``answer``: became the answer (``event_id``, the inbox event); ``suspect``: most
    likely a mail scanner (``reason``), never an answer. No address or user agent is kept."""

    __tablename__ = "survey_clicks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))
    score: Mapped[int | None] = mapped_column(Integer)  # None: the honeypot
    clicked_at: Mapped[datetime]
    verdict: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(16))
    event_id: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_survey_clicks_message", "message_id", "clicked_at"),
                      Index("ix_survey_clicks_verdict", "verdict", "clicked_at"))


class DefinitionSet(Base):
    """A valid set of journeys, segments and content, kept so the engine can go on running the
    last valid one when the files are edited into an invalid state."""

    __tablename__ = "definition_sets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    journeys: Mapped[dict[str, Any]]
    segments: Mapped[dict[str, Any]]
    content: Mapped[dict[str, Any]]


class JourneyVersion(Base):
    __tablename__ = "journey_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(16))
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("journey", "version"),)


class Enrollment(Base):
    __tablename__ = "enrollments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(100))
    journey_version_id: Mapped[int] = mapped_column(ForeignKey("journey_versions.id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    entry_key: Mapped[str] = mapped_column(String(140))
    # The parcel a shipment-triggered enrollment is about (``shipment.*`` in its conditions).
    shipment_id: Mapped[str | None] = mapped_column(String(128))
    segment: Mapped[str] = mapped_column(String(64))
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(12))
    pc: Mapped[int] = mapped_column(Integer, default=0)
    wait_until: Mapped[datetime | None]
    waiting_for: Mapped[str | None] = mapped_column(String(40))
    due_at: Mapped[datetime | None]
    enrolled_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("journey", "customer_id", "entry_key", name="uq_enrollment_entry"),
        Index("ix_enrollments_due", "status", "due_at"),
        # Metrics: each customer's first enrollment in a segment (the anchor order).
        Index("ix_enrollments_segment_customer", "segment", "customer_id", "enrolled_at", "id"),
        Index("ix_enrollments_journey_customer", "journey", "customer_id", "enrolled_at", "id"),
        Index("ix_enrollments_customer_enrolled", "customer_id", "enrolled_at", "id"),
    )


class Message(Base):
    """One message per (enrollment, step); the row is written before any provider is called."""

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    step_key: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    journey: Mapped[str] = mapped_column(String(100))
    template: Mapped[str] = mapped_column(String(100))
    channels: Mapped[list[Any]]
    channel: Mapped[str | None] = mapped_column(String(12))
    recipient: Mapped[str | None] = mapped_column(String(320))
    locale: Mapped[str | None] = mapped_column(String(35))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    status_reason: Mapped[str | None] = mapped_column(Text)
    # What the provider reported last (delivered, bounced, read, ...); history in delivery_events.
    delivery_status: Mapped[str | None] = mapped_column(String(16))
    # SMS cost depends on the encoding: one Turkish or Polish letter turns GSM-7 into UCS-2.
    sms_encoding: Mapped[str | None] = mapped_column(String(8))
    sms_segments: Mapped[int | None] = mapped_column(Integer)
    skips: Mapped[list[Any] | None] = mapped_column(JSON)
    provider: Mapped[str | None] = mapped_column(String(20))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]
    sending_at: Mapped[datetime | None]
    # The claim a ``sending`` row belongs to; recording a provider's answer matches it.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    # Committed just before the provider call: after a crash only such a row is in doubt.
    call_started_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # A survey asked by SMS/WhatsApp gets at most one "please answer with a number" reply.
    clarified_at: Mapped[datetime | None]
    # A message split's subject line per locale ("*": every locale), rendered in place of the
    # template's own; None: the template's.
    subject_override: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_key", name="uq_message_step"),
        Index("ix_messages_status_due", "status", "due_at"),
        Index("ix_messages_customer_sent", "customer_id", "status", "sent_at"),
        # The funnel's sends, grouped in index order without reading the wide rows (bodies).
        Index("ix_messages_funnel", "journey", "step_key", "template", "channel", "status",
              "sent_at", "sending_at"),
    )


class AlertRecord(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # None for an alert about no customer (an experiment's decision: ``details`` says which).
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    step_key: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    order_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(40))
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    # Delivery to the team, resumable like messages: pending -> delivered | failed. Each
    # route (e-mail to ALERT_EMAIL, POST to ALERT_WEBHOOK_URL) records its own outcome:
    # pending | sent | skipped (not configured) | failed.
    status: Mapped[str] = mapped_column(String(12), default="pending")
    email_status: Mapped[str] = mapped_column(String(12), default="pending")
    webhook_status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("enrollment_id", "step_key", name="uq_alert_step"),
                      Index("ix_alerts_status", "status", "next_attempt_at"))


class Referral(Base):
    """An order that carried another customer's referral code."""

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32))
    referrer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    order_id: Mapped[str] = mapped_column(String(128), unique=True)
    # The referred customer's first order: only these count as a referral of a new customer.
    first_order: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class ReferralClick(Base):
    """A visit of /r/{code}. No IP address or user agent: we only count."""

    __tablename__ = "referral_clicks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), index=True)
    referrer_id: Mapped[str | None] = mapped_column(String(128))
    clicked_at: Mapped[datetime]


class SandboxOutbox(Base):
    """What the sandbox channel "delivered": the stand-in for a provider's own log."""

    __tablename__ = "sandbox_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    channel: Mapped[str] = mapped_column(String(12))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime]


class RuntimeState(Base):
    __tablename__ = "runtime_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class DeliveryEvent(Base):
    """A provider's report about one of our messages, normalized, with the raw payload kept."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_event_id: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(40))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(20))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    raw: Mapped[dict[str, Any]]

    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id", name="uq_delivery_event"),
        # Look-ups by message, and the funnel's stages read from the index alone.
        Index("ix_delivery_events_message_stage", "message_id", "occurred_at", "kind"),
    )


class Suppression(Base):
    """An address we must not message on a channel (bounce, spam report, STOP, unsubscribe).
    Lifting it (START, a re-subscribe) keeps the row with ``lifted_at`` set, for the record."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(12))
    address: Mapped[str] = mapped_column(String(320))
    customer_id: Mapped[str | None] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
    lifted_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("channel", "address", name="uq_suppression_address"),)


class InboundMessage(Base):
    """An SMS or WhatsApp message a customer sent us (replies, STOP, survey answers)."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_message_id: Mapped[str] = mapped_column(String(100), unique=True)
    channel: Mapped[str] = mapped_column(String(12))
    from_address: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(128), index=True)
    received_at: Mapped[datetime]
    raw: Mapped[dict[str, Any]]


class RateLimitState(Base):
    """The next free send slot per provider (wall-clock epoch seconds), shared by all senders."""

    __tablename__ = "rate_limits"

    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float)


class MetricsSnapshot(Base):
    """One compute-metrics result, kept for trends (NPS over weeks, lift as data matures)."""

    __tablename__ = "metrics_snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    as_of: Mapped[datetime] = mapped_column(index=True)
    period_from: Mapped[datetime | None]
    period_to: Mapped[datetime]
    report: Mapped[dict[str, Any]]  # MetricsReport as its JSON schema



class ExperimentAssignment(Base):
    """Who got which variant of an experiment: the first random draw per customer, with the
    experiment's version then. A customer keeps it on re-entry; results count these rows."""

    __tablename__ = "experiment_assignments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(100))
    experiment: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    step_key: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("journey", "experiment", "customer_id", name="uq_experiment_customer"),
        Index("ix_experiment_assignments_version", "journey", "experiment", "version",
              "variant", "assigned_at"),
        Index("ix_experiment_assignments_customer", "customer_id"),
    )


class ExperimentDecision(Base):
    """The end of one version of an experiment: a winner the rule found (``winner``), or no
    difference at the horizon (``no_difference``: the control stays). New arrivals get
    ``variant`` from then on; the figures are those the decision was taken on."""

    __tablename__ = "experiment_decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(100))
    experiment: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))  # winner | no_difference
    variant: Mapped[str] = mapped_column(String(64))  # what new arrivals get
    decided_at: Mapped[datetime]
    figures: Mapped[dict[str, Any]]  # the ExperimentResult it was decided on, as JSON

    __table_args__ = (
        UniqueConstraint("journey", "experiment", "version", name="uq_experiment_decision"),
    )
