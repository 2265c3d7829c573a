"""``aftersale demo``: a synthetic shop through the real intake, engine and sandbox channels,
run as the demo-shop Prefect flow; every number printed at the end is read back from the
database."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock, as_utc
from aftersale.db.models import (
    AlertRecord,
    DeliveryEvent,
    Enrollment,
    Message,
    MetricsSnapshot,
    Order,
    Shipment,
    SurveyResponse,
)
from aftersale.demo.behaviour import EXPERIENCES, HANDLED, ON_TIME, PROBLEM, experience_of
from aftersale.demo.shop import build_shop
from aftersale.demo.simulator import CARE_JOURNEY, TAIL, Simulator, feed, simulate
from aftersale.metrics.compute import nps_by_month
from aftersale.metrics.experiments import experiment_results
from aftersale.metrics.experiments import print_table as print_experiments
from aftersale.metrics.model import MetricsReport, Nps, Rate
from aftersale.metrics.present import format_metric, print_table
from aftersale.metrics.report import write_report
from aftersale.orchestration.compute_metrics import compute_metrics
from aftersale.orchestration.demo_shop import demo_shop, simulating
from aftersale.orchestration.flow_context import using_runtime
from aftersale.pipeline.runtime import Runtime, open_runtime
from aftersale.pipeline.send_outcomes import DeliveryKind
from aftersale.surveys.sms_answers import SurveyReplies, load_reply_texts, survey_kinds


def run_demo(settings: Settings, out: Console, customers: int, days: int, seed: int,
             database: Path, report_path: Path = Path("report.html")) -> dict[str, Any]:
    started = time.monotonic()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    # The team's alert e-mails land in the sandbox too, unless a real address is configured.
    settings = settings.model_copy(update={
        "database_url": f"sqlite:///{database}",
        "alert_email": settings.alert_email or "team@example.com"})
    shop = build_shop(customers=customers, days=days, seed=seed)
    out.print(f"[bold]aftersale demo[/]: {len(shop.personas):,} customers, "
              f"{len(shop.events):,} shop events over {days} days (seed {seed})")
    rt = open_runtime(settings, SimulatedClock(shop.start))
    sim = Simulator(shop, random.Random(f"demo-reactions:{seed}"))
    sim.surveys = SurveyReplies(survey_kinds(rt.definitions().content), settings.survey_days,
                                load_reply_texts(settings.content_dir, settings.default_locale))
    # The shop's history before the window is imported first; it is too old to start
    # journeys, but it is what makes returning customers "at risk" or "repeat".
    feed(rt, sim, sim.due(shop.start - timedelta(days=3650), shop.start))
    with using_runtime(rt), simulating(
            lambda rt, definitions, until: simulate(rt, sim, definitions, until), out):
        summary = demo_shop(sim_end=(shop.end + TAIL).isoformat())
        compute_metrics()  # the snapshot and artifacts operators see after a daily run
    report = summarize(rt)
    print_summary(out, report)
    metrics = latest_metrics(rt)
    print_table(out, metrics)
    delivery = summarize_delivery(rt)
    print_delivery(out, delivery)
    with rt.factory() as session:
        trend = nps_by_month(session, None, rt.now())
        experiments = experiment_results(session, rt.definitions(), rt.now())
    print_experiments(out, experiments)
    write_report(report_path, metrics, trend, experiments)
    wall = time.monotonic() - started
    out.print(f"finished in {wall:.1f} s; database left at {database} "
              f"({summary['events']:,} events processed, {summary['sent']:,} messages sent); "
              f"report written to {report_path}")
    if sim.rejected:
        out.print(f"[yellow]{len(sim.rejected)} simulated events were rejected by intake[/]")
    return {"summary": summary, "report": report, "metrics": metrics, "delivery": delivery,
            "experiments": experiments, "wall_seconds": wall}


def latest_metrics(rt: Runtime) -> MetricsReport:
    """What the compute-metrics run stored: every number printed comes from the database."""
    with rt.factory() as session:
        snapshot = session.scalars(select(MetricsSnapshot).order_by(MetricsSnapshot.id.desc())
                                   .limit(1)).one()
        return MetricsReport.model_validate(snapshot.report)


def summarize(rt: Runtime) -> list[dict[str, Any]]:
    """Per segment, from the database: enrolled, holdout, sent by channel, answered."""
    with rt.factory() as session:
        enrolled = dict(session.execute(
            select(Enrollment.segment, func.count(func.distinct(Enrollment.customer_id)))
            .where(Enrollment.holdout.is_(False)).group_by(Enrollment.segment)).tuples().all())
        holdout = dict(session.execute(
            select(Enrollment.segment, func.count(func.distinct(Enrollment.customer_id)))
            .where(Enrollment.holdout.is_(True)).group_by(Enrollment.segment)).tuples().all())
        sent = session.execute(
            select(Enrollment.segment, Message.channel, func.count()).select_from(Message)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Message.status == "sent").group_by(Enrollment.segment, Message.channel)).all()
        not_sent = dict(session.execute(
            select(Enrollment.segment, func.count()).select_from(Message)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Message.status == "not_sent").group_by(Enrollment.segment)).tuples().all())
        answered = dict(session.execute(
            select(Enrollment.segment, func.count(func.distinct(SurveyResponse.id)))
            .select_from(SurveyResponse).join(Message, Message.id == SurveyResponse.message_id)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .group_by(Enrollment.segment)).tuples().all())
        surveys = dict(session.execute(
            select(Enrollment.segment, func.count()).select_from(Message)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Message.status == "sent",
                   Message.template.in_(["nps_survey", "csat_checkin", "ces_checkin"]))
            .group_by(Enrollment.segment)).tuples().all())
        alerts = dict(session.execute(
            select(Enrollment.segment, func.count()).select_from(AlertRecord)
            .join(Enrollment, Enrollment.id == AlertRecord.enrollment_id)
            .group_by(Enrollment.segment)).tuples().all())
        orders = session.scalar(select(func.count()).select_from(Order))
    segments = sorted(set(enrolled) | set(holdout))
    rows = []
    for segment in segments:
        by_channel = {ch: n for seg, ch, n in sent if seg == segment}
        rows.append({"segment": segment, "enrolled": enrolled.get(segment, 0),
                     "holdout": holdout.get(segment, 0), "email": by_channel.get("email", 0),
                     "sms": by_channel.get("sms", 0), "whatsapp": by_channel.get("whatsapp", 0),
                     "not_sent": not_sent.get(segment, 0), "surveys": surveys.get(segment, 0),
                     "answered": answered.get(segment, 0), "alerts": alerts.get(segment, 0),
                     "orders_in_db": orders})
    return rows


COLUMNS = {"segment": "segment", "enrolled": "enrolled", "holdout": "holdout",
           "email": "email", "sms": "sms", "whatsapp": "whatsapp", "not_sent": "not sent",
           "surveys": "surveys", "answered": "answers", "alerts": "alerts"}


def print_summary(out: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="Per-segment summary (from the database)", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for key, header in COLUMNS.items():
        table.add_column(header, justify="left" if key == "segment" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in COLUMNS))
    numeric = [c for c in COLUMNS if c != "segment"]
    table.add_row("all", *(f"{sum(r[c] for r in rows):,}" for c in numeric), style="bold")
    out.print(table)


# --- the delivery section ---------------------------------------------------------------------

@dataclass(frozen=True)
class ExperienceAnswers:
    nps: Nps
    csat: Rate  # 4-5 of 5


EXPERIENCE_LABELS = {ON_TIME: "delivered on time",
                     HANDLED: "problem, a delivery-care message read first",
                     PROBLEM: "problem, no delivery-care message read"}


def answers_by_experience(
    answers: Iterable[tuple[str, int, datetime, str | None]],
    problems: dict[str, datetime], cared: dict[str, datetime],
) -> dict[str, ExperienceAnswers]:
    """NPS and CSAT (4-5 of 5) of the survey answers (kind, score, asked at, the order the
    survey was about), grouped by that order's delivery experience when the customer was asked
    (behaviour.experience_of, as the simulated customers feel it)."""
    counts = {e: {"promoters": 0, "passives": 0, "detractors": 0, "satisfied": 0, "csat": 0}
              for e in EXPERIENCES}
    for kind, score, at, order_id in answers:
        experience = ON_TIME if order_id is None else experience_of(
            problems.get(order_id), cared.get(order_id), at)
        tally = counts[experience]
        if kind == "nps":
            tally["promoters" if score >= 9 else "detractors" if score <= 6 else "passives"] += 1
        elif kind == "csat":
            tally["csat"] += 1
            tally["satisfied"] += score >= 4
    return {e: ExperienceAnswers(Nps.of(c["promoters"], c["passives"], c["detractors"]),
                                 Rate.of(c["satisfied"], c["csat"])) for e, c in counts.items()}


def care_reached(reports: Iterable[tuple[str | None, str | None, str, datetime]]
                 ) -> dict[str, datetime]:
    """When a delivery-care message about each order first reached its customer, from the
    providers' reports (order, channel, kind, at): opened, read or clicked; a text message
    once delivered, as SMS reports no opens (and is nearly always read)."""
    reached: dict[str, datetime] = {}
    for order_id, channel, kind, at in reports:
        seen = kind in (DeliveryKind.OPENED, DeliveryKind.READ, DeliveryKind.CLICKED) or (
            channel == "sms" and kind == DeliveryKind.DELIVERED)
        if order_id is not None and seen:
            reached[order_id] = min(reached.get(order_id, as_utc(at)), as_utc(at))
    return reached


def summarize_delivery(rt: Runtime) -> dict[str, Any] | None:
    """Parcels, delivery problems and delivery-care messages from the database, and the
    answers by delivery experience; None while no shipment was recorded."""
    now = rt.now()  # a survey answered was sent: sent_at is set
    with rt.factory() as session:
        statuses = dict(session.execute(
            select(Shipment.status, func.count()).group_by(Shipment.status)).tuples().all())
        if not statuses:
            return None
        shipped = session.scalar(select(func.count(func.distinct(Shipment.order_id)))
                                 .where(Shipment.shipped_at.is_not(None))) or 0
        problems = {o: as_utc(at) for o, at in session.execute(
            select(Order.id, Order.delivery_problem_at)
            .where(Order.delivery_problem_at.is_not(None))).tuples() if at is not None}
        reports = session.execute(
            select(Enrollment.order_id, Message.channel, DeliveryEvent.kind,
                   DeliveryEvent.occurred_at)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .join(DeliveryEvent, DeliveryEvent.message_id == Message.id)
            .where(Message.status == "sent", Message.journey == CARE_JOURNEY)).tuples().all()
        care_sent = session.scalar(select(func.count()).select_from(Message).where(
            Message.status == "sent", Message.journey == CARE_JOURNEY)) or 0
        # each answer as of when the customer was asked, as the simulated customers answer
        answers = [(kind, score, as_utc(at or now), order)
                   for kind, score, at, order in session.execute(
            select(SurveyResponse.kind, SurveyResponse.score, Message.sent_at,
                   Enrollment.order_id)
            .join(Message, Message.id == SurveyResponse.message_id)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)).tuples()]
    cared = care_reached(reports)
    return {"parcels": sum(statuses.values()), "statuses": statuses,
            "problem_orders": Rate.of(len(problems), shipped),
            "care_messages": care_sent, "reached_orders": len(set(problems) & set(cared)),
            "by_experience": answers_by_experience(answers, problems, cared)}


def print_delivery(out: Console, delivery: dict[str, Any] | None) -> None:
    if delivery is None:
        out.print("Delivery: no shipment recorded", highlight=False)
        return
    statuses = ", ".join(f"{n:,} {s}" for s, n in sorted(delivery["statuses"].items()))
    out.print(f"Delivery (from the database): {delivery['parcels']:,} parcels ({statuses}); "
              f"orders with a delivery problem {format_metric(delivery['problem_orders'])}; "
              f"{delivery['care_messages']:,} delivery-care messages, "
              f"read about {delivery['reached_orders']:,} problem orders", highlight=False)
    table = Table(title="Answers by delivery experience of the order asked about",
                  box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for header in ("experience", "NPS", "CSAT (4-5 of 5)"):
        table.add_column(header, justify="left" if header == "experience" else "right")
    for experience in (ON_TIME, HANDLED, PROBLEM):
        row = delivery["by_experience"][experience]
        table.add_row(EXPERIENCE_LABELS[experience], format_metric(row.nps),
                      format_metric(row.csat))
    out.print(table)
