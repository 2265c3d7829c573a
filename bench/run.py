"""``make bench``: every section-4 metric over a synthetic year of a shop, timed.

    python -m bench.run [--customers 250000] [--orders 1000000] [--seed 7]
                        [--database sqlite|postgresql|both] [--repeats 3] [--rebuild]
                        [--out bench/results.md]

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
from aftersale.metrics.cohorts import cohorts
from aftersale.metrics.compute import compute
from aftersale.metrics.journeys import funnel, journey_lifts
from aftersale.metrics.model import MetricsReport
from aftersale.metrics.segments import segment_metrics
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


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _floor(session: Session) -> None:
    """The baseline: read every order once, as cheaply as SQL can."""
    session.execute(text("SELECT count(*), sum(total) FROM orders")).all()
    session.execute(text("SELECT customer_id, count(*) FROM orders GROUP BY customer_id")).all()


def measure(url: str, repeats: int = 3, database: str | None = None) -> Measurement:
    """Time compute() for every metric against the floor, interleaved so both see the same
    caches; then each metric family once, to show where the time goes."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            def metrics() -> MetricsReport:
                return compute(session, None, REPORT_END, SURVEY_KINDS, as_of=REPORT_END)

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
            parts = {
                "segment_metrics": _timed(lambda: segment_metrics(session, None, end,
                                                                  SURVEY_KINDS))[0],
                "journey_lifts": _timed(lambda: journey_lifts(session, None, end))[0],
                "funnel": _timed(lambda: funnel(session, None, end))[0],
                "cohorts": _timed(lambda: cohorts(session, None, end))[0],
            }
    finally:
        engine.dispose()
    return Measurement(database=database or engine.dialect.name, report=report,
                       metrics=Timing(runs[0], min(runs)), baseline=Timing(floors[0], min(floors)),
                       parts=parts, peak_rss_mb=_peak_rss_mb())


# -- worlds ----------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"  building: {message}", flush=True)


def _build_in_child(url: str, customers: int, orders: int, seed: int) -> tuple[WorldStats, float]:
    """Build in a fresh process: its memory peak is its own, not the measurement's."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        stats = pool.submit(build_world, url, customers, orders, seed, _progress).result()
    return stats, _peak_rss_mb(resource.RUSAGE_CHILDREN)


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
        table.append((f"{name}: all metrics, best of runs", f"{m.metrics.best:.2f} s", goal,
                      f"{floor:.2f} s floor (best)", _verdict(m.metrics.best, target, floor)))
        table.append((f"{name}: all metrics, first run", f"{m.metrics.first:.2f} s", goal,
                      f"{m.baseline.first:.2f} s floor (first)",
                      _verdict(m.metrics.first, target, m.baseline.first)))
        whole = sum(m.parts.values()) or 1.0
        for part, seconds in m.parts.items():
            table.append((f"  └ {part}", f"{seconds:.2f} s", "—", "—",
                          f"{100 * seconds / whole:.0f}% of the parts"))
        # The measuring process never builds; its peak covers the databases measured so far.
        table.append((f"{name}: peak RSS measuring (so far)", f"{m.peak_rss_mb:,.0f} MiB",
                      "—", "—", "—"))
    return table


HEADERS = ("benchmark", "figure", "target", "baseline", "verdict")


def print_table(table: Sequence[tuple[str, ...]], title: str, console: Console) -> None:
    out = Table(title=title, caption=f"baseline: {BASELINE_LABEL}")
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
             outcomes: Sequence[Outcome]) -> str:
    info = machine()
    pg = postgres_version()
    lines = [
        "# Benchmark results (`make bench`)",
        "",
        f"Written by `python -m bench.run` on {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.",
        "",
        f"- Machine: {info['cores']} cores, {info['RAM']} RAM, {info['platform']}",
        f"- Python {info['Python']}, SQLite {info['SQLite']}, "
        f"PostgreSQL {pg or 'not available'}",
        f"- World: {args.customers:,} customers, {args.orders:,} orders, seed {args.seed}; "
        f"metrics as of {REPORT_END:%Y-%m-%d}, best of {args.repeats} runs",
    ]
    for o in outcomes:
        if o.world is not None:
            w = o.world
            lines.append(f"- {o.database} rows: {w.enrollments:,} enrollments, "
                         f"{w.messages:,} messages, {w.survey_responses:,} survey answers, "
                         f"{w.delivery_events:,} delivery events, {w.referrals:,} referrals; "
                         "customers per segment: "
                         + ", ".join(f"{k} {v:,}" for k, v in sorted(w.segment_customers.items())))
    lines += ["", f"Baseline: {BASELINE_LABEL}, on the same database in the same run.", "",
              "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=250_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached world")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Piped (make, CI) rich would wrap the table at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 150)
    # The 10 s target is for the full size; smaller worlds are scaled linearly.
    target = TARGET_SECONDS * args.orders / 1_000_000
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    outcomes: list[Outcome] = []
    for database in databases:
        console.print(f"[bold]{database}[/]: preparing {args.customers:,} customers / "
                      f"{args.orders:,} orders")
        world: Any = sqlite_world if database == "sqlite" else postgres_world
        url, outcome = world(args.customers, args.orders, args.seed, args.rebuild)
        if outcome.skipped is None:
            console.print(f"[bold]{database}[/]: measuring ({args.repeats} runs)")
            outcome.measurement = measure(url, args.repeats, database)
        outcomes.append(outcome)
    table = rows(outcomes, target, scaled=args.orders != 1_000_000)
    print_table(table, f"aftersale metrics: {args.customers:,} customers, {args.orders:,} orders",
                console)
    args.out.write_text(markdown(table, args, outcomes), encoding="utf-8")
    console.print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
