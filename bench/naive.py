"""The naive design the end-to-end benchmark compares against: one Prefect flow run per event,
doing for that event what the batched flows do for many (store it, process-events,
dispatch-messages), with the same tasks inside."""

from __future__ import annotations

from typing import Any

from prefect import flow

from aftersale.core.events import parse_event
from aftersale.intake.inbox import store_events
from aftersale.orchestration.dispatch_messages import dispatch_messages
from aftersale.orchestration.flow_context import runtime
from aftersale.orchestration.process_events import process_events


@flow(name="bench-one-event")
def one_event_flow(event: dict[str, Any]) -> None:
    rt = runtime()
    with rt.factory() as session, session.begin():
        store_events(session, [parse_event(event)], "bench", rt.now())
    process_events.fn(max_batches=1)
    dispatch_messages.fn()
