"""``POST /webhooks/aftership``, called in this process, on SQLite and PostgreSQL: the signature
over the raw body, a retried webhook stored once, unknown tags kept as ``unknown``, and the
answers AfterShip's retries need."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from aftersale.config import Settings
from aftersale.db.models import InboxEvent
from aftersale.pipeline.runtime import Runtime
from aftersale.web.app import create_app
from tests.integration.helpers import in_process

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "aftership" / "tracking_update.json"
SECRET = "as_whsec_1b2c3d4e5f60718293a4b5c6d7e8f901"
URL_PATH = "/webhooks/aftership"
TRACKING = "bff5a3bac79b472991a204172473a635"


def fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def tracking_settings(settings: Settings) -> Settings:
    return Settings(_env_file=None, **settings.model_dump() | {  # type: ignore[call-arg]
        "aftership_webhook_secret": SECRET, "prefect_events": False})


@pytest.fixture
def web(tracking_settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    # the whole app: the route is registered where `aftersale serve` finds it
    with in_process(create_app(tracking_settings, rt)) as client:
        yield client


def signature(raw: bytes, secret: str = SECRET) -> str:
    """What AfterShip puts in aftership-hmac-sha256 (computed here, not with our own code)."""
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def post(web: TestClient, body: dict[str, Any] | None = None, *, raw: bytes | None = None,
         secret: str = SECRET, headers: dict[str, str | None] | None = None) -> httpx2.Response:
    data = fixture()
    sent_body = raw if raw is not None else json.dumps(
        body if body is not None else data["body"], ensure_ascii=False).encode()
    sent = {**data["headers"], "aftership-hmac-sha256": signature(sent_body, secret)}
    for key, value in (headers or {}).items():
        if value is None:
            sent.pop(key, None)
        else:
            sent[key] = value
    return web.post(URL_PATH, content=sent_body, headers=sent)


def inbox(rt: Runtime) -> list[InboxEvent]:
    with rt.factory() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.seq)))


def test_a_signed_tracking_update_is_stored_once_even_when_retried(web: TestClient,
                                                                  rt: Runtime) -> None:
    first = post(web)
    assert first.status_code == 200
    event_id = f"aftership:{TRACKING}:AttemptFail:2026-03-03T13:04:00"
    assert first.json() == {"event": "tracking_update", "id": event_id, "received": 1,
                            "stored": 1, "duplicates": 0}
    retry = post(web)
    assert retry.status_code == 200 and retry.json()["duplicates"] == 1
    # the same moment again under a new event_id (a second webhook URL, a re-send)
    again = fixture()["body"] | {"event_id": "0f0f0f0f-1111-4222-8333-444444444444"}
    assert post(web, again).json()["stored"] == 0
    [row] = inbox(rt)
    assert (row.event_id, row.type, row.source, row.status) == (
        event_id, "shipment.updated", "aftership", "pending")
    assert row.payload["order"]["id"] == "5612345678901"
    shipment = row.payload["shipment"]
    assert (shipment["id"], shipment["status"], shipment["raw_status"]) == (
        f"aftership:{TRACKING}", "attempted_delivery", "AttemptFail_001")
    assert (shipment["carrier"], shipment["tracking_number"], shipment["destination_country"]) == (
        "dhl", "4817263950", "TR")
    assert shipment["message"] == "Delivery attempted; recipient not home"
    assert row.payload["source_ids"]["aftership_event_id"] == "94dadd60-ed26-46d0-aa52-3ced925a50ff"


def test_the_next_moment_of_the_same_parcel_is_a_new_event(web: TestClient, rt: Runtime) -> None:
    post(web)
    delivered = copy.deepcopy(fixture()["body"])
    delivered["msg"] |= {"tag": "Delivered", "subtag": "Delivered_001"}
    delivered["msg"]["checkpoints"].append({"checkpoint_time": "2026-03-04T10:30:00+03:00",
                                            "message": "Delivered", "tag": "Delivered"})
    assert post(web, delivered).json()["stored"] == 1
    assert [r.payload["shipment"]["status"] for r in inbox(rt)] == [
        "attempted_delivery", "delivered"]


@pytest.mark.parametrize("case", ["wrong secret", "missing header", "empty header",
                                  "body changed after signing", "hex instead of base64"])
def test_a_bad_or_missing_signature_is_401_and_stores_nothing(web: TestClient, rt: Runtime,
                                                              case: str) -> None:
    raw = json.dumps(fixture()["body"]).encode()
    if case == "wrong secret":
        response = post(web, secret="someone-else")
    elif case == "missing header":
        response = post(web, headers={"aftership-hmac-sha256": None})
    elif case == "empty header":
        response = post(web, headers={"aftership-hmac-sha256": ""})
    elif case == "body changed after signing":
        response = post(web, raw=raw.replace(b"AttemptFail", b"Delivered"),
                        headers={"aftership-hmac-sha256": signature(raw)})
    else:
        response = post(web, raw=raw, headers={
            "aftership-hmac-sha256": hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()})
    assert response.status_code == 401
    assert response.json() == {"error": "missing or wrong aftership-hmac-sha256"}
    assert inbox(rt) == []


def test_without_a_configured_secret_the_endpoint_answers_503(settings: Settings,
                                                              rt: Runtime) -> None:
    assert settings.aftership_webhook_secret is None
    with in_process(create_app(settings, rt)) as client:
        response = post(client)
    assert response.status_code == 503
    assert "AFTERSALE_AFTERSHIP_WEBHOOK_SECRET" in response.json()["error"]
    assert inbox(rt) == []


def test_an_unknown_tag_is_stored_as_unknown_with_its_word(web: TestClient, rt: Runtime) -> None:
    body = copy.deepcopy(fixture()["body"])
    body["msg"] |= {"tag": "HeldByDragons", "subtag": None}
    assert post(web, body).status_code == 200
    [row] = inbox(rt)
    assert (row.payload["shipment"]["status"], row.payload["shipment"]["raw_status"]) == (
        "unknown", "HeldByDragons")


def test_an_event_that_is_no_carrier_moment_is_200_ignored_and_logged(
        web: TestClient, rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    body = fixture()["body"] | {"event": "tracking_pending_time"}
    with caplog.at_level(logging.INFO, logger="aftersale.web.aftership_webhook"):
        response = post(web, body)
    assert response.status_code == 200 and response.json() == {"ignored": "tracking_pending_time"}
    assert inbox(rt) == []
    assert any("tracking_pending_time" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"event": "tracking_update", "msg": {', "body is not JSON"),
    (b"[1, 2]", "body must be a JSON object"),
    (b'{"event": "tracking_update", "msg": {"id": "t1", "tag": "InTransit"}}',
     "msg.order_id: missing or empty (got None)"),
])
def test_a_body_that_cannot_be_mapped_is_400_and_stores_nothing(web: TestClient, rt: Runtime,
                                                                raw: bytes, reason: str) -> None:
    response = post(web, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"].startswith(reason)
    assert inbox(rt) == []


def test_a_storage_failure_is_500_then_the_retry_stores_it(web: TestClient, rt: Runtime) -> None:
    with rt.engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbox_events RENAME TO inbox_events_away"))
    failed = post(web)
    assert failed.status_code == 500
    with rt.engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbox_events_away RENAME TO inbox_events"))
    assert inbox(rt) == []
    assert post(web).json()["stored"] == 1
