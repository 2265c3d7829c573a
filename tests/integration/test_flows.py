"""The Prefect flows against a real (test) Prefect server: batches, counts and artifacts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import func, select

import aftersale.orchestration.dispatch_messages as dispatch_messages_module
import aftersale.orchestration.process_events as process_events_module
from aftersale.db.clock_state import load_clock
from aftersale.db.models import Enrollment, Message, MetricsSnapshot, Order
from aftersale.intake import notify
from aftersale.metrics.snapshots import SEGMENTS_KEY, SUMMARY_KEY
from aftersale.orchestration.compute_metrics import compute_metrics
from aftersale.orchestration.dispatch_messages import dispatch_messages
from aftersale.orchestration.flow_context import using_runtime
from aftersale.orchestration.passes import drain_inbox
from aftersale.orchestration.process_events import process_events
from aftersale.orchestration.run_until import run_until
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import answer, days, follow, placed
from tests.integration.helpers import feed, treated_customer

pytestmark = pytest.mark.usefixtures("prefect_server")


def _latest_artifact(key: str) -> object:
    async def read() -> object:
        async with get_client() as client:
            artifact = await client.read_latest_artifacts()
            found = [a for a in artifact if a.key == key]
            assert found, f"no artifact {key}"
            data = found[0].data
            if isinstance(data, str) and found[0].type == "table":
                return json.loads(data)
            return data
    return asyncio.run(read())


def _when_lingering(monkeypatch: pytest.MonkeyPatch, flow_module: ModuleType,
                    action: Callable[[], None]) -> tuple[threading.Thread, list[float]]:
    """Do ``action`` from another thread, as a webhook would, half a second after the flow run
    finished its first pass and began to linger; returns the thread and, once done, the time
    it was done. A fixed delay from the call raced the flow run's start: on a busy machine
    the run began after it, and its first pass took what should have come later."""
    lingering = threading.Event()
    real = flow_module.linger

    def linger(*args: Any, **kwargs: Any) -> int:
        lingering.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(flow_module, "linger", linger)
    done_at: list[float] = []

    def run() -> None:
        if lingering.wait(timeout=120):
            time.sleep(0.5)
            action()
            done_at.append(time.monotonic())

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done_at


def test_process_and_dispatch_flows_work_in_batches_and_report_counts(rt: Runtime) -> None:
    # 60 events with batch_size 50: two process-batch tasks, not one run per event.
    for n in range(20):
        cid = f"c-{n}"
        feed(rt, placed(f"o-{n}", START, cid), follow("shipped", f"o-{n}", START, cid),
             follow("delivered", f"o-{n}", START, cid))
    with using_runtime(rt):
        processed = process_events(reason="test")
        dispatched = dispatch_messages()
    assert processed["events"] == 60 and processed["processed"] == 60 and processed["failed"] == 0
    assert processed["enrolled"] + processed["holdout"] == 40  # order-updates + one per order
    assert dispatched["sent"] == 20  # the tracking links; the rest waits a simulated day
    with rt.factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)
                              .where(Message.status == "sent")) == 20
    rows = _latest_artifact("dispatch-messages-counts")
    assert {"count": "sent", "value": 20} in rows


def test_run_until_fast_forwards_months_on_a_simulated_clock(rt: Runtime) -> None:
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START + days(1), cid),
         follow("delivered", "o-1", START + days(3), cid))
    with using_runtime(rt):
        summary = run_until(until=START + days(90), tick=timedelta(hours=6))
    assert rt.now() == START + days(90)
    assert load_clock(rt.factory) == START + days(90)
    with rt.factory() as session:
        templates = session.scalars(select(Message.template).where(Message.customer_id == cid)
                                    .order_by(Message.created_at)).all()
    # No answers: CSAT times out, then NPS goes out and its wait ends the journey.
    assert templates == ["shipping_update", "product_tutorial", "csat_checkin", "nps_survey"]
    assert summary["dispatch_sent"] == 4


def test_a_simulated_run_takes_each_imported_event_when_it_happened(rt: Runtime) -> None:
    """A history stored before the run (as ``aftersale ingest`` does) is taken as the clock
    reaches each event: no message before the event that triggered it, and the CSAT check-in
    7 days after the delivery, not after the run's first tick."""
    tick = timedelta(hours=1)
    events = []
    for n in range(6):  # orders over 4 days, each shipped a day or so later
        cid = treated_customer("onboarding", 10, prefix=f"w{n}")
        placed_at = START + timedelta(hours=17 * n)
        shipped_at = placed_at + timedelta(hours=20 + 5 * n, minutes=10)
        events += [placed(f"o-{n}", placed_at, cid), follow("shipped", f"o-{n}", shipped_at, cid),
                   follow("delivered", f"o-{n}", shipped_at + days(2), cid)]
    feed(rt, *events)
    with using_runtime(rt):
        run_until(until=START + days(16), tick=tick)
    with rt.factory() as session:
        rows = session.execute(
            select(Message, Order, Enrollment.enrolled_at)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .join(Order, Order.id == Enrollment.order_id)).tuples().all()
    triggers = {"shipping_update": "shipped_at", "product_tutorial": "delivered_at",
                "csat_checkin": "delivered_at"}
    # The tutorial step is onboarding's experiment: either variant's template is that step.
    step = {"product_tutorial_offer": "product_tutorial"}
    assert sorted(step.get(m.template, m.template) for m, _, _ in rows) == sorted(
        ["shipping_update", "product_tutorial", "csat_checkin"] * 6)
    for message, order, enrolled_at in rows:
        template = step.get(message.template, message.template)
        trigger = getattr(order, triggers[template])
        assert enrolled_at >= order.placed_at, order.id
        assert message.sent_at is not None and message.sent_at >= trigger, (
            order.id, message.template, message.sent_at, trigger)
        after = {"shipping_update": timedelta(0), "product_tutorial": days(1),
                 "csat_checkin": days(7)}[template]
        # queued within a tick of its trigger (plus its waits); quiet hours may defer the send
        assert trigger + after <= message.created_at < trigger + after + tick, (
            order.id, message.template, message.created_at, trigger)


def test_process_events_announces_due_work_to_dispatch(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    announced: list[tuple[int, str]] = []
    monkeypatch.setattr(notify, "work_due", lambda settings, count, source: announced.append((count, source)))
    feed(rt, placed("o-1", START, "c-1"), follow("shipped", "o-1", START, "c-1"))
    with using_runtime(rt):
        summary = process_events(reason="aftersale.inbox.received", count=2)
    assert summary["enrolled"] >= 1
    assert announced == [(summary["enrolled"] + summary["resumed"], "process-events")]


def test_a_lingering_process_run_takes_events_that_arrive_while_it_waits(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(rt, placed("o-1", START, "c-1"))
    # The second webhook comes after the first pass drained the inbox: its trigger would be
    # inside the window of the first, so only the lingering run can pick it up.
    late, arrived = _when_lingering(monkeypatch, process_events_module,
                                    lambda: feed(rt, placed("o-2", START, "c-2")))
    with using_runtime(rt):
        summary = process_events(reason="test", linger_seconds=3)
    ended = time.monotonic()
    late.join()
    assert summary["events"] == 2 and summary["passes"] == 2
    assert 3.0 <= ended - arrived[0] < 20  # stayed 3 s past its last work, then ended


def test_a_lingering_dispatch_run_sends_what_becomes_due_while_it_waits(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(rt, placed("o-1", START, "c-1"))
    definitions = rt.definitions()
    drain_inbox(rt, definitions)
    with using_runtime(rt):
        first = dispatch_messages()  # advances the enrollment to its wait for the shipment
    assert first["sent"] == 0

    def shipped() -> None:
        feed(rt, follow("shipped", "o-1", START, "c-1"))
        drain_inbox(rt, definitions)  # what process-events does meanwhile

    late, _ = _when_lingering(monkeypatch, dispatch_messages_module, shipped)
    with using_runtime(rt):
        summary = dispatch_messages(reason="aftersale.work.due", count=1, linger_seconds=3)
    late.join()
    assert summary["sent"] == 1 and summary["passes"] == 2
    rows = _latest_artifact("dispatch-messages-counts")
    assert {"count": "sent", "value": 1} in rows  # type: ignore[operator]


def test_compute_metrics_stores_a_snapshot_and_publishes_artifacts(rt: Runtime) -> None:
    first, repeat = treated_customer("onboarding", 10, "f"), "r-1"
    feed(rt, placed("o-1", START, first), follow("shipped", "o-1", START, first),
         placed("o-0", START - days(30), repeat), placed("o-2", START, repeat),
         follow("shipped", "o-2", START, repeat),
         answer("evt-api-nps", "nps", 9, START, repeat))
    with using_runtime(rt):
        process_events()
        dispatch_messages()
        summary = compute_metrics()
    with rt.factory() as session:
        [snapshot] = session.scalars(select(MetricsSnapshot)).all()
    segments = {s["segment"]: s for s in snapshot.report["segments"]}
    assert set(segments) == {"first_time", "repeat", "all"}
    assert summary == {"segments": 3, "journeys": len(snapshot.report["journeys"]), "customers": 2}
    assert segments["all"]["customers"] == 2
    assert segments["all"]["metrics"]["messages_per_customer"]["value"] == 1.0  # the tracking links
    rows = _latest_artifact(SEGMENTS_KEY)
    assert isinstance(rows, list) and [r["segment"] for r in rows] == ["first_time", "repeat", "all"]
    markdown = _latest_artifact(SUMMARY_KEY)
    assert isinstance(markdown, str) and "| first_time | 1 |" in markdown
