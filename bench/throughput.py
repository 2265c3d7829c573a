"""Throughput benchmarks (DESIGN.md section 6): intake, processing, dispatch and end to end,
each beside a baseline measured in the same run, on SQLite and PostgreSQL.

- intake: a JSON Lines file through the real import path (``aftersale ingest``:
  :func:`aftersale.intake.importer.import_jsonl`, validation included), in a child process
  whose peak RSS is reported; baseline: the same rows bulk-inserted into the same table
  (SQLite ``executemany``, PostgreSQL ``COPY``) in a fresh database.
- processing: the inbox drained by :func:`aftersale.pipeline.apply_events.process_batch` (what the
  process-events flow's task calls), a realistic mix so upserts, enrollments and resumed waits
  happen; between batches (untimed) ``advance_due`` moves new enrollments to their waits, as
  dispatch-messages would. Baseline: reading every payload and marking it processed in raw SQL.
- dispatch: queued messages sent by ``dispatch_due`` (claim, rules, channel choice, rendering,
  official SendGrid/Twilio clients, recording) to the emulators, which run in their own process;
  with the default ``send_processes`` a backlog this size is sent from up to one process per
  core (``aftersale.orchestration.passes.sending_processes``). Baseline: the emulators' raw request rate
  from a trivial keep-alive HTTP client at the same concurrency, in one process.
- end to end: one Prefect flow run per event (the naive design) against the batched flows
  (process-events + dispatch-messages), on the same events, against a local Prefect server.

Every database is a fresh one: ``bench/.data/tp-*.db`` or a ``bench_tp_*`` schema.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text, update

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.migrate import upgrade
from aftersale.db.models import InboxEvent, Message
from aftersale.db.session import make_engine
from aftersale.intake.importer import default_workers, import_jsonl
from aftersale.pipeline.runtime import Runtime, open_runtime
from bench.events import generate, write_jsonl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / ".data"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SPAN = timedelta(hours=48)
END = START + SPAN  # the processing clock: every event is younger than 72 hours

TARGETS = {"intake": 50_000, "processing": 10_000, "dispatch": 1_000}  # per second, SQLite
RSS_LIMIT_MB = 1024
Row = tuple[str, str, str, str, str]  # benchmark | figure | target | baseline | verdict
SECTIONS = ("intake", "processing", "dispatch", "e2e")


@dataclass
class Sizes:
    intake: int = 1_000_000
    processing: int = 20_000  # about 4 s per database; the rate falls as the history grows
    dispatch: int = 5_000
    e2e: int = 200


@dataclass
class Result:
    section: str
    database: str
    rate: float  # per second
    baseline_rate: float
    count: int
    seconds: float
    baseline_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


# -- databases -------------------------------------------------------------------------------


def fresh_database(database: str, tag: str, pg_url: str) -> str:
    """An empty, migrated database for one measurement."""
    if database == "sqlite":
        DATA.mkdir(exist_ok=True)
        path = DATA / f"tp-{tag}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        schema = f"bench_tp_{tag}".replace("-", "_")
        admin = create_engine(pg_url)
        try:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        finally:
            admin.dispose()
        url = f"{pg_url}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


def drop_database(database: str, tag: str, pg_url: str) -> None:
    if database == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DATA / f'tp-{tag}.db'}{suffix}").unlink(missing_ok=True)
        return
    admin = create_engine(pg_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "bench_tp_{tag}" CASCADE'))
    finally:
        admin.dispose()


def bench_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url, "journeys_dir": ROOT / "journeys", "content_dir": ROOT / "content",
        "secret_key": "bench-secret", "public_url": "https://shop.example.com",
        "batch_size": 1000, "prefect_events": False, "quiet_hours": "off"}
    values.update(overrides)
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _in_child(function: Callable[..., Any], *args: Any) -> Any:
    """Run in a fresh process: its memory peak is its own, and the GIL is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# -- intake ----------------------------------------------------------------------------------


def events_file(count: int, seed: int = 11) -> Path:
    """The JSON Lines file of ``count`` events, written once and kept in bench/.data."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"events-{count}-s{seed}.jsonl"
    if not path.exists():
        building = path.with_suffix(".building")
        write_jsonl(building, count, start=START, seed=seed, span=SPAN)
        building.rename(path)
    return path


def _import_child(url: str, path: str) -> dict[str, Any]:
    """The measured import, as ``aftersale ingest`` runs it (after its settings)."""
    rt = open_runtime(bench_settings(url), SimulatedClock(END), migrate=False)
    try:
        workers = default_workers()  # as aftersale ingest
        began = time.perf_counter()
        with open(path, encoding="utf-8") as handle:
            result = import_jsonl(rt.factory, handle, source="file", received_at=rt.now(),
                                  workers=workers)
        seconds = time.perf_counter() - began
    finally:
        rt.engine.dispose()
    # The validating workers' memory counts too: RUSAGE_CHILDREN holds the largest worker's
    # peak, so the writer's peak plus that times the workers is an upper bound.
    return {"seconds": seconds, "stored": result.stored, "errors": len(result.errors),
            "rss_mb": peak_rss_mb() + workers * peak_rss_mb(resource.RUSAGE_CHILDREN),
            "workers": workers}


RAW_COLUMNS = ("event_id", "type", "occurred_at", "received_at", "source", "payload", "status")


def _raw_rows(url: str, chunk: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
    """The imported rows, exactly as stored, a chunk at a time (read time is not measured)."""
    engine = make_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
            last = 0
            mark = "?" if engine.dialect.name == "sqlite" else "%s"
            while True:
                cursor.execute(f"SELECT seq, {', '.join(RAW_COLUMNS)} FROM inbox_events "
                               f"WHERE seq > {mark} ORDER BY seq LIMIT {chunk}", (last,))
                rows = cursor.fetchall()
                if not rows:
                    return
                last = rows[-1][0]
                if engine.dialect.name == "postgresql":  # json comes back decoded
                    yield [(*r[1:6], json.dumps(r[6]), r[7]) for r in rows]
                else:
                    yield [tuple(r[1:]) for r in rows]
        finally:
            raw.close()
    finally:
        engine.dispose()


def _bulk_insert_child(source_url: str, target_url: str) -> dict[str, Any]:
    """The physical limit: the same rows into the same (empty) table, the driver's bulk path."""
    engine = make_engine(target_url)
    seconds, count = 0.0, 0
    try:
        raw = engine.raw_connection()
        try:
            connection = raw.driver_connection
            cursor = connection.cursor()  # type: ignore[union-attr]
            columns = ", ".join(RAW_COLUMNS)
            for rows in _raw_rows(source_url):
                began = time.perf_counter()
                if engine.dialect.name == "sqlite":
                    cursor.executemany(f"INSERT INTO inbox_events ({columns}) VALUES "
                                       f"({', '.join('?' * len(RAW_COLUMNS))})", rows)
                else:
                    with cursor.copy(f"COPY inbox_events ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                seconds += time.perf_counter() - began
                count += len(rows)
            began = time.perf_counter()
            connection.commit()  # type: ignore[union-attr]
            seconds += time.perf_counter() - began
        finally:
            raw.close()
    finally:
        engine.dispose()
    return {"seconds": seconds, "count": count}


def bench_intake(database: str, count: int, pg_url: str, log: Callable[[str], None]) -> Result:
    path = events_file(count)
    url = fresh_database(database, "intake", pg_url)
    log(f"intake: importing {count:,} events from {path.name}")
    imported = _in_child(_import_child, url, str(path))
    target = fresh_database(database, "intake-raw", pg_url)
    log("intake: bulk-inserting the same rows (baseline)")
    raw = _in_child(_bulk_insert_child, url, target)
    for tag in ("intake", "intake-raw"):
        drop_database(database, tag, pg_url)
    return Result("intake", database, count / imported["seconds"], raw["count"] / raw["seconds"],
                  count, imported["seconds"], raw["seconds"],
                  {"stored": imported["stored"], "errors": imported["errors"],
                   "rss_mb": imported["rss_mb"], "workers": imported["workers"]})


# -- processing ------------------------------------------------------------------------------


def _store(rt: Runtime, events: Iterator[dict[str, Any]]) -> int:
    lines = (json.dumps(e) for e in events)
    return import_jsonl(rt.factory, lines, source="bench", received_at=rt.now()).stored


def _floor_pass(rt: Runtime, batch: int) -> int:
    """The baseline: every pending event read (payload decoded) and marked processed in raw
    SQL, a batch per transaction, as process_batch batches."""
    done = 0
    dialect = rt.engine.dialect.name
    mark = "?" if dialect == "sqlite" else "%s"
    raw = rt.engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        while True:
            cursor.execute("SELECT seq, payload FROM inbox_events WHERE status = 'pending' "
                           f"ORDER BY seq LIMIT {batch}")
            rows = cursor.fetchall()
            if not rows:
                break
            for _, payload in rows:
                if isinstance(payload, str):
                    json.loads(payload)
            cursor.executemany(f"UPDATE inbox_events SET status = 'processed' WHERE seq = {mark}",
                               [(seq,) for seq, _ in rows])
            raw.driver_connection.commit()  # type: ignore[union-attr]
            done += len(rows)
    finally:
        raw.close()
    return done


def bench_processing(database: str, count: int, pg_url: str, log: Callable[[str], None]
                     ) -> Result:
    from aftersale.pipeline.advance import advance_due
    from aftersale.pipeline.apply_events import ProcessCounts, process_batch

    url = fresh_database(database, "processing", pg_url)
    # The configured batch (1000); toy sizes take ten batches, so waits resume in between.
    batch = min(1000, max(count // 10, 10))
    rt = open_runtime(bench_settings(url, batch_size=batch), SimulatedClock(END), migrate=False)
    try:
        definitions = rt.definitions()
        log(f"processing: storing {count:,} events")
        stored = _store(rt, generate(count, start=START, span=SPAN, seed=12))
        log("processing: baseline (read and mark every event in raw SQL)")
        began = time.perf_counter()
        floor_count = _floor_pass(rt, rt.settings.batch_size)
        floor_seconds = time.perf_counter() - began
        with rt.factory() as session, session.begin():
            session.execute(update(InboxEvent).values(status="pending", processed_at=None))
        log("processing: process_batch over the inbox (advance_due between batches, untimed)")
        total = ProcessCounts()
        seconds = advance_seconds = 0.0
        max_age = timedelta(hours=rt.settings.max_trigger_age_hours)
        while True:
            began = time.perf_counter()
            counts = process_batch(rt.factory, definitions, rt.clock, rt.settings.batch_size,
                                   max_age)
            seconds += time.perf_counter() - began
            total.add(counts)
            began = time.perf_counter()
            while advance_due(rt.factory, definitions, rt.clock,
                              rt.settings.batch_size).advanced:
                pass
            advance_seconds += time.perf_counter() - began
            if counts.events < rt.settings.batch_size:
                break
    finally:
        rt.engine.dispose()
    drop_database(database, "processing", pg_url)
    return Result("processing", database, total.events / seconds, floor_count / floor_seconds,
                  total.events, seconds, floor_seconds,
                  {"stored": stored, "counts": total.summary(), "advance_seconds": advance_seconds})


# -- dispatch --------------------------------------------------------------------------------

SENDGRID_KEY = "SG.bench-key"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "bench-token"


def _serve_emulators(ports: Any, stop: Any) -> None:
    """The child process: both emulators, until told to stop. Replies are not kept (the
    emulators' request logs would grow by thousands of entries a second)."""
    from aftersale.emulators.sendgrid import SendGridEmulator
    from aftersale.emulators.twilio import TwilioEmulator

    sendgrid = SendGridEmulator(api_key=SENDGRID_KEY).start()
    twilio = TwilioEmulator(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN).start()

    def forget() -> None:
        while not stop.wait(1.0):
            for emulator in (sendgrid, twilio):
                with emulator._lock:
                    emulator.requests.clear()
            sendgrid.sent.clear()
            twilio.messages.clear()

    threading.Thread(target=forget, daemon=True).start()
    ports.send((sendgrid.port, twilio.port))
    stop.wait()
    sendgrid.stop()
    twilio.stop()


class Emulators:
    """SendGrid and Twilio emulators in their own process, so they do not take the GIL from
    the dispatcher being measured."""

    def __enter__(self) -> Emulators:
        context = get_context("spawn")
        self._stop = context.Event()
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve_emulators, args=(send, self._stop),
                                        daemon=True)
        self._process.start()
        if not receive.poll(60):
            raise RuntimeError("the emulators did not start")
        self.sendgrid_port, self.twilio_port = receive.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


def raw_request_rate(port: int, requests: int, concurrency: int) -> tuple[int, float]:
    """The baseline: POSTs of one fixed mail to the SendGrid emulator from a trivial
    keep-alive client (http.client), ``concurrency`` at a time."""
    body = json.dumps({"personalizations": [{"to": [{"email": "a@example.com"}]}],
                       "from": {"email": "shop@example.com"}, "subject": "Hello",
                       "content": [{"type": "text/plain", "value": "Hi"}]}).encode()
    headers = {"Authorization": f"Bearer {SENDGRID_KEY}", "Content-Type": "application/json"}
    per_worker = max(requests // concurrency, 1)

    def worker(_: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ok = 0
        try:
            for _ in range(per_worker):
                connection.request("POST", "/v3/mail/send", body, headers)
                response = connection.getresponse()
                response.read()
                ok += response.status == 202
        finally:
            connection.close()
        return ok

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        ok = sum(pool.map(worker, range(concurrency)))
    return ok, time.perf_counter() - began


def _dispatch_events(count: int) -> Iterator[dict[str, Any]]:
    """``count`` customers, one order each, placed and shipped: each queues a shipping update
    (transactional, sent whatever the hour) on WhatsApp, SMS or e-mail by consent."""
    for event in generate(count * 3, start=END - timedelta(hours=30), span=timedelta(hours=24),
                          seed=13, prefix="d"):
        if event["type"] in ("order.placed", "order.shipped"):
            yield event


def bench_dispatch(database: str, count: int, pg_url: str, log: Callable[[str], None]) -> Result:
    from aftersale.orchestration.passes import dispatch_due, drain_inbox, sending_processes
    from aftersale.pipeline.advance import advance_due

    url = fresh_database(database, "dispatch", pg_url)
    with Emulators() as emulators:
        settings = bench_settings(
            url, email_provider="sendgrid", sendgrid_api_key=SENDGRID_KEY,
            sendgrid_base_url=f"http://127.0.0.1:{emulators.sendgrid_port}",
            sms_provider="twilio", whatsapp_provider="twilio", twilio_account_sid=TWILIO_SID,
            twilio_auth_token=TWILIO_TOKEN, twilio_from="+15005550006",
            twilio_whatsapp_from="+15005550006",
            twilio_base_url=f"http://127.0.0.1:{emulators.twilio_port}",
            # Our own pacing per provider account would cap the figure at the account's rate
            # (100/s and 10/s by default): lifted here to measure the machinery.
            sendgrid_rate_per_second=1e6, twilio_rate_per_second=1e6)
        rt = open_runtime(settings, SimulatedClock(END), migrate=False)
        try:
            definitions = rt.definitions()
            log(f"dispatch: queueing ~{count:,} shipping updates (untimed)")
            _store(rt, _dispatch_events(count))
            drain_inbox(rt, definitions)
            while advance_due(rt.factory, definitions, rt.clock, rt.settings.batch_size).advanced:
                pass
            with rt.factory() as session:
                queued = session.scalar(select(func.count()).select_from(Message)
                                        .where(Message.status == "pending")) or 0
            processes = sending_processes(rt)
            log(f"dispatch: sending {queued:,} messages "
                f"(concurrency {settings.send_concurrency}, {processes} processes)")
            began = time.perf_counter()
            counts = dispatch_due(rt, definitions)
            seconds = time.perf_counter() - began
        finally:
            rt.engine.dispose()
        log("dispatch: raw request rate of the emulator (baseline)")
        raw_ok, raw_seconds = raw_request_rate(emulators.sendgrid_port, max(queued, 1000),
                                               settings.send_concurrency)
    drop_database(database, "dispatch", pg_url)
    return Result("dispatch", database, counts.sent / seconds if seconds else 0.0,
                  raw_ok / raw_seconds, counts.sent, seconds, raw_seconds,
                  {"queued": queued, "by_channel": dict(counts.sent_by_channel),
                   "failed": counts.failed, "not_sent": counts.not_sent,
                   "concurrency": settings.send_concurrency, "processes": processes})


# -- end to end ------------------------------------------------------------------------------


def bench_e2e(database: str, count: int, pg_url: str, log: Callable[[str], None]) -> Result:
    """Needs a Prefect API (see :func:`prefect_server`)."""
    from aftersale.orchestration.dispatch_messages import dispatch_messages
    from aftersale.orchestration.flow_context import using_runtime
    from aftersale.orchestration.process_events import process_events
    from bench.naive import one_event_flow

    events = [e for e in generate(count, start=END - timedelta(hours=30),
                                  span=timedelta(hours=24), seed=14, prefix="e")]
    results: dict[str, tuple[float, int, int]] = {}
    for design in ("naive", "batched"):
        url = fresh_database(database, f"e2e-{design}", pg_url)
        rt = open_runtime(bench_settings(url), SimulatedClock(END), migrate=False)
        try:
            with using_runtime(rt):
                log(f"e2e: {design} ({count} events)")
                began = time.perf_counter()
                if design == "naive":
                    for event in events:
                        one_event_flow(event)
                else:
                    _store(rt, iter(events))
                    process_events()
                    dispatch_messages()
                seconds = time.perf_counter() - began
            with rt.factory() as session:
                processed = session.scalar(select(func.count()).select_from(InboxEvent).where(
                    InboxEvent.status == "processed")) or 0
                sent = session.scalar(select(func.count()).select_from(Message).where(
                    Message.status == "sent")) or 0
        finally:
            rt.engine.dispose()
        drop_database(database, f"e2e-{design}", pg_url)
        results[design] = (seconds, processed, sent)
    (batched, processed, sent), (naive, naive_processed, naive_sent) = (results["batched"],
                                                                         results["naive"])
    return Result("e2e", database, count / batched, count / naive, count, batched, naive,
                  {"processed": processed, "sent": sent, "naive_processed": naive_processed,
                   "naive_sent": naive_sent})


class prefect_server:
    """A temporary local Prefect server (``prefect_test_harness``) unless one is configured."""

    def __enter__(self) -> prefect_server:
        self._home = tempfile.mkdtemp(prefix="aftersale-bench-prefect-")
        self._saved = {k: os.environ.get(k) for k in ("PREFECT_HOME",)}
        os.environ.setdefault("PREFECT_HOME", self._home)
        from prefect.testing.utilities import prefect_test_harness

        self._harness = prefect_test_harness(server_startup_timeout=120)
        self._harness.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._harness.__exit__(*exc)
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
        shutil.rmtree(self._home, ignore_errors=True)


# -- the rows --------------------------------------------------------------------------------

NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def _verdict(rate: float, target: float | None) -> str:
    if target is None:
        return "—"
    return "met" if rate >= target else f"MISSED ({rate / target:.0%} of target)"


def rows(results: Sequence[Result], skipped: dict[str, str] | None = None) -> list[Row]:
    """benchmark | figure | target | baseline | verdict, in the metrics table's shape. The
    targets are the SQLite ones; PostgreSQL is shown against the same figures."""
    table: list[Row] = []
    for database, reason in (skipped or {}).items():
        table.append((f"{NAMES[database]}: throughput", "skipped", "—", "—", reason))
    for r in results:
        name = NAMES[r.database]
        target = TARGETS.get(r.section)
        goal = f"≥ {target:,} /s" if target else "—"
        ratio = r.rate / r.baseline_rate if r.baseline_rate else 0.0
        if r.section == "intake":
            table.append((f"{name}: intake, {r.count:,} events (ingest path)",
                          f"{r.rate:,.0f} events/s", goal,
                          f"{r.baseline_rate:,.0f} rows/s raw bulk insert "
                          f"({'COPY' if r.database == 'postgresql' else 'executemany'})",
                          f"{_verdict(r.rate, target)}; {ratio:.0%} of raw"))
            rss = r.extra["rss_mb"]
            table.append((f"{name}: intake, peak RSS of the import (writer + "
                           f"{r.extra['workers']} validating workers)", f"{rss:,.0f} MiB",
                          f"< {RSS_LIMIT_MB:,} MiB", "—",
                          "met" if rss < RSS_LIMIT_MB else "MISSED"))
        elif r.section == "processing":
            table.append((f"{name}: processing, {r.count:,} events (process_batch)",
                          f"{r.rate:,.0f} events/s", goal,
                          f"{r.baseline_rate:,.0f} events/s raw read + mark",
                          f"{_verdict(r.rate, target)}; {ratio:.0%} of raw"))
        elif r.section == "dispatch":
            table.append((f"{name}: dispatch, {r.count:,} messages "
                          f"(official clients, concurrency {r.extra['concurrency']}, "
                          f"{_processes(r.extra.get('processes', 1))})",
                          f"{r.rate:,.0f} msg/s", goal,
                          f"{r.baseline_rate:,.0f} req/s raw to the emulator",
                          f"{_verdict(r.rate, target)}; {ratio:.0%} of raw"))
        elif r.section == "e2e":
            table.append((f"{name}: end to end, {r.count} events, batched flows",
                          f"{r.rate:,.1f} events/s", "—",
                          f"{r.baseline_rate:,.1f} events/s, one flow run per event",
                          f"{ratio:,.0f}× the naive design"))
    return table


def run_sections(database: str, sections: Sequence[str], sizes: Sizes, pg_url: str,
                 log: Callable[[str], None]) -> list[Result]:
    """The chosen sections on one database (e2e expects a Prefect API to be set up)."""
    runners = {"intake": bench_intake, "processing": bench_processing,
               "dispatch": bench_dispatch, "e2e": bench_e2e}
    return [runners[s](database, getattr(sizes, s), pg_url, log) for s in SECTIONS
            if s in sections]


def notes(results: Sequence[Result]) -> list[str]:
    """What each figure covered, for the reader of the table."""
    lines: list[str] = []
    for r in results:
        name = NAMES[r.database]
        if r.section == "intake":
            lines.append(f"{name} intake: {r.extra['stored']:,} stored of {r.count:,} in "
                         f"{r.seconds:.1f} s (raw insert {r.baseline_seconds:.1f} s), "
                         f"{r.extra['errors']} invalid")
        elif r.section == "processing":
            c = r.extra["counts"]
            lines.append(f"{name} processing: {r.count:,} events in {r.seconds:.1f} s "
                         f"(advance_due between batches, untimed: "
                         f"{r.extra['advance_seconds']:.1f} s); enrolled {c['enrolled']:,}, "
                         f"holdout {c['holdout']:,}, resumed {c['resumed']:,}, exited "
                         f"{c['exited']:,}, failed {c['failed']:,}; by type "
                         + ", ".join(f"{k} {v:,}" for k, v in sorted(c["by_type"].items())))
        elif r.section == "dispatch":
            lines.append(f"{name} dispatch: {r.count:,} sent of {r.extra['queued']:,} queued "
                         f"in {r.seconds:.1f} s, by channel "
                         + ", ".join(f"{k} {v:,}" for k, v in sorted(r.extra["by_channel"].items()))
                         + f"; failed {r.extra['failed']}, not sent {r.extra['not_sent']}; "
                         "provider pacing lifted to 1e6/s")
        elif r.section == "e2e":
            lines.append(f"{name} end to end: batched {r.seconds:.1f} s "
                         f"({r.extra['processed']} processed, {r.extra['sent']} sent), "
                         f"one run per event {r.baseline_seconds:.1f} s "
                         f"({r.extra['naive_processed']} processed, {r.extra['naive_sent']} sent)")
    return lines
