"""The benchmark (``make bench``) at toy size, so it cannot rot: the generator fills every
table the metrics read, the runner's measurement and table work end to end, and so do the
throughput sections (intake, processing, dispatch, end to end). No timing is
asserted; the real figures come from ``make bench``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import throughput
from bench.run import HERE, Outcome, measure, parse_args, rows
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
    assert set(measured.parts) == {"anchor table", "segment_metrics", "cohorts", "journey_lifts",
                                   "funnel"}
    assert measured.metrics.best > 0 and measured.baseline.best > 0

    table = rows([Outcome("sqlite", world=stats, built=True, measurement=measured)],
                 target=10.0)
    labels = [row[0] for row in table]
    assert "SQLite: all metrics (2 connections), best" in labels
    assert all(len(row) == 5 for row in table)


def test_the_throughput_sections_run_at_toy_size_and_fill_every_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None) -> None:
    """intake, processing, dispatch and end to end, on SQLite, a few hundred events: every row
    of the table is there and the numbers are sane (nothing about speed)."""
    monkeypatch.setattr(throughput, "DATA", tmp_path)
    log: list[str] = []
    sizes = throughput.Sizes(intake=300, processing=300, dispatch=20, e2e=3)
    results = throughput.run_sections("sqlite", throughput.SECTIONS, sizes, "", log.append)
    by_section = {r.section: r for r in results}
    assert list(by_section) == list(throughput.SECTIONS)

    intake = by_section["intake"]
    assert intake.extra["stored"] == 300 and intake.extra["errors"] == 0
    assert 0 < intake.extra["rss_mb"] < throughput.RSS_LIMIT_MB
    processing = by_section["processing"]
    counts = processing.extra["counts"]
    assert processing.count == 300 and counts["processed"] == 300 and counts["failed"] == 0
    assert counts["enrolled"] > 0 and counts["resumed"] > 0  # upserts, enrollments, waits
    assert {"order.placed", "order.shipped", "order.delivered",
            "survey.responded"} <= set(counts["by_type"])
    dispatch = by_section["dispatch"]
    assert dispatch.count == dispatch.extra["queued"] > 0  # every queued message was sent
    e2e = by_section["e2e"]
    assert e2e.extra["processed"] == e2e.extra["naive_processed"] == 3
    assert e2e.extra["sent"] == e2e.extra["naive_sent"]  # both designs did the same work
    for r in results:
        assert r.rate > 0 and r.baseline_rate > 0 and r.seconds > 0

    table = throughput.rows(results, {"postgresql": "not answering"})
    labels = [row[0] for row in table]
    for label in ("SQLite: intake, 300 events (ingest path)",
                  f"SQLite: intake, peak RSS of the import (writer + {intake.extra['workers']} "
                  "validating workers)",
                  "SQLite: processing, 300 events (process_batch)",
                  "SQLite: end to end, 3 events, batched flows", "PostgreSQL: throughput"):
        assert label in labels
    assert any(label.startswith("SQLite: dispatch, ") for label in labels)
    assert all(len(row) == 5 for row in table)
    assert len(throughput.notes(results)) == 4
    assert not list(tmp_path.glob("tp-*.db"))  # scratch databases are removed


def test_sections_can_be_chosen_and_sized_on_the_command_line() -> None:
    args = parse_args(["--only", "intake,metrics", "--events", "1000", "--database", "both"])
    assert args.sections == ["intake", "metrics"] and args.events == 1000
    assert parse_args([]).sections == [*throughput.SECTIONS, "metrics"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "intake,nonsense"])


def test_only_a_full_run_replaces_the_results_file(tmp_path: Path) -> None:
    assert parse_args([]).out == HERE / "results.md"
    assert parse_args(["--only", "processing"]).out is None  # printed, not written
    chosen = tmp_path / "processing.md"
    assert parse_args(["--only", "processing", "--out", str(chosen)]).out == chosen


def test_the_streaming_import_keeps_the_ingest_rules(tmp_path: Path) -> None:
    """What the intake benchmark measures behaves as ``aftersale ingest``: one transaction,
    a bad line rejects the file, repeated ids are kept once, a re-import stores nothing."""
    import json
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from aftersale.db.models import InboxEvent
    from aftersale.intake.importer import import_jsonl
    from aftersale.pipeline.runtime import open_runtime
    from bench.events import generate

    rt = open_runtime(throughput.bench_settings(f"sqlite:///{tmp_path / 'inbox.db'}"))
    when = datetime(2026, 3, 4, tzinfo=UTC)
    lines = [json.dumps(e) for e in generate(50, start=throughput.START)]
    bad = import_jsonl(rt.factory, [*lines[:10], "{oops\n", *lines[10:]], source="file",
                       received_at=when, chunk=7)
    assert bad.rejected and bad.stored == 0 and [e.line for e in bad.errors] == [11]
    good = import_jsonl(rt.factory, [*lines, lines[3]], source="file", received_at=when, chunk=7)
    assert (good.stored, good.duplicates_in_file, good.already_stored) == (50, 1, 0)
    again = import_jsonl(rt.factory, lines, source="file", received_at=when)
    assert (again.stored, again.already_stored) == (0, 50)
    with rt.factory() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == 50
        first = session.scalars(select(InboxEvent).order_by(InboxEvent.seq)).first()
        assert first is not None and first.received_at == when and first.status == "pending"
        assert first.payload["id"] == json.loads(lines[0])["id"]
    rt.engine.dispose()
