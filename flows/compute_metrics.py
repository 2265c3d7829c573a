"""compute-metrics: daily per-segment counts as Prefect artifacts.

A placeholder the metrics issue fills in with the section-4 metrics; until then it publishes
what SQL aggregates say per segment (customers, messages sent, survey answers, alerts), which
is cheap at any size and already useful on the dashboard.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from aftersale.segment_counts import markdown, segment_counts
from flows.common import runtime


@flow(name="compute-metrics")
def compute_metrics() -> list[dict[str, Any]]:
    logger = get_run_logger()
    rt = runtime()
    counts = segment_counts(rt.factory)
    rows = [row.row() for row in counts]
    as_of = rt.now().isoformat(timespec="seconds")
    create_table_artifact(rows, key="compute-metrics-summary",
                          description=f"Per-segment counts as of {as_of}")
    create_markdown_artifact(
        f"# Per-segment counts\n\nAs of {as_of}.\n\n{markdown(counts)}\n",
        key="compute-metrics-report", description="Per-segment counts, readable")
    logger.info("compute-metrics: %s segments, %s", len(rows) - 1, rows[-1])
    return rows
