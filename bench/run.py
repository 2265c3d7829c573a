"""``make bench``: throughput (intake, processing, dispatch, end to end) and every section-4
metric over a synthetic year of a shop, timed, in one table.

    python -m bench.run [--only intake,processing,dispatch,e2e,metrics]
                        [--events 1000000] [--processing-events 20000]
                        [--messages 5000] [--e2e-events 200]
                        [--customers 250000] [--orders 1000000] [--seed 7]
                        [--database sqlite|postgresql|both] [--repeats 3] [--rebuild]
                        [--out FILE]

A full run writes ``bench/results.md``; a run of some sections only prints its table unless
``--out`` says where to write it, so it cannot replace the full results.

The throughput sections are described in bench/throughput.py. The metrics section:

DESIGN.md section 6: all metrics for 1,000,000 orders / 250,000 customers in at most 10 s,
each figure printed beside a baseline from the same run. The baseline here is the physical
floor of touching every order once: ``SELECT count(*), sum(total) FROM orders`` plus
``SELECT customer_id, count(*) FROM orders GROUP BY customer_id``, on the same database.

The world is built once per database and kept (SQLite: ``bench/.data/``; PostgreSQL: the
``bench`` schema), recognized by its size and seed; ``--rebuild`` starts over. The build runs
in a child process so the peak RSS printed for the metrics is that of computing them alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from aftersale.db.session import make_engine
from aftersale.metrics.anchors import anchor_table
from aftersale.metrics.by_segment import segment_metrics
from aftersale.metrics.cohorts import cohorts
from aftersale.metrics.compute import compute, tune_for_reports
from aftersale.metrics.journeys import funnel, journey_lifts
from aftersale.metrics.model import MetricsReport
from bench import throughput
from bench.world import REPORT_END, SURVEY_KINDS, WorldStats, build_world, stored_world, world_key

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
PG_URL = os.environ.get("AFTERSALE_BENCH_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_SCHEMA = "bench"
TARGET_SECONDS = 10.0  # DESIGN.md section 6, for 1,000,000 orders / 250,000 customers
BASELINE_LABEL = ("floor = SELECT count(*), sum(total) FROM orders + "
                  "SELECT customer_id, count(*) FROM orders GROUP BY customer_id")
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    first: float
    best: float


@dataclass
class Measurement:
    database: str
    report: MetricsReport
    metrics: Timing
    baseline: Timing
    parts: dict[str, float] = field(default_factory=dict)  # one run of each metric family
    peak_rss_mb: float = 0.0


@dataclass
class Outcome:
    """One database's results, or why it was skipped."""

    database: str
    world: WorldStats | None = None
    built: bool = False  # False: the cached world was reused
    build_rss_mb: float | None = None
    measurement: Measurement | None = None
    skipped: str | None = None


def _timed(run: Callable[[], T]) -> tuple[float, T]:
    began = time.perf_counter()
    value = run()
    return time.perf_counter() - began, value


def _floor(session: Session) -> None:
    """The baseline: read every order once, as cheaply as SQL can."""
    session.execute(text("SELECT count(*), sum(total) FROM orders")).all()
    session.execute(text("SELECT customer_id, count(*) FROM orders GROUP BY customer_id")).all()


def measure(url: str, repeats: int = 3, database: str | None = None) -> Measurement:
    """Time compute() for every metric against the floor, interleaved so both see the same
    caches, as ``aftersale metrics`` runs it (two connections); then each metric family once,
    alone, to show where the time goes."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            def metrics() -> MetricsReport:
                return compute(session, None, REPORT_END, SURVEY_KINDS, as_of=REPORT_END,
                               parallel=True)

            floors: list[float] = []
            runs: list[float] = []
            report: MetricsReport | None = None
            for _ in range(max(repeats, 1)):
                floors.append(_timed(lambda: _floor(session))[0])
                seconds, report = _timed(metrics)
                runs.append(seconds)
                session.rollback()  # end the read transaction: no snapshot held between runs
            assert report is not None
            end = REPORT_END
            tune_for_reports(session)
            began = time.perf_counter()
            with anchor_table(session, None, end) as anchors:  # built on entry
                parts = {"anchor table": time.perf_counter() - began}
                parts["segment_metrics"] = _timed(lambda: segment_metrics(
                    session, None, end, SURVEY_KINDS, None, anchors))[0]
                parts["cohorts"] = _timed(lambda: cohorts(session, None, end, anchors))[0]
            parts["journey_lifts"] = _timed(lambda: journey_lifts(session, None, end))[0]
            parts["funnel"] = _timed(lambda: funnel(session, None, end))[0]
            session.rollback()
    finally:
        engine.dispose()
    return Measurement(database=database or engine.dialect.name, report=report,
                       metrics=Timing(runs[0], min(runs)), baseline=Timing(floors[0], min(floors)),
                       parts=parts, peak_rss_mb=throughput.peak_rss_mb())


# -- worlds ----------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"  building: {message}", flush=True)


def _build_in_child(url: str, customers: int, orders: int, seed: int) -> tuple[WorldStats, float]:
    """Build in a fresh process: its memory peak is its own, not the measurement's."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        stats = pool.submit(build_world, url, customers, orders, seed, _progress).result()
    return stats, throughput.peak_rss_mb(resource.RUSAGE_CHILDREN)


def sqlite_world(customers: int, orders: int, seed: int, rebuild: bool) -> tuple[str, Outcome]:
    key = world_key(customers, orders, seed)
    path = DATA / f"world-{key}.db"
    url = f"sqlite:///{path}"
    found = stored_world(url) if path.exists() and not rebuild else None
    if found is not None and found[0] == key:
        return url, Outcome("sqlite", world=found[1])
    DATA.mkdir(exist_ok=True)
    # Built under another name and renamed when complete: an interrupted build is never reused.
    building = path.with_suffix(".building")
    for stale in (path, building):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{stale}{suffix}").unlink(missing_ok=True)
    stats, rss = _build_in_child(f"sqlite:///{building}", customers, orders, seed)
    building.rename(path)
    return url, Outcome("sqlite", world=stats, built=True, build_rss_mb=rss)


def postgres_world(customers: int, orders: int, seed: int, rebuild: bool
                   ) -> tuple[str, Outcome]:
    url = f"{PG_URL}?options=-csearch_path%3D{PG_SCHEMA}"
    key = world_key(customers, orders, seed)
    admin = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        admin.dispose()
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        return url, Outcome("postgresql", skipped=f"PostgreSQL at {PG_URL} did not answer ({reason})")
    try:
        found = None if rebuild else stored_world(url)
        if found is not None and found[0] == key:
            return url, Outcome("postgresql", world=found[1])
        # A private schema, as tests/conftest.py does: dropping it removes every trace.
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
            connection.execute(text(f'CREATE SCHEMA "{PG_SCHEMA}"'))
    finally:
        admin.dispose()
    stats, rss = _build_in_child(url, customers, orders, seed)
    return url, Outcome("postgresql", world=stats, built=True, build_rss_mb=rss)


# -- the table -------------------------------------------------------------------------------


def _verdict(seconds: float, target: float, floor: float) -> str:
    ratio = f"{seconds / floor:.1f}× floor" if floor > 0 else "floor ~0"
    if seconds <= target:
        return f"met ({ratio})"
    return f"MISSED by {seconds - target:.1f} s ({ratio})"


def rows(outcomes: Sequence[Outcome], target: float, scaled: bool = False
         ) -> list[tuple[str, str, str, str, str]]:
    """benchmark | figure | target | baseline | verdict, for the terminal and the Markdown."""
    table: list[tuple[str, str, str, str, str]] = []
    goal = f"≤ {target:.3g} s" + (" (scaled to size)" if scaled else "")
    for o in outcomes:
        name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[o.database]
        if o.skipped:
            table.append((f"{name}: all metrics", "skipped", goal, "—", o.skipped))
            continue
        w = o.world
        assert w is not None
        total_rows = (w.customers + w.orders + w.enrollments + w.messages + w.survey_responses
                      + w.delivery_events + w.referrals)
        build = "this run" if o.built else "cached; time of its build"
        table.append((f"{name}: build world ({build})", f"{w.seconds:.1f} s", "< 120 s",
                      f"{total_rows / w.seconds:,.0f} rows/s written",
                      "met" if w.seconds < 120 else "slow"))
        if o.build_rss_mb is not None:
            table.append((f"{name}: peak RSS of the build (child)", f"{o.build_rss_mb:,.0f} MiB",
                          "—", "—", "—"))
        m = o.measurement
        if m is None:
            continue
        floor = m.baseline.best
        table.append((f"{name}: all metrics (2 connections), best", f"{m.metrics.best:.2f} s", goal,
                      f"{floor:.2f} s floor (best)", _verdict(m.metrics.best, target, floor)))
        table.append((f"{name}: all metrics (2 connections), first", f"{m.metrics.first:.2f} s",
                      goal,
                      f"{m.baseline.first:.2f} s floor (first)",
                      _verdict(m.metrics.first, target, m.baseline.first)))
        whole = sum(m.parts.values()) or 1.0
        for part, seconds in m.parts.items():
            table.append((f"  └ {part} (alone, in turn)", f"{seconds:.2f} s", "—", "—",
                          f"{100 * seconds / whole:.0f}% of {whole:.1f} s in turn"))
        # The measuring process never builds; its peak covers the databases measured so far.
        table.append((f"{name}: peak RSS measuring (so far)", f"{m.peak_rss_mb:,.0f} MiB",
                      "—", "—", "—"))
    return table


HEADERS = ("benchmark", "figure", "target", "baseline", "verdict")


def print_table(table: Sequence[tuple[str, ...]], title: str, console: Console,
                caption: str = f"metrics baseline: {BASELINE_LABEL}") -> None:
    out = Table(title=title, caption=caption)
    for header in HEADERS:
        out.add_column(header)
    for row in table:
        out.add_row(*row)
    console.print(out)


def machine() -> dict[str, str]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cores": str(os.cpu_count()), "RAM": f"{pages / 2**30:.1f} GiB",
            "Python": platform.python_version(), "SQLite": sqlite3.sqlite_version,
            "platform": platform.platform()}


def postgres_version() -> str | None:
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar())
    except Exception:  # noqa: BLE001 - not running: nothing to report
        return None
    finally:
        engine.dispose()


def markdown(table: Sequence[tuple[str, ...]], args: argparse.Namespace,
             outcomes: Sequence[Outcome], notes: Sequence[str] = ()) -> str:
    info = machine()
    pg = postgres_version()
    lines = [
        "# Benchmark results (`make bench`)",
        "",
        f"Written by `python -m bench.run` on {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.",
        "",
        f"- Machine: {info['cores']} cores, {info['RAM']} RAM, {info['platform']}; 1-minute "
        f"load average {os.getloadavg()[0]:.1f} when written (this run's own work included)",
        f"- Python {info['Python']}, SQLite {info['SQLite']}, "
        f"PostgreSQL {pg or 'not available'}",
        f"- Sections: {', '.join(args.sections)}",
    ]
    lines += [f"- {note}" for note in notes]
    if "metrics" in args.sections:
        lines.append(f"- World: {args.customers:,} customers, {args.orders:,} orders, seed "
                     f"{args.seed}; metrics as of {REPORT_END:%Y-%m-%d}, best of "
                     f"{args.repeats} runs")
    for o in outcomes:
        if o.world is not None:
            w = o.world
            lines.append(f"- {o.database} rows: {w.enrollments:,} enrollments, "
                         f"{w.messages:,} messages, {w.survey_responses:,} survey answers, "
                         f"{w.delivery_events:,} delivery events, {w.referrals:,} referrals; "
                         "customers per segment: "
                         + ", ".join(f"{k} {v:,}" for k, v in sorted(w.segment_customers.items())))
    if "metrics" in args.sections:
        lines += ["", f"Metrics baseline: {BASELINE_LABEL}, on the same database in the same run."]
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    return "\n".join(lines) + "\n"


SECTIONS = (*throughput.SECTIONS, "metrics")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {','.join(SECTIONS)}")
    parser.add_argument("--events", type=int, default=throughput.Sizes.intake,
                        help="events in the intake file")
    parser.add_argument("--processing-events", type=int, default=throughput.Sizes.processing)
    parser.add_argument("--messages", type=int, default=throughput.Sizes.dispatch,
                        help="messages queued for the dispatch benchmark")
    parser.add_argument("--e2e-events", type=int, default=throughput.Sizes.e2e)
    parser.add_argument("--customers", type=int, default=250_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached world")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the markdown table (default: bench/results.md, "
                             "and only when every section ran, so a partial run cannot "
                             "replace the full results)")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; use {','.join(SECTIONS)}")
    if args.out is None and set(args.sections) == set(SECTIONS):
        args.out = HERE / "results.md"
    return args


def postgres_problem() -> str | None:
    """None when PostgreSQL answers, else why it is skipped."""
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return (f"PostgreSQL at {PG_URL} did not answer "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
    finally:
        engine.dispose()


def run_throughput(args: argparse.Namespace, databases: Sequence[str], console: Console
                   ) -> tuple[list[throughput.Result], dict[str, str]]:
    sections = [s for s in throughput.SECTIONS if s in args.sections]
    sizes = throughput.Sizes(intake=args.events, processing=args.processing_events,
                             dispatch=args.messages, e2e=args.e2e_events)
    results: list[throughput.Result] = []
    skipped: dict[str, str] = {}

    def log(message: str) -> None:
        console.print(f"  {message}", highlight=False)

    available = []
    for database in databases:
        problem = postgres_problem() if database == "postgresql" else None
        if problem:
            skipped[database] = problem
        else:
            available.append(database)
    plain = [s for s in sections if s != "e2e"]
    for database in available:
        if plain:
            console.print(f"[bold]{database}[/]: throughput ({', '.join(plain)})")
            results += throughput.run_sections(database, plain, sizes, PG_URL, log)
    if "e2e" in sections and available:
        console.print("[bold]end to end[/]: starting a local Prefect server")
        with throughput.prefect_server():
            for database in available:
                console.print(f"[bold]{database}[/]: end to end")
                results += throughput.run_sections(database, ["e2e"], sizes, PG_URL, log)
    return results, skipped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Before Prefect is imported (the end-to-end section): no telemetry, no logs shipped.
    for name, value in (("DO_NOT_TRACK", "1"), ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
                        ("PREFECT_LOGGING_TO_API_ENABLED", "false"),
                        ("PREFECT_LOGGING_LEVEL", "WARNING")):
        os.environ.setdefault(name, value)
    # Piped (make, CI) rich would wrap the table at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 180)
    # The 10 s target is for the full size; smaller worlds are scaled linearly.
    target = TARGET_SECONDS * args.orders / 1_000_000
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    outcomes: list[Outcome] = []
    if "metrics" in args.sections:
        for database in databases:
            console.print(f"[bold]{database}[/]: preparing {args.customers:,} customers / "
                          f"{args.orders:,} orders")
            world: Any = sqlite_world if database == "sqlite" else postgres_world
            url, outcome = world(args.customers, args.orders, args.seed, args.rebuild)
            if outcome.skipped is None:
                console.print(f"[bold]{database}[/]: measuring ({args.repeats} runs)")
                outcome.measurement = measure(url, args.repeats, database)
            outcomes.append(outcome)
    # After the metrics: their "peak RSS measuring" row is then the metrics' alone.
    results, skipped = run_throughput(args, databases, console)
    table = throughput.rows(results, skipped)
    table += rows(outcomes, target, scaled=args.orders != 1_000_000)
    notes = throughput.notes(results)
    title = "aftersale benchmarks"
    if "metrics" in args.sections:
        title += f" (metrics: {args.customers:,} customers, {args.orders:,} orders)"
    print_table(table, title, console,
                caption=" · ".join(["baselines: measured in the same run",
                                    *([f"metrics: {BASELINE_LABEL}"]
                                      if "metrics" in args.sections else [])]))
    for note in notes:
        console.print(f"  {note}", highlight=False)
    if args.out is None:
        console.print(f"not written: a run of {','.join(args.sections)} only (--out FILE "
                      "writes it)")
    else:
        args.out.write_text(markdown(table, args, outcomes, notes), encoding="utf-8")
        console.print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
