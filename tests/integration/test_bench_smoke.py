"""The benchmark (``make bench``) at toy size, so it cannot rot: the generator fills every
table the metrics read, and the runner's measurement and table work end to end. No timing is
asserted; the real figures come from ``make bench``."""

from __future__ import annotations

from pathlib import Path

from bench.run import Outcome, measure, rows
from bench.world import JOURNEYS, SEGMENTS, build_world, stored_world, world_key


def test_a_small_world_is_measured_with_every_segment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'world.db'}"
    stats = build_world(url, customers=200, orders=600, seed=7)

    assert (stats.customers, stats.orders) == (200, 600)
    assert stats.enrollments >= stats.orders  # one per order, plus order-updates
    assert stats.messages > stats.enrollments // 2
    assert 0 < stats.survey_responses < stats.messages
    assert stats.delivery_events > 0
    stored = stored_world(url)
    assert stored is not None and stored[0] == world_key(200, 600, 7)

    measured = measure(url, repeats=1)
    report = measured.report
    by_name = {s.segment: s for s in report.segments}
    assert set(by_name) == {*SEGMENTS, "all"}
    assert by_name["all"].customers == 200
    for segment in SEGMENTS:
        assert by_name[segment].customers == stats.segment_customers[segment] > 0
    everyone = by_name["all"].metrics
    assert everyone["nps"].n > 0  # type: ignore[union-attr]
    assert 0 < everyone["repeat_purchase_rate"].numerator < 200  # type: ignore[union-attr]
    assert {j.journey for j in report.journeys} <= set(JOURNEYS)
    assert report.journeys
    assert 0 < sum(step.sent for step in report.funnel) <= stats.messages
    assert report.cohorts
    assert set(measured.parts) == {"segment_metrics", "journey_lifts", "funnel", "cohorts"}
    assert measured.metrics.best > 0 and measured.baseline.best > 0

    table = rows([Outcome("sqlite", world=stats, built=True, measurement=measured)],
                 target=10.0)
    labels = [row[0] for row in table]
    assert "SQLite: all metrics, best of runs" in labels
    assert all(len(row) == 5 for row in table)
