"""One pass of the work the flows do, as plain functions (the flows wrap them in tasks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aftersale.alerts import deliver_alerts
from aftersale.dispatch import DispatchCounts, advance_due, recover_stale
from aftersale.journeys.definitions import Definitions
from aftersale.processing import ProcessCounts, process_batch
from aftersale.runtime import Runtime
from aftersale.sending import Rules, send_pending


@dataclass
class PassCounts:
    process: ProcessCounts
    dispatch: DispatchCounts


def drain_inbox(rt: Runtime, definitions: Definitions, max_batches: int = 1000) -> ProcessCounts:
    total = ProcessCounts()
    size = rt.settings.batch_size
    for _ in range(max_batches):
        counts = process_batch(rt.factory, definitions, rt.clock, size,
                               timedelta(hours=rt.settings.max_trigger_age_hours))
        total.add(counts)
        if counts.events < size:
            break
    return total


def dispatch_due(rt: Runtime, definitions: Definitions, max_batches: int = 1000) -> DispatchCounts:
    total = DispatchCounts()
    size = rt.settings.batch_size
    total.unknown += recover_stale(rt.factory, rt.clock, timedelta(seconds=rt.settings.claim_seconds))
    # Advancing can finish a wait and queue the next step at once, so loop until quiet.
    for _ in range(max_batches):
        counts = advance_due(rt.factory, definitions, rt.clock, size)
        total.add(counts)
        if counts.advanced < size:
            break
    channels, links = rt.channels(), rt.links()
    rules = Rules(*rt.settings.sending_rules())
    for _ in range(max_batches):
        counts = send_pending(rt.factory, definitions, channels, links, rt.clock, size, rules)
        total.add(counts)
        if counts.claimed < size:
            break
    # After the messages: a detractor's follow-up goes out first, then the team hears of it.
    for _ in range(max_batches):
        alerts = deliver_alerts(rt, size, definitions.content)
        total.alerts_delivered += alerts.delivered
        total.alerts_failed += alerts.failed
        total.alerts_retried += alerts.retried
        total.alert_routes.update(alerts.routes)
        if alerts.claimed < size:
            break
    return total


def run_pass(rt: Runtime, definitions: Definitions) -> PassCounts:
    return PassCounts(drain_inbox(rt, definitions), dispatch_due(rt, definitions))
