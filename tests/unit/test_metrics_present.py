"""``aftersale metrics`` output from hand-built reports: the table people read, the CSV a
spreadsheet opens and the JSON schema scripts rely on (DESIGN.md section 4)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime

import pytest
from rich.console import Console

from aftersale.metrics.compute import PeriodError, parse_period
from aftersale.metrics.model import (
    Cohort,
    FunnelStep,
    GroupOutcome,
    JourneyLift,
    Lift,
    Mean,
    MetricsReport,
    Nps,
    Rate,
    SegmentMetrics,
)
from aftersale.metrics.present import CSV_COLUMNS, NULL, format_metric, print_table, to_csv, to_json

AS_OF = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
METRIC_KEYS = {"nps", "csat", "ces", "response_rate_nps", "response_rate_csat", "response_rate_ces",
               "repeat_purchase_rate", "retention_30d", "retention_60d", "retention_90d", "churn_90d",
               "referral_rate", "median_days_to_second_order", "messages_per_customer"}


def segment(name: str, customers: int, nps: tuple[int, int, int], csat: tuple[int, int],
            repeat: tuple[int, int], retained_90: tuple[int, int]) -> SegmentMetrics:
    kept, eligible = retained_90
    return SegmentMetrics(segment=name, customers=customers, metrics={
        "nps": Nps.of(*nps), "csat": Rate.of(*csat), "ces": Mean(value=5.4 if csat[1] else None, n=csat[1]),
        "response_rate_nps": Rate.of(sum(nps), customers), "response_rate_csat": Rate.of(*csat),
        "response_rate_ces": Rate.of(0, 0),
        "repeat_purchase_rate": Rate.of(*repeat), "retention_30d": Rate.of(repeat[0] // 2, customers),
        "retention_60d": Rate.of(repeat[0], customers), "retention_90d": Rate.of(kept, eligible),
        "churn_90d": Rate.of(eligible - kept, eligible), "referral_rate": Rate.of(3, customers),
        "median_days_to_second_order": Mean(value=24.5 if repeat[0] else None, n=repeat[0]),
        "messages_per_customer": Mean(value=3.2, n=customers)})


def sample_report() -> MetricsReport:
    """Three segments and "all", two journeys (one measured, one too young), a funnel and cohorts."""
    segments = [
        segment("all", 50, (25, 10, 10), (30, 40), (21, 50), (12, 30)),
        segment("first_time", 30, (10, 8, 7), (15, 22), (9, 30), (5, 18)),
        segment("vip", 20, (15, 2, 1), (15, 18), (12, 20), (7, 10)),
        segment("lapsed", 5, (0, 0, 0), (0, 0), (0, 5), (0, 0)),  # nobody answered, nothing due
    ]
    outcome = GroupOutcome(customers=45, repeat_purchase_rate=Rate.of(20, 45), nps=Nps.of(24, 9, 9))
    holdout = GroupOutcome(customers=5, repeat_purchase_rate=Rate.of(1, 5), nps=Nps.of(1, 1, 1))
    journeys = [
        JourneyLift(journey="post-purchase", treated=outcome, holdout=holdout,
                    repeat_purchase_lift=Lift(difference=24.4, ci_low=3.1, ci_high=45.8),
                    nps_lift=Lift(difference=23.8, ci_low=-30.0, ci_high=77.6),
                    verdict="works: treated customers buy again more often"),
        JourneyLift(journey="win-back", treated=GroupOutcome(customers=0, repeat_purchase_rate=Rate.of(0, 0),
                                                             nps=Nps.of(0, 0, 0)),
                    holdout=GroupOutcome(customers=0, repeat_purchase_rate=Rate.of(0, 0), nps=Nps.of(0, 0, 0)),
                    repeat_purchase_lift=Lift(difference=None, ci_low=None, ci_high=None),
                    nps_lift=None, verdict="not enough data yet"),
    ]
    funnel = [FunnelStep(journey="post-purchase", step=str(i), template=t, channel=c, sent=s,
                         delivered=s - 2, opened=s // 2, clicked=s // 5, bounced=1, failed=1, unsubscribed=0)
              for i, (t, c, s) in enumerate([("shipping_update", "email", 40), ("shipping_update", "sms", 10),
                                             ("nps_survey", "email", 45)])]
    funnel.append(FunnelStep(journey="win-back", step="0", template="come_back", channel="email", sent=12,
                             delivered=12, opened=7, clicked=2, bounced=0, failed=0, unsubscribed=1))
    cohorts = [Cohort(month="2026-03", customers=20, retained=[Rate.of(3, 20), Rate.of(6, 20), Rate.of(8, 20)]),
               Cohort(month="2026-04", customers=18, retained=[Rate.of(4, 18), Rate.of(5, 18)]),
               Cohort(month="2026-05", customers=12, retained=[Rate.of(2, 12)])]
    return MetricsReport(as_of=AS_OF, from_=date(2026, 3, 1), to=date(2026, 6, 30), segments=segments,
                         journeys=journeys, funnel=funnel, cohorts=cohorts)


def empty_report() -> MetricsReport:
    return MetricsReport(as_of=AS_OF, from_=None, to=date(2026, 6, 30), segments=[], journeys=[],
                         funnel=[], cohorts=[])


def table_text(report: MetricsReport) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    print_table(console, report)
    return console.export_text()


def test_formats_rates_with_their_counts_and_null_as_a_dash() -> None:
    assert format_metric(Rate.of(21, 50)) == "42.0% (21/50)"
    assert format_metric(Rate.of(0, 0)) == NULL == "–"
    assert format_metric(Rate.of(0, 7)) == "0.0% (0/7)"  # zero is a result, not missing data
    assert format_metric(Nps.of(25, 10, 10)) == "+33.3 (n=45)"
    assert format_metric(Nps.of(0, 0, 0)) == NULL
    assert format_metric(Mean(value=5.4, n=40)) == "5.4 (n=40)"
    assert format_metric(Mean(value=None, n=0)) == NULL
    assert format_metric(None) == NULL


def test_the_table_has_a_section_per_segment_and_the_journeys_lift() -> None:
    text = table_text(sample_report())
    assert "Metrics 2026-03-01 to 2026-06-30" in text
    for title in ("all: 50 customers", "first_time: 30 customers", "vip: 20 customers", "lapsed: 5 customers"):
        assert title in text
    assert "42.0% (21/50)" in text  # repeat purchase, all
    assert "+33.3 (n=45)" in text
    lapsed = text[text.index("lapsed: 5 customers"):text.index("Holdout lift")]
    nps_line = next(line for line in lapsed.splitlines() if "NPS " in line and "response" not in line)
    assert nps_line.rstrip(" │|").endswith(NULL)
    assert "Retention 90 days" in text and "Median days to 2nd order" in text
    assert "+24.4 pp (95% CI +3.1 to +45.8)" in text
    assert "works: treated customers buy again" in text  # the verdict column may wrap
    assert "not enough data yet" in text


def test_an_empty_database_prints_that_there_is_no_data_yet() -> None:
    text = table_text(empty_report())
    assert "No data yet" in text
    assert "Traceback" not in text


def test_csv_has_one_row_per_segment_and_metric_with_counts() -> None:
    report = sample_report()
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len(report.segments) * (1 + len(METRIC_KEYS))
    by_key = {(r["segment"], r["metric"]): r for r in rows}
    assert by_key["all", "customers"]["value"] == "50"
    assert by_key["all", "repeat_purchase_rate"] | {} == {
        "segment": "all", "metric": "repeat_purchase_rate", "value": "42.0", "numerator": "21",
        "denominator": "50", "n": "", "promoters": "", "passives": "", "detractors": ""}
    nps = by_key["vip", "nps"]
    assert (nps["value"], nps["n"], nps["promoters"], nps["passives"], nps["detractors"]) == (
        "77.8", "18", "15", "2", "1")
    assert by_key["vip", "ces"]["n"] == "18" and by_key["vip", "ces"]["numerator"] == ""
    # null stays empty (a spreadsheet would otherwise average in a 0)
    assert by_key["lapsed", "retention_90d"]["value"] == ""
    assert by_key["lapsed", "retention_90d"]["denominator"] == "0"
    assert by_key["lapsed", "nps"]["value"] == "" and by_key["lapsed", "nps"]["n"] == "0"


def test_csv_of_an_empty_report_is_just_the_header() -> None:
    assert to_csv(empty_report()).splitlines() == [",".join(CSV_COLUMNS)]


def test_json_has_the_documented_schema_and_round_trips() -> None:
    report = sample_report()
    data = json.loads(to_json(report))
    assert {"as_of", "from", "to", "segments", "journeys", "funnel", "cohorts"} <= data.keys()
    assert (data["from"], data["to"]) == ("2026-03-01", "2026-06-30")
    assert data["as_of"].startswith("2026-06-30T12:00:00")
    first = data["segments"][0]
    assert set(first) == {"segment", "customers", "metrics"}
    assert (first["segment"], first["customers"]) == ("all", 50)
    assert set(first["metrics"]) == METRIC_KEYS
    assert first["metrics"]["nps"] == {"value": 33.3, "n": 45, "promoters": 25, "passives": 10,
                                       "detractors": 10}
    assert first["metrics"]["repeat_purchase_rate"] == {"value": 42.0, "numerator": 21, "denominator": 50}
    assert set(first["metrics"]["ces"]) == {"value", "n"}
    lapsed = data["segments"][3]["metrics"]
    assert lapsed["retention_90d"] == {"value": None, "numerator": 0, "denominator": 0}
    assert MetricsReport.model_validate_json(to_json(report)) == report


def test_json_of_an_empty_report_has_empty_lists() -> None:
    data = json.loads(to_json(empty_report()))
    assert data["from"] is None
    assert (data["segments"], data["journeys"], data["funnel"], data["cohorts"]) == ([], [], [], [])


NOW = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)


def test_a_period_of_dates_covers_whole_utc_days() -> None:
    start, end = parse_period("2026-03-01", "2026-03-31", NOW)
    assert start == datetime(2026, 3, 1, tzinfo=UTC)
    assert end == datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_period("2026-03-31", "2026-03-31", NOW)[0] == datetime(2026, 3, 31, tzinfo=UTC)


def test_a_period_defaults_to_no_start_and_now() -> None:
    assert parse_period(None, None, NOW) == (None, NOW)


def test_a_period_takes_iso_times_with_an_offset() -> None:
    start, end = parse_period("2026-03-01T09:00+03:00", "2026-03-02T00:00:00Z", NOW)
    assert start == datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2026-13-01", None, "--from '2026-13-01' is not a date such as 2026-03-31"),
    ("yesterday", None, "--from 'yesterday' is not a date"),
    (None, "31/03/2026", "--to '31/03/2026' is not a date such as 2026-03-31"),
    ("2026-04-01", "2026-03-31", "--from 2026-04-01 is after --to 2026-03-31"),
    ("2026-08-01", None, "--from 2026-08-01 is after --to now (2026-07-01T08:30:00+00:00)"),
])
def test_a_bad_period_is_explained_in_one_line(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(PeriodError) as caught:
        parse_period(start, end, NOW)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
