"""Detractor alerts reach the team: an e-mail through the email channel (the sandbox here) and a
JSON POST to a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL, with a simulated clock.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.models import (
    AlertRecord,
    Customer,
    Enrollment,
    JourneyVersion,
    Order,
    SandboxOutbox,
)
from aftersale.pipeline.alerts import MAX_ATTEMPTS, _claim, deliver_alerts
from aftersale.pipeline.runtime import Runtime, open_runtime
from tests.conftest import START
from tests.factories import answer, days, follow, placed
from tests.integration.helpers import feed, run_to, sent, serve, treated_customer

ALERT_EMAIL = "team@shop.example.com"


@dataclass
class Receiver:
    """A webhook receiver that keeps what it was sent; ``answers`` are statuses (optionally
    with headers) to give the first calls instead of 200."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    calls: int = 0


def _receiver_app(state: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/hooks/alerts")
    async def hook(request: Request) -> PlainTextResponse:
        state.calls += 1
        if state.answers:
            status, headers = state.answers.pop(0)
            return PlainTextResponse("invalid_payload" if status == 400 else "busy",
                                     status_code=status, headers=headers)
        state.content_types.append(request.headers.get("content-type", ""))
        state.posts.append(await request.json())
        return PlainTextResponse("ok")

    return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    with serve(_receiver_app(state)) as base:
        state.url = f"{base}/hooks/alerts"
        yield state


@pytest.fixture
def make_rt(settings: Settings) -> Iterator[Callable[..., Runtime]]:
    """A runtime on the test database with the alert settings given (validated, as at start)."""
    opened: list[Runtime] = []

    def make(**alert_settings: Any) -> Runtime:
        configured = Settings(_env_file=None, **settings.model_dump() | alert_settings)  # type: ignore[call-arg]
        runtime = open_runtime(configured, SimulatedClock(START))
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        runtime.engine.dispose()


def _alert(rt: Runtime, n: int = 1, comment: str | None = "The drone arrived broken.",
           first_name: str = "Ayşe", response: dict[str, Any] | None = None) -> int:
    """A detractor alert as the onboarding journey records it, with its customer and order."""
    cid, oid = f"c-{n}", f"o-{n}"
    with rt.factory() as session, session.begin():
        version = session.scalar(select(JourneyVersion).where(JourneyVersion.journey == "t"))
        if version is None:
            version = JourneyVersion(journey="t", version="1", definition={}, created_at=START)
            session.add(version)
        session.add(Customer(id=cid, email=f"{cid}@example.com", phone="+905321234567",
                             first_name=first_name, last_name="Yılmaz", locale="tr",
                             timezone="Europe/Istanbul", country="TR", created_at=START,
                             updated_at=START))
        session.flush()
        session.add(Order(id=oid, customer_id=cid, number=f"#100{n}", placed_at=START,
                          total=Decimal("129.90"), currency="TRY", discount_codes=[],
                          items=[{"sku": "DRN-1", "title": "Drone X", "category": "drones",
                                  "quantity": 1, "price": "129.90"}]))
        session.flush()
        enrollment = Enrollment(journey="onboarding", journey_version_id=version.id,
                                customer_id=cid, order_id=oid, entry_key=oid,
                                segment="first_time", holdout=False, status="completed",
                                enrolled_at=START)
        session.add(enrollment)
        session.flush()
        alert = AlertRecord(
            enrollment_id=enrollment.id, step_key="9.0.0", customer_id=cid, order_id=oid,
            kind="detractor", created_at=START + timedelta(seconds=n),
            details={"segment": "first_time", "journey": "onboarding",
                     "response": response or {"csat": 5, "nps": 3, "comment": comment}})
        session.add(alert)
        session.flush()
        return alert.id


def _get(rt: Runtime, alert_id: int) -> AlertRecord:
    with rt.factory() as session:
        alert = session.get(AlertRecord, alert_id)
        assert alert is not None
        return alert


def _outbox(rt: Runtime) -> list[SandboxOutbox]:
    with rt.factory() as session:
        return list(session.scalars(select(SandboxOutbox).where(
            SandboxOutbox.message_id.like("alert_%")).order_by(SandboxOutbox.id)))


def _later(rt: Runtime, delta: timedelta) -> None:
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    clock.advance(delta)


def test_a_detractor_alert_is_delivered_to_a_local_http_receiver_and_by_email(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START + days(1), cid),
         follow("delivered", "o-1", START + days(3), cid))
    run_to(rt, definitions, START + days(11), tick=timedelta(hours=3))
    feed(rt, answer("a-1", "csat", 5, START + days(11), cid))
    run_to(rt, definitions, START + days(27), tick=timedelta(hours=3))
    assert "nps_survey" in [m.template for m in sent(rt, cid)]
    assert receiver.posts == []  # a happy CSAT answer alerts nobody

    feed(rt, answer("a-2", "nps", 3, START + days(27), cid, comment="Kırık geldi,\nçok üzgünüm."))
    run_to(rt, definitions, START + days(29), tick=timedelta(hours=3))

    [post] = receiver.posts
    assert receiver.content_types == ["application/json"]
    with rt.factory() as session:
        [alert] = session.scalars(select(AlertRecord)).all()
    assert post["text"] == ('Detractor alert: Ayşe Yılmaz gave NPS 3 on order #o-1 — '
                            '"Kırık geldi, çok üzgünüm." (first_time, onboarding)')
    assert post["mrkdwn"] is False
    assert post["alert"] == {
        "id": alert.id, "kind": "detractor",
        "customer": {"id": cid, "name": "Ayşe Yılmaz", "email": f"{cid}@example.com",
                     "phone": "+905321234567"},
        "order": {"id": "o-1", "number": "#o-1", "total": "129.90", "currency": "TRY"},
        "score": 3, "survey_kind": "nps", "comment": "Kırık geldi,\nçok üzgünüm.",
        "segment": "first_time", "journey": "onboarding",
        "created_at": alert.created_at.isoformat(),
        "shipment": None,  # only delivery alerts carry their parcel
    }
    [mail] = _outbox(rt)
    assert (mail.message_id, mail.channel, mail.recipient) == (f"alert_{alert.id}", "email",
                                                               ALERT_EMAIL)
    assert mail.subject == "Detractor alert: Ayşe Yılmaz gave 3 (NPS) on order #o-1"
    assert "Comment: Kırık geldi," in mail.body_text and cid in mail.body_text
    assert mail.body_html is not None and "Drone X" in mail.body_html
    assert (alert.status, alert.email_status, alert.webhook_status) == ("delivered", "sent", "sent")
    assert alert.delivered_at is not None and alert.next_attempt_at is None

    run_to(rt, definitions, START + days(40), tick=days(1))  # more runs: nothing twice
    assert len(receiver.posts) == 1 and len(_outbox(rt)) == 1


@pytest.mark.parametrize("failure", [(500, {}), (429, {"Retry-After": "240"}), (503, {})])
def test_a_webhook_outage_is_retried_later_and_the_email_is_not_sent_twice(
        make_rt: Callable[..., Runtime], receiver: Receiver,
        failure: tuple[int, dict[str, str]]) -> None:
    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    alert_id = _alert(rt)
    receiver.answers = [failure]

    counts = deliver_alerts(rt)
    alert = _get(rt, alert_id)
    assert (counts.claimed, counts.retried, counts.delivered) == (1, 1, 0)
    assert (alert.status, alert.email_status, alert.webhook_status) == ("pending", "sent", "pending")
    assert alert.attempts == 1 and f"webhook: HTTP {failure[0]}" in (alert.last_error or "")
    assert receiver.url not in (alert.last_error or "")
    assert alert.next_attempt_at is not None
    wait = alert.next_attempt_at - rt.now()
    if failure[1]:
        assert wait >= timedelta(seconds=240)  # the receiver's Retry-After is honoured
    else:
        assert timedelta(minutes=1) <= wait <= timedelta(minutes=1.5)

    assert deliver_alerts(rt).claimed == 0  # not due yet: the receiver is left alone
    assert receiver.calls == 1

    _later(rt, wait)
    counts = deliver_alerts(rt)
    alert = _get(rt, alert_id)
    assert counts.delivered == 1 and counts.routes == {"webhook sent": 1}
    assert (alert.status, alert.email_status, alert.webhook_status) == ("delivered", "sent", "sent")
    assert alert.attempts == 2 and receiver.calls == 2
    assert [p["alert"]["id"] for p in receiver.posts] == [alert_id]
    assert len(_outbox(rt)) == 1  # the retry only retried the webhook


def test_a_rejected_webhook_fails_that_route_for_good(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    alert_id = _alert(rt)
    receiver.answers = [(400, {})]

    counts = deliver_alerts(rt)
    alert = _get(rt, alert_id)
    assert counts.failed == 1
    assert (alert.status, alert.email_status, alert.webhook_status) == ("failed", "sent", "failed")
    assert alert.last_error == "webhook: HTTP 400: invalid_payload"
    assert alert.next_attempt_at is None
    assert alert.delivered_at == rt.now()  # the e-mail did reach the team

    _later(rt, days(1))
    assert deliver_alerts(rt).claimed == 0
    assert receiver.calls == 1 and len(_outbox(rt)) == 1


def test_without_alert_settings_the_alert_is_only_recorded(make_rt: Callable[..., Runtime]) -> None:
    rt = make_rt()
    alert_id = _alert(rt)
    counts = deliver_alerts(rt)
    alert = _get(rt, alert_id)
    assert counts.routes == {"email skipped": 1, "webhook skipped": 1}
    assert (alert.status, alert.email_status, alert.webhook_status) == ("delivered", "skipped",
                                                                        "skipped")
    assert _outbox(rt) == []


def test_only_the_webhook_when_no_alert_email_is_set(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    rt = make_rt(alert_webhook_url=receiver.url)
    alert_id = _alert(rt, comment=None)
    deliver_alerts(rt)
    alert = _get(rt, alert_id)
    assert (alert.status, alert.email_status, alert.webhook_status) == ("delivered", "skipped", "sent")
    [post] = receiver.posts
    assert post["text"] == "Detractor alert: Ayşe Yılmaz gave NPS 3 on order #1001 (first_time, onboarding)"
    assert post["alert"]["comment"] is None and _outbox(rt) == []


def test_names_and_comments_cannot_inject_slack_or_html_markup(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    comment = "<script>alert(1)</script> *free* <!channel> <https://evil.example|click> & more"
    _alert(rt, comment=comment, first_name="<@U024BE7LH>")
    deliver_alerts(rt)

    [post] = receiver.posts
    text = post["text"]
    assert "<" not in text and ">" not in text
    assert ("&lt;@U024BE7LH&gt; Yılmaz gave NPS 3" in text
            and "&lt;script&gt;alert(1)&lt;/script&gt; *free* &lt;!channel&gt; "
                "&lt;https://evil.example|click&gt; &amp; more" in text)
    assert post["mrkdwn"] is False
    assert post["alert"]["comment"] == comment  # the structured copy is data, kept as written
    [mail] = _outbox(rt)
    assert mail.body_html is not None and "<script>" not in mail.body_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mail.body_html


def test_a_csat_detractor_alert_names_the_csat_score(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    rt = make_rt(alert_webhook_url=receiver.url)
    _alert(rt, response={"csat": 1, "comment": "Never again"})
    deliver_alerts(rt)
    [post] = receiver.posts
    assert post["text"].startswith("Detractor alert: Ayşe Yılmaz gave CSAT 1 on order #1001")
    assert (post["alert"]["survey_kind"], post["alert"]["score"]) == ("csat", 1)


def test_an_unreachable_receiver_is_retried_and_given_up_after_the_last_attempt(
        make_rt: Callable[..., Runtime]) -> None:
    with socket.socket() as probe:  # a port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=f"http://127.0.0.1:{port}/hook")
    alert_id = _alert(rt)
    for attempt in range(1, MAX_ATTEMPTS):
        deliver_alerts(rt)
        alert = _get(rt, alert_id)
        assert (alert.status, alert.webhook_status, alert.attempts) == ("pending", "pending", attempt)
        assert "could not reach 127.0.0.1" in (alert.last_error or "")
        assert alert.next_attempt_at is not None and alert.next_attempt_at - rt.now() <= timedelta(hours=1)
        _later(rt, alert.next_attempt_at - rt.now())
    deliver_alerts(rt)
    alert = _get(rt, alert_id)
    assert (alert.status, alert.email_status, alert.webhook_status) == ("failed", "sent", "failed")
    assert (alert.last_error or "").startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert len(_outbox(rt)) == 1


def test_a_failing_receiver_is_called_once_per_run_not_once_per_alert(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    rt = make_rt(alert_webhook_url=receiver.url)
    ids = [_alert(rt, n) for n in (1, 2, 3)]
    receiver.answers = [(502, {})]
    counts = deliver_alerts(rt)
    assert receiver.calls == 1 and counts.retried == 3
    assert "not tried: webhook failed earlier in this run" in (_get(rt, ids[2]).last_error or "")
    _later(rt, timedelta(minutes=2))
    assert deliver_alerts(rt).delivered == 3
    assert sorted(p["alert"]["id"] for p in receiver.posts) == ids and receiver.calls == 4


def test_a_claimed_alert_is_left_to_its_deliverer_and_resumed_after_a_crash(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    alert_id = _alert(rt)
    # A deliverer claims the alert and dies before calling anyone.
    [claimed] = _claim(rt.factory, rt.now(), 10, rt.settings)
    assert claimed.alert.id == alert_id
    assert deliver_alerts(rt).claimed == 0  # another run leaves the leased alert alone
    assert receiver.calls == 0

    lease = _get(rt, alert_id).next_attempt_at
    assert lease is not None and lease > rt.now()
    _later(rt, lease - rt.now())
    assert deliver_alerts(rt).delivered == 1
    alert = _get(rt, alert_id)
    assert (alert.status, alert.attempts) == ("delivered", 2)
    assert len(receiver.posts) == 1 and len(_outbox(rt)) == 1


def test_dispatch_due_delivers_alerts_and_counts_them(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    from aftersale.orchestration.passes import dispatch_due

    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    _alert(rt, 1)
    _alert(rt, 2)
    counts = dispatch_due(rt, rt.definitions())
    assert (counts.alerts_delivered, counts.alerts_failed, counts.alerts_retried) == (2, 0, 0)
    assert counts.alert_routes == {"email sent": 2, "webhook sent": 2}
    assert len(receiver.posts) == 2 and len(_outbox(rt)) == 2


def test_alerts_still_go_out_when_sending_messages_fails(
        make_rt: Callable[..., Runtime], receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import aftersale.orchestration.passes
    from aftersale.orchestration.passes import dispatch_due

    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    alert_id = _alert(rt, 1)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the email channel is misconfigured")

    monkeypatch.setattr(aftersale.orchestration.passes, "send_pending", broken)
    with pytest.raises(RuntimeError, match="misconfigured"):
        dispatch_due(rt, rt.definitions())
    # The send stage failed the run, yet the stage after it delivered the alert.
    assert _get(rt, alert_id).status == "delivered"
    assert len(receiver.posts) == 1

    # Two failed stages: both errors reach the run, and the alerts stage still runs.
    second = _alert(rt, 2)
    monkeypatch.setattr(aftersale.orchestration.passes, "advance_due", broken)
    with pytest.raises(ExceptionGroup) as failed:
        dispatch_due(rt, rt.definitions())
    assert len(failed.value.exceptions) == 2
    assert _get(rt, second).status == "delivered"


def test_a_route_that_raises_is_retried_to_the_limit_and_the_email_is_sent_once(
        make_rt: Callable[..., Runtime], receiver: Receiver) -> None:
    """A reply httpx cannot decode (a proxy claiming gzip) raised out of the delivery: the
    alerts behind it waited, and it was retried with no limit. Now it is a retry like any
    other: the e-mail that went out is not repeated, and the webhook is given up at the end."""
    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    first, second = _alert(rt, 1), _alert(rt, 2)
    receiver.answers = [(502, {"Content-Encoding": "gzip"})] * MAX_ATTEMPTS
    counts = deliver_alerts(rt)
    assert counts.claimed == 2 and counts.retried == 2  # the second was not held up
    alert = _get(rt, first)
    assert (alert.email_status, alert.webhook_status) == ("sent", "pending")
    assert "webhook: DecodingError" in (alert.last_error or "")
    for _ in range(MAX_ATTEMPTS - 1):
        for alert_id in (first, second):
            pending = _get(rt, alert_id)
            if pending.next_attempt_at is not None and pending.next_attempt_at > rt.now():
                _later(rt, pending.next_attempt_at - rt.now())
        deliver_alerts(rt)
    statuses = {(a.status, a.email_status) for a in (_get(rt, first), _get(rt, second))}
    assert len(_outbox(rt)) == 2  # one e-mail per alert, never repeated
    assert statuses == {("failed", "sent")}  # the webhook given up after the last attempt
    assert {_get(rt, i).attempts for i in (first, second)} == {MAX_ATTEMPTS}
    assert receiver.calls == MAX_ATTEMPTS  # once per run, as for any failing receiver
    deliver_alerts(rt)
    assert receiver.calls == MAX_ATTEMPTS and len(_outbox(rt)) == 2  # and never again
