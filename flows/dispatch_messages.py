"""dispatch-messages: advance due enrollments and send what they queued, in batches."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aftersale.dispatch import DispatchCounts
from aftersale.pipeline import dispatch_due
from flows.common import publish_counts, runtime, work, working_with


@task(name="dispatch-due", cache_policy=NO_CACHE)
def dispatch_due_task(max_batches: int) -> DispatchCounts:
    # Not retried by Prefect: a half-done send is resolved by the message states, not by
    # running the whole batch again.
    rt, definitions = work()
    return dispatch_due(rt, definitions, max_batches)


@flow(name="dispatch-messages")
def dispatch_messages(max_batches: int = 100) -> dict[str, Any]:
    logger = get_run_logger()
    rt = runtime()
    definitions = rt.definitions()
    for problem in rt.problems:
        logger.error("invalid definitions refused, running the last valid set: %s", problem)
    with working_with(rt, definitions):
        counts = dispatch_due_task(max_batches)
    summary = counts.summary()
    logger.info("dispatch-messages: %s", summary)
    publish_counts("dispatch-messages-counts", summary, "Messages dispatched in the last run")
    return summary
