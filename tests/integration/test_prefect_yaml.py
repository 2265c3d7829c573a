"""prefect.yaml points at real flows with the names the deployments expect."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_deployment_entrypoint_is_a_flow_of_that_name() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {d["name"] for d in config["deployments"]}
    assert {"process-events", "dispatch-messages"} <= names
    for deployment in config["deployments"]:
        path, _, attribute = deployment["entrypoint"].partition(":")
        spec = importlib.util.spec_from_file_location("entry", ROOT / path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        flow = getattr(module, attribute)
        assert flow.name == deployment["name"]
        assert deployment["concurrency_limit"] == 1  # two runs never work the same rows
        assert set(deployment.get("parameters", {})) <= set(flow.parameters.properties)
