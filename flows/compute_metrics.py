"""Prefect entrypoint named in prefect.yaml; the flow is aftersale.orchestration.compute_metrics."""

from aftersale.orchestration.compute_metrics import compute_metrics

__all__ = ["compute_metrics"]
