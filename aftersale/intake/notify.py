"""Tell Prefect that work is waiting, so the flow that does it starts within seconds.

Two nudges, each triggering one deployment (aftersale.orchestration.deployments):

- ``aftersale.inbox.received`` (resource ``aftersale.inbox``): new events reached the inbox;
  ``process-events`` drains it.
- ``aftersale.work.due`` (resource ``aftersale.dispatch``): ``process-events`` enrolled or
  resumed someone, so a step may be due now; ``dispatch-messages`` advances and sends.

The database is the source of truth: an event is only a nudge. When it cannot be emitted (no
Prefect server, a network error) nothing is lost; the deployments' schedules pick the work up
on their next run. So these never raise into the request or the flow that stored the work.
"""

from __future__ import annotations

import logging
from typing import Any

from aftersale.config import Settings

log = logging.getLogger(__name__)

EVENT = "aftersale.inbox.received"
RESOURCE = "aftersale.inbox"
WORK_DUE_EVENT = "aftersale.work.due"
WORK_DUE_RESOURCE = "aftersale.dispatch"  # a name Prefect triggers match on, not a module path


def prefect_events_enabled(settings: Settings) -> bool:
    if settings.prefect_events is not None:
        return settings.prefect_events
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def inbox_received(settings: Settings, stored: int, source: str) -> bool:
    """Emit ``aftersale.inbox.received`` for ``stored`` new events; True when emitted."""
    if stored <= 0:
        return False
    return _emit(settings, EVENT, RESOURCE, "inbox", {"count": stored, "source": source})


def work_due(settings: Settings, count: int, source: str) -> bool:
    """Emit ``aftersale.work.due`` when ``count`` enrollments became due; True when emitted."""
    if count <= 0:
        return False
    return _emit(settings, WORK_DUE_EVENT, WORK_DUE_RESOURCE, "dispatch",
                 {"count": count, "source": source})


def _emit(settings: Settings, event: str, resource: str, name: str, payload: dict[str, Any]) -> bool:
    if not prefect_events_enabled(settings):
        return False
    try:
        from prefect.events import emit_event

        emitted = emit_event(
            event=event,
            resource={"prefect.resource.id": resource, "prefect.resource.name": name},
            payload=payload,
        )
    except Exception:  # a nudge: the safety schedule covers a lost one
        log.warning("could not emit %s; the next scheduled run will pick the work up", event,
                    exc_info=True)
        return False
    return emitted is not None
