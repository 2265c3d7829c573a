"""process-events: drain the inbox in batches (one task per batch of BATCH_SIZE events)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aftersale.processing import ProcessCounts, process_batch
from flows.common import publish_counts, runtime, work, working_with


@task(name="process-batch", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def process_batch_task() -> ProcessCounts:
    rt, definitions = work()
    return process_batch(rt.factory, definitions, rt.clock, rt.settings.batch_size,
                         timedelta(hours=rt.settings.max_trigger_age_hours))


@flow(name="process-events")
def process_events(max_batches: int = 100, reason: str = "schedule") -> dict[str, Any]:
    logger = get_run_logger()
    rt = runtime()
    definitions = rt.definitions()
    for problem in rt.problems:
        logger.error("invalid definitions refused, running the last valid set: %s", problem)
    total = ProcessCounts()
    with working_with(rt, definitions):
        for _ in range(max_batches):
            counts = process_batch_task()
            total.add(counts)
            logger.info("batch: %s", counts.summary())
            if counts.events < rt.settings.batch_size:
                break
    summary = total.summary()
    logger.info("process-events (%s): %s", reason, summary)
    publish_counts("process-events-counts", summary, "Events processed in the last run")
    return summary
