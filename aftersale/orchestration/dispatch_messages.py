"""dispatch-messages: advance due enrollments and send what they queued, in batches.

Runs on a short interval (waits end with time, not with events) and is triggered by
``aftersale.work.due`` when process-events enrolled or resumed someone; a triggered run
lingers to absorb the rest of a burst.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aftersale.orchestration.flow_context import (
    definitions_for,
    linger,
    publish_counts,
    runtime,
    work,
    working_with,
)
from aftersale.orchestration.passes import dispatch_due
from aftersale.pipeline.advance import DispatchCounts
from aftersale.pipeline.backlog import dispatch_due_now


@task(name="dispatch-due", cache_policy=NO_CACHE)
def dispatch_due_task(max_batches: int) -> DispatchCounts:
    # Not retried by Prefect: a half-done send is resolved by the message states, not by
    # running the whole batch again.
    rt, definitions = work()
    return dispatch_due(rt, definitions, max_batches)


@flow(name="dispatch-messages")
def dispatch_messages(max_batches: int = 100, reason: str = "schedule", count: int | None = None,
                      linger_seconds: float = 0) -> dict[str, Any]:
    """``count``: enrollments the triggering event announced as due (None on a schedule).
    ``linger_seconds``: after nothing is due, keep polling this long for more."""
    started = time.monotonic()
    logger = get_run_logger()
    rt = runtime()
    definitions = definitions_for(rt, logger)
    total = DispatchCounts()

    def dispatch() -> None:
        total.add(dispatch_due_task(max_batches))

    with working_with(rt, definitions):
        dispatch()
        passes = 1 + linger(linger_seconds, lambda: dispatch_due_now(rt.factory, rt.now()),
                            dispatch, started)
    summary = {**total.summary(), "passes": passes}
    logger.info("dispatch-messages (%s, %s announced): %s", reason, count, summary)
    publish_counts("dispatch-messages-counts", summary, f"Messages dispatched in the last run ({reason})")
    return summary
