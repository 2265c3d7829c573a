"""POST /webhooks/sendgrid/events, called in this process: the signed Event Webhook (ECDSA P-256 over the
exact raw body), normalized storage, delivery status, suppressions, and everything a forged or
replayed request must not do. Signed with our own key, verified by SendGrid's own helper."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from aftersale.config import Settings
from aftersale.core.errors import WebhookRejected
from aftersale.db.models import Customer, DeliveryEvent, Message, Suppression
from aftersale.metrics.journeys import funnel
from aftersale.pipeline.runtime import Runtime
from aftersale.pipeline.suppression import is_suppressed
from aftersale.web.app import create_app
from aftersale.webhooks import sendgrid as sg
from tests.conftest import START
from tests.factories import follow, placed
from tests.integration.helpers import feed, in_process, run_to, sent

KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_KEY = base64.b64encode(
    KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()
NOW_TS = str(int(START.timestamp()))
SG_ID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
EMAIL = "c-1@example.com"


@pytest.fixture
def signed_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sendgrid_webhook_public_key": PUBLIC_KEY})


@pytest.fixture
def web(signed_settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(create_app(signed_settings, rt)) as client:
        yield client


@pytest.fixture
def message(rt: Runtime) -> Message:
    """A shipping update really sent by e-mail (the customer has no phone)."""
    feed(rt, placed("o-1", START, phone=None), follow("shipped", "o-1", START))
    run_to(rt, rt.definitions(), START)
    [msg] = sent(rt)
    assert (msg.channel, msg.recipient, msg.status) == ("email", EMAIL, "sent")
    return msg


def sign(body: bytes, timestamp: str = NOW_TS) -> str:
    return base64.b64encode(KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def post(web: TestClient, body: bytes, timestamp: str = NOW_TS,
         signature: str | None = None) -> httpx2.Response:
    headers = {"Content-Type": "application/json",
               sg.SIGNATURE_HEADER: signature if signature is not None else sign(body, timestamp),
               sg.TIMESTAMP_HEADER: timestamp}
    return web.post("/webhooks/sendgrid/events", content=body, headers=headers)


def encode(events: list[dict[str, Any]]) -> bytes:
    # SendGrid's own formatting: one line, ", " and ": " separators, a trailing newline.
    return (json.dumps(events) + "\r\n").encode()


def event(kind: str, message_id: str, n: int, **fields: Any) -> dict[str, Any]:
    """A realistic SendGrid event (shapes from PROVIDERS.md), our id in the custom args."""
    return {"email": "C-1@Example.com", "timestamp": int(START.timestamp()) - 60 + n,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "event": kind,
            "category": ["order-updates", "shipping_update"], "sg_event_id": f"sg-event-{kind}-{n}",
            "sg_message_id": SG_ID, "aftersale_message_id": message_id, **fields}


def lifecycle(message_id: str) -> list[dict[str, Any]]:
    return [
        event("processed", message_id, 1),
        event("delivered", message_id, 2, response="250 OK", tls=1, ip="168.1.1.1"),
        event("open", message_id, 3, sg_machine_open=False, useragent="Mozilla/5.0",
              ip="255.255.255.255"),
        event("click", message_id, 4, url="https://track.example.com/o-1", url_offset={"index": 0,
              "type": "html"}, useragent="Mozilla/5.0", ip="255.255.255.255"),
    ]


def rows(rt: Runtime) -> list[DeliveryEvent]:
    with rt.factory() as session:
        return list(session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.occurred_at)))


def count(rt: Runtime, model: type) -> int:
    with rt.factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def delivery_status(rt: Runtime, message_id: str) -> str | None:
    with rt.factory() as session:
        return session.get(Message, message_id).delivery_status  # type: ignore[union-attr]


def suppressed(rt: Runtime, address: str = EMAIL) -> bool:
    with rt.factory() as session:
        return is_suppressed(session, "email", address)


def test_a_signed_batch_is_stored_normalized_and_moves_the_message_forward(
        web: TestClient, rt: Runtime, message: Message) -> None:
    events = lifecycle(message.id)
    response = post(web, encode(events))
    assert response.status_code == 200
    assert response.json() == {"received": 4, "stored": 4, "duplicates": 0, "suppressed": 0,
                               "lifted": 0}
    stored = rows(rt)
    assert [r.kind for r in stored] == ["processed", "delivered", "opened", "clicked"]
    for row, raw in zip(stored, events, strict=True):
        assert row.provider == "sendgrid"
        assert row.provider_event_id == raw["sg_event_id"]
        assert row.message_id == message.id
        assert row.provider_message_id == SG_ID  # whole: its dot-prefixes are matched
        assert row.recipient == EMAIL
        assert row.occurred_at == START - timedelta(seconds=60 - int(raw["sg_event_id"][-1]))
        assert row.received_at == START
        assert row.raw == raw
    assert stored[1].reason == "250 OK"
    assert delivery_status(rt, message.id) == "clicked"
    assert not suppressed(rt)


def test_the_same_batch_twice_is_stored_once(web: TestClient, rt: Runtime, message: Message) -> None:
    body = encode(lifecycle(message.id))
    assert post(web, body).json()["stored"] == 4
    again = post(web, body)
    assert again.status_code == 200
    assert again.json() == {"received": 4, "stored": 0, "duplicates": 4, "suppressed": 0, "lifted": 0}
    assert count(rt, DeliveryEvent) == 4


def test_a_late_processed_event_does_not_move_a_delivered_message_back(
        web: TestClient, rt: Runtime, message: Message) -> None:
    post(web, encode([event("delivered", message.id, 2, response="250 OK")]))
    post(web, encode([event("processed", message.id, 1), event("deferred", message.id, 0,
                                                                      response="450 try later")]))
    assert delivery_status(rt, message.id) == "delivered"
    post(web, encode([event("open", message.id, 3, sg_machine_open=False)]))
    assert delivery_status(rt, message.id) == "opened"


def _bad_requests() -> list[tuple[str, dict[str, Any]]]:
    body = encode([{"email": EMAIL, "event": "delivered", "sg_event_id": "x1", "timestamp": 1}])
    stale = str(int((START - timedelta(hours=25, seconds=1)).timestamp()))
    future = str(int((START + timedelta(minutes=6)).timestamp()))
    reserialized = json.dumps(json.loads(body), separators=(",", ":")).encode()
    return [
        ("signature of another body", {"body": body, "signature": sign(b"[]")}),
        ("re-serialized body", {"body": reserialized, "signature": sign(body)}),
        ("older than the retry period", {"body": body, "timestamp": stale, "signature": sign(body, stale)}),
        ("future timestamp", {"body": body, "timestamp": future, "signature": sign(body, future)}),
        ("timestamp changed after signing", {"body": body, "timestamp": str(int(NOW_TS) + 1),
                                             "signature": sign(body)}),
        ("signature not base64", {"body": body, "signature": "%%% not base64 %%%"}),
        ("empty signature", {"body": body, "signature": ""}),
    ]


@pytest.mark.parametrize(("case", "request_"), _bad_requests(), ids=[c for c, _ in _bad_requests()])
def test_a_forged_or_replayed_request_gets_403_and_writes_nothing(
        web: TestClient, rt: Runtime, case: str, request_: dict[str, Any]) -> None:
    response = post(web, **request_)
    assert response.status_code == 403, case
    assert response.json()["error"]
    assert count(rt, DeliveryEvent) == 0 and count(rt, Suppression) == 0


@pytest.mark.parametrize("missing", [sg.SIGNATURE_HEADER, sg.TIMESTAMP_HEADER])
def test_missing_signature_headers_get_403(web: TestClient, rt: Runtime, missing: str) -> None:
    body = encode([{"email": EMAIL, "event": "bounce", "sg_event_id": "x1", "type": "bounce"}])
    headers = {sg.SIGNATURE_HEADER: sign(body), sg.TIMESTAMP_HEADER: NOW_TS}
    del headers[missing]
    response = web.post("/webhooks/sendgrid/events", content=body, headers=headers)
    assert response.status_code == 403 and "missing" in response.json()["error"]
    assert count(rt, DeliveryEvent) == 0 and count(rt, Suppression) == 0


def test_without_a_public_key_nothing_is_accepted_and_sendgrid_is_told_to_retry(
        settings: Settings, rt: Runtime) -> None:
    body = encode([{"email": EMAIL, "event": "delivered", "sg_event_id": "x1"}])
    with in_process(create_app(settings, rt)) as client:
        response = post(client, body)
    assert response.status_code == 503
    assert "AFTERSALE_SENDGRID_WEBHOOK_PUBLIC_KEY" in response.json()["error"]
    assert count(rt, DeliveryEvent) == 0


@pytest.mark.parametrize("body", [b'{"event": "delivered"}', b"[1, 2]", b"{oops", b'"text"'])
def test_a_signed_body_that_is_not_an_array_of_events_gets_400(web: TestClient, rt: Runtime,
                                                                body: bytes) -> None:
    response = post(web, body)
    assert response.status_code == 400
    assert count(rt, DeliveryEvent) == 0


def test_a_hard_bounce_suppresses_the_address_and_a_blocked_one_does_not(
        web: TestClient, rt: Runtime, message: Message) -> None:
    blocked = event("bounce", message.id, 1, type="blocked", status="4.7.1",
                    reason="421 4.7.1 try again later", bounce_classification="Reputation")
    assert post(web, encode([blocked])).json()["suppressed"] == 0
    assert not suppressed(rt)
    bounce = event("bounce", message.id, 2, type="bounce", status="5.1.1",
                   reason="550 5.1.1 The email account that you tried to reach does not exist",
                   bounce_classification="Invalid Address")
    assert post(web, encode([bounce])).json()["suppressed"] == 1
    assert suppressed(rt) and suppressed(rt, "C-1@EXAMPLE.COM")
    [row] = [r for r in rows(rt) if r.provider_event_id == bounce["sg_event_id"]]
    assert (row.kind, row.error_code) == ("bounced", "5.1.1")
    assert row.reason is not None and row.reason.startswith("550 5.1.1")
    with rt.factory() as session:
        suppression = session.scalars(select(Suppression)).one()
        assert (suppression.channel, suppression.address, suppression.reason, suppression.source,
                suppression.customer_id) == ("email", EMAIL, "bounce", "sendgrid", "c-1")
        # A bounce is not the customer's choice: consent stays as it was.
        assert session.get(Customer, "c-1").consent_email is True  # type: ignore[union-attr]
    assert delivery_status(rt, message.id) == "bounced"
    # A second report of the same bounce has no second effect.
    assert post(web, encode([bounce])).json() == {
        "received": 1, "stored": 0, "duplicates": 1, "suppressed": 0, "lifted": 0}


def test_a_spam_report_suppresses_and_withdraws_consent(web: TestClient, rt: Runtime,
                                                       message: Message) -> None:
    response = post(web, encode([event("spamreport", message.id, 5)]))
    assert response.json()["suppressed"] == 1
    assert suppressed(rt)
    with rt.factory() as session:
        assert session.get(Customer, "c-1").consent_email is False  # type: ignore[union-attr]
        assert session.scalars(select(Suppression.reason)).one() == "spam_report"


def test_an_unsubscribe_suppresses_and_a_group_resubscribe_lifts_it(
        web: TestClient, rt: Runtime, message: Message) -> None:
    post(web, encode([event("group_unsubscribe", message.id, 5, asm_group_id=42)]))
    assert suppressed(rt)
    with rt.factory() as session:
        assert session.get(Customer, "c-1").consent_email is False  # type: ignore[union-attr]
    response = post(web, encode([event("group_resubscribe", message.id, 6, asm_group_id=42)]))
    assert response.json()["lifted"] == 1
    assert not suppressed(rt)
    with rt.factory() as session:
        assert session.get(Customer, "c-1").consent_email is True  # type: ignore[union-attr]
        row = session.scalars(select(Suppression)).one()
        assert row.lifted_at == START  # kept for the record


def test_a_resubscribe_never_lifts_a_hard_bounce(web: TestClient, rt: Runtime, message: Message) -> None:
    post(web, encode([event("bounce", message.id, 1, type="bounce", reason="550 no such user")]))
    post(web, encode([event("group_resubscribe", message.id, 2, asm_group_id=42)]))
    assert suppressed(rt)


@pytest.mark.parametrize(("reason", "suppresses"), [
    ("Bounced Address", True), ("Invalid", True), ("Unsubscribed Address", True),
    ("Spam Reporting Address", True), ("Invalid SMTPAPI header", False),
])
def test_a_drop_suppresses_only_for_reasons_about_the_address(
        web: TestClient, rt: Runtime, message: Message, reason: str, suppresses: bool) -> None:
    post(web, encode([event("dropped", message.id, 1, reason=reason)]))
    assert suppressed(rt) is suppresses
    assert delivery_status(rt, message.id) == "dropped"


def test_an_unknown_event_kind_is_kept_as_unknown(web: TestClient, rt: Runtime, message: Message) -> None:
    response = post(web, encode([event("account_status_change", message.id, 1)]))
    assert response.status_code == 200
    [row] = rows(rt)
    assert row.kind == "unknown" and row.raw["event"] == "account_status_change"
    assert delivery_status(rt, message.id) is None


@pytest.mark.parametrize(("recorded", "sg_message_id"), [
    ("14c5d75ce93", "14c5d75ce93.filter0001.16648.5515E0B88.0"),
    # Old-style X-Message-Id values contain dots themselves.
    ("14c5d75ce93.dfd.64b469", SG_ID),
    ("Hw8ghdQrQyCGKJbEcJzEkA", "Hw8ghdQrQyCGKJbEcJzEkA.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"),
], ids=["new-style", "old-style with dots", "current"])
def test_an_event_without_our_id_is_matched_by_the_providers_message_id(
        web: TestClient, rt: Runtime, message: Message, recorded: str, sg_message_id: str) -> None:
    with rt.factory() as session, session.begin():
        session.get(Message, message.id).provider = "sendgrid"  # type: ignore[union-attr]
        session.get(Message, message.id).provider_message_id = recorded  # type: ignore[union-attr]
    delivered = event("delivered", message.id, 1, response="250 OK", sg_message_id=sg_message_id)
    del delivered["aftersale_message_id"]
    post(web, encode([delivered]))
    assert rows(rt)[0].message_id == message.id
    assert delivery_status(rt, message.id) == "delivered"


def test_a_message_id_is_matched_by_the_longest_recorded_prefix(
        web: TestClient, rt: Runtime, message: Message) -> None:
    """Another message recorded under a shorter prefix of the same id does not take the event."""
    with rt.factory() as session, session.begin():
        mine = session.get(Message, message.id)
        assert mine is not None
        mine.provider, mine.provider_message_id = "sendgrid", "14c5d75ce93.dfd.64b469"
    with rt.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO messages (id, enrollment_id, step_key, customer_id, journey, template, "
            "channels, status, attempts, created_at, due_at, provider, provider_message_id) "
            "SELECT 'other', enrollment_id, 'other-step', customer_id, journey, template, channels, "
            "'sent', 1, created_at, due_at, 'sendgrid', '14c5d75ce93' FROM messages WHERE id = :id"),
            {"id": message.id})
    delivered = event("delivered", message.id, 1, response="250 OK")
    del delivered["aftersale_message_id"]
    post(web, encode([delivered]))
    assert rows(rt)[0].message_id == message.id
    assert delivery_status(rt, "other") is None


def test_a_database_failure_answers_500_and_writes_nothing(web: TestClient, rt: Runtime,
                                                           message: Message) -> None:
    with rt.engine.begin() as connection:
        connection.execute(text("ALTER TABLE suppressions RENAME TO suppressions_away"))
    events = [event("delivered", message.id, 1), event("bounce", message.id, 2, type="bounce")]
    response = post(web, encode(events))
    assert response.status_code == 500
    assert count(rt, DeliveryEvent) == 0
    assert delivery_status(rt, message.id) is None


def test_verify_accepts_the_edges_of_the_retry_window(signed_settings: Settings) -> None:
    """SendGrid retries for up to 24 hours: accepted up to 25 h old, and up to 5 minutes ahead
    of our clock; a second beyond either edge is refused."""
    body = b"[]"
    now = int(START.timestamp())
    for offset in (-25 * 3600, -2 * 3600, 0, 300):
        stamp = str(now + offset)
        sg.verify(signed_settings, body, sign(body, stamp), stamp, START)
    for offset in (-25 * 3600 - 1, 301):
        stamp = str(now + offset)
        with pytest.raises(WebhookRejected) as rejected:
            sg.verify(signed_settings, body, sign(body, stamp), stamp, START)
        assert rejected.value.status == 403


def test_a_retry_two_hours_late_is_applied_and_its_replay_changes_nothing(
        web: TestClient, rt: Runtime, message: Message) -> None:
    """Our endpoint was down; SendGrid's retry two hours later still suppresses the bounce, and
    the same signed body posted again (a retry after a lost 200, or a replay) adds nothing."""
    late = str(int((START - timedelta(hours=2)).timestamp()))
    body = encode([event("delivered", message.id, 1, response="250 OK"),
                   event("bounce", message.id, 2, type="bounce", reason="550 no such user")])
    first = post(web, body, timestamp=late)
    assert first.status_code == 200, first.text
    assert count(rt, DeliveryEvent) == 2 and suppressed(rt)
    assert delivery_status(rt, message.id) == "bounced"

    def snapshot() -> list[tuple[Any, ...]]:
        with rt.factory() as session:
            events = session.execute(select(DeliveryEvent.provider_event_id, DeliveryEvent.kind,
                                            DeliveryEvent.received_at)
                                     .order_by(DeliveryEvent.id)).all()
            held = session.execute(select(Suppression.address, Suppression.reason,
                                          Suppression.created_at)).all()
            status = session.get(Message, message.id).delivery_status  # type: ignore[union-attr]
        return [*map(tuple, events), *map(tuple, held), (status,)]

    before = snapshot()
    again = post(web, body, timestamp=late)
    assert again.status_code == 200, again.text
    assert snapshot() == before


def test_a_public_key_that_is_not_a_key_is_a_configuration_error(settings: Settings) -> None:
    broken = settings.model_copy(update={"sendgrid_webhook_public_key": "not-a-key"})
    with pytest.raises(WebhookRejected) as rejected:
        sg.verify(broken, b"[]", sign(b"[]"), NOW_TS, START)
    assert rejected.value.status == 503


def test_effects_in_one_batch_apply_in_the_order_they_happened(
        web: TestClient, rt: Runtime, message: Message) -> None:
    resubscribe = event("group_resubscribe", message.id, 9, asm_group_id=42)
    unsubscribe = event("group_unsubscribe", message.id, 1, asm_group_id=42)
    response = post(web, encode([resubscribe, unsubscribe]))  # SendGrid does not sort them
    assert response.json()["suppressed"] == 1 and response.json()["lifted"] == 1
    assert not suppressed(rt)


# --- engagement counts people ------------------------------------------------------------------

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")


def after_send(message: Message, seconds: float) -> int:
    assert message.sent_at is not None
    return int(message.sent_at.timestamp() + seconds)


def kinds(rt: Runtime) -> list[tuple[str, str | None]]:
    with rt.factory() as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            select(DeliveryEvent.kind, DeliveryEvent.reason)
            .where(DeliveryEvent.kind.in_(["opened", "machine_opened", "clicked",
                                           "suspect_clicked"]))
            .order_by(DeliveryEvent.occurred_at, DeliveryEvent.id))]


def test_an_apple_privacy_open_is_a_machine_open_kept_apart_from_peoples(
        web: TestClient, rt: Runtime, message: Message) -> None:
    post(web, encode([event("delivered", message.id, 2, response="250 OK"),
                           event("open", message.id, 3, sg_machine_open=True,
                                 useragent="Mozilla/5.0", ip="17.58.0.1")]))
    assert kinds(rt) == [("machine_opened", "sg_machine_open")]
    assert delivery_status(rt, message.id) == "delivered"  # not opened by anyone yet
    [row] = [r for r in rows(rt) if r.kind == "machine_opened"]
    assert row.raw["sg_machine_open"] is True  # the payload as received
    post(web, encode([event("open", message.id, 4, sg_machine_open=False,
                                 useragent=CHROME, timestamp=after_send(message, 3600))]))
    assert kinds(rt)[-1] == ("opened", None)
    assert delivery_status(rt, message.id) == "opened"


def test_a_scanners_clicks_are_suspect_and_a_persons_click_later_is_a_click(
        web: TestClient, rt: Runtime, message: Message) -> None:
    links = ["https://track.example.com/o-1", "https://shop.example.com/help",
             "https://shop.example.com/s/TOKEN?hp=1"]
    # every link within 2 s of the send, a browser's user agent
    scanner = [event("click", message.id, 10 + i, url=url, useragent=CHROME,
                     timestamp=after_send(message, 1 + i / 2)) for i, url in enumerate(links)]
    assert post(web, encode(scanner)).status_code == 200
    assert kinds(rt) == [("suspect_clicked", "too_soon"), ("suspect_clicked", "too_soon"),
                         ("suspect_clicked", "honeypot")]
    # a gateway that says what it is, later; then a burst of two links a minute after the send
    post(web, encode([event("click", message.id, 20, url=links[0], timestamp=after_send(
        message, 40), useragent="Mozilla/5.0 (compatible; Barracuda Link Protection)")]))
    post(web, encode([event("click", message.id, 21, url=links[0], useragent=CHROME,
                                 timestamp=after_send(message, 60))]))
    assert kinds(rt)[-1] == ("clicked", None)  # alone so far: a person, it seems
    post(web, encode([event("click", message.id, 22, url=links[1], useragent=CHROME,
                                 timestamp=after_send(message, 61))]))
    assert kinds(rt)[3:] == [("suspect_clicked", "scanner_agent"), ("suspect_clicked", "burst"),
                             ("suspect_clicked", "burst")]  # the burst re-marked the first one
    # the person, an hour later
    post(web, encode([event("click", message.id, 30, url=links[0], useragent=CHROME,
                                 timestamp=after_send(message, 3600))]))
    assert kinds(rt)[-1] == ("clicked", None)
    with rt.factory() as session:
        [step] = funnel(session, None, START + timedelta(days=1))
    assert (step.clicked, step.suspect_clicked, step.opened) == (1, 1, 1)
