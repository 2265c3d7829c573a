"""``aftersale demo``: a synthetic shop through the real intake, engine and sandbox channels,
run as the demo-shop Prefect flow; every number printed at the end is read back from the
database."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.models import AlertRecord, Enrollment, Message, MetricsSnapshot, Order, SurveyResponse
from aftersale.demo.shop import build_shop
from aftersale.demo.simulator import TAIL, Simulator, feed, simulate
from aftersale.metrics.compute import nps_by_month
from aftersale.metrics.model import MetricsReport
from aftersale.metrics.present import print_table
from aftersale.metrics.report import write_report
from aftersale.orchestration.compute_metrics import compute_metrics
from aftersale.orchestration.demo_shop import demo_shop, simulating
from aftersale.orchestration.flow_context import using_runtime
from aftersale.pipeline.runtime import Runtime, open_runtime
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
    with rt.factory() as session:
        trend = nps_by_month(session, None, rt.now())
    write_report(report_path, metrics, trend)
    wall = time.monotonic() - started
    out.print(f"finished in {wall:.1f} s; database left at {database} "
              f"({summary['events']:,} events processed, {summary['sent']:,} messages sent); "
              f"report written to {report_path}")
    if sim.rejected:
        out.print(f"[yellow]{len(sim.rejected)} simulated events were rejected by intake[/]")
    return {"summary": summary, "report": report, "metrics": metrics, "wall_seconds": wall}


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
