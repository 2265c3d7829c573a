"""Scale-out (DESIGN.md section 7): several dispatcher processes on one database share the due
messages and never send one twice. On PostgreSQL each claim is ``SELECT ... FOR UPDATE SKIP
LOCKED``; on SQLite writers are serialized."""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.models import Message
from aftersale.emulators.sendgrid import SendGridEmulator
from aftersale.pipeline.runtime import Runtime, open_runtime
from tests.conftest import START, make_settings, needs_postgres, postgres_schema
from tests.integration.faults_helpers import (
    KEY,
    SPAWN,
    accepted_once_each,
    seed_due_messages,
    start_dispatcher,
    statuses,
    with_providers,
)

pytestmark = pytest.mark.subprocess  # every test here runs dispatcher or send-helper processes
NOW = START + timedelta(hours=1)


def run_dispatchers(settings: Settings, count: int) -> tuple[list[dict[str, Any]], float]:
    """``count`` dispatcher processes, started together once each is ready; what each sent,
    and the seconds from the start signal to the last one's end."""
    results = SPAWN.Queue()
    go = SPAWN.Event()
    ready = [SPAWN.Event() for _ in range(count)]
    processes = [start_dispatcher(settings, NOW, name=f"d{n}", ready=ready[n], go=go,
                                  results=results) for n in range(count)]
    try:
        for event in ready:
            assert event.wait(60), "a dispatcher did not start"
        started = time.monotonic()
        go.set()
        reports = []
        for _ in processes:
            try:
                reports.append(results.get(timeout=120))
            except queue.Empty:
                raise AssertionError(f"dispatchers ended without reporting: "
                                     f"{[p.exitcode for p in processes]}") from None
        elapsed = time.monotonic() - started
        for process in processes:
            process.join(30)
            assert process.exitcode == 0
        return reports, elapsed
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()


def reasons(rt: Runtime) -> dict[tuple[str, str | None], int]:
    with rt.factory() as session:
        return {(status, reason): n for status, reason, n in session.execute(
            select(Message.status, Message.status_reason, func.count())
            .group_by(Message.status, Message.status_reason))}


@pytest.fixture
def base(definitions_dirs: tuple[Path, Path], tmp_path: Path) -> Settings:
    """Test settings on a fresh SQLite file (the PostgreSQL test swaps the URL)."""
    return make_settings(f"sqlite:///{tmp_path / 'aftersale.db'}", definitions_dirs)


@pytest.fixture
def postgres_runtime(base: Settings) -> Iterator[tuple[Runtime, SendGridEmulator]]:
    with postgres_schema() as url, SendGridEmulator(api_key=KEY) as sendgrid:
        configured = with_providers(
            base, sendgrid, database_url=url, batch_size=250, send_concurrency=8,
            sendgrid_rate_per_second=1_000_000.0, provider_timeout_seconds=30.0)
        rt = open_runtime(configured, SimulatedClock(NOW))
        yield rt, sendgrid
        rt.engine.dispose()


@needs_postgres
def test_four_dispatcher_processes_share_ten_thousand_messages_on_postgresql_and_send_each_once(
        postgres_runtime: tuple[Runtime, SendGridEmulator], capsys: pytest.CaptureFixture[str]) -> None:
    rt, sendgrid = postgres_runtime
    ids = seed_due_messages(rt, 10_000, START)
    reports, elapsed = run_dispatchers(rt.settings, 4)
    assert Counter(statuses(rt).values()) == {"sent": 10_000}, reasons(rt)

    # The provider accepted every message exactly once ...
    accepted_once_each(sendgrid, ids)
    assert len(sendgrid.requests) == 10_000
    # ... every row says so ...
    assert set(statuses(rt).values()) == {"sent"} and len(statuses(rt)) == 10_000
    # ... no message is in two dispatchers' results, and every dispatcher did a share.
    sent_by = [set(r["sent"]) for r in reports]
    assert sum(len(s) for s in sent_by) == 10_000 and set().union(*sent_by) == set(ids)
    assert all(r["counted_sent"] == len(r["sent"]) for r in reports)
    assert all(len(s) >= 250 for s in sent_by), [len(s) for s in sent_by]
    with capsys.disabled():
        print(f"\nscale-out: 10,000 messages by 4 processes in {elapsed:.1f} s "
              f"({10_000 / elapsed:,.0f} msg/s); shares {sorted(len(s) for s in sent_by)}")


def test_two_dispatcher_processes_on_sqlite_never_send_a_message_twice(base: Settings) -> None:
    with SendGridEmulator(api_key=KEY) as sendgrid:
        configured = with_providers(base, sendgrid, batch_size=50, send_concurrency=4,
                                    sendgrid_rate_per_second=1_000_000.0,
                                    provider_timeout_seconds=30.0)
        rt = open_runtime(configured, SimulatedClock(NOW))
        ids = seed_due_messages(rt, 600, START)
        reports, _ = run_dispatchers(configured, 2)
        accepted_once_each(sendgrid, ids)
        assert set(statuses(rt).values()) == {"sent"}
        sent_by = [set(r["sent"]) for r in reports]
        assert not sent_by[0] & sent_by[1]
        assert sum(len(s) for s in sent_by) == 600
        rt.engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def test_a_backlog_is_sent_from_helper_processes_each_message_once(
        base: Settings, database: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """dispatch_due with send_processes=3 and a backlog worth two helpers: the helpers and
    this process claim their own batches; every message reaches SendGrid exactly once."""
    import contextlib

    import aftersale.orchestration.passes
    from aftersale.orchestration.passes import dispatch_due

    monkeypatch.setattr(aftersale.orchestration.passes, "HELPER_BACKLOG", 40)
    with contextlib.ExitStack() as stack:
        sendgrid = stack.enter_context(SendGridEmulator(api_key=KEY))
        url = (stack.enter_context(postgres_schema()) if database == "postgresql"
               else base.database_url)
        settings = with_providers(base, sendgrid, database_url=url, send_processes=3,
                                  batch_size=20, sendgrid_rate_per_second=1_000_000.0,
                                  provider_timeout_seconds=30.0)
        rt = open_runtime(settings, SimulatedClock(NOW))
        stack.callback(rt.engine.dispose)
        ids = seed_due_messages(rt, 130, START)
        with caplog.at_level("INFO", logger="aftersale.orchestration.passes"):
            counts = dispatch_due(rt, rt.definitions())
        assert "sending from 3 processes" in caplog.text
        assert counts.sent == 130
        accepted_once_each(sendgrid, ids)
        assert set(statuses(rt).values()) == {"sent"}
        # A backlog this process clears alone starts no helper.
        more = seed_due_messages(rt, 30, START, prefix="t")
        caplog.clear()
        with caplog.at_level("INFO", logger="aftersale.orchestration.passes"):
            dispatch_due(rt, rt.definitions())
        assert "processes" not in caplog.text
        accepted_once_each(sendgrid, ids + more)


def test_helpers_stop_with_the_process_that_started_them(
        base: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's own sending fails at once: the helpers are told to stop before their
    next batch, so the run fails without leaving anything half-sent, and the next run sends
    everything exactly once."""
    import aftersale.orchestration.passes
    from aftersale.orchestration.passes import dispatch_due

    with SendGridEmulator(api_key=KEY) as sendgrid:
        settings = with_providers(base, sendgrid, send_processes=2, batch_size=20,
                                  sendgrid_rate_per_second=1_000_000.0)
        rt = open_runtime(settings, SimulatedClock(NOW))
        ids = seed_due_messages(rt, 100, START)
        monkeypatch.setattr(aftersale.orchestration.passes, "HELPER_BACKLOG", 40)
        real_loop = aftersale.orchestration.passes._send_loop

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("this process's sending broke")

        monkeypatch.setattr(aftersale.orchestration.passes, "_send_loop", broken)
        with pytest.raises(RuntimeError, match="sending broke"):
            dispatch_due(rt, rt.definitions())
        # Told to stop as they started, the helpers claimed nothing.
        assert set(statuses(rt).values()) == {"pending"} and not sendgrid.requests
        monkeypatch.setattr(aftersale.orchestration.passes, "_send_loop", real_loop)
        dispatch_due(rt, rt.definitions())
        accepted_once_each(sendgrid, ids)
        rt.engine.dispose()
