"""prefect.yaml and aftersale/orchestration/deployments.py declare the same deployments, for real flows, and
listen to the events the intake emits; `prefect deploy --all` accepts the file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from aftersale.intake import notify
from aftersale.orchestration.deployments import (
    LINGER_SECONDS,
    SPECS,
    TRIGGER_WINDOW_SECONDS,
    runner_deployments,
)

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> list[dict[str, Any]]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_every_deployment_entrypoint_is_a_flow_of_that_name() -> None:
    for deployment in _declared():
        path, _, attribute = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file()
        spec = next(s for s in SPECS if s.name == deployment["name"])
        flow = spec.flow()
        assert flow.name == deployment["name"] and flow.fn.__name__ == attribute
        assert set(deployment["parameters"]) <= set(flow.parameters.properties)
        for trigger in deployment["triggers"]:
            assert set(trigger["parameters"]) <= set(flow.parameters.properties)


def test_prefect_yaml_declares_what_aftersale_up_serves() -> None:
    declared = [{k: v for k, v in d.items() if k != "work_pool"} for d in _declared()]
    assert declared == [spec.declaration() for spec in SPECS]
    assert [d["name"] for d in declared] == ["process-events", "dispatch-messages", "compute-metrics"]
    for deployment in _declared():
        assert deployment["work_pool"]["name"] == "aftersale"
        # Two runs of one flow never work the same rows, and nudges never queue up runs.
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_the_triggers_listen_to_the_events_the_intake_and_process_events_emit() -> None:
    by_name = {d["name"]: d for d in _declared()}
    heard = {(name, event, t["match"]["prefect.resource.id"])
             for name, d in by_name.items() for t in d["triggers"] for event in t["expect"]}
    assert heard == {("process-events", notify.EVENT, notify.RESOURCE),
                     ("dispatch-messages", notify.EVENT, notify.RESOURCE),
                     ("dispatch-messages", notify.WORK_DUE_EVENT, notify.WORK_DUE_RESOURCE)}
    for name in ("process-events", "dispatch-messages"):
        deployment = by_name[name]
        # Runs linger at least as long as a trigger stays quiet after firing.
        assert deployment["parameters"]["linger_seconds"] >= TRIGGER_WINDOW_SECONDS
        assert deployment["schedules"] and all(s["interval"] <= 60 for s in deployment["schedules"])
        for trigger in deployment["triggers"]:
            assert trigger["within"] == TRIGGER_WINDOW_SECONDS and trigger["threshold"] == 1
            assert trigger["parameters"] == {"reason": "{{ event.event }}",
                                             "count": "{{ event.payload.count }}"}
    assert by_name["compute-metrics"]["schedules"][0]["cron"].count(" ") == 4  # daily cron


def test_served_deployments_carry_the_triggers_schedules_and_limits() -> None:
    built = {d.name: d for d in runner_deployments()}
    process, dispatch, metrics = (built[n] for n in ("process-events", "dispatch-messages",
                                                     "compute-metrics"))
    for deployment in built.values():
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options is not None
        assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
        # A module path inside the installed package: any working directory.
        assert deployment.entrypoint.startswith("aftersale.orchestration.")
    assert process.parameters["linger_seconds"] == LINGER_SECONDS
    assert [t.expect for t in process.triggers] == [{notify.EVENT}]
    assert [t.expect for t in dispatch.triggers] == [{notify.EVENT}, {notify.WORK_DUE_EVENT}]
    assert all(t.within == timedelta(seconds=TRIGGER_WINDOW_SECONDS)
               for t in process.triggers + dispatch.triggers)
    assert process.schedules[0].schedule.interval == timedelta(seconds=60)  # type: ignore[union-attr]
    assert dispatch.schedules[0].schedule.interval == timedelta(seconds=30)  # type: ignore[union-attr]
    assert metrics.schedules[0].schedule.cron == "15 3 * * *"  # type: ignore[union-attr]
    assert not metrics.triggers


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_prefect_deploy_all_accepts_prefect_yaml() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    async def create_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="aftersale", type="process"),
                                          overwrite=True)

    asyncio.run(create_pool())
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "AFTERSALE_HOME": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr

    async def check_and_remove() -> None:
        async with get_client() as client:
            for spec in SPECS:
                deployment = await client.read_deployment_by_name(f"{spec.name}/{spec.name}")
                try:
                    assert deployment.work_pool_name == "aftersale"
                    assert deployment.global_concurrency_limit is not None
                    assert deployment.global_concurrency_limit.limit == 1
                    assert deployment.concurrency_options is not None
                    assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
                    assert len(deployment.schedules) == 1
                    automations = await client.read_resource_related_automations(
                        f"prefect.deployment.{deployment.id}")
                    assert sorted(a.name for a in automations) == sorted(
                        t["name"] for t in spec.triggers)
                finally:
                    # The session's Prefect server is shared: leave no trigger behind.
                    await client.delete_resource_owned_automations(
                        f"prefect.deployment.{deployment.id}")
                    await client.delete_deployment(deployment.id)

    asyncio.run(check_and_remove())
