"""The Prefect deployments in one place: what ``aftersale up`` serves, and what ``prefect.yaml``
declares for ``prefect deploy --all`` (a test keeps the two equal).

Timing (the issue note has the measurements):

- Event triggers fire at most once per ``TRIGGER_WINDOW_SECONDS`` (reactive, threshold 1,
  ``within``): a burst of webhooks starts one run, not one per webhook. Events inside the
  window start nothing, so every run, scheduled or triggered, lingers: it polls the database
  once a second until ``LINGER_SECONDS`` pass without new work, which covers the window.
- ``concurrency_limit: 1`` per deployment, so two runs never claim the same rows, with
  ``CANCEL_NEW``: a run that would start while another one runs is cancelled at once, and the
  running one, lingering, takes the new work. ``ENQUEUE`` would line up a run per trigger or
  schedule tick behind a long drain, each starting a process to find nothing.
- ``dispatch-messages`` has two triggers: new events start it alongside ``process-events``, so
  it is already polling when enrollments become due (one cold start per burst, not two in a
  row); ``aftersale.work.due`` from ``process-events`` starts it when that run missed them
  (each trigger throttles on its own, so the first cannot swallow the second).
- What a lost nudge leaves (a Prefect outage, a run cancelled in the instant its holder
  stopped polling) waits for the schedule: ``process-events`` every minute,
  ``dispatch-messages`` every 30 s, which also sends the steps whose wait simply ran out.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aftersale.intake.notify import EVENT, RESOURCE, WORK_DUE_EVENT, WORK_DUE_RESOURCE

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment

TRIGGER_WINDOW_SECONDS = 10
LINGER_SECONDS = TRIGGER_WINDOW_SECONDS
PROCESS_SAFETY_SECONDS = 60
DISPATCH_INTERVAL_SECONDS = 30
METRICS_CRON = "15 3 * * *"  # daily, after the night's sends and before the working day
METRICS_TIMEZONE = "UTC"
TAGS = ["aftersale"]
ONE_AT_A_TIME: dict[str, Any] = {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def _trigger(name: str, event: str, resource: str) -> dict[str, Any]:
    """A deployment event trigger in prefect.yaml's shape; the parameters are rendered from
    the event (a single-expression template keeps the payload's int)."""
    return {
        "type": "event",
        "name": name,
        "match": {"prefect.resource.id": resource},
        "expect": [event],
        "posture": "Reactive",
        "threshold": 1,
        "within": TRIGGER_WINDOW_SECONDS,
        # The deployment's parameters (linger_seconds) apply to these runs too.
        "parameters": {"reason": "{{ event.event }}", "count": "{{ event.payload.count }}"},
    }


@dataclass(frozen=True)
class DeploymentSpec:
    name: str  # also the flow's name
    module: str
    function: str
    description: str
    schedules: list[dict[str, Any]]
    triggers: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: dict[str, Any] = field(default_factory=lambda: dict(ONE_AT_A_TIME))

    @property
    def entrypoint(self) -> str:
        """Where ``prefect.yaml`` finds the flow: a one-line file in the top-level ``flows/``
        folder (a path from the project directory, as workers pull it)."""
        return f"flows/{self.module.rpartition('.')[2]}.py:{self.function}"

    def flow(self) -> Flow[..., Any]:
        return getattr(importlib.import_module(self.module), self.function)

    def declaration(self) -> dict[str, Any]:
        """This deployment as prefect.yaml declares it (without the work pool)."""
        return {"name": self.name, "entrypoint": self.entrypoint, "description": self.description,
                "tags": TAGS, "concurrency_limit": self.concurrency_limit,
                "parameters": self.parameters, "schedules": self.schedules,
                "triggers": self.triggers}

    def to_deployment(self) -> RunnerDeployment:
        """For ``prefect.serve``: the flow is imported by module path, so runs do not depend on
        the directory ``aftersale up`` was started in."""
        from prefect.client.schemas.objects import ConcurrencyLimitConfig
        from prefect.events import DeploymentEventTrigger
        from prefect.flows import EntrypointType

        return self.flow().to_deployment(  # type: ignore[return-value]  # a coroutine only in async code
            name=self.name, description=self.description, tags=TAGS,
            parameters=self.parameters or None,
            schedules=[_schedule(s) for s in self.schedules],
            triggers=[DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"})
                      for t in self.triggers],
            concurrency_limit=ConcurrencyLimitConfig(**self.concurrency_limit),
            entrypoint_type=EntrypointType.MODULE_PATH,
        )


def _schedule(declared: dict[str, Any]) -> Any:
    from prefect.schedules import Cron, Interval

    if "interval" in declared:
        return Interval(declared["interval"])
    return Cron(declared["cron"], timezone=declared.get("timezone"))


SPECS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        name="process-events", module="aftersale.orchestration.process_events",
        function="process_events",
        description="Drain the inbox in batches: upsert, enroll, resume waits, exit.",
        parameters={"max_batches": 100, "linger_seconds": LINGER_SECONDS},
        schedules=[{"interval": PROCESS_SAFETY_SECONDS}],
        triggers=[_trigger("aftersale-process-events-on-inbox", EVENT, RESOURCE)],
    ),
    DeploymentSpec(
        name="dispatch-messages", module="aftersale.orchestration.dispatch_messages",
        function="dispatch_messages",
        description="Advance due enrollments and send what they queued, in batches.",
        parameters={"max_batches": 100, "linger_seconds": LINGER_SECONDS},
        schedules=[{"interval": DISPATCH_INTERVAL_SECONDS}],
        triggers=[_trigger("aftersale-dispatch-messages-on-inbox", EVENT, RESOURCE),
                  _trigger("aftersale-dispatch-messages-on-work-due", WORK_DUE_EVENT,
                           WORK_DUE_RESOURCE)],
    ),
    DeploymentSpec(
        name="compute-metrics", module="aftersale.orchestration.compute_metrics",
        function="compute_metrics",
        description="Section-4 metrics per segment and holdout lift: snapshot and artifacts.",
        schedules=[{"cron": METRICS_CRON, "timezone": METRICS_TIMEZONE}],
    ),
)


def runner_deployments() -> list[RunnerDeployment]:
    return [spec.to_deployment() for spec in SPECS]
