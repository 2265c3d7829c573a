"""POST /events and /healthz, through an HTTP client calling the app in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aftersale.config import Settings
from aftersale.db.models import InboxEvent
from aftersale.pipeline.runtime import Runtime
from aftersale.web.app import create_app
from tests.conftest import START
from tests.factories import follow, placed
from tests.integration.helpers import in_process

AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
def web(settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(create_app(settings, rt)) as client:
        yield client


def _stored(rt: Runtime) -> int:
    with rt.factory() as session:
        return session.scalar(select(func.count()).select_from(InboxEvent)) or 0


def test_events_are_accepted_one_or_many_and_stored_once(web: TestClient, rt: Runtime) -> None:
    one = web.post("/events", json=placed("o-1", START), headers=AUTH)
    assert one.status_code == 202 and one.json() == {"received": 1, "stored": 1, "duplicates": 0}
    many = web.post("/events", headers=AUTH,
                    json=[placed("o-1", START), follow("shipped", "o-1", START)])
    assert many.json() == {"received": 2, "stored": 1, "duplicates": 1}
    assert _stored(rt) == 2


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic dGVzdC10b2tlbg=="},
                                     {"Authorization": "Bearer"}])
def test_a_missing_or_wrong_token_gets_401_and_writes_nothing(
        web: TestClient, rt: Runtime, headers: dict[str, str]) -> None:
    response = web.post("/events", json=placed("o-1", START), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert _stored(rt) == 0


def test_a_batch_with_one_bad_event_is_rejected_whole_with_reasons(web: TestClient,
                                                                   rt: Runtime) -> None:
    bad = placed("o-2", START, "c-2") | {"occurred_at": "2026-03-01T10:00:00"}
    response = web.post("/events", headers=AUTH, json=[placed("o-1", START), bad])
    assert response.status_code == 422
    [problem] = response.json()["events"]
    assert problem["index"] == 1 and problem["id"] == "evt-o-2-placed"
    assert "UTC offset" in problem["error"]
    assert _stored(rt) == 0


def test_a_consent_of_the_wrong_type_gets_422_naming_the_field(web: TestClient,
                                                               rt: Runtime) -> None:
    bad = placed("o-2", START, "c-2", consent={"sms": "yes", "order_updates": {"whatsapp": 1}})
    response = web.post("/events", headers=AUTH, json=[placed("o-1", START), bad])
    assert response.status_code == 422
    [problem] = response.json()["events"]
    assert problem["index"] == 1
    assert "customer.consent.sms: must be true, false or null, got 'yes'" in problem["error"]
    assert "customer.consent.order_updates.whatsapp:" in problem["error"]
    assert _stored(rt) == 0


def test_a_body_that_is_not_json_gets_400(web: TestClient, rt: Runtime) -> None:
    response = web.post("/events", headers=AUTH, content=b"{oops")
    assert response.status_code == 400 and "not JSON" in response.json()["error"]
    assert _stored(rt) == 0


def test_healthz_checks_the_database(web: TestClient) -> None:
    response = web.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_skip_invalid_stores_the_good_events_and_lists_the_bad(web: TestClient, rt: Runtime) -> None:
    bad = placed("o-2", START, "c-2", email="not-an-address")
    response = web.post("/events?skip_invalid=true", headers=AUTH,
                        json=[placed("o-1", START), bad])
    assert response.status_code == 202
    body = response.json()
    assert (body["received"], body["stored"]) == (1, 1)
    assert body["rejected"][0]["index"] == 1 and "customer.email" in body["rejected"][0]["error"]
    assert _stored(rt) == 1
