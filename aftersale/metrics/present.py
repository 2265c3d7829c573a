"""``aftersale metrics`` output: a rich table for people, JSON for programs, CSV for spreadsheets.

JSON is :meth:`MetricsReport.to_json` unchanged (the schema in aftersale/metrics/model.py)::

    {"schema_version": 1, "as_of": "...Z", "from": "YYYY-MM-DD" | null, "to": "YYYY-MM-DD",
     "segments": [{"segment": "vip", "customers": 120,
                   "metrics": {"nps": {"value", "n", "promoters", "passives", "detractors"},
                               "csat": {"value", "numerator", "denominator"},
                               "ces": {"value", "n"}, "repeat_purchase_rate": {...}, ...}}],
     "journeys": [...], "funnel": [...], "cohorts": [...]}

CSV has one row per (segment, metric), the first being ``customers``; columns
:data:`CSV_COLUMNS`. ``loyalty_by_delivery`` becomes several rows named by their path
(``loyalty_by_delivery.problem.nps``, ``loyalty_by_delivery.difference.nps.ci_low``, ...).
A cell a metric does not have (``n`` of a rate) or a null value is empty.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from aftersale.metrics.model import (
    GroupOutcome,
    JourneyLift,
    Lift,
    LoyaltyByDelivery,
    Mean,
    Metric,
    MetricsReport,
    Nps,
    Rate,
    SegmentMetrics,
)
from aftersale.metrics.snapshots import ENGAGEMENT, engagement_totals

ALL_SEGMENT = "all"  # every customer in any segment, counted once (DESIGN.md section 4)
NULL = "–"  # what a metric without data (denominator 0) shows as: never 0
CSV_COLUMNS = ("segment", "metric", "value", "numerator", "denominator", "n",
               "promoters", "passives", "detractors")

# (key, label) in the order a marketer reads them; keys are DESIGN.md section 4's
TABLE_ROWS = (
    ("nps", "NPS"),
    ("csat", "CSAT (4-5 of 5)"),
    ("ces", "CES (mean, 1-7)"),
    ("response_rate_nps", "NPS response rate"),
    ("response_rate_csat", "CSAT response rate"),
    ("response_rate_ces", "CES response rate"),
    ("repeat_purchase_rate", "Repeat purchase"),
    ("retention_30d", "Retention 30 days"),
    ("retention_60d", "Retention 60 days"),
    ("retention_90d", "Retention 90 days"),
    ("churn_90d", "Churn 90 days"),
    ("referral_rate", "Referral rate"),
    ("median_days_to_second_order", "Median days to 2nd order"),
    ("messages_per_customer", "Messages per customer"),
    ("on_time_delivery_rate", "On-time delivery (parcels)"),
    ("delivery_problem_rate", "Delivery problem (orders)"),
    ("median_days_to_deliver", "Median days to deliver"),
)
LOYALTY = "loyalty_by_delivery"
# (group, label) of loyalty_by_delivery's rows in the table and its CSV metric names
LOYALTY_GROUPS = (("on_time", "delivered on time"), ("problem", "delivery problem"))
LOYALTY_OUTCOMES = (("nps", "NPS"), ("repeat_purchase_rate", "Repeat purchase"))


@dataclass(frozen=True)
class MonthNps:
    """NPS over every NPS answer given in one calendar month (UTC), for the report's trend."""

    month: str  # YYYY-MM
    nps: Nps


def format_metric(metric: Metric | None) -> str:
    """'42.0% (21/50)' for a rate, '+12.5 (n=40)' for NPS, '5.2 (n=40)' for a mean; '–' if null
    (loyalty_by_delivery has no single value: see :func:`loyalty_rows`)."""
    if metric is None or isinstance(metric, LoyaltyByDelivery) or metric.value is None:
        return NULL
    if isinstance(metric, Rate):
        return f"{metric.value:.1f}% ({metric.numerator}/{metric.denominator})"
    if isinstance(metric, Nps):
        return f"{metric.value:+.1f} (n={metric.n})"
    return f"{metric.value:.1f} (n={metric.n})"


def format_lift(lift: Lift | None, unit: str = "pp") -> str:
    """'+4.2 pp (95% CI -1.0 to +9.4)'; '–' without a difference. ``unit``: "pp" for
    percentage points, "pts" for NPS points."""
    if lift is None or lift.difference is None:
        return NULL
    text = f"{lift.difference:+.1f} {unit}"
    if lift.ci_low is not None and lift.ci_high is not None:
        text += f" (95% CI {lift.ci_low:+.1f} to {lift.ci_high:+.1f})"
    return text


def loyalty_of(segment: SegmentMetrics) -> LoyaltyByDelivery | None:
    metric = segment.metrics.get(LOYALTY)
    return metric if isinstance(metric, LoyaltyByDelivery) else None


def loyalty_rows(loyalty: LoyaltyByDelivery | None) -> list[tuple[str, str]]:
    """(label, text) per outcome: on time, problem, and the difference problem - on time."""
    rows = []
    for key, label in LOYALTY_OUTCOMES:
        unit = "pts" if key == "nps" else "pp"
        for group, group_label in LOYALTY_GROUPS:
            outcome = None if loyalty is None else getattr(loyalty, group)
            rows.append((f"{label}, {group_label}",
                         format_metric(None if outcome is None else getattr(outcome, key))))
        difference = None if loyalty is None else getattr(loyalty.difference, key)
        rows.append((f"{label}: problem − on time", format_lift(difference, unit)))
    return rows


def has_data(report: MetricsReport) -> bool:
    return any(s.customers for s in report.segments)


def period_text(report: MetricsReport) -> str:
    return f"{report.from_} to {report.to}" if report.from_ else f"up to {report.to}"


def print_table(console: Console, report: MetricsReport) -> None:
    """One table per segment, then the journeys' holdout lift."""
    console.print(f"Metrics {period_text(report)} (as of "
                  f"{report.as_of.isoformat(timespec='minutes')})", highlight=False)
    if not has_data(report):
        console.print(f"No data yet: no customer has entered a journey {period_text(report)}. "
                      "Ingest orders (aftersale ingest) and run the journeys (aftersale run), "
                      "or try aftersale demo.", highlight=False)
        return
    # side by side as far as the terminal allows: segments are read in comparison
    console.print(Columns([segment_table(s) for s in report.segments], padding=(1, 2)))
    if report.journeys:
        console.print(journeys_table(report.journeys))
    if report.funnel:
        console.print(engagement_table(report))


def segment_table(segment: SegmentMetrics) -> Table:
    table = Table(title=f"{segment.segment}: {segment.customers} customers", title_justify="left",
                  show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right", no_wrap=True)
    for key, label in TABLE_ROWS:
        table.add_row(label, format_metric(segment.metrics.get(key)))
    for label, text in loyalty_rows(loyalty_of(segment)):
        table.add_row(label, text)
    return table


def journeys_table(journeys: list[JourneyLift]) -> Table:
    table = Table(title="Holdout lift (repeat purchase, treated - holdout)", title_justify="left")
    table.add_column("journey")
    for name in ("treated", "holdout", "lift"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("verdict")  # the one column that may wrap on a narrow terminal
    for journey in journeys:
        table.add_row(journey.journey, format_metric(journey.treated.repeat_purchase_rate),
                      format_metric(journey.holdout.repeat_purchase_rate),
                      format_lift(journey.repeat_purchase_lift), journey.verdict)
    return table


def engagement_table(report: MetricsReport) -> Table:
    """Per journey: opens and clicks by people, and beside them the machines' (Apple Mail
    Privacy Protection opens, clicks most likely by a mail scanner), counted in neither."""
    table = Table(title="Messages: opens and clicks by people (machines beside)",
                  title_justify="left")
    table.add_column("journey")
    for name in ("sent", "opened", "clicked", "machine opens", "scanner clicks"):
        table.add_column(name, justify="right", no_wrap=True)
    for journey, t in engagement_totals(report).items():
        table.add_row(journey, *(str(t[k]) for k in ENGAGEMENT))
    return table


def to_json(report: MetricsReport) -> str:
    return report.to_json()


def to_csv(report: MetricsReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for segment in report.segments:
        writer.writerow({"segment": segment.segment, "metric": "customers", "value": segment.customers})
        # the documented order, then any metric added later (so a new key is never dropped)
        keys = [k for k, _ in TABLE_ROWS if k in segment.metrics]
        keys += [k for k in segment.metrics if k not in keys]
        for key in keys:
            metric = segment.metrics[key]
            if isinstance(metric, LoyaltyByDelivery):
                for name, cells in _loyalty_cells(metric):
                    writer.writerow({"segment": segment.segment, "metric": f"{key}.{name}"} | cells)
            else:
                writer.writerow({"segment": segment.segment, "metric": key} | _csv_cells(metric))
    return buffer.getvalue()


def _loyalty_cells(loyalty: LoyaltyByDelivery) -> list[tuple[str, dict[str, object]]]:
    """loyalty_by_delivery as CSV rows: ``on_time.customers``, ``on_time.nps``,
    ``on_time.repeat_purchase_rate``, the same for ``problem``, then per outcome
    ``difference.<outcome>``, ``.ci_low`` and ``.ci_high`` (points; empty when unknown)."""
    rows: list[tuple[str, dict[str, object]]] = []
    for group, _ in LOYALTY_GROUPS:
        outcome: GroupOutcome = getattr(loyalty, group)
        rows.append((f"{group}.customers", {"value": outcome.customers}))
        rows += [(f"{group}.{key}", _csv_cells(getattr(outcome, key))) for key, _ in LOYALTY_OUTCOMES]
    for key, _ in LOYALTY_OUTCOMES:
        lift: Lift = getattr(loyalty.difference, key)
        for name, value in (("", lift.difference), (".ci_low", lift.ci_low), (".ci_high", lift.ci_high)):
            rows.append((f"difference.{key}{name}", {"value": "" if value is None else value}))
    return rows


def _csv_cells(metric: Rate | Nps | Mean) -> dict[str, object]:
    cells: dict[str, object] = {"value": "" if metric.value is None else metric.value}
    if isinstance(metric, Rate):
        cells |= {"numerator": metric.numerator, "denominator": metric.denominator}
    elif isinstance(metric, Nps):
        cells |= {"n": metric.n, "promoters": metric.promoters, "passives": metric.passives,
                  "detractors": metric.detractors}
    elif isinstance(metric, Mean):
        cells["n"] = metric.n
    return cells
