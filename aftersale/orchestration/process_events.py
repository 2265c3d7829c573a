"""process-events: drain the inbox in batches (one task per batch of BATCH_SIZE events).

Started by the ``aftersale.inbox.received`` trigger (reason and count come from the event,
and the run lingers to absorb the rest of a burst) or by the safety schedule (one pass).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aftersale.intake import notify
from aftersale.orchestration.flow_context import (
    definitions_for,
    linger,
    publish_counts,
    runtime,
    work,
    working_with,
)
from aftersale.orchestration.passes import check_parcels, settle_survey_clicks
from aftersale.pipeline.apply_events import ProcessCounts, process_batch
from aftersale.pipeline.backlog import inbox_pending


@task(name="process-batch", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def process_batch_task() -> ProcessCounts:
    rt, definitions = work()
    settle_survey_clicks(rt)  # pending survey clicks become answers first, taken by this batch
    return process_batch(rt.factory, definitions, rt.clock, rt.settings.batch_size,
                         timedelta(hours=rt.settings.max_trigger_age_hours))


@task(name="check-parcels", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def check_parcels_task() -> ProcessCounts:
    """Silent or overdue parcels become shipment.stalled / shipment.late in the inbox, for
    the batches after it (aftersale.pipeline.shipment_checks): a few queries, once per drain."""
    rt, definitions = work()
    checked = check_parcels(rt, definitions)
    return ProcessCounts(stalled=checked.stalled, late=checked.late)


@flow(name="process-events")
def process_events(max_batches: int = 100, reason: str = "schedule", count: int | None = None,
                   linger_seconds: float = 0) -> dict[str, Any]:
    """``count``: new events the triggering event announced (None on a schedule).
    ``linger_seconds``: after the inbox runs dry, keep polling it this long for more."""
    started = time.monotonic()
    logger = get_run_logger()
    rt = runtime()
    definitions = definitions_for(rt, logger)
    total = ProcessCounts()

    def batches(drained: ProcessCounts) -> None:
        for _ in range(max_batches):
            counts = process_batch_task()
            drained.add(counts)
            logger.info("batch: %s", counts.summary())
            # A short batch emptied the inbox, unless it derived events of its own (an
            # order shipped or delivered by its parcels): those are the next batch's.
            if counts.events < rt.settings.batch_size and not counts.derived:
                break

    def drain() -> None:
        # The clock check between two drains: after the carrier updates waiting in the
        # inbox are applied (a waiting scan must not make a parcel look stalled or late),
        # before the drain that applies what it derived.
        drained = ProcessCounts()
        batches(drained)
        checked = check_parcels_task()
        drained.add(checked)
        if checked.stalled or checked.late:
            batches(drained)
        total.add(drained)
        # Enrolled and resumed journeys may have a step due now: wake dispatch-messages
        # rather than leaving them to its interval.
        notify.work_due(rt.settings, drained.enrolled + drained.resumed, "process-events")

    with working_with(rt, definitions):
        drain()
        passes = 1 + linger(linger_seconds, lambda: inbox_pending(rt.factory), drain, started)
    summary = {**total.summary(), "passes": passes}
    logger.info("process-events (%s, %s announced): %s", reason, count, summary)
    publish_counts("process-events-counts", summary, f"Events processed in the last run ({reason})")
    return summary
