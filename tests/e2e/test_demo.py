"""A short demo end to end: its printed numbers must be the database's numbers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from aftersale.config import Settings
from aftersale.db.models import (
    AlertRecord,
    Customer,
    Enrollment,
    ExperimentAssignment,
    InboxEvent,
    Message,
    Order,
    SandboxOutbox,
    Shipment,
    Suppression,
    SurveyResponse,
)
from aftersale.demo.runner import run_demo

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_a_short_demo_is_consistent_with_its_database(
        tmp_path: Path, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, content = definitions_dirs
    settings = Settings(journeys_dir=journeys, content_dir=content,
                        _env_file=None)  # type: ignore[call-arg]
    out = Console(record=True, width=140)
    database = tmp_path / "demo.db"
    result = run_demo(settings, out, customers=150, days=30, seed=3, database=database,
                      report_path=tmp_path / "report.html")
    printed = out.export_text()
    assert "Per-segment summary" in printed and "week  1/" in printed
    metrics = result["metrics"]  # read back from the snapshot compute-metrics stored
    assert "Holdout lift" in printed and (tmp_path / "report.html").stat().st_size > 10_000
    everyone = next(s for s in metrics.segments if s.segment == "all")

    engine = create_engine(f"sqlite:///{database}")
    with Session(engine) as session:
        processed = session.scalar(select(func.count()).select_from(InboxEvent)
                                   .where(InboxEvent.status == "processed"))
        failed = session.scalars(select(InboxEvent.error).where(InboxEvent.status == "failed")).all()
        sent = session.scalars(select(Message).where(Message.status == "sent")).all()
        outbox = session.scalars(select(SandboxOutbox.message_id)
                                 .where(SandboxOutbox.message_id.like("msg_%"))).all()
        alert_mails = session.scalars(select(SandboxOutbox.recipient)
                                      .where(SandboxOutbox.message_id.like("alert_%"))).all()
        alerts = session.scalar(select(func.count()).select_from(AlertRecord))
        steps = Counter((m.enrollment_id, m.step_key) for m in session.scalars(select(Message)))
        treated = dict(session.execute(
            select(Enrollment.segment, func.count(func.distinct(Enrollment.customer_id)))
            .where(Enrollment.holdout.is_(False)).group_by(Enrollment.segment)).all())
        holdout_messages = session.scalar(
            select(func.count()).select_from(Message)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Enrollment.holdout.is_(True)))
        answers = session.scalar(select(func.count()).select_from(SurveyResponse))
        customers_enrolled = session.execute(select(Enrollment.customer_id).distinct()).all()
        customers = {c.id: c for c in session.scalars(select(Customer))}
        opted_out = {(s.customer_id, s.channel): s.created_at
                     for s in session.scalars(select(Suppression))}
        cancelled = set(session.scalars(select(Order.id).where(Order.status == "cancelled")))
        after_cancel = session.scalar(
            select(func.count()).select_from(Message)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Message.status == "sent", Enrollment.order_id.in_(cancelled),
                   Message.template != "shipping_update"))

        drawn = session.execute(
            select(ExperimentAssignment.variant, Message.template)
            .join(Message, (Message.enrollment_id == ExperimentAssignment.enrollment_id)
                  & (Message.step_key == ExperimentAssignment.step_key))).all()

    # The onboarding experiment: printed at the end, each draw sent its variant's template,
    # and the figures count the draws stored.
    [experiment] = result["experiments"].experiments
    assert (experiment.journey, experiment.experiment) == ("onboarding", "tutorial_offer")
    assert "onboarding / tutorial_offer" in printed and "Verdict:" in printed
    templates = {"guide": "product_tutorial", "guide_and_offer": "product_tutorial_offer"}
    assert drawn and all(template == templates[variant] for variant, template in drawn)
    assert {v.name: v.assigned for v in experiment.variants} == {
        name: sum(1 for variant, _ in drawn if variant == name) for name in templates}

    summary = result["summary"]
    assert failed == [] and summary["failed"] == 0
    assert summary["events"] == processed
    assert summary["sent"] == len(sent) > 0
    assert sorted(outbox) == sorted(m.id for m in sent)  # each sent message delivered once
    assert max(steps.values()) == 1  # one message per (enrollment, step)
    assert holdout_messages == 0
    assert alerts > 0 and alert_mails == ["team@example.com"] * alerts  # the team heard of each
    assert answers > 0
    assert after_cancel == 0
    rows = {r["segment"]: r for r in result["report"]}
    assert {s: r["enrolled"] for s, r in rows.items()} == treated
    assert sum(r["email"] + r["sms"] + r["whatsapp"] for r in rows.values()) == len(sent)
    assert sum(r["answered"] for r in rows.values()) <= answers
    assert everyone.customers == len({c for c, in customers_enrolled})
    assert everyone.metrics["messages_per_customer"].value == round(len(sent) / everyone.customers, 2)
    funnel_sent = sum(step.sent for step in metrics.funnel)
    # the simulated provider reports delivery a minute after the send: a message sent in the
    # demo's last minute is reported after the metrics' time
    reported = [m for m in sent if m.sent_at is not None
                and m.sent_at.replace(tzinfo=UTC) + timedelta(minutes=1) <= metrics.as_of]
    assert funnel_sent == len(sent) and sum(step.delivered for step in metrics.funnel) == len(
        reported)
    for message in sent:  # marketing went only where the customer agreed (at the time)
        customer = customers[message.customer_id]
        if not transactional(message) and not getattr(
                customer, f"consent_{message.channel}"):
            withdrawn = opted_out.get((customer.id, message.channel))
            assert withdrawn is not None and message.sent_at is not None
            assert withdrawn > message.sent_at
    # tracking links: by SMS / WhatsApp only with consent or an order-updates opt-in (the demo's
    # customers write on WhatsApp only when they gave WhatsApp consent), and still sent there
    tracking = [m for m in sent if transactional(m)]
    for message in tracking:
        customer = customers[message.customer_id]
        if message.channel != "email":
            assert (getattr(customer, f"consent_{message.channel}")
                    or getattr(customer, f"order_updates_{message.channel}")
                    or (message.customer_id, message.channel) in opted_out)
    assert {m.channel for m in tracking} == {"email", "sms", "whatsapp"}
    check_deliveries(printed, result, database)


def transactional(message: Message) -> bool:
    """Order updates: the tracking link and the delivery-care messages (consent rules of
    their own: e-mail always, SMS / WhatsApp with consent or the order-updates opt-in)."""
    return message.template == "shipping_update" or message.journey == "delivery-care"


def check_deliveries(printed: str, result: dict[str, Any], database: Path) -> None:
    """The shop sends only shipment.updated; process-events makes the shipments, the orders'
    shipped / delivered moments and their delivery problems, and the delivery section prints
    the database's numbers."""
    assert "Delivery (from the database)" in printed
    assert "Answers by delivery experience" in printed
    delivery = result["delivery"]
    engine = create_engine(f"sqlite:///{database}")
    with Session(engine) as session:
        moments = session.execute(select(InboxEvent.type, InboxEvent.event_id).where(
            InboxEvent.type.in_(["order.shipped", "order.delivered"]))).tuples().all()
        shipments = session.scalar(select(func.count()).select_from(Shipment))
        delivered = session.scalar(select(func.count()).select_from(Shipment)
                                   .where(Shipment.status == "delivered"))
        problems = session.scalar(select(func.count()).select_from(Order)
                                  .where(Order.delivery_problem_at.is_not(None)))
        shipped = session.scalar(select(func.count()).select_from(Order)
                                 .where(Order.shipped_at.is_not(None)))
        nps_answers = session.scalar(select(func.count()).select_from(SurveyResponse)
                                     .where(SurveyResponse.kind == "nps"))
    # every order.shipped / order.delivered was derived from the carriers' updates
    assert [i for _, i in moments if not i.startswith("derived:")] == []
    assert {t for t, _ in moments} == {"order.shipped", "order.delivered"}
    assert delivery["parcels"] == shipments == sum(delivery["statuses"].values())
    assert delivery["statuses"]["delivered"] == delivered > 0.8 * shipments
    assert delivery["problem_orders"].numerator == problems > 0
    assert delivery["problem_orders"].denominator == shipped
    assert sum(g.nps.n for g in delivery["by_experience"].values()) == nps_answers > 0
