"""Drive the real pipeline on a simulated clock."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from aftersale.core.clock import SimulatedClock
from aftersale.core.events import parse_event
from aftersale.core.journeys.engine import in_holdout
from aftersale.db.models import Message
from aftersale.intake.inbox import StoreResult, store_events
from aftersale.orchestration.passes import dispatch_due, drain_inbox
from aftersale.pipeline.definitions import Definitions
from aftersale.pipeline.runtime import Runtime


def feed(rt: Runtime, *raw: dict[str, Any]) -> StoreResult:
    with rt.factory() as session, session.begin():
        return store_events(session, [parse_event(r) for r in raw], "test", rt.now())


def run_to(rt: Runtime, definitions: Definitions, until: datetime,
           tick: timedelta = timedelta(hours=1)) -> None:
    """Process and dispatch at every tick up to ``until``, as ``aftersale run --until`` does."""
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    while True:
        drain_inbox(rt, definitions, due_by=clock.now())
        dispatch_due(rt, definitions)
        if clock.now() >= until:
            return
        clock.set(min(clock.now() + tick, until))


def sent(rt: Runtime, customer_id: str | None = None) -> list[Message]:
    with rt.factory() as session:
        query = select(Message).order_by(Message.created_at, Message.step_key)
        if customer_id:
            query = query.where(Message.customer_id == customer_id)
        return list(session.scalars(query))


def treated_customer(journey: str, percent: float, prefix: str = "c") -> str:
    """A customer id that is not in the journey's holdout group."""
    for n in range(1000):
        cid = f"{prefix}-{n}"
        if not in_holdout(journey, cid, percent):
            return cid
    raise AssertionError("no treated id found")


def holdout_customer(journey: str, percent: float, prefix: str = "h") -> str:
    for n in range(10000):
        cid = f"{prefix}-{n}"
        if in_holdout(journey, cid, percent):
            return cid
    raise AssertionError("no holdout id found")


IN_PROCESS_URL = "http://testserver"  # what an in_process client's relative URLs go to


@contextmanager
def in_process(app: FastAPI, headers: dict[str, str] | None = None) -> Iterator[TestClient]:
    """An HTTP client that calls ``app`` in this process, with no socket or server thread,
    for tests of the app's answers rather than of HTTP on the wire. Like a client of the
    served app, it sees a 500 for an exception and follows no redirect."""
    with TestClient(app, base_url=IN_PROCESS_URL, headers=headers,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port for real-HTTP tests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def aftersale(*args: str, env: dict[str, str], cwd: Path, stdin: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: its own process, with only the environment given."""
    return subprocess.run([sys.executable, "-m", "aftersale.cli", *args], env=env, cwd=cwd,
                          input=stdin, capture_output=True, text=True, timeout=300)
