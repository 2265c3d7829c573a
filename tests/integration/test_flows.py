"""The Prefect flows against a real (test) Prefect server: batches, counts and artifacts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import func, select

from aftersale.db.models import Message
from aftersale.runtime import Runtime
from aftersale.state import load_clock
from flows.common import using_runtime
from flows.dispatch_messages import dispatch_messages
from flows.process_events import process_events
from flows.run_until import run_until
from tests.conftest import START
from tests.factories import days, follow, placed
from tests.integration.helpers import feed, treated_customer

pytestmark = pytest.mark.usefixtures("prefect_server")


def _latest_artifact(key: str) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        async with get_client() as client:
            artifact = await client.read_latest_artifacts()
            found = [a for a in artifact if a.key == key]
            assert found, f"no artifact {key}"
            import json

            data = found[0].data
            return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]
    return asyncio.run(read())


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
