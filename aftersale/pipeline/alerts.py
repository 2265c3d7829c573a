"""Telling the team about a detractor, a parcel in trouble or an experiment's decision: an
e-mail to ALERT_EMAIL and a JSON POST to ALERT_WEBHOOK_URL (Slack-compatible), for every
``alerts`` row the journeys (or a decision) recorded. The e-mail is the content template
``alert_<kind>`` (``alert_delivery_problem``), else ``alert_detractor``; an alert raised by a
shipment-triggered enrollment (delivery-care) carries its parcel: carrier, tracking number,
status, the moment and the carrier's last words, read from the ``shipments`` row when the alert
goes out (so ``aftersale forget`` and the shipment's own history stay the one copy). An alert
about no customer (an experiment decided, ``alert_experiment_decided``) carries its figures in
``details.experiment`` and never falls back to the detractor's e-mail.

Nothing lost, nothing doubled on purpose:

- A batch is *claimed* by giving each alert a lease (``next_attempt_at`` = now + the time the
  batch may take, ``attempts`` + 1) and committing, before any provider is called; another
  deliverer skips leased rows (and ``FOR UPDATE SKIP LOCKED`` on PostgreSQL skips rows being
  claimed). A deliverer that dies mid-batch leaves its alerts ``pending``: when the lease runs
  out they are claimed again.
- Each route (e-mail, webhook) records its own outcome in the alert's own short transaction,
  right after its calls: a route that went out is ``sent`` and is never tried again, so a retry
  after a webhook outage only retries the webhook.
- A 2xx is ``sent``; 408/429/5xx, timeouts and unreachable hosts keep the route ``pending`` with
  exponential backoff (jitter, capped), up to :data:`MAX_ATTEMPTS`; any other answer fails the
  route at once with the reason. A route that is not configured is ``skipped``.

The one window where a route can be repeated is a crash (or a timeout) after the request went
out and before its outcome was recorded. We then send again rather than risk a detractor
nobody hears about; the sandbox and SendGrid see the same message id (``alert_<id>``).

Customers write the names and comments: the webhook ``text`` escapes ``&``, ``<`` and ``>`` as
Slack asks (no links, mentions or ``<!channel>`` can be smuggled in) and asks Slack not to
apply its markup (``mrkdwn: false``); the e-mail is rendered by the sandboxed, autoescaping
templates (``content/alert_detractor``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aftersale.channels.base import Channel, OutboundMessage
from aftersale.core.backoff import Backoff, retry_after_seconds
from aftersale.core.counts import Counts
from aftersale.core.survey_scales import CSAT_DETRACTOR_MAX, NPS_DETRACTOR_MAX, SURVEY_KINDS
from aftersale.db.lookup import by_id
from aftersale.db.models import AlertRecord, Customer, Enrollment, Order, Shipment
from aftersale.pipeline.advance import claim
from aftersale.pipeline.contexts import (
    customer_context,
    enrollment_shipment,
    order_context,
    shipment_context,
)

if TYPE_CHECKING:
    from aftersale.config import Settings
    from aftersale.content.library import ContentLibrary
    from aftersale.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

TEMPLATE = "alert_detractor"
LOCALE = "en"  # the team's language: alerts are internal
RETRY = Backoff(base=timedelta(minutes=1), cap=timedelta(hours=1))
MAX_ATTEMPTS = 10  # about four hours of tries with the backoff above
CHUNK = 20  # alerts claimed at once: keeps the lease short if a deliverer dies
ROUTES = ("email", "webhook")
USER_AGENT = "aftersale-alerts/1"

RouteStatus = Literal["sent", "retry", "failed", "skipped"]


@dataclass
class AlertCounts(Counts):
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    # "email sent", "webhook retry", "webhook skipped", ...: one per route tried or skipped
    routes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Claimed:
    """One claimed alert with what its messages need, detached from the claiming session."""

    alert: AlertRecord
    customer: Customer | None
    order: Order | None
    # The parcel of a shipment-triggered enrollment, as its messages see it (moment: what
    # started the enrollment, e.g. attempted_delivery or stalled; last_message: the carrier's).
    shipment: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Outcome:
    status: RouteStatus
    error: str | None = None
    retry_after: float | None = None


# -- the alert's content --------------------------------------------------------------------
@dataclass(frozen=True)
class AlertView:
    """What both routes say about one alert (plain values, from the alert and its rows)."""

    id: int
    kind: str
    customer_id: str | None
    name: str
    email: str | None
    phone: str | None
    order_id: str | None
    order_number: str | None
    total: str | None
    currency: str | None
    survey_kind: str | None
    score: int | None
    comment: str | None
    segment: str | None
    journey: str | None
    created_at: datetime
    # The parcel, for delivery alerts (None otherwise): the carrier's words are what the team
    # needs first.
    shipment: dict[str, Any] | None = None
    # An experiment's decision (details.experiment, see aftersale.metrics.experiment_decisions).
    experiment: dict[str, Any] | None = None

    @classmethod
    def of(cls, item: _Claimed) -> AlertView:
        alert, customer, order = item.alert, item.customer, item.order
        details = alert.details or {}
        kind, score, comment = survey_answer(details.get("answer") or details.get("response") or {})
        names = [n for n in (customer.first_name, customer.last_name) if n] if customer else []
        return cls(
            id=alert.id, kind=alert.kind, customer_id=alert.customer_id,
            # A forgotten customer has no name left: the id still lets the team look them up.
            name=" ".join(names) or f"customer {alert.customer_id}",
            email=customer.email if customer else None, phone=customer.phone if customer else None,
            order_id=alert.order_id, order_number=(order.number or order.id) if order else None,
            total=str(order.total) if order is not None else None,
            currency=order.currency if order else None,
            survey_kind=kind, score=score, comment=comment,
            segment=details.get("segment"), journey=details.get("journey"),
            created_at=alert.created_at,
            shipment=item.shipment,
            experiment=_experiment(details))

    @property
    def title(self) -> str:
        return f"{self.kind.replace('_', ' ').capitalize()} alert"

    def summary(self) -> str:
        """One plain line: who gave what on which order, the comment, segment and journey (or
        which experiment ended how)."""
        if self.experiment is not None:
            return experiment_summary(self.experiment)
        line = f"{self.title}: {self.name}"
        if self.score is not None:
            line += f" gave {(self.survey_kind or 'score').upper()} {self.score}"
        if self.order_number:
            line += f" on order {self.order_number}"
        if self.comment:
            line += f' — "{" ".join(self.comment.split())}"'
        if self.shipment is not None:
            parcel = self.shipment
            what = str(parcel["moment"] or parcel["status"]).replace("_", " ")
            line += f", parcel {what} ({parcel['carrier'] or 'carrier unknown'}"
            if parcel["tracking_number"]:
                line += f" {parcel['tracking_number']}"
            line += ")"
            if parcel["last_message"]:
                line += f': carrier says "{" ".join(str(parcel["last_message"]).split())}"'
        where = ", ".join(x for x in (self.segment, self.journey) if x)
        return f"{line} ({where})" if where else line

    def webhook_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            # Slack shows "text"; other receivers read "alert". Slack ignores keys it does not
            # know, and mrkdwn=false keeps *bold*, _italic_ and the like from a comment literal.
            "text": slack_escape(self.summary()),
            "mrkdwn": False,
            "alert": {
                "id": self.id, "kind": self.kind,
                "customer": None if self.customer_id is None else {
                    "id": self.customer_id, "name": self.name, "email": self.email,
                    "phone": self.phone},
                "order": None if self.order_id is None else {
                    "id": self.order_id, "number": self.order_number, "total": self.total,
                    "currency": self.currency},
                "score": self.score, "survey_kind": self.survey_kind, "comment": self.comment,
                "segment": self.segment, "journey": self.journey,
                "created_at": self.created_at.isoformat(),
                "shipment": None if self.shipment is None else {
                    key: (value.isoformat() if isinstance(value, datetime) else value)
                    for key, value in self.shipment.items()},
            },
        }
        if self.experiment is not None:  # a decision: the receivers of other alerts see no change
            payload["alert"]["experiment"] = self.experiment
        return payload


def template_for(kind: str, content: ContentLibrary, about_customer: bool = True) -> str:
    """The team's e-mail for an alert kind: ``alert_<kind>`` when the content has it (the
    delivery alerts do), else ``alert_detractor`` (detractor, unhappy_customer); an alert about
    no customer only ever gets its own (missing: the plain summary is sent)."""
    own = f"alert_{kind}"
    return own if content.has(own, "email") or not about_customer else TEMPLATE


def _experiment(details: Mapping[str, Any]) -> dict[str, Any] | None:
    found = details.get("experiment")
    return dict(found) if isinstance(found, Mapping) else None


def experiment_summary(experiment: Mapping[str, Any]) -> str:
    """The decision in one line: which experiment, what new arrivals get, and why."""
    what = ("no difference at the horizon: the control" if experiment.get("outcome")
            == "no_difference" else "the winner")
    return (f"Experiment decided: {experiment.get('journey')} / {experiment.get('name')} "
            f"(version {experiment.get('version')}): new arrivals get {what}, "
            f"{experiment.get('variant')}. {experiment.get('verdict')}")


def experiment_lines(experiment: Mapping[str, Any]) -> list[str]:
    """The figures per variant as plain lines, for an e-mail without its template."""
    lines = []
    for v in experiment.get("variants") or []:
        line = (f"- {v.get('name')}{' (control)' if v.get('control') else ''}: assigned "
                f"{v.get('assigned')}, sent {v.get('sent')}, opened {v.get('opened')}, clicked "
                f"{v.get('clicked')}; {experiment.get('goal')}: {v.get('numerator')}/"
                f"{v.get('denominator')}")
        if v.get("difference") is not None:
            line += (f", {v['difference']:+.1f} points vs control (95% CI {v['ci_low']:+.1f} to "
                     f"{v['ci_high']:+.1f})")
        lines.append(line)
    return lines


def survey_answer(response: Mapping[str, Any]) -> tuple[str | None, int | None, str | None]:
    """(kind, score, comment) of the answer an alert is about.

    The engine stores the latest score of each kind answered during the enrollment plus the
    latest comment ({"csat": 5, "nps": 3, "comment": ...}); the detractor score is the one the
    alert is about (NPS 0-6 before CSAT 1-2), else the first score there is. The explicit
    {kind, score, comment} shape is read as well.
    """
    comment = response.get("comment")
    comment = str(comment) if comment else None
    if "kind" in response and "score" in response:
        return str(response["kind"]), _int(response["score"]), comment
    scores = {k: s for k in SURVEY_KINDS if (s := _int(response.get(k))) is not None}
    for kind, worst in (("nps", NPS_DETRACTOR_MAX), ("csat", CSAT_DETRACTOR_MAX)):
        if kind in scores and scores[kind] <= worst:
            return kind, scores[kind], comment
    first = next(iter(scores), None)
    return first, (scores[first] if first is not None else None), comment


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def slack_escape(text: str) -> str:
    """Slack's control characters as entities (and only those, as Slack asks)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- delivering -----------------------------------------------------------------------------
def deliver_alerts(rt: Runtime, limit: int = 200, content: ContentLibrary | None = None
                   ) -> AlertCounts:
    """Deliver up to ``limit`` due alerts; ``content`` defaults to the runtime's definitions."""
    counts = AlertCounts()
    settings = rt.settings
    claimed_total = 0
    with _Routes(settings, rt.channels().get("email"), content, rt) as routes:
        while claimed_total < limit:
            batch = _claim(rt.factory, rt.clock.now(), min(CHUNK, limit - claimed_total),
                           settings)
            claimed_total += len(batch)
            counts.claimed += len(batch)
            for item in batch:
                outcomes = routes.deliver(item)
                _record(rt.factory, item.alert.id, outcomes, rt.clock.now(), counts)
            if len(batch) < CHUNK:
                break
    return counts


def _claim(factory: sessionmaker[Session], now: datetime, limit: int,
           settings: Settings) -> list[_Claimed]:
    due = (AlertRecord.status == "pending",
           or_(AlertRecord.next_attempt_at.is_(None), AlertRecord.next_attempt_at <= now))
    with factory() as session, session.begin():
        ids = list(session.scalars(claim(
            select(AlertRecord.id).where(*due)
            .order_by(AlertRecord.created_at, AlertRecord.id).limit(limit), session)))
        if not ids:
            return []
        # Long enough for every call of the batch to time out (e-mail and webhook each).
        lease = (timedelta(seconds=settings.claim_seconds)
                 + len(ids) * 2 * timedelta(seconds=settings.provider_timeout_seconds))
        # The conditions again: on SQLite the select above locks nothing, and a concurrent
        # deliverer may have leased some of these rows since.
        won = set(session.scalars(
            update(AlertRecord).where(AlertRecord.id.in_(ids), *due)
            .values(next_attempt_at=now + lease, attempts=AlertRecord.attempts + 1)
            .returning(AlertRecord.id)))
        if not won:
            return []
        alerts = list(session.scalars(select(AlertRecord).where(AlertRecord.id.in_(won))
                                      .order_by(AlertRecord.created_at, AlertRecord.id)))
        # An alert about no customer (an experiment's decision) has neither key.
        customers = by_id(session, Customer, {a.customer_id for a in alerts if a.customer_id})
        orders = by_id(session, Order, {a.order_id for a in alerts if a.order_id})
        enrollments = by_id(session, Enrollment, {a.enrollment_id for a in alerts
                                                  if a.enrollment_id is not None})
        shipments = by_id(session, Shipment, {e.shipment_id for e in enrollments.values()
                                              if e.shipment_id} | {
                                                  named for a in alerts
                                                  if (named := _named_shipment(a))})
        shop_country = settings.shop_country
        claimed = []
        for a in alerts:
            enrollment = enrollments.get(a.enrollment_id)
            parcel = None
            if enrollment is not None and enrollment.shipment_id:
                parcel = enrollment_shipment(enrollment, shipments.get(enrollment.shipment_id),
                                             now, shop_country)
            elif (row := shipments.get(_named_shipment(a) or "")) is not None:
                # An alert about a parcel of an order journey (a report from the tracking
                # page names it in its details): the parcel as it is now, no moment.
                parcel = shipment_context(row, None, now, shop_country)
            claimed.append(_Claimed(a, customers.get(a.customer_id or ""),
                                    orders.get(a.order_id or ""), parcel))
        return claimed


def _named_shipment(alert: AlertRecord) -> str | None:
    """The parcel an alert's details name (``details.shipment.id``), if any."""
    named = (alert.details or {}).get("shipment")
    return str(named["id"]) if isinstance(named, Mapping) and named.get("id") else None


class _Routes:
    """The two routes, with one HTTP client for the whole run. A route that answered "not now"
    is not called again in the same run: the rest of its alerts wait for their backoff instead
    of each waiting out a timeout."""

    def __init__(self, settings: Settings, email: Channel | None,
                 content: ContentLibrary | None, rt: Runtime):
        self._settings = settings
        self._email = email
        self._content = content
        self._rt = rt
        self._down: dict[str, str] = {}
        self._url = str(settings.alert_webhook_url) if settings.alert_webhook_url else None
        self._client: httpx.Client | None = None

    def __enter__(self) -> _Routes:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()

    def deliver(self, item: _Claimed) -> dict[str, _Outcome]:
        view = AlertView.of(item)
        outcomes: dict[str, _Outcome] = {}
        for route in ROUTES:
            if getattr(item.alert, f"{route}_status") != "pending":
                continue  # sent, skipped or failed in an earlier run: never again
            if route in self._down:
                outcomes[route] = _Outcome("retry", f"not tried: {self._down[route]}")
                continue
            try:
                outcome = self._email_alert(item, view) if route == "email" else self._post(view)
            except SQLAlchemyError:
                raise  # the database's trouble: the run fails, the lease brings it back
            except Exception as exc:  # e.g. a reply httpx cannot decode
                # Recorded as a retry: the route that did deliver is not repeated, and the
                # attempts count toward MAX_ATTEMPTS. Escaping, it stopped every alert
                # behind this one and was retried with no limit.
                log.error("alert %s: %s route raised %s", view.id, route, type(exc).__name__,
                          exc_info=exc)
                outcome = _Outcome("retry", self._scrub(f"{route}: {type(exc).__name__}: {exc}"))
            if outcome.status == "retry":
                self._down[route] = f"{route} failed earlier in this run ({outcome.error})"
            outcomes[route] = outcome
        return outcomes

    def _email_alert(self, item: _Claimed, view: AlertView) -> _Outcome:
        to = self._settings.alert_email
        if not to:
            return _Outcome("skipped")
        if self._email is None:
            return _Outcome("failed", "email: no email channel")
        template, subject, text, html = self._render(item, view)
        [result] = self._email.send_batch([OutboundMessage(
            id=f"alert_{view.id}", channel="email", recipient=to, text=text, subject=subject,
            html=html, transactional=True, template=template)])
        if result.status == "sent":
            return _Outcome("sent")
        error = f"email: {result.error or result.error_code or 'failed'}"
        return _Outcome("retry" if result.status in ("retry", "later") else "failed", error,
                        result.retry_after)

    def _render(self, item: _Claimed, view: AlertView) -> tuple[str, str, str, str | None]:
        """(template, subject, text, html) of the team's e-mail."""
        content = self._content
        if content is None:
            content = self._content = self._rt.definitions().content
        template = template_for(view.kind, content, about_customer=view.customer_id is not None)
        if not content.has(template, "email"):
            # A content folder of one's own without the alert template still alerts the team.
            text = view.summary()
            if view.experiment is not None:
                text = "\n".join([text, "", *experiment_lines(view.experiment)])
            return template, view.summary(), text, None
        context = {
            "customer": customer_context(item.customer) if item.customer else None,
            "order": order_context(item.order) if item.order is not None else None,
            "shipment": view.shipment,
            "response": {"kind": view.survey_kind, "score": view.score, "comment": view.comment},
            "links": {"unsubscribe": None, "referral": None}, "survey": None, "offer": None,
            "experiment": view.experiment,
        }
        try:
            rendered = content.render(template, "email", LOCALE, context)
        except Exception:
            # An edited template that breaks at run time must not keep the alert from the team.
            log.exception("alert %s: %s did not render; sending the plain summary", view.id,
                          template)
            return template, view.summary(), view.summary(), None
        return template, rendered.subject or view.summary(), rendered.text, rendered.html

    def _post(self, view: AlertView) -> _Outcome:
        if self._url is None:
            return _Outcome("skipped")
        if self._client is None:
            # Built on the first alert, not on every (mostly idle) dispatch pass.
            self._client = httpx.Client(timeout=self._settings.provider_timeout_seconds,
                                        headers={"User-Agent": USER_AGENT},
                                        follow_redirects=False)
        try:
            response = self._client.post(self._url, json=view.webhook_payload())
        except httpx.TimeoutException as exc:
            return _Outcome("retry", self._scrub(
                f"webhook: no answer within {self._settings.provider_timeout_seconds:g} s "
                f"({type(exc).__name__})"))
        except httpx.TransportError as exc:
            return _Outcome("retry", self._scrub(
                f"webhook: could not reach {httpx.URL(self._url).host}: "
                f"{type(exc).__name__}: {exc}"))
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome("sent")
        body = " ".join(response.text.split())[:200]
        error = self._scrub(f"webhook: HTTP {status}" + (f": {body}" if body else ""))
        if status in (408, 429) or status >= 500:
            return _Outcome("retry", error, retry_after_seconds(response.headers.get("Retry-After")))
        return _Outcome("failed", error)

    def _scrub(self, text: str) -> str:
        # A Slack webhook URL is a credential: it must not end up in last_error or the logs.
        return text.replace(self._url, "[webhook url]") if self._url else text


def _record(factory: sessionmaker[Session], alert_id: int, outcomes: dict[str, _Outcome],
            now: datetime, counts: AlertCounts) -> None:
    with factory() as session, session.begin():
        alert = session.get(AlertRecord, alert_id)
        if alert is None:  # erased meanwhile (aftersale forget): nothing left to record
            return
        errors: list[str] = []
        retry_after: float | None = None
        for route, outcome in outcomes.items():
            counts.routes[f"{route} {outcome.status}"] += 1
            status: str = outcome.status
            if outcome.status == "retry":
                if alert.attempts >= MAX_ATTEMPTS:
                    status = "failed"
                    errors.append(f"gave up after {alert.attempts} attempts: {outcome.error}")
                else:
                    status = "pending"
                    errors.append(outcome.error or f"{route}: try again later")
                    retry_after = max(retry_after or 0.0, outcome.retry_after or 0.0) or None
            elif outcome.error:
                errors.append(outcome.error)
            setattr(alert, f"{route}_status", status)
        if errors:
            alert.last_error = "; ".join(errors)
        statuses = (alert.email_status, alert.webhook_status)
        if "pending" in statuses:
            alert.next_attempt_at = now + RETRY.delay(alert.attempts, retry_after)
            counts.retried += 1
            return
        alert.status = "failed" if "failed" in statuses else "delivered"
        alert.next_attempt_at = None
        # When the team was told (or, nothing configured, when the alert was settled).
        if alert.status == "delivered" or "sent" in statuses:
            alert.delivered_at = now
        if alert.status == "failed":
            counts.failed += 1
            log.warning("alert %s could not be delivered: %s", alert.id, alert.last_error)
        else:
            counts.delivered += 1
