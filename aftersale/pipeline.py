"""One pass of the work the flows do, as plain functions (the flows wrap them in tasks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from aftersale.alerts import deliver_alerts
from aftersale.dispatch import DispatchCounts, advance_due, recover_stale
from aftersale.errors import ConfigError
from aftersale.journeys.definitions import Definitions
from aftersale.processing import ProcessCounts, process_batch
from aftersale.runtime import Runtime
from aftersale.sending import Rules, send_pending

log = logging.getLogger(__name__)


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
    """Every dispatch stage, in order. A stage that fails is logged and the later ones still
    run (a broken email channel must not hold back the team's detractor alerts, nor a failed
    advance the messages already queued); the run then fails with the first error, so the
    operator sees it, but no work another stage could do was left behind. A database or
    configuration error fails the run at once: every stage needs both."""
    total = DispatchCounts()
    failed: list[Exception] = []
    for stage in (_recover, _advance, _send, _alert):
        try:
            stage(rt, definitions, max_batches, total)
        except (SQLAlchemyError, ConfigError):
            raise
        except Exception as exc:
            log.exception("dispatch stage %s failed; the stages after it still run",
                          stage.__name__.lstrip("_"))
            failed.append(exc)
    if len(failed) == 1:
        raise failed[0]
    if failed:
        raise ExceptionGroup("dispatch stages failed", failed)
    return total


def _recover(rt: Runtime, definitions: Definitions, max_batches: int,
             total: DispatchCounts) -> None:
    total.unknown += recover_stale(rt.factory, rt.clock,
                                   timedelta(seconds=rt.settings.claim_seconds))


def _advance(rt: Runtime, definitions: Definitions, max_batches: int,
             total: DispatchCounts) -> None:
    # Advancing can finish a wait and queue the next step at once, so loop until quiet.
    for _ in range(max_batches):
        counts = advance_due(rt.factory, definitions, rt.clock, rt.settings.batch_size)
        total.add(counts)
        if counts.advanced < rt.settings.batch_size:
            break


def _send(rt: Runtime, definitions: Definitions, max_batches: int,
          total: DispatchCounts) -> None:
    channels, links = rt.channels(), rt.links()
    rules = Rules(*rt.settings.sending_rules())
    for _ in range(max_batches):
        counts = send_pending(rt.factory, definitions, channels, links, rt.clock,
                              rt.settings.batch_size, rules,
                              timedelta(seconds=rt.settings.claim_seconds))
        total.add(counts)
        if counts.claimed < rt.settings.batch_size:
            break


def _alert(rt: Runtime, definitions: Definitions, max_batches: int,
           total: DispatchCounts) -> None:
    # After the messages: a detractor's follow-up goes out first, then the team hears of it.
    for _ in range(max_batches):
        alerts = deliver_alerts(rt, rt.settings.batch_size, definitions.content)
        total.alerts_delivered += alerts.delivered
        total.alerts_failed += alerts.failed
        total.alerts_retried += alerts.retried
        total.alert_routes.update(alerts.routes)
        if alerts.claimed < rt.settings.batch_size:
            break


def run_pass(rt: Runtime, definitions: Definitions) -> PassCounts:
    return PassCounts(drain_inbox(rt, definitions), dispatch_due(rt, definitions))
