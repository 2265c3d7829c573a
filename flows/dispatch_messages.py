"""Prefect entrypoint named in prefect.yaml; the flow is aftersale.orchestration.dispatch_messages."""

from aftersale.orchestration.dispatch_messages import dispatch_messages

__all__ = ["dispatch_messages"]
