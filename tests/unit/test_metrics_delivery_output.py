"""The delivery figures as people and programs read them: the median of a histogram, the
summary sentence, the table rows, the CSV rows, the JSON round trip, the report's chart and
the metrics-summary artifact. Every expected number is worked out by hand in a comment."""

from __future__ import annotations

import csv
import io
import json
import statistics
from datetime import UTC, date, datetime

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from aftersale.metrics.model import (
    DeliveryDifference,
    GroupOutcome,
    Lift,
    LoyaltyByDelivery,
    Mean,
    Metric,
    MetricsReport,
    Nps,
    Rate,
    SegmentMetrics,
)
from aftersale.metrics.present import print_table, to_csv, to_json
from aftersale.metrics.report import render_report
from aftersale.metrics.snapshots import delivery_lines, segment_rows, summary_markdown
from aftersale.metrics.stats import (
    as_lift,
    delivery_verdict,
    difference_ci,
    histogram_median,
    nps_difference_ci,
)

AS_OF = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


# -- the median of a histogram


def test_histogram_median_by_hand() -> None:
    assert histogram_median({}) is None
    assert histogram_median({7: 1}) == 7.0
    # 24, 48, 72, 72: the two middle values 48 and 72 -> 60
    assert histogram_median({24: 1, 48: 1, 72: 2}) == 60.0
    # 45, 49, 53 -> 49; the order of the keys does not matter
    assert histogram_median({53: 1, 45: 1, 49: 1}) == 49.0
    # 1, 1, 1, 9: positions 1 and 2 are both 1
    assert histogram_median({9: 1, 1: 3}) == 1.0


@given(st.dictionaries(st.integers(-1000, 1000), st.integers(1, 5), min_size=1, max_size=20))
def test_histogram_median_is_the_median_of_the_values(histogram: dict[int, int]) -> None:
    values = [value for value, count in histogram.items() for _ in range(count)]
    assert histogram_median(histogram) == statistics.median(values)


# -- the sentence


def loyalty(on_time: tuple[int, int, int, int, int], problem: tuple[int, int, int, int, int]
            ) -> LoyaltyByDelivery:
    """(customers, repeaters, promoters, passives, detractors) per group."""
    def group(c: tuple[int, int, int, int, int]) -> GroupOutcome:
        return GroupOutcome(customers=c[0], repeat_purchase_rate=Rate.of(c[1], c[0]), nps=Nps.of(*c[2:]))

    o, p = group(on_time), group(problem)
    return LoyaltyByDelivery(on_time=o, problem=p, difference=DeliveryDifference(
        nps=as_lift(nps_difference_ci(p.nps.promoters, p.nps.detractors, p.nps.n,
                                      o.nps.promoters, o.nps.detractors, o.nps.n)),
        repeat_purchase_rate=as_lift(difference_ci(problem[1], problem[0], on_time[1], on_time[0]))))


# on time: 100 customers, 40 bought again, 100 answers: 60 promoters, 20 passives, 20 detractors
# (NPS +40); problem: 50 customers, 10 bought again, 50 answers: 10/10/30 (NPS -40).
MEASURED = loyalty((100, 40, 60, 20, 20), (50, 10, 10, 10, 30))


def test_the_nps_difference_by_hand() -> None:
    # d = -.4 - .4 = -.8; Var(problem) = (.2 + .6 - .4²)/50 = .0128, Var(on time) =
    # (.6 + .2 - .4²)/100 = .0064; se = sqrt(.0192) = .13856; 1.96 se = .27158
    # -> -80 (95% CI -107.2 to -52.8)
    assert MEASURED.difference.nps == Lift(difference=-80.0, ci_low=-107.2, ci_high=-52.8)


def test_the_sentence_says_how_much_lower_with_the_interval() -> None:
    # repeat: 10/50 - 40/100 = -20 pp. Wilson 10/50: denominator 1 + 3.8416/50 = 1.07683,
    # centre (.2 + .038416)/1.07683 = .22141, half 1.82015 x sqrt(.0032 + .000384) = .10897
    # -> (.11244, .33037); Wilson 40/100 -> (.30940, .49800). low = -.2 - sqrt(.08756² +
    # .09800²) = -.33142; high = -.2 + sqrt(.13037² + .09060²) = -.04124
    # -> "20 points lower (95% CI 4 to 33)"
    assert MEASURED.difference.repeat_purchase_rate == Lift(difference=-20.0, ci_low=-33.1, ci_high=-4.1)
    assert delivery_verdict(MEASURED) == (
        "Customers whose parcel had a problem, against those whose parcels came on time: "
        "NPS 80 points lower (95% CI 53 to 107); repeat purchase 20 points lower (95% CI 4 to 33).")


def test_a_higher_figure_says_higher() -> None:
    # the groups swapped: problem NPS +40 (100 answers) against on time -40 (50 answers)
    flipped = loyalty((50, 10, 10, 10, 30), (100, 40, 60, 20, 20))
    # NPS: +.8, the same se = sqrt(.0064 + .0128) = .13856 -> 52.8 to 107.2
    assert flipped.difference.nps == Lift(difference=80.0, ci_low=52.8, ci_high=107.2)
    assert "NPS 80 points higher (95% CI 53 to 107)" in delivery_verdict(flipped)


def test_small_groups_are_not_enough_data() -> None:
    small = loyalty((100, 40, 60, 20, 20), (29, 10, 10, 10, 9))
    # 29 problem customers and 29 answers: below 30 in one group for both outcomes
    assert delivery_verdict(small) == (
        "Customers whose parcel had a problem, against those whose parcels came on time: "
        "NPS: not enough data yet (29 answers after a problem, 100 on time; need at least 30 in "
        "each); repeat purchase: not enough data yet (29 customers after a problem, 100 on time; "
        "need at least 30 in each).")


def test_an_interval_across_zero_reads_from_a_negative_bound() -> None:
    # the vip fixture of tests/integration/test_metrics_delivery: repeat 1/2 - 1/1 = -50 pp,
    # 95% CI -90.5 to +39.1 -> lower by -39.1 to 90.5, in whole points -39 to 90 (Python
    # rounds the half to even)
    lo = loyalty((1, 1, 0, 0, 1), (2, 1, 1, 0, 1))
    assert lo.difference.repeat_purchase_rate == Lift(difference=-50.0, ci_low=-90.5, ci_high=39.1)
    assert "repeat purchase 50 points lower (95% CI -39 to 90)" in delivery_verdict(lo, min_group=1)


# -- the outputs


def report() -> MetricsReport:
    metrics: dict[str, Metric] = {
        "nps": Nps.of(5, 3, 2),
        "on_time_delivery_rate": Rate.of(45, 50),  # 90.0%
        "delivery_problem_rate": Rate.of(12, 100),  # 12.0%
        "median_days_to_deliver": Mean(value=2.5, n=88),
        "loyalty_by_delivery": MEASURED,
    }
    segments = [SegmentMetrics(segment="all", customers=150, metrics=metrics)]
    return MetricsReport(as_of=AS_OF, from_=date(2026, 3, 1), to=date(2026, 6, 30), segments=segments,
                         journeys=[], funnel=[], cohorts=[])


def test_the_table_shows_the_delivery_rows() -> None:
    console = Console(width=120, record=True, file=io.StringIO())
    print_table(console, report())
    text = console.export_text()
    assert "On-time delivery (parcels)" in text and "90.0% (45/50)" in text
    assert "Delivery problem (orders)" in text and "12.0% (12/100)" in text
    assert "Median days to deliver" in text and "2.5 (n=88)" in text
    assert "NPS, delivered on time" in text and "+40.0 (n=100)" in text
    assert "NPS, delivery problem" in text and "-40.0 (n=50)" in text
    assert "-80.0 pts (95% CI -107.2 to -52.8)" in text
    assert "Repeat purchase, delivery problem" in text and "20.0% (10/50)" in text
    assert "-20.0 pp (95% CI" in text


def test_csv_flattens_loyalty_into_named_rows() -> None:
    rows = {r["metric"]: r for r in csv.DictReader(io.StringIO(to_csv(report())))}
    assert rows["on_time_delivery_rate"]["numerator"] == "45"
    assert rows["loyalty_by_delivery.on_time.customers"]["value"] == "100"
    assert rows["loyalty_by_delivery.problem.nps"]["value"] == "-40.0"
    assert rows["loyalty_by_delivery.problem.nps"]["detractors"] == "30"
    assert rows["loyalty_by_delivery.problem.repeat_purchase_rate"]["denominator"] == "50"
    assert rows["loyalty_by_delivery.difference.nps"]["value"] == "-80.0"
    assert rows["loyalty_by_delivery.difference.nps.ci_low"]["value"] == "-107.2"
    assert rows["loyalty_by_delivery.difference.nps.ci_high"]["value"] == "-52.8"
    assert rows["loyalty_by_delivery.difference.repeat_purchase_rate"]["value"] == "-20.0"
    assert "loyalty_by_delivery" not in rows


def test_json_has_the_loyalty_shape_and_round_trips() -> None:
    data = json.loads(to_json(report()))
    lo = data["segments"][0]["metrics"]["loyalty_by_delivery"]
    assert set(lo) == {"on_time", "problem", "difference"}
    assert lo["on_time"] == {"customers": 100,
                             "repeat_purchase_rate": {"value": 40.0, "numerator": 40, "denominator": 100},
                             "nps": {"value": 40.0, "n": 100, "promoters": 60, "passives": 20,
                                     "detractors": 20}}
    assert lo["difference"]["nps"] == {"difference": -80.0, "ci_low": -107.2, "ci_high": -52.8}
    assert MetricsReport.model_validate_json(to_json(report())) == report()


def test_the_report_has_a_delivery_chart_with_its_table_and_the_sentence() -> None:
    html = render_report(report())
    section = html[html.index('<section id="delivery"'):]
    section = section[:section.index("</section>")]
    assert "<h2 id=\"delivery-heading\">Delivery and loyalty</h2>" in section
    assert "<svg " in section and 'role="img"' in section
    assert "<th scope=\"row\">all</th>" in section
    for cell in ("90.0% (45/50)", "12.0% (12/100)", "2.5 (n=88)", "+40.0 (n=100)", "-40.0 (n=50)",
                 "-80.0 pts (95% CI -107.2 to -52.8)", "40.0% (40/100)", "20.0% (10/50)"):
        assert f"<td>{cell}</td>" in section, cell
    header = html[:html.index("<main>")]
    assert "Delivery: 90.0% (45/50) of parcels on time" in header
    assert "NPS 80 points lower (95% CI 53 to 107)" in header


def test_a_report_without_delivery_has_no_delivery_chart() -> None:
    bare = report().model_copy(update={"segments": [
        SegmentMetrics(segment="all", customers=3, metrics={"nps": Nps.of(1, 1, 1)})]})
    html = render_report(bare)
    assert 'id="delivery"' not in html
    assert "parcel had a problem" not in html and "Delivery:" not in html
    assert "## Delivery" not in summary_markdown(bare)


def test_a_shop_without_parcels_gets_no_delivery_words() -> None:
    # every delivery figure empty: nothing shipped, no parcel judged, no one in a group
    empty = loyalty((0, 0, 0, 0, 0), (0, 0, 0, 0, 0))
    quiet = SegmentMetrics(segment="all", customers=3, metrics={
        "on_time_delivery_rate": Rate.of(0, 0), "delivery_problem_rate": Rate.of(0, 0),
        "median_days_to_deliver": Mean(value=None, n=0), "loyalty_by_delivery": empty})
    assert delivery_lines(quiet) == []
    # shipped, but nobody in a group yet: the rates without the sentence
    shipped = quiet.model_copy(update={"metrics": {**quiet.metrics, "delivery_problem_rate": Rate.of(0, 4)}})
    assert delivery_lines(shipped) == [
        "Delivery: – of parcels on time (first estimate); a problem on 0.0% (0/4) of shipped "
        "orders; median days to deliver –."]


def test_the_summary_artifact_says_it_in_one_sentence() -> None:
    text = summary_markdown(report())
    assert "## Delivery" in text
    assert ("Delivery: 90.0% (45/50) of parcels on time (first estimate); a problem on 12.0% "
            "(12/100) of shipped orders; median days to deliver 2.50 (n=88).") in text
    assert ("Customers whose parcel had a problem, against those whose parcels came on time: "
            "NPS 80 points lower (95% CI 53 to 107); repeat purchase 20 points lower "
            "(95% CI 4 to 33).") in text
    row = segment_rows(report())[0]
    assert (row["on_time_delivery_rate"], row["delivery_problem_rate"]) == ("90.0% (45/50)", "12.0% (12/100)")
