"""One pass of the work the flows do, as plain functions (the flows wrap them in tasks)."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, wait
from datetime import datetime, timedelta
from multiprocessing import get_context
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from aftersale.config import Settings
from aftersale.core.clock import Clock
from aftersale.core.errors import ConfigError
from aftersale.db.models import Message
from aftersale.intake.importer import default_workers
from aftersale.pipeline.advance import DispatchCounts, advance_due, recover_stale
from aftersale.pipeline.alerts import deliver_alerts
from aftersale.pipeline.apply_events import ProcessCounts, process_batch
from aftersale.pipeline.definitions import Definitions, recorded
from aftersale.pipeline.runtime import Runtime, open_runtime, stall_defaults, with_settings
from aftersale.pipeline.send import Rules, send_pending
from aftersale.pipeline.shipment_checks import CheckCounts, check_shipments
from aftersale.pipeline.stopping import STOP, graceful, stop_on_sigterm
from aftersale.surveys.clicks import settle_due

log = logging.getLogger(__name__)


def drain_inbox(rt: Runtime, definitions: Definitions, max_batches: int = 1000,
                due_by: datetime | None = None) -> ProcessCounts:
    """``due_by``: only events that occurred by then (see ``process_batch``).

    The clock check runs between two drains: after the carrier updates already in the inbox
    are applied (a scan waiting there must not let a parcel look stalled or late), and
    before the drain that applies what it derived."""
    settle_survey_clicks(rt)
    total = _batches(rt, definitions, max_batches, due_by)
    checked = check_parcels(rt, definitions)
    total.stalled, total.late = total.stalled + checked.stalled, total.late + checked.late
    if checked.stalled or checked.late:
        total.add(_batches(rt, definitions, max_batches, due_by))
    return total


def _batches(rt: Runtime, definitions: Definitions, max_batches: int,
             due_by: datetime | None) -> ProcessCounts:
    total = ProcessCounts()
    size = rt.settings.batch_size
    for _ in range(max_batches):
        counts = process_batch(rt.factory, definitions, rt.clock, size,
                               timedelta(hours=rt.settings.max_trigger_age_hours), due_by)
        total.add(counts)
        # A short batch emptied the inbox, unless it derived events of its own (an order
        # shipped or delivered by its parcels): those are the next batch's.
        if counts.events < size and not counts.derived:
            break
    return total


def check_parcels(rt: Runtime, definitions: Definitions) -> CheckCounts:
    """Parcels that went silent or missed their estimated date become shipment.stalled /
    shipment.late events in the inbox, so the drain that follows takes them
    (aftersale.pipeline.shipment_checks), on the runtime's clock."""
    settings = rt.settings
    return check_shipments(
        rt.factory, definitions.journeys.values(), rt.now(),
        definitions.stalled_after or stall_defaults(settings),
        settings.shop_country)


def settle_survey_clicks(rt: Runtime) -> int:
    """Survey clicks that waited out their burst window become answers in the inbox, so the
    drain that follows takes them (aftersale.surveys.clicks)."""
    return settle_due(rt.factory, rt.now())


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
    recovered = recover_stale(rt.factory, rt.clock, timedelta(seconds=rt.settings.claim_seconds))
    total.unknown += recovered.flagged
    total.released += recovered.released


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
    # SIGTERM or Ctrl-C meanwhile: no new claim or call, the calls in flight are recorded and
    # the rest of the batch is queued again; then the process stops as it would have.
    with graceful():
        _send_stage(rt, definitions, max_batches, total)


def _send_stage(rt: Runtime, definitions: Definitions, max_batches: int,
                total: DispatchCounts) -> None:
    helpers = sending_processes(rt) - 1
    if not helpers:
        _send_loop(rt, definitions, max_batches, total)
        return
    # The helpers claim their own batches (SKIP LOCKED on PostgreSQL, the write lock on
    # SQLite) and share the provider rate through its row, so they never send one message
    # twice nor faster than the account allows; this process sends alongside them.
    log.info("a backlog of due messages: sending from %d processes", helpers + 1)
    context = get_context("spawn")
    stop, halt = context.Event(), context.Event()
    failures: list[BaseException] = []
    with ProcessPoolExecutor(max_workers=helpers, mp_context=context,
                             initializer=_start_helper, initargs=(stop, halt)) as pool:
        started = [pool.submit(_send_in_helper, rt.settings.model_dump(), rt.clock,
                               definitions.digest, max_batches) for _ in range(helpers)]
        try:
            _send_loop(rt, definitions, max_batches, total)
        finally:
            # This process stopped (done, failed, or told to stop): the helpers end after
            # the batch they are on, rather than go on sending unwatched; told to stop, they
            # also start no further provider call and queue the rest of their batch again.
            stop.set()
            waiting = set(started)
            while waiting:
                # Told to stop while waiting for them (the usual state of a backlog: this
                # process ran out of batches first): a SIGTERM reaches only this process.
                if STOP.is_set():
                    halt.set()
                done, waiting = wait(waiting, timeout=0.2)
                for future in done:
                    try:
                        total.add(future.result())
                    except Exception as exc:  # noqa: BLE001 - every helper's counts first
                        failures.append(exc)
    if failures:
        raise failures[0]


#: Due messages per helper process worth its start (about a second of imports and loading).
HELPER_BACKLOG = 2000


def sending_processes(rt: Runtime) -> int:
    """How many processes the next send stage uses: this one alone for a backlog it clears in
    a couple of seconds, else one more per ``HELPER_BACKLOG`` due messages, up to
    ``send_processes`` (one per core by default)."""
    most = (rt.settings.send_processes or default_workers()) - 1
    if most < 1:
        return 1
    due = select(Message.id).where(Message.status == "pending",
                                   Message.due_at <= rt.now()).limit(HELPER_BACKLOG * (most + 1))
    with rt.factory() as session:
        backlog = session.scalar(select(func.count()).select_from(due.subquery())) or 0
    return 1 + (min(most, backlog // HELPER_BACKLOG - 1) if backlog >= 2 * HELPER_BACKLOG else 0)


_stop: Any = None  # in a helper: set when the process that started it stops


def _start_helper(stop: Any, halt: Any) -> None:
    global _stop
    _stop = stop
    # Ctrl-C reaches the whole process group: the starting process decides when to stop,
    # and a helper ends its batch first, so nothing is left ``sending``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        halt.wait()
        STOP.set()

    threading.Thread(target=watch, name="halt-watch", daemon=True).start()
    # Our own progress at INFO; the clients' per-request INFO lines (twilio logs every
    # request and response) would cost a helper a tenth of its CPU and flood the log.
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s send helper: %(message)s")
    logging.getLogger("aftersale").setLevel(logging.INFO)


def _send_in_helper(settings: dict[str, Any], clock: Clock, digest: str,
                    max_batches: int) -> DispatchCounts:
    # SIGTERM to a helper itself (systemd stops the whole cgroup) or the starting process
    # stopping on one: no further claim or call, in-flight calls recorded, the rest requeued.
    stop_on_sigterm()
    rt = open_runtime(Settings(_env_file=None, **settings), clock,
                      migrate=False)
    try:
        with rt.factory() as session:
            definitions = with_settings(recorded(
                session, digest, rt.settings.journeys_dir, rt.settings.content_dir,
                rt.settings.default_locale), rt.settings)
        total = DispatchCounts()
        _send_loop(rt, definitions, max_batches, total, _stop)
        return total
    finally:
        rt.engine.dispose()
        # Done sending: an idle helper stops at once on SIGTERM, so none outlives a starting
        # process that was killed (its pool's queue would keep it waiting for ever).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _send_loop(rt: Runtime, definitions: Definitions, max_batches: int,
               total: DispatchCounts, stop: Any = None) -> None:
    channels, links = rt.channels(), rt.links()
    rules = Rules(*rt.settings.sending_rules())
    for _ in range(max_batches):
        if STOP.is_set() or (stop is not None and stop.is_set()):
            break
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
