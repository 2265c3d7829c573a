"""Tell Prefect that the inbox has new events, so ``process-events`` starts within seconds.

The inbox is the source of truth: the event is only a nudge. When it cannot be emitted (no
Prefect server, a network error) nothing is lost; the deployment's safety schedule drains the
inbox on its next run. So this never raises into the request that stored the events.
"""

from __future__ import annotations

import logging

from aftersale.config import Settings

log = logging.getLogger(__name__)

EVENT = "aftersale.inbox.received"
RESOURCE = "aftersale.inbox"


def prefect_events_enabled(settings: Settings) -> bool:
    if settings.prefect_events is not None:
        return settings.prefect_events
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def inbox_received(settings: Settings, stored: int, source: str) -> bool:
    """Emit ``aftersale.inbox.received`` for ``stored`` new events; True when emitted."""
    if stored <= 0 or not prefect_events_enabled(settings):
        return False
    try:
        from prefect.events import emit_event

        emitted = emit_event(
            event=EVENT,
            resource={"prefect.resource.id": RESOURCE, "prefect.resource.name": "inbox"},
            payload={"count": stored, "source": source},
        )
    except Exception:  # a nudge: the safety schedule covers a lost one
        log.warning("could not emit %s; the next scheduled run will pick the events up", EVENT,
                    exc_info=True)
        return False
    return emitted is not None
