"""demo-shop: the demo's simulated weeks, one task per week, in a single flow run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from aftersale.orchestration.flow_context import publish_counts, runtime, work, working_with
from aftersale.pipeline.advance import DispatchCounts
from aftersale.pipeline.apply_events import ProcessCounts
from aftersale.pipeline.definitions import Definitions
from aftersale.pipeline.runtime import Runtime


@task(name="simulate-week", cache_policy=NO_CACHE)
def simulate_week(until: datetime) -> tuple[ProcessCounts, DispatchCounts]:
    rt, definitions = work()
    world = _world.get()
    assert world is not None
    return world[0](rt, definitions, until)


# The demo's world, stepped to a time: the shop's events and the customers' reactions. `aftersale
# demo` hands it in, so this flow runs the demo without importing it (demo/ sits above us).
Simulate = Callable[[Runtime, Definitions, datetime], tuple[ProcessCounts, DispatchCounts]]
_world: ContextVar[tuple[Simulate, Console] | None] = ContextVar("demo_world", default=None)


@contextmanager
def simulating(simulate: Simulate, out: Console) -> Iterator[None]:
    """Hand the simulation to the flow without making it a (stored) flow parameter."""
    token = _world.set((simulate, out))
    try:
        yield
    finally:
        _world.reset(token)


@flow(name="demo-shop")
def demo_shop(sim_end: str) -> dict[str, Any]:
    logger = get_run_logger()
    rt = runtime()
    world = _world.get()
    if world is None:
        raise RuntimeError("demo-shop runs inside `aftersale demo`, which provides the shop")
    out = world[1]
    definitions = rt.definitions()
    end = datetime.fromisoformat(sim_end)
    processed, dispatched = ProcessCounts(), DispatchCounts()
    week = 0
    weeks = -(-(end - rt.now()) // timedelta(weeks=1))
    while rt.now() < end:
        week += 1
        with working_with(rt, definitions):
            p, d = simulate_week(min(rt.now() + timedelta(weeks=1), end))
        processed.add(p)
        dispatched.add(d)
        line = (f"week {week:>2}/{weeks} to {rt.now():%Y-%m-%d}: {p.events:>5,} events, "
                f"{p.enrolled:>4,} enrolled, {d.sent:>5,} sent, {d.not_sent:>3,} not sent")
        out.print(line, highlight=False)
        logger.info(line)
    summary = {**processed.summary(), "sent": dispatched.sent, "not_sent": dispatched.not_sent,
               "alerts": dispatched.alerts, "sent_by_channel": dict(dispatched.sent_by_channel),
               "not_sent_reasons": dict(dispatched.not_sent_reasons)}
    publish_counts("demo-shop-counts", summary, "Counts of the last demo run")
    return summary
