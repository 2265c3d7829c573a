"""A sender stopped in the middle of a big batch to a slow provider, for real: its own process,
SIGKILLed (an OOM kill, a preemption) or sent SIGTERM (a deploy), against the SendGrid
emulator, on SQLite and PostgreSQL. A kill leaves in doubt only the calls that may have
started; SIGTERM leaves nothing in doubt and no process behind. Each message reaches the
provider exactly once in the end (or is flagged, never resent).

The figures each test reaches are printed (``pytest -s``): sent before the stop, flagged,
resent by the next run, duplicates."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.models import Message
from aftersale.emulators.sendgrid import SendGridEmulator
from aftersale.orchestration.passes import dispatch_due
from aftersale.pipeline.runtime import Runtime, open_runtime
from tests.conftest import START
from tests.integration.faults_helpers import (
    KEY,
    accepted_ids,
    kill,
    seed_due_messages,
    start_dispatcher,
    wait_until,
    with_providers,
)

pytestmark = pytest.mark.subprocess  # every test here stops a dispatcher or `aftersale run` process
NOW = START + timedelta(hours=1)
BATCH = 1500  # one claimed batch
CONCURRENCY = 8  # AFTERSALE_SEND_CONCURRENCY
LATENCY = 0.04  # seconds per SendGrid answer: a slow provider, ~200 e-mails/s at 8 at once
STOP_AFTER = 300  # accepted by the provider when the sender is stopped


@pytest.fixture
def sendgrid() -> Iterator[SendGridEmulator]:
    with SendGridEmulator(api_key=KEY) as emulator:
        emulator.latency = LATENCY
        yield emulator


def slow_batch(settings: Settings, sendgrid: SendGridEmulator) -> tuple[Runtime, list[str]]:
    rt = open_runtime(with_providers(settings, sendgrid, batch_size=BATCH,
                                     send_concurrency=CONCURRENCY,
                                     sendgrid_rate_per_second=10_000.0,
                                     provider_timeout_seconds=10.0), SimulatedClock(NOW))
    return rt, seed_due_messages(rt, BATCH, START)


def rows(rt: Runtime) -> dict[str, Message]:
    with rt.factory() as session:
        return {m.id: m for m in session.scalars(select(Message))}


def next_run(rt: Runtime, offset: timedelta) -> None:
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    clock.set(NOW + offset)
    dispatch_due(rt, rt.definitions())


def figures(kind: str, rt: Runtime, before: dict[str, Message], gone_out: set[str],
            sendgrid: SendGridEmulator) -> dict[str, int]:
    final = rows(rt)
    accepted = accepted_ids(sendgrid)
    shown = {
        "sent before the stop": len(gone_out),
        "flagged unknown": sum(m.status == "unknown" for m in final.values()),
        "requeued (claimed, never called)": sum(
            m.status == "pending" or (m.status == "sending" and m.call_started_at is None)
            for m in before.values()),
        "sent by the next run": sum(1 for i in final if accepted[i] and i not in gone_out),
        "duplicates": sum(n - 1 for n in accepted.values()),
        "left sending": sum(m.status == "sending" for m in final.values()),
    }
    print(f"\n{kind} on {rt.engine.dialect.name}: {shown}")
    return shown


def test_a_sender_killed_mid_batch_leaves_only_its_calls_in_flight_for_review(
        settings: Settings, sendgrid: SendGridEmulator) -> None:
    rt, ids = slow_batch(settings, sendgrid)
    child = start_dispatcher(rt.settings, NOW)
    try:
        sendgrid.wait_for(lambda: len(sendgrid.sent) >= STOP_AFTER, timeout=120)
    finally:
        kill(child)  # SIGKILL: no handler, no finally
    gone_out = set(accepted_ids(sendgrid))
    before = rows(rt)
    assert {m.status for m in before.values()} <= {"sending", "sent"}
    assert len(gone_out) < BATCH / 2  # stopped mid-batch indeed
    in_doubt = {i for i, m in before.items() if m.status == "sending" and m.call_started_at}
    # Every message the provider has and whose answer was not recorded is marked (so it is
    # never resent); at most the calls in flight, the answers since the last window's commit
    # and the rest of that window's marks are: under two windows of the send concurrency.
    assert {i for i in gone_out if before[i].status != "sent"} <= in_doubt
    assert 1 <= len(in_doubt) <= 2 * CONCURRENCY - 1

    next_run(rt, timedelta(minutes=1))  # within the claim: the killed sender's rows wait
    assert {i for i, m in rows(rt).items() if m.status == "sending"} == {
        i for i, m in before.items() if m.status == "sending"}
    next_run(rt, timedelta(seconds=rt.settings.claim_seconds + 1))
    final = rows(rt)
    assert {i for i, m in final.items() if m.status == "unknown"} == in_doubt
    assert {i for i, m in final.items() if m.status != "unknown"} == set(ids) - in_doubt
    assert {m.status for i, m in final.items() if i not in in_doubt} == {"sent"}
    accepted = accepted_ids(sendgrid)
    assert max(accepted.values()) == 1  # never a duplicate
    assert set(accepted) == set(ids) - (in_doubt - gone_out)  # the rest went out once
    # A requeued message was never an attempt: it went out on its first.
    assert {final[i].attempts for i in set(ids) - gone_out - in_doubt} == {1}
    shown = figures("SIGKILL", rt, before, gone_out, sendgrid)
    assert shown["duplicates"] == 0 and shown["left sending"] == 0
    next_run(rt, timedelta(hours=2))
    assert accepted_ids(sendgrid) == accepted  # and never later either
    rt.engine.dispose()


def stopped_by_sigterm(kind: str, rt: Runtime, ids: list[str], child: Any,
                       sendgrid: SendGridEmulator) -> None:
    """SIGTERM to ``child`` once STOP_AFTER e-mails went out: it winds down and then stops as
    SIGTERM stops it (the handler it had before); nothing is left in doubt: what went out is
    recorded, the rest is queued again, not counted as an attempt; the next run sends it."""
    try:
        sendgrid.wait_for(lambda: len(sendgrid.sent) >= STOP_AFTER, timeout=120)
        os.kill(child.pid, signal.SIGTERM)
        child.join(60)
    finally:
        if child.is_alive():
            kill(child)
    assert child.exitcode == -signal.SIGTERM
    gone_out = set(accepted_ids(sendgrid))
    before = rows(rt)
    assert len(gone_out) < BATCH / 2  # stopped mid-batch indeed
    assert {i for i, m in before.items() if m.status == "sent"} == gone_out
    assert {(m.status, m.attempts, m.status_reason) for i, m in before.items()
            if i not in gone_out} == {("pending", 0, "deferred: sender stopped")}

    next_run(rt, timedelta(minutes=1))
    assert {m.status for m in rows(rt).values()} == {"sent"}
    accepted = accepted_ids(sendgrid)
    assert set(accepted) == set(ids) and max(accepted.values()) == 1
    shown = figures(kind, rt, before, gone_out, sendgrid)
    assert shown["flagged unknown"] == 0 and shown["duplicates"] == 0
    rt.engine.dispose()


def test_a_sender_told_to_stop_mid_batch_finishes_its_calls_and_requeues_the_rest(
        settings: Settings, sendgrid: SendGridEmulator) -> None:
    rt, ids = slow_batch(settings, sendgrid)
    stopped_by_sigterm("SIGTERM", rt, ids, start_dispatcher(rt.settings, NOW), sendgrid)


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def test_aftersale_run_told_to_stop_mid_batch_leaves_nothing_in_doubt_and_no_process(
        settings: Settings, sendgrid: SendGridEmulator, cli_env: dict[str, str],
        tmp_path: Path) -> None:
    """``aftersale run`` starts a temporary Prefect server for its flows; SIGTERM in the middle
    of its batch: the calls in flight are recorded, the rest queued, and the server stops
    with it."""
    rt, ids = slow_batch(settings, sendgrid)
    env = cli_env | {k: str(v) for k, v in {
        "AFTERSALE_EMAIL_PROVIDER": "sendgrid", "AFTERSALE_SENDGRID_API_KEY": sendgrid.api_key,
        "AFTERSALE_SENDGRID_BASE_URL": sendgrid.base_url, "AFTERSALE_BATCH_SIZE": BATCH,
        "AFTERSALE_SEND_CONCURRENCY": CONCURRENCY, "AFTERSALE_SEND_PROCESSES": 1,
        "AFTERSALE_PROVIDER_TIMEOUT_SECONDS": 10, "AFTERSALE_SECRET_KEY": "test-secret-key",
        "AFTERSALE_SENDGRID_RATE_PER_SECOND": 10_000}.items()}
    env.pop("PREFECT_API_URL", None)  # so it starts its own, temporary server
    log = tmp_path / "run.log"
    spawned: set[int] = set()
    with log.open("w") as output:  # a file: an orphan holding a pipe open would hang a read
        run = subprocess.Popen([sys.executable, "-m", "aftersale.cli", "run"], env=env,
                               cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT)
    try:
        sendgrid.wait_for(lambda: len(sendgrid.sent) >= STOP_AFTER, timeout=240)
        spawned = children_of(run.pid)
        assert spawned, "aftersale run started no temporary Prefect server"
        run.send_signal(signal.SIGTERM)
        run.wait(120)
        wait_until(lambda: not any(alive(pid) for pid in spawned), timeout=30,
                   what="the temporary Prefect server to stop")
    finally:
        if run.poll() is None:
            run.kill()
        for pid in spawned:  # this test's processes only: none should be left
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert run.returncode == 128 + signal.SIGTERM, log.read_text()[-3000:]
    gone_out = set(accepted_ids(sendgrid))
    before = rows(rt)
    assert len(gone_out) < BATCH / 2
    assert {i for i, m in before.items() if m.status == "sent"} == gone_out
    assert {(m.status, m.attempts) for i, m in before.items() if i not in gone_out} == {
        ("pending", 0)}
    next_run(rt, timedelta(days=1000))  # the CLI ran on the wall clock
    assert {m.status for m in rows(rt).values()} == {"sent"}
    accepted = accepted_ids(sendgrid)
    assert set(accepted) == set(ids) and max(accepted.values()) == 1
    shown = figures("SIGTERM to aftersale run", rt, before, gone_out, sendgrid)
    assert shown["flagged unknown"] == 0 and shown["duplicates"] == 0
    rt.engine.dispose()


def _dispatcher_waiting_for_its_helper(settings: dict[str, object], now: object) -> None:
    """A dispatch run whose own process runs out of batches at once and waits for its send
    helper, the usual state of a backlog (a module-level function: it runs in a spawned
    process, and so does the helper, with the real send loop)."""
    import aftersale.orchestration.passes as pipeline

    rt = open_runtime(Settings(_env_file=None, **settings), SimulatedClock(now),  # type: ignore[arg-type]
                      migrate=False)

    def helper_has_claimed_the_rest(*args: object, **kwargs: object) -> None:
        def claimed() -> bool:
            with rt.factory() as session:
                return session.scalar(select(Message.id).where(Message.status == "sending")
                                      .limit(1)) is not None
        wait_until(claimed, timeout=60, what="the helper's claim")

    pipeline.HELPER_BACKLOG = 100  # a helper for this backlog
    pipeline._send_loop = helper_has_claimed_the_rest  # type: ignore[assignment]
    dispatch_due(rt, rt.definitions())


def test_a_sigterm_while_waiting_for_the_send_helpers_stops_them_too(
        settings: Settings, sendgrid: SendGridEmulator) -> None:
    """Under `docker stop` or a pod's termination only the main process gets SIGTERM, and
    during a backlog it is mostly waiting for its helpers: they must stop calling, record
    their calls in flight and queue the rest, as the main process would (nothing flagged)."""
    import multiprocessing

    rt, ids = slow_batch(settings, sendgrid)
    rt.settings = rt.settings.model_copy(update={"send_processes": 2})
    child = multiprocessing.get_context("spawn").Process(
        target=_dispatcher_waiting_for_its_helper, args=(rt.settings.model_dump(), NOW))
    child.start()  # not a daemon: a daemon process may not start the helper
    stopped_by_sigterm("SIGTERM while waiting for a helper", rt, ids, child, sendgrid)
