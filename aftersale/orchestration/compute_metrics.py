"""compute-metrics: the section-4 metrics per segment, the holdout lift per journey, stored as
a snapshot (for trends) and published as Prefect artifacts under stable keys, so the UI keeps
their history: ``metrics-segments`` (a table per segment), ``metrics-funnel`` (per step and
channel: people's opens and clicks, machine opens and scanner clicks beside) and
``metrics-summary`` (markdown with the holdout verdicts and, in one sentence, what a delivery
problem did to NPS and repeat purchase) and ``experiments`` (per experiment its table and
verdict). Before the experiments are published, ``winner: auto`` experiments that have a
winner (or reached their horizon) are decided, and the team alerted (one task, whatever the
number of experiments).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from aftersale.metrics.compute import compute
from aftersale.metrics.experiment_decisions import decide
from aftersale.metrics.experiments import experiment_results, markdown
from aftersale.metrics.snapshots import (
    EXPERIMENTS_KEY,
    FUNNEL_KEY,
    SEGMENTS_KEY,
    SUMMARY_KEY,
    funnel_rows,
    segment_rows,
    store_snapshot,
    summary_markdown,
)
from aftersale.orchestration.flow_context import runtime, work, working_with
from aftersale.surveys.sms_answers import survey_kinds


@task(name="compute-all-metrics", cache_policy=NO_CACHE)
def compute_task(start: datetime | None) -> dict[str, Any]:
    rt, definitions = work()
    end = rt.now()
    with rt.factory() as session, session.begin():
        report = compute(session, start, end, survey_kinds(definitions.content), as_of=end,
                         parallel=True)
        store_snapshot(session, report, start, end)
    create_table_artifact(segment_rows(report), key=SEGMENTS_KEY,
                          description=f"Metrics per segment as of {end:%Y-%m-%d %H:%M} UTC")
    if report.funnel:
        create_table_artifact(funnel_rows(report), key=FUNNEL_KEY,
                              description="Messages per step: opens and clicks by people; "
                                          "machine opens and scanner clicks beside")
    create_markdown_artifact(summary_markdown(report), key=SUMMARY_KEY,
                             description="NPS, CSAT, retention, what delivery problems did to "
                                         "loyalty and each journey's holdout verdict")
    return {"segments": len(report.segments), "journeys": len(report.journeys),
            "customers": next((s.customers for s in report.segments if s.segment == "all"), 0)}


@task(name="decide-experiments", cache_policy=NO_CACHE)
def experiments_task() -> dict[str, Any]:
    """Decide what can be decided, then publish every experiment's results."""
    rt, definitions = work()
    now = rt.now()
    with rt.factory() as session, session.begin():
        decided = decide(session, definitions, now)
    with rt.factory() as session, session.begin():
        results = experiment_results(session, definitions, now)
    create_markdown_artifact(markdown(results), key=EXPERIMENTS_KEY,
                             description="Experiments: per variant the goal, the difference "
                                         "to the control (always-valid 95% CI) and the verdict")
    return {"experiments": len(results.experiments),
            "decided": [f"{d.journey}/{d.experiment}: {d.variant} ({d.outcome})"
                        for d in decided]}


@flow(name="compute-metrics")
def compute_metrics(start: str | None = None) -> dict[str, Any]:
    """``start``: ISO date or time the period begins (default: all history)."""
    logger = get_run_logger()
    rt = runtime()
    definitions = rt.definitions()
    with working_with(rt, definitions):
        summary = compute_task(datetime.fromisoformat(start) if start else None)
        experiments = experiments_task()
    logger.info("compute-metrics: %s; experiments: %s", summary, experiments)
    return summary
