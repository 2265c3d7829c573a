"""run-until: step a simulated clock to a time, processing and dispatching at every tick.

Used by ``aftersale run --until`` and the tests to fast-forward months. One flow run for the
whole span and one task per simulated day: never a run per event or per tick.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aftersale.core.clock import SimulatedClock
from aftersale.db.clock_state import save_clock
from aftersale.orchestration.flow_context import publish_counts, runtime, work, working_with
from aftersale.orchestration.passes import dispatch_due, drain_inbox
from aftersale.pipeline.advance import DispatchCounts
from aftersale.pipeline.apply_events import ProcessCounts


@task(name="simulate-day", cache_policy=NO_CACHE)
def simulate_day(end: datetime, tick: timedelta) -> tuple[ProcessCounts, DispatchCounts]:
    rt, definitions = work()
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    processed, dispatched = ProcessCounts(), DispatchCounts()
    while True:
        # Each event when the clock reaches it: an imported history is not all taken at once.
        processed.add(drain_inbox(rt, definitions, due_by=clock.now()))
        dispatched.add(dispatch_due(rt, definitions))
        if clock.now() >= end:
            return processed, dispatched
        clock.set(min(clock.now() + tick, end))


@flow(name="run-until")
def run_until(until: datetime, tick: timedelta) -> dict[str, Any]:
    logger = get_run_logger()
    rt = runtime()
    clock = rt.clock
    if not isinstance(clock, SimulatedClock):
        raise TypeError("run-until needs a runtime on a simulated clock")
    definitions = rt.definitions()
    processed, dispatched = ProcessCounts(), DispatchCounts()
    while True:
        day_end = min(clock.now() + timedelta(days=1), until)
        with working_with(rt, definitions):
            p, d = simulate_day(day_end, tick)
        processed.add(p)
        dispatched.add(d)
        save_clock(rt.factory, clock.now())
        logger.info("simulated to %s: %s events, %s sent", clock.now().isoformat(), p.events, d.sent)
        if clock.now() >= until:
            break
        clock.set(min(clock.now() + tick, until))
    summary = {"until": until.isoformat(), **processed.summary(), **{
        f"dispatch_{k}": v for k, v in dispatched.summary().items()}}
    publish_counts("run-until-counts", summary, "Counts of the last simulated span")
    return summary
