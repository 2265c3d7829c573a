"""``shipment.updated`` in our own format, through ``POST /events`` and ``aftersale ingest``
(run in this process), on SQLite and PostgreSQL: stored in the inbox as sent, and a carrier time
without an offset refused with its field named and nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from aftersale.cli import app as cli
from aftersale.config import Settings
from aftersale.db.models import InboxEvent
from aftersale.pipeline.runtime import Runtime
from aftersale.web.app import create_app
from tests.integration.helpers import in_process

AUTH = {"Authorization": "Bearer test-token"}


def update(event_id: str, **shipment: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "shipment.updated", "occurred_at": "2026-03-03T13:05:00+03:00",
            "order": {"id": "o-17"},
            "shipment": {"id": "carrier:PKG-1", "status": "attempted_delivery",
                         "carrier": "Yurtiçi Kargo", "tracking_number": "108236547712",
                         "tracking_url": "https://kargo.example/108236547712",
                         "estimated_delivery_at": "2026-03-05T18:00:00+03:00",
                         "message": "Alıcı adreste yok", "happened_at": "2026-03-03T13:04:00+03:00",
                         **shipment}}


@pytest.fixture
def web(settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(create_app(settings, rt)) as client:
        yield client


def inbox(rt: Runtime) -> list[InboxEvent]:
    with rt.factory() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.seq)))


def ingest(settings: Settings, tmp_path: Path, *lines: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "shipments.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                    encoding="utf-8")
    env = {"AFTERSALE_DATABASE_URL": settings.database_url,
           "AFTERSALE_JOURNEYS_DIR": str(settings.journeys_dir),
           "AFTERSALE_CONTENT_DIR": str(settings.content_dir), "AFTERSALE_PREFECT_EVENTS": "false"}
    result = CliRunner().invoke(cli, ["ingest", str(path), "--workers", "0"], env=env)
    return result.exit_code, result.output


def test_a_posted_shipment_update_is_in_the_inbox_as_sent(web: TestClient, rt: Runtime) -> None:
    response = web.post("/events", json=update("carrier-evt-1"), headers=AUTH)
    assert response.status_code == 202 and response.json()["stored"] == 1
    [row] = inbox(rt)
    assert (row.event_id, row.type, row.source) == ("carrier-evt-1", "shipment.updated", "api")
    shipment = row.payload["shipment"]
    assert (shipment["id"], shipment["status"], shipment["carrier"], shipment["message"]) == (
        "carrier:PKG-1", "attempted_delivery", "Yurtiçi Kargo", "Alıcı adreste yok")
    assert shipment["happened_at"].startswith("2026-03-03T10:04:00")  # stored in UTC
    assert shipment["estimated_delivery_at"].startswith("2026-03-05T15:00:00")


def test_an_ingested_shipment_update_is_in_the_inbox_once(settings: Settings, rt: Runtime,
                                                          tmp_path: Path) -> None:
    code, output = ingest(settings, tmp_path, update("carrier-evt-2", status="out_for_delivery"))
    assert code == 0, output
    assert "stored 1 new event(s)" in output
    code, output = ingest(settings, tmp_path, update("carrier-evt-2", status="out_for_delivery"))
    assert code == 0 and "stored 0 new event(s); 1 already stored" in output
    [row] = inbox(rt)
    assert (row.event_id, row.type, row.source) == ("carrier-evt-2", "shipment.updated", "file")
    assert row.payload["shipment"]["status"] == "out_for_delivery"


def test_a_status_nobody_mapped_is_kept_as_unknown_with_its_word(web: TestClient,
                                                                 rt: Runtime) -> None:
    response = web.post("/events", json=update("carrier-evt-3", status="held_at_customs_2"),
                        headers=AUTH)
    assert response.status_code == 202
    [row] = inbox(rt)
    assert (row.payload["shipment"]["status"], row.payload["shipment"]["raw_status"]) == (
        "unknown", "held_at_customs_2")


def test_a_carrier_time_without_an_offset_is_refused_naming_the_field(
        web: TestClient, settings: Settings, rt: Runtime, tmp_path: Path) -> None:
    naive = update("carrier-evt-4", happened_at="2026-03-03T13:04:00")
    response = web.post("/events", json=[update("carrier-evt-5"), naive], headers=AUTH)
    assert response.status_code == 422
    [problem] = response.json()["events"]
    assert problem["index"] == 1 and problem["id"] == "carrier-evt-4"
    assert problem["error"].startswith("shipment.happened_at: ")
    assert "UTC offset" in problem["error"]

    code, output = ingest(settings, tmp_path, update("carrier-evt-5"), naive)
    assert code == 1
    assert f"{tmp_path / 'shipments.jsonl'}:2: shipment.happened_at: " in output
    assert "nothing stored" in output
    assert inbox(rt) == []
