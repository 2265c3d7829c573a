"""Prefect entrypoint named in prefect.yaml; the flow is aftersale.orchestration.process_events."""

from aftersale.orchestration.process_events import process_events

__all__ = ["process_events"]
