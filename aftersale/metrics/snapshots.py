"""Metrics snapshots (for trends) and what the Prefect UI shows of them.

``compute-metrics`` stores each result and publishes keyed artifacts, so the UI keeps their
history: a table per segment, the message funnel (people's opens and clicks, the machines'
beside them), a short markdown summary with the holdout verdicts and the experiments' results.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from aftersale.db.models import MetricsSnapshot
from aftersale.metrics.model import LoyaltyByDelivery, Metric, MetricsReport, Nps, Rate, SegmentMetrics
from aftersale.metrics.stats import delivery_verdict

SEGMENTS_KEY = "metrics-segments"
SUMMARY_KEY = "metrics-summary"
FUNNEL_KEY = "metrics-funnel"
#: Per experiment its table and verdict (aftersale.metrics.experiments.markdown).
EXPERIMENTS_KEY = "experiments"
FUNNEL_COLUMNS = ("journey", "step", "template", "channel", "sent", "delivered", "opened",
                  "clicked", "machine_opened", "suspect_clicked", "bounced", "failed",
                  "unsubscribed")
#: Per journey, in this order: sent, people's opens and clicks, the machines' beside them.
ENGAGEMENT = ("sent", "opened", "clicked", "machine_opened", "suspect_clicked")
TABLE_METRICS = ("nps", "csat", "ces", "response_rate_nps", "response_rate_csat",
                 "repeat_purchase_rate", "retention_90d", "churn_90d", "referral_rate",
                 "median_days_to_second_order", "messages_per_customer",
                 "on_time_delivery_rate", "delivery_problem_rate", "median_days_to_deliver")


def store_snapshot(session: Session, report: MetricsReport, start: datetime | None,
                   end: datetime) -> MetricsSnapshot:
    snapshot = MetricsSnapshot(as_of=report.as_of, period_from=start, period_to=end,
                               report=json.loads(report.to_json()))
    session.add(snapshot)
    session.flush()
    return snapshot


def shown(metric: Metric | None) -> str:
    """A metric as people read it: '42.0% (21/50)', 'NPS 35.0 (n=40)', '–' when unknown (and
    for loyalty_by_delivery, which the summary says in a sentence)."""
    if metric is None or isinstance(metric, LoyaltyByDelivery) or metric.value is None:
        return "–"
    if isinstance(metric, Rate):
        return f"{metric.value:.1f}% ({metric.numerator}/{metric.denominator})"
    if isinstance(metric, Nps):
        return f"{metric.value:+.1f} (n={metric.n})"
    return f"{metric.value:.2f} (n={metric.n})"


def delivery_lines(segment: SegmentMetrics) -> list[str]:
    """The segment's delivery in words: the rates, then what a problem did to loyalty (once
    some customer is in either group); nothing when no order was shipped and no parcel judged
    (a shop that does not tell aftersale about parcels)."""
    m = segment.metrics
    problems, on_time = m.get("delivery_problem_rate"), m.get("on_time_delivery_rate")
    if not any(isinstance(r, Rate) and r.denominator for r in (problems, on_time)):
        return []
    lines = [f"Delivery: {shown(on_time)} of parcels on time (first estimate); a problem on "
             f"{shown(problems)} of shipped orders; median days to deliver "
             f"{shown(m.get('median_days_to_deliver'))}."]
    loyalty = m.get("loyalty_by_delivery")
    if isinstance(loyalty, LoyaltyByDelivery) and (loyalty.on_time.customers or loyalty.problem.customers):
        lines.append(delivery_verdict(loyalty))
    return lines


def segment_rows(report: MetricsReport) -> list[dict[str, Any]]:
    return [{"segment": s.segment, "customers": s.customers,
             **{name: shown(s.metrics.get(name)) for name in TABLE_METRICS}}
            for s in report.segments]


def funnel_rows(report: MetricsReport) -> list[dict[str, Any]]:
    """One row per step and channel; ``opened``/``clicked`` are people's, ``machine_opened`` and
    ``suspect_clicked`` the machines' (Apple Mail Privacy Protection, mail scanners)."""
    return [{name: getattr(step, name) for name in FUNNEL_COLUMNS} for step in report.funnel]


def summary_markdown(report: MetricsReport) -> str:
    period = f"{report.from_ or 'the beginning'} to {report.to}"
    lines = [f"# Customer experience, {period}", "",
             f"As of {report.as_of:%Y-%m-%d %H:%M} UTC.", ""]
    if not report.segments:
        return "\n".join([*lines, "No data yet: no customer has entered a journey in this period."])
    lines += ["| segment | customers | NPS | CSAT | repeat purchase | retention 90 d |",
              "|---|---:|---:|---:|---:|---:|"]
    for s in report.segments:
        m = s.metrics
        lines.append(f"| {s.segment} | {s.customers} | {shown(m.get('nps'))} | {shown(m.get('csat'))} "
                     f"| {shown(m.get('repeat_purchase_rate'))} | {shown(m.get('retention_90d'))} |")
    overall = next((s for s in report.segments if s.segment == "all"), None)
    delivery = [] if overall is None else delivery_lines(overall)
    if delivery:
        lines += ["", "## Delivery", "", "\n\n".join(delivery)]
    if report.journeys:
        lines += ["", "## Does each journey help? (treated vs holdout)", ""]
        lines += [f"- **{j.journey}**: {j.verdict} (treated {j.treated.customers}, "
                  f"holdout {j.holdout.customers})" for j in report.journeys]
    if report.funnel:
        lines += ["", "## Messages (opens and clicks by people; machines beside)", "",
                  "| journey | sent | opened | clicked | machine opens | scanner clicks |",
                  "|---|---:|---:|---:|---:|---:|"]
        for journey, t in engagement_totals(report).items():
            lines.append(f"| {journey} | " + " | ".join(str(t[k]) for k in ENGAGEMENT) + " |")
    return "\n".join(lines)


def engagement_totals(report: MetricsReport) -> dict[str, dict[str, int]]:
    """Per journey: sent, people's opens and clicks, and the machines' beside them."""
    totals: dict[str, dict[str, int]] = {}
    for step in report.funnel:
        t = totals.setdefault(step.journey, dict.fromkeys(ENGAGEMENT, 0))
        for name in t:
            t[name] += getattr(step, name)
    return dict(sorted(totals.items()))
