"""The trigger path end to end: `aftersale up` serves the deployments against a real Prefect
server, a webhook reaches POST /events, the intake's event starts process-events, and the
message goes out through the sandbox; no schedule is involved (the test server runs no
scheduler), so only the triggers can have started the runs.

The latencies (POST to flow run start, POST to message sent) are printed and recorded as test
properties; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, func, select

from aftersale.db.models import InboxEvent, Message
from aftersale.intake import notify
from aftersale.orchestration.deployments import LINGER_SECONDS, SPECS
from tests.factories import follow, placed

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token"
TIMEOUT = 90.0


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    web: str
    engine: Engine
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Any, timeout: float, what: str, up: Up | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up is not None and up.process.poll() is not None:
            pytest.fail(f"aftersale up exited ({up.process.returncode}):\n{up.output()}")
        if value := check():
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout:.0f} s" + (f"\n{up.output()}" if up else ""))


_API: list[str] = []  # this module's Prefect server (see prefect_api)


def _client(api: str | None = None) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api or _API[0]}):
        return get_client()


def _flow_runs(deployment: str, since: datetime) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async def read() -> list[Any]:
        async with _client() as client:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))
        return sorted((r for r in runs if r.created and r.created >= since), key=lambda r: r.created)

    return asyncio.run(read())


def _served(api: str | None = None) -> bool:
    """Both deployments and every trigger's automation exist: an event posted before that
    starts nothing (only the safety schedule would pick its work up, a minute later)."""
    async def read() -> bool:
        async with _client(api) as client:
            names = {d.name for d in await client.read_deployments()}
            automations = await client.read_automations()
        wanted = {t["name"] for spec in SPECS for t in spec.triggers}
        return {s.name for s in SPECS} <= names and wanted <= {a.name for a in automations}

    return asyncio.run(read())


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server of this module's own: the session's test server carries the event
    backlog of every flow run the other tests made, which once held a trigger back for a
    minute. Its scheduler is off, so only triggers can start runs."""
    home = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    with (home / "server.log").open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        _wait(lambda: _answers(f"{api}/health"), 120, "the Prefect server did not start")
        _API[:] = [api]
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[Up]:
    """`python -m aftersale.orchestration.up` (what `aftersale up` runs) on that server, from an empty
    directory, with a fresh database and the sandbox channels."""
    home = tmp_path_factory.mktemp("up")
    database = home / "aftersale.db"
    port = _free_port()
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOGGING_TO_API_ENABLED": "true",
           "AFTERSALE_DATABASE_URL": f"sqlite:///{database}", "AFTERSALE_API_TOKEN": TOKEN,
           "AFTERSALE_SECRET_KEY": "e2e-secret", "AFTERSALE_JOURNEYS_DIR": str(ROOT / "journeys"),
           "AFTERSALE_CONTENT_DIR": str(ROOT / "content"), "AFTERSALE_PREFECT_EVENTS": "true",
           "AFTERSALE_QUIET_HOURS": "off"}
    log = home / "up.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "aftersale.orchestration.up", "--port", str(port), "--prefect-port",
             str(_free_port())], cwd=home, env=env, stdout=sink, stderr=subprocess.STDOUT,
            preexec_fn=ctrl_c_stops_it)
    handle = Up(process, f"http://127.0.0.1:{port}", create_engine(f"sqlite:///{database}"), log)
    try:
        _wait(lambda: _answers(f"{handle.web}/healthz"), 120, "the web app did not answer", handle)
        _wait(_served, 60, "the deployments and their triggers were not served", handle)
        time.sleep(2)  # the runner's first poll
        yield handle
    finally:
        interrupt(process, 30)
        handle.engine.dispose()
        asyncio.run(_remove_deployments())


def ctrl_c_stops_it() -> None:
    """For Popen's preexec_fn: Ctrl-C (SIGINT) stops the child as it does in a terminal, even
    when the test run itself is a background job, whose children inherit SIGINT ignored (POSIX;
    Python then keeps ignoring it) and so would never hear `interrupt`."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ctrl-C, as an operator stops `aftersale up`; killed if it is not gone in ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def _remove_deployments() -> None:
    """Leave no deployment or trigger behind, should the server outlive the test."""
    from prefect.exceptions import ObjectNotFound

    async with _client() as client:
        for spec in SPECS:
            try:
                deployment = await client.read_deployment_by_name(f"{spec.name}/{spec.name}")
            except ObjectNotFound:
                continue
            await client.delete_resource_owned_automations(f"prefect.deployment.{deployment.id}")
            await client.delete_deployment(deployment.id)


def _post(up: Up, event: dict[str, Any], client: httpx.Client | None = None) -> None:
    response = (client or httpx).post(f"{up.web}/events", json=event,
                                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 202 and response.json()["stored"] == 1, response.text


def test_a_webhook_starts_a_flow_run_that_sends_the_message(
        up: Up, record_property: Any) -> None:
    n = uuid.uuid4().hex[:8]
    cid, oid = f"c-{n}", f"o-{n}"
    posted = datetime.now(UTC)
    _post(up, placed(oid, posted, cid))
    _post(up, follow("shipped", oid, posted, cid))  # order-updates sends the tracking link

    def sent() -> Message | None:
        with up.engine.connect() as connection:
            return connection.execute(select(Message).where(
                Message.customer_id == cid, Message.status == "sent")).first()

    message = _wait(sent, TIMEOUT, "no message was sent", up)
    assert message.template == "shipping_update" and message.channel == "sms"

    process_runs = _flow_runs("process-events", posted)
    triggered = [r for r in process_runs if r.parameters.get("reason") == notify.EVENT]
    assert triggered, [r.parameters for r in process_runs]
    first = triggered[0]
    # The trigger's parameters are rendered from the event, with their JSON types.
    assert isinstance(first.parameters["count"], int) and first.parameters["count"] >= 1
    assert first.parameters["linger_seconds"] == LINGER_SECONDS  # the deployment's own
    # Triggered runs only: the test server runs no scheduler.
    assert all(r.parameters.get("reason") in (notify.EVENT,) for r in process_runs)
    assert first.start_time is not None
    dispatch_runs = [r for r in _flow_runs("dispatch-messages", posted) if r.start_time]
    assert dispatch_runs and all(r.parameters.get("reason") in (notify.EVENT, notify.WORK_DUE_EVENT)
                                 for r in dispatch_runs)

    to_start = (first.start_time - posted).total_seconds()
    to_sent = (message.sent_at.replace(tzinfo=UTC) - posted).total_seconds()
    dispatch_start = (dispatch_runs[0].start_time - posted).total_seconds()
    record_property("post_to_process_run_start_s", round(to_start, 2))
    record_property("post_to_dispatch_run_start_s", round(dispatch_start, 2))
    record_property("post_to_message_sent_s", round(to_sent, 2))
    print(f"\nlatency: POST -> process-events run start {to_start:.1f} s, -> dispatch-messages "
          f"run start {dispatch_start:.1f} s, -> message sent {to_sent:.1f} s")
    assert 0 < to_start < to_sent < TIMEOUT


def test_a_burst_of_webhooks_is_one_flow_run_not_one_per_webhook(up: Up) -> None:
    # Quiet first: no run of the previous test still lingering, no trigger window open.
    _wait(lambda: not [r for r in _flow_runs("process-events", datetime(2000, 1, 1, tzinfo=UTC))
                       if r.state and not r.state.is_final()], TIMEOUT,
          "the previous runs did not finish", up)
    time.sleep(1)
    n = uuid.uuid4().hex[:8]
    burst = 30
    began = datetime.now(UTC)
    with httpx.Client() as client:
        for i in range(burst):
            _post(up, placed(f"o-{n}-{i}", began, f"c-{n}-{i}"), client)

    def drained() -> bool:
        with up.engine.connect() as connection:
            return not connection.scalar(select(func.count()).select_from(InboxEvent)
                                         .where(InboxEvent.status == "pending"))

    _wait(drained, TIMEOUT, "the burst was not processed", up)
    runs = _flow_runs("process-events", began)
    started = [r for r in runs if r.start_time]
    # One trigger window: one run does the work (a second is tolerated should the burst straddle
    # two windows on a slow machine); the rest of the burst never became runs at all.
    assert 1 <= len(started) <= 2 and len(runs) <= 3, [(r.name, r.state_name) for r in runs]


def test_up_stops_cleanly_and_leaves_no_run_holding_a_slot(up: Up) -> None:
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(45) == 0, up.output()
    assert "stopped" in up.output()
    assert not _answers(f"{up.web}/healthz")
    for spec in SPECS:
        live = [r for r in _flow_runs(spec.name, datetime(2000, 1, 1, tzinfo=UTC))
                if r.state and r.state.type.value in ("PENDING", "RUNNING", "CANCELLING")]
        assert not live, [(r.name, r.state_name) for r in live]
