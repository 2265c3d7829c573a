"""``aftersale metrics`` and ``aftersale report`` as a user runs them: a real subprocess and a
real database, bad input answered with exit 1 and one line that says what to fix."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from aftersale.metrics.compute import nps_by_month
from aftersale.metrics.present import CSV_COLUMNS
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import answer, days, placed
from tests.integration.helpers import aftersale, feed


def with_answers(rt: Runtime) -> None:
    """Three customers' orders in March, NPS answers in March and April (one changes their mind)."""
    feed(rt, placed("o-1", START, "c-1"), placed("o-2", START, "c-2"), placed("o-3", START, "c-3"),
         answer("a-1", "nps", 10, START + days(2), "c-1"), answer("a-2", "nps", 3, START + days(2), "c-2"),
         answer("a-3", "nps", 9, START + days(33), "c-3"), answer("a-4", "nps", 8, START + days(34), "c-2"))
    drain_inbox(rt, rt.definitions())


def test_an_empty_database_has_no_data_yet_in_every_format(cli_env: dict[str, str], tmp_path: Path) -> None:
    table = aftersale("metrics", env=cli_env, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "No data yet" in table.stdout

    data = json.loads(aftersale("metrics", "--format", "json", env=cli_env, cwd=tmp_path).stdout)
    assert data["from"] is None
    assert (data["journeys"], data["funnel"], data["cohorts"]) == ([], [], [])
    assert all(s["customers"] == 0 for s in data["segments"])

    rows = aftersale("metrics", "--format", "csv", "--from", "2026-01-01", env=cli_env, cwd=tmp_path)
    assert rows.returncode == 0, rows.stderr
    assert rows.stdout.splitlines()[0] == ",".join(CSV_COLUMNS)

    written = aftersale("report", "--out", str(tmp_path / "r.html"), env=cli_env, cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "No data yet" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_an_unknown_segment_is_refused_with_the_known_ones(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = aftersale("metrics", "--segment", "vip", "--segment", "whales", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("unknown segment 'whales'; known segments: all, ")
    assert "first_time" in line and "vip" in line  # defined ones, even before anyone is in them
    ok = aftersale("metrics", "--segment", "vip", "--format", "json", env=cli_env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--from", "2026-04-01", "--to", "2026-03-31"), "--from 2026-04-01 is after --to 2026-03-31"),
    (("--from", "1 March"), "--from '1 March' is not a date such as 2026-03-31"),
    (("--to", "2026-02-30"), "--to '2026-02-30' is not a date such as 2026-03-31"),
    (("--format", "xml"), "unknown format 'xml'; use table, json or csv"),
])
def test_bad_input_exits_1_with_one_line(cli_env: dict[str, str], tmp_path: Path,
                                         args: tuple[str, ...], message: str) -> None:
    result = aftersale("metrics", *args, env=cli_env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(message)
    assert "Traceback" not in result.stderr
    if args[0] != "--format":
        report = aftersale("report", "--out", str(tmp_path / "r.html"), *args, env=cli_env, cwd=tmp_path)
        assert report.returncode == 1 and report.stderr.strip().startswith(message)
        assert not (tmp_path / "r.html").exists()


def test_nps_by_month_counts_every_answer_in_its_utc_month(rt: Runtime) -> None:
    with_answers(rt)
    with rt.factory() as session:
        months = nps_by_month(session, None, START + days(60))
        april_only = nps_by_month(session, START + days(30), START + days(60))
    assert [(m.month, m.nps.promoters, m.nps.passives, m.nps.detractors, m.nps.value) for m in months] == [
        ("2026-03", 1, 0, 1, 0.0), ("2026-04", 1, 1, 0, 50.0)]
    assert [m.month for m in april_only] == ["2026-04"]


def test_the_report_and_csv_carry_the_answers(rt: Runtime, cli_env: dict[str, str], tmp_path: Path) -> None:
    with_answers(rt)
    out = tmp_path / "report.html"
    result = aftersale("report", "--out", str(out), "--from", "2026-03-01", "--to", "2026-05-31",
                       env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "metrics 2026-03-01 to 2026-05-31" in result.stdout
    html = out.read_text(encoding="utf-8")
    assert "<svg" in html and 'id="nps-trend"' in html
    assert "<th scope=\"row\">2026-04</th>" in html
    # Users have the README, not the design notes.
    assert "“Metrics” section of aftersale's README" in html and "DESIGN.md" not in html

    rows = list(csv.DictReader(io.StringIO(aftersale(
        "metrics", "--format", "csv", "--to", "2026-05-31", env=cli_env, cwd=tmp_path).stdout)))
    customers = {r["segment"]: int(r["value"]) for r in rows if r["metric"] == "customers"}
    assert customers.get("all") == 3, rows


def test_a_report_on_two_connections_leaves_postgresql_no_parallel_workers(rt: Runtime) -> None:
    """The report's two halves run on two connections at once: on PostgreSQL each one turns
    off its queries' own parallel workers (they only competed with the other half: 10.6 s
    against 8.3 s on 2 cores); a report on one connection keeps the server's default."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from aftersale.metrics.compute import compute

    feed(rt, placed("o-1", START, "c-1"))
    drain_inbox(rt, rt.definitions())
    settings: list[tuple[int, str]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("SET LOCAL max_parallel_workers_per_gather"):
            settings.append((id(conn.connection.dbapi_connection), statement))

    event.listen(rt.engine, "before_cursor_execute", record)
    try:
        for parallel in (True, False):
            with Session(rt.engine) as session:
                compute(session, None, START + days(1), {}, parallel=parallel)
            if rt.engine.dialect.name == "sqlite":
                assert settings == []  # nothing to tune
            elif parallel:
                assert len({connection for connection, _ in settings}) == 2
                assert {statement for _, statement in settings} == {
                    "SET LOCAL max_parallel_workers_per_gather = 0"}
            else:
                assert settings == []
            settings.clear()
    finally:
        event.remove(rt.engine, "before_cursor_execute", record)
