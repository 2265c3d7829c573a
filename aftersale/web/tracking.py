"""The tracking page: a shipment's story for the customer, and a way to tell the team.

- ``GET /t/{token}``   the parcel's status, the estimated date (the latest; "was ..." when it
                       moved), the carrier and its own tracking link, the carrier's updates
                       newest first, the shop's help text; for a problem (attempted delivery,
                       delayed, exception, returned to sender, stalled or late) a form
- ``POST /t/{token}``  the form: ``words``, passed to the team as an alert (``alerts`` rows,
                       delivered by the existing routes: e-mail and webhook)

Texts are in the customer's language (en/tr/pl), dates and times in their time zone (Babel).
The token (:meth:`aftersale.core.links.Links.tracking`) names the shipment, the customer, the
day it was made and, when a message carried it, the message. It is checked before anything is
read: tampered, malformed or another purpose's answers 403, a shipment that is not the
customer's 403 too. A link works ``TRACKING_DAYS`` after the later of that day and the parcel's
last news (its delivery, or its latest carrier update while it travels); after that the page
says so (410) and offers the shop's help.

A visit is a click on the message that carried the link, counted in the funnel like the
provider's click reports (one ``delivery_events`` row, ``provider`` ``aftersale``, kind
``clicked``, once per message), but only when a person made it: the rules are the survey links'
(:mod:`aftersale.core.scanners`: ``HEAD`` and prefetches, scanner user agents, too soon after
the send; then the burst rule of :func:`aftersale.pipeline.send_outcomes.apply_deliveries`).
A machine's visit writes nothing at all. Everyone gets the same page whatever the verdict.

The form needs no CSRF token: the signed link is the authority (as for the survey comment
box), the CSP allows posting only to this site, and a client address gets
``SURVEY_RATE_PER_SECOND`` requests a second like the survey links. The same words sent twice
make one alert; a shipment takes at most :data:`MAX_REPORTS` of them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

from babel import Locale
from babel.dates import format_date, format_skeleton, format_time
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from aftersale.config import Settings
from aftersale.content.render import babel_locale, zone
from aftersale.core.clock import as_utc
from aftersale.core.delivery_clock import local_zone
from aftersale.core.links import Purpose, Signer
from aftersale.core.scanners import Click, suspect_reason
from aftersale.core.shipments import PROBLEM_STATUSES, ShipmentStatus
from aftersale.core.survey_scales import COMMENT_LIMIT, clean_comment
from aftersale.db.models import (
    AlertRecord,
    Customer,
    Enrollment,
    Message,
    Order,
    Shipment,
    ShipmentUpdate,
)
from aftersale.db.upsert import insert
from aftersale.pipeline.runtime import Runtime, link_signer
from aftersale.pipeline.send_outcomes import Delivery, DeliveryKind, apply_deliveries
from aftersale.web.bodies import read_form
from aftersale.web.pages import accepted_language, language, render_page, shop_texts, signed_payload
from aftersale.web.throttle import ClientBuckets, too_fast

log = logging.getLogger(__name__)

#: The provider name of a visit in ``delivery_events``: our own page, not a provider's report.
VISIT_PROVIDER = "aftersale"
#: The alert a customer's report becomes (``alerts.kind``).
ALERT_KIND = "delivery_problem_report"
#: Reports one shipment can raise (per enrollment): the team hears, a script cannot flood it.
MAX_REPORTS = 5
#: The derived problems, beside the problem statuses.
STALLED, LATE = "stalled", "late"
# The same bound as the survey comment box: up to 12 bytes per character, form-encoded.
MAX_FORM = 12 * COMMENT_LIMIT + 1024


def tracking_router(settings: Settings, runtime: Runtime) -> APIRouter:
    router = APIRouter()
    signer = link_signer(settings)
    buckets = ClientBuckets(settings.survey_rate_per_second, settings.survey_rate_burst)

    def throttled(request: Request) -> HTMLResponse | None:
        return too_fast(buckets, request, lambda status: _error_page(settings, request, status))

    @router.get("/t/{token}")
    async def tracking_page(token: str, request: Request) -> HTMLResponse:
        claims = _claims(signer, token)
        if isinstance(claims, int):  # a forged link costs no database work: no rate to mind
            return _error_page(settings, request, claims)
        if (slow := throttled(request)) is not None:
            return slow
        now = runtime.now()
        click = Click(at=now, score=None, method=request.method,
                      headers={k.lower(): v for k, v in request.headers.items()})
        link = f"{str(settings.public_url).rstrip('/')}/t/{token}"
        try:
            found = await run_in_threadpool(_visit, settings, runtime, claims, click, link, now)
        except Exception:  # rolled back
            log.exception("showing a tracking page failed")
            return _error_page(settings, request, 500)
        if isinstance(found, int):
            return _error_page(settings, request, found)
        return _page(settings, found, now)

    # Link checkers send HEAD: the same answer without a body, and never a click.
    router.add_api_route("/t/{token}", tracking_page, methods=["HEAD"], include_in_schema=False)

    @router.post("/t/{token}")
    async def report_problem(token: str, request: Request) -> HTMLResponse:
        claims = _claims(signer, token)
        if isinstance(claims, int):
            return _error_page(settings, request, claims)
        if (slow := throttled(request)) is not None:
            return slow
        form = await read_form(request, MAX_FORM)  # a text box is not an upload
        if form is None:
            return _error_page(settings, request, 413)
        words = clean_comment(form.get("words"))
        now = runtime.now()
        try:
            found = await run_in_threadpool(_report, settings, runtime, claims, words, now)
        except Exception:  # rolled back
            log.exception("recording a tracking page report failed")
            return _error_page(settings, request, 500)
        if isinstance(found, int):
            return _error_page(settings, request, found)
        page, reported = found
        if words is None and not page.expired:
            return _page(settings, page, now, status_code=400, empty=True)
        return _page(settings, page, now, reported=reported)

    return router


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claims:
    shipment_id: str
    customer_id: str
    issued: date
    message_id: str | None = None


def _claims(signer: Signer | None, token: str) -> Claims | int:
    """The token's claims, or the status to answer: 403 tampered, malformed or another
    purpose's (its salt differs, so its signature fails), 503 no key."""
    payload = signed_payload(signer, Purpose.TRACKING, token, 403)
    if isinstance(payload, int):
        return payload
    shipment_id, customer_id = payload.get("s"), payload.get("c")
    message_id, issued = payload.get("m"), payload.get("d")
    texts = [shipment_id, customer_id, issued] + ([] if message_id is None else [message_id])
    if not all(isinstance(t, str) and t and "\x00" not in t for t in texts):
        return 403  # PostgreSQL refuses NUL even to look up
    try:
        day = date.fromisoformat(str(issued))
    except ValueError:
        return 403
    return Claims(str(shipment_id), str(customer_id), day,
                  None if message_id is None else str(message_id))


# --- what the page shows -------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    status: str
    happened_at: datetime
    message: str | None


@dataclass(frozen=True)
class Found:
    """A shipment as its page shows it, read in one transaction."""

    locale: str | None
    timezone: str | None
    order_number: str
    carrier: str | None
    tracking_number: str | None
    carrier_url: str | None
    status: str
    problem: str | None  # a problem status, "stalled" or "late"; None when all is well
    estimated: datetime | None
    first_estimated: datetime | None
    delivered_at: datetime | None
    updates: tuple[Update, ...]
    expired: bool
    can_report: bool  # there is an enrollment to hang an alert on
    # Set when the clock check found the carrier silent: said beside a problem status too
    # (an attempted delivery and then nothing is the story the customer must be told).
    silent_since: datetime | None = None


def problem_of(status: str, delivered_at: datetime | None, stalled_at: datetime | None,
               late_for: datetime | None, estimated: datetime | None, now: datetime,
               tz: tzinfo) -> str | None:
    """What is wrong with a parcel that has not arrived: its problem status, else ``stalled``
    (the clock noticed no carrier news), else ``late`` (its estimated day, in the customer's
    zone, is over, or the clock said so). A delivered parcel has no problem left."""
    if delivered_at is not None or status == ShipmentStatus.DELIVERED:
        return None
    if status in PROBLEM_STATUSES:
        return status
    if status == ShipmentStatus.READY_FOR_PICKUP:
        return None  # it waits for its customer, not for the carrier
    if stalled_at is not None:
        return STALLED
    if late_for is not None or (estimated is not None
                                and estimated.astimezone(tz).date() < now.astimezone(tz).date()):
        return LATE
    return None


def _expired(settings: Settings, claims: Claims, shipment: Shipment, now: datetime) -> bool:
    last_news = shipment.delivered_at or shipment.last_update_at
    issued = datetime.combine(claims.issued, datetime.min.time(), UTC)
    return now > max(issued, last_news) + timedelta(days=settings.tracking_days)


def _load(session: Session, settings: Settings, claims: Claims, now: datetime,
          ) -> tuple[Found, Message | None, Shipment] | int:
    """The shipment's page, the message that carried the link (if any) and the shipment row;
    or the status to answer. The signature binds shipment, customer and message together, so
    any of them not matching the others means a misused key: nothing is shown."""
    shipment = session.get(Shipment, claims.shipment_id)
    if shipment is None:
        return 404
    order = session.get(Order, shipment.order_id)
    if order is None or order.customer_id != claims.customer_id:
        return 403
    message = None
    if claims.message_id is not None:
        message = session.get(Message, claims.message_id)
        if message is None or message.customer_id != claims.customer_id:
            return 403
    customer = session.get(Customer, claims.customer_id)
    locale = customer.locale if customer is not None and customer.locale else None
    if locale is None and message is not None:
        locale = message.locale
    # Without the customer's own zone, the destination's (its only one): a parcel's day is
    # the day where it is delivered, as the clock check counts it.
    tz_name = local_zone(
        (customer.country if customer is not None else None) or shipment.destination_country,
        customer.timezone if customer is not None else None).key
    updates = tuple(Update(u.status, u.happened_at, u.message) for u in session.execute(
        select(ShipmentUpdate.status, ShipmentUpdate.happened_at, ShipmentUpdate.message)
        .where(ShipmentUpdate.shipment_id == shipment.id)
        # Newest first, as carriers show it: the latest news is what the customer came for.
        .order_by(ShipmentUpdate.happened_at.desc(), ShipmentUpdate.id.desc())))
    # Stalled only while no carrier news came after the clock noticed the silence.
    still_silent = (shipment.stalled_at if shipment.stalled_at is not None
                    and as_utc(shipment.last_update_at) <= as_utc(shipment.stalled_at) else None)
    found = Found(
        locale=locale, timezone=tz_name, order_number=order.number or order.id,
        carrier=shipment.carrier, tracking_number=shipment.tracking_number,
        carrier_url=_web_url(shipment.tracking_url or order.tracking_url),
        status=shipment.status,
        problem=problem_of(shipment.status, shipment.delivered_at, still_silent,
                           shipment.late_for, shipment.estimated_delivery_at, now, zone(tz_name)),
        estimated=shipment.estimated_delivery_at,
        first_estimated=shipment.first_estimated_delivery_at,
        delivered_at=shipment.delivered_at, updates=updates,
        silent_since=(shipment.last_update_at if still_silent is not None
                      and shipment.delivered_at is None else None),
        expired=_expired(settings, claims, shipment, now),
        can_report=_enrollment(session, claims, shipment, message) is not None)
    return found, message, shipment


def _web_url(url: str | None) -> str | None:
    """The carrier's link if it is a web address (never a ``javascript:`` one)."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _enrollment(session: Session, claims: Claims, shipment: Shipment,
                message: Message | None) -> int | None:
    """The enrollment a report hangs on: the message's, else the customer's latest one about
    this shipment or its order."""
    if message is not None:
        return message.enrollment_id
    return session.scalar(
        select(Enrollment.id)
        .where(Enrollment.customer_id == claims.customer_id,
               (Enrollment.shipment_id == shipment.id)
               | (Enrollment.order_id == shipment.order_id))
        .order_by(Enrollment.enrolled_at.desc(), Enrollment.id.desc()).limit(1))


def _visit(settings: Settings, runtime: Runtime, claims: Claims, click: Click, link: str,
           now: datetime) -> Found | int:
    """The page; a person's visit also counts as the click of the message that carried it."""
    with runtime.factory() as session, session.begin():
        loaded = _load(session, settings, claims, now)
        if isinstance(loaded, int):
            return loaded
        found, message, _ = loaded
        if message is not None and not found.expired:
            judged = replace(click, sent_at=message.sent_at)
            if suspect_reason(judged) is None:
                apply_deliveries(session, [Delivery(
                    provider=VISIT_PROVIDER, provider_event_id=f"tracking-visit:{message.id}",
                    kind=DeliveryKind.CLICKED, message_id=message.id, provider_message_id=None,
                    recipient=None, occurred_at=now, channel=message.channel,
                    # "url": the link as the message carried it, so a provider's report of the
                    # same link is the same link (a double click, not a burst of two links).
                    raw={"url": link, "useragent": (click.headers or {}).get("user-agent"),
                         "source": "tracking_page"})], now)
        return found


def _report(settings: Settings, runtime: Runtime, claims: Claims, words: str | None,
            now: datetime) -> tuple[Found, bool] | int:
    """Store the customer's words as an alert for the team (once per shipment and words), in
    the same transaction that reads the page. Also whether the team has the words now."""
    with runtime.factory() as session, session.begin():
        loaded = _load(session, settings, claims, now)
        if isinstance(loaded, int):
            return loaded
        found, message, shipment = loaded
        if words is None or found.expired or found.problem is None:
            return found, False  # the form is only offered for a problem
        enrollment_id = _enrollment(session, claims, shipment, message)
        if enrollment_id is None:
            return found, False  # the page offers the shop's help instead (no form)
        prefix = f"tracking:{_short_hash(shipment.id)}:"
        reports = session.scalar(select(func.count()).select_from(AlertRecord).where(
            AlertRecord.enrollment_id == enrollment_id, AlertRecord.step_key.startswith(prefix)))
        if reports and reports >= MAX_REPORTS:
            log.warning("shipment %s: report not stored, %s already", shipment.id, reports)
            return found, True  # the team has heard from this customer about it already
        enrollment = session.get(Enrollment, enrollment_id)
        session.execute(insert(session, AlertRecord).values(
            enrollment_id=enrollment_id, step_key=prefix + _short_hash(words),
            customer_id=claims.customer_id, order_id=shipment.order_id, kind=ALERT_KIND,
            details={
                "source": "tracking_page",
                "segment": enrollment.segment if enrollment else None,
                "journey": enrollment.journey if enrollment else None,
                # "answer": where the alert routes read the customer's words (and where
                # ``aftersale forget`` erases them)
                "answer": {"comment": words},
                "shipment": {"id": shipment.id, "status": shipment.status,
                             "problem": found.problem, "carrier": shipment.carrier,
                             "tracking_number": shipment.tracking_number,
                             "carrier_message": shipment.last_message},
                "message_id": message.id if message else None,
            },
            created_at=now, status="pending", email_status="pending",
            webhook_status="pending", attempts=0,
        ).on_conflict_do_nothing(index_elements=["enrollment_id", "step_key"]))
        return found, True


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the page ------------------------------------------------------------------------------

_TEXTS: dict[str, dict[str, Any]] = {
    "en": {
        "title": "Track your order",
        "order": "Order {number}",
        "shop": "our shop",
        "labels": {
            "label_created": "Label created",
            "in_transit": "In transit",
            "out_for_delivery": "Out for delivery",
            "attempted_delivery": "Delivery attempted",
            "ready_for_pickup": "Ready for pickup",
            "delayed": "Delayed",
            "exception": "Delivery problem",
            "returned_to_sender": "Returned to sender",
            "delivered": "Delivered",
            "cancelled": "Parcel withdrawn by the shop",
            "unknown": "Carrier update",
        },
        "headlines": {
            "label_created": "Your order is packed and waits for the carrier",
            "in_transit": "Your parcel is on its way",
            "out_for_delivery": "Your parcel arrives today",
            "attempted_delivery": "The carrier could not deliver your parcel",
            "ready_for_pickup": "Your parcel is ready to collect",
            "delayed": "Your parcel is delayed",
            "exception": "There is a problem with your parcel",
            "returned_to_sender": "Your parcel is on its way back to us",
            "delivered": "Your parcel has arrived",
            "cancelled": "This parcel was replaced: your order goes in another one",
            "unknown": "News about your parcel",
            "stalled": "Your parcel has not moved for a few days",
            "late": "Your parcel is late",
        },
        "advice": {
            "attempted_delivery": "Nobody could take the parcel. The carrier's page says when "
                                  "they try again or where you can collect it.",
            "ready_for_pickup": "Take an ID and your tracking number with you.",
            "delayed": "We are sorry: the carrier needs more time. The new date is below as soon "
                       "as they give one.",
            "exception": "The carrier reported a problem with the delivery. Tell us about it "
                         "and our team will sort it out.",
            "returned_to_sender": "Tell us what you would like: we can send it again or refund "
                                  "you.",
            "stalled": "The carrier has had no news of it for a while. We are looking into it; "
                       "tell us if something is wrong.",
            "late": "It should have arrived by now, and we are sorry it has not. Tell us if you "
                    "need help.",
        },
        "carrier": "Carrier",
        "tracking_number": "Tracking number",
        "estimated": "Expected",
        "was": "was {date}",
        "silent_since": "No news from the carrier since {date}. We are looking into it.",
        "delivered_on": "Delivered",
        "carrier_link": "Follow it on {carrier}'s site",
        "carrier_link_plain": "Follow it on the carrier's site",
        "history": "What happened so far",
        "no_history": "No news from the carrier yet.",
        "problem_title": "Tell us about a problem",
        "problem_label": "What went wrong?",
        "problem_hint": "Our team reads every message and gets back to you.",
        "send": "Send to our team",
        "empty": "Please write a few words before sending.",
        "reported": "Thank you. Your message is with our team; we will get back to you soon.",
        "help": "Need help?",
        "bad_title": "This link does not work",
        "bad": "The tracking link is incomplete or has been changed. Please open it again from "
               "the message we sent you.",
        "expired_title": "This tracking link has expired",
        "expired": "It is some time since this parcel's last news, so the page is closed.",
        "later_title": "Please try again later",
        "later": "We could not show this page just now.",
        "contact": "Questions? Write to {support}.",
    },
    "tr": {
        "title": "Siparişinizi takip edin",
        "order": "Sipariş {number}",
        "shop": "mağazamız",
        "labels": {
            "label_created": "Kargo etiketi oluşturuldu",
            "in_transit": "Yolda",
            "out_for_delivery": "Dağıtımda",
            "attempted_delivery": "Teslimat denendi",
            "ready_for_pickup": "Teslim almaya hazır",
            "delayed": "Gecikmede",
            "exception": "Teslimat sorunu",
            "returned_to_sender": "Göndericiye iade edildi",
            "delivered": "Teslim edildi",
            "cancelled": "Gönderi mağaza tarafından iptal edildi",
            "unknown": "Kargo firmasından bilgi",
        },
        "headlines": {
            "label_created": "Siparişiniz paketlendi, kargo firmasını bekliyor",
            "in_transit": "Kargonuz yolda",
            "out_for_delivery": "Kargonuz bugün geliyor",
            "attempted_delivery": "Kargo firması paketinizi teslim edemedi",
            "ready_for_pickup": "Paketiniz teslim almaya hazır",
            "delayed": "Kargonuz gecikti",
            "exception": "Kargonuzla ilgili bir sorun var",
            "returned_to_sender": "Paketiniz bize geri dönüyor",
            "delivered": "Kargonuz teslim edildi",
            "cancelled": "Bu gönderi iptal edildi: siparişiniz başka bir gönderiyle geliyor",
            "unknown": "Kargonuzla ilgili yeni bilgi",
            "stalled": "Kargonuz birkaç gündür ilerlemedi",
            "late": "Kargonuz gecikti",
        },
        "advice": {
            "attempted_delivery": "Paketi teslim alan olmadı. Kargo firmasının sayfasında ne "
                                  "zaman yeniden deneyeceklerini ya da paketi nereden "
                                  "alabileceğinizi görebilirsiniz.",
            "ready_for_pickup": "Yanınıza kimliğinizi ve takip numaranızı alın.",
            "delayed": "Özür dileriz: kargo firmasının biraz daha zamana ihtiyacı var. Yeni "
                       "tarihi verdikleri anda aşağıda görürsünüz.",
            "exception": "Kargo firması teslimatta bir sorun bildirdi. Bize anlatın, ekibimiz "
                         "çözsün.",
            "returned_to_sender": "Ne istediğinizi bize yazın: yeniden gönderebilir ya da "
                                  "ücretini iade edebiliriz.",
            "stalled": "Kargo firmasından bir süredir haber yok. Takip ediyoruz; bir sorun "
                       "varsa bize yazın.",
            "late": "Paketinizin şimdiye kadar gelmiş olması gerekiyordu, özür dileriz. "
                    "Yardıma ihtiyacınız varsa bize yazın.",
        },
        "carrier": "Kargo firması",
        "tracking_number": "Takip numarası",
        "estimated": "Tahmini teslimat",
        "was": "önceki tarih: {date}",
        "silent_since": "{date} tarihinden beri kargo firmasından haber yok. Takip ediyoruz.",
        "delivered_on": "Teslim tarihi",
        "carrier_link": "{carrier} sitesinde takip edin",
        "carrier_link_plain": "Kargo firmasının sitesinde takip edin",
        "history": "Şimdiye kadar olanlar",
        "no_history": "Kargo firmasından henüz bilgi gelmedi.",
        "problem_title": "Bir sorunu bize bildirin",
        "problem_label": "Ne oldu?",
        "problem_hint": "Ekibimiz her mesajı okur ve size geri döner.",
        "send": "Ekibimize gönder",
        "empty": "Lütfen göndermeden önce birkaç kelime yazın.",
        "reported": "Teşekkürler. Mesajınız ekibimize ulaştı; en kısa sürede size döneceğiz.",
        "help": "Yardım mı lazım?",
        "bad_title": "Bu bağlantı çalışmıyor",
        "bad": "Takip bağlantısı eksik ya da değiştirilmiş. Lütfen size gönderdiğimiz "
               "mesajdaki bağlantıyı yeniden açın.",
        "expired_title": "Bu takip bağlantısının süresi doldu",
        "expired": "Bu paketle ilgili son bilginin üzerinden epey zaman geçti, bu yüzden "
                   "sayfa kapandı.",
        "later_title": "Lütfen daha sonra yeniden deneyin",
        "later": "Bu sayfayı şu anda gösteremedik.",
        "contact": "Sorunuz mu var? {support} adresine yazın.",
    },
    "pl": {
        "title": "Śledź zamówienie",
        "order": "Zamówienie {number}",
        "shop": "nasz sklep",
        "labels": {
            "label_created": "Etykieta utworzona",
            "in_transit": "W drodze",
            "out_for_delivery": "Wydana do doręczenia",
            "attempted_delivery": "Próba doręczenia",
            "ready_for_pickup": "Gotowa do odbioru",
            "delayed": "Opóźniona",
            "exception": "Problem z doręczeniem",
            "returned_to_sender": "Zwrócona do nadawcy",
            "delivered": "Doręczona",
            "cancelled": "Przesyłka anulowana przez sklep",
            "unknown": "Informacja od przewoźnika",
        },
        "headlines": {
            "label_created": "Zamówienie jest spakowane i czeka na przewoźnika",
            "in_transit": "Twoja przesyłka jest w drodze",
            "out_for_delivery": "Twoja przesyłka dotrze dziś",
            "attempted_delivery": "Przewoźnik nie mógł doręczyć przesyłki",
            "ready_for_pickup": "Przesyłka czeka na odbiór",
            "delayed": "Twoja przesyłka jest opóźniona",
            "exception": "Wystąpił problem z Twoją przesyłką",
            "returned_to_sender": "Przesyłka wraca do nas",
            "delivered": "Przesyłka została doręczona",
            "cancelled": "Ta przesyłka została zastąpiona: zamówienie przyjdzie w innej",
            "unknown": "Nowe informacje o przesyłce",
            "stalled": "Przesyłka od kilku dni się nie przemieszcza",
            "late": "Przesyłka się spóźnia",
        },
        "advice": {
            "attempted_delivery": "Nikt nie mógł odebrać przesyłki. Na stronie przewoźnika "
                                  "sprawdzisz, kiedy spróbuje ponownie albo gdzie ją odebrać.",
            "ready_for_pickup": "Zabierz ze sobą dokument tożsamości i numer przesyłki.",
            "delayed": "Przepraszamy: przewoźnik potrzebuje więcej czasu. Nowy termin pojawi "
                       "się poniżej, gdy tylko go poda.",
            "exception": "Przewoźnik zgłosił problem z doręczeniem. Napisz nam o nim, a nasz "
                         "zespół się tym zajmie.",
            "returned_to_sender": "Napisz nam, czego chcesz: możemy wysłać przesyłkę ponownie "
                                  "albo zwrócić pieniądze.",
            "stalled": "Przewoźnik od pewnego czasu nie ma o niej wieści. Sprawdzamy to; "
                       "napisz, jeśli coś jest nie tak.",
            "late": "Przesyłka powinna już dotrzeć. Przepraszamy. Napisz, jeśli potrzebujesz "
                    "pomocy.",
        },
        "carrier": "Przewoźnik",
        "tracking_number": "Numer przesyłki",
        "estimated": "Przewidywane doręczenie",
        "was": "wcześniej: {date}",
        "silent_since": "Od {date} przewoźnik nie przekazał żadnych wieści. Sprawdzamy to.",
        "delivered_on": "Doręczono",
        "carrier_link": "Śledź na stronie {carrier}",
        "carrier_link_plain": "Śledź na stronie przewoźnika",
        "history": "Historia przesyłki",
        "no_history": "Przewoźnik nie przekazał jeszcze informacji.",
        "problem_title": "Zgłoś problem",
        "problem_label": "Co poszło nie tak?",
        "problem_hint": "Nasz zespół czyta każdą wiadomość i odpowie Ci.",
        "send": "Wyślij do naszego zespołu",
        "empty": "Napisz kilka słów przed wysłaniem.",
        "reported": "Dziękujemy. Twoja wiadomość trafiła do naszego zespołu; wkrótce się "
                    "odezwiemy.",
        "help": "Potrzebujesz pomocy?",
        "bad_title": "Ten link nie działa",
        "bad": "Link do śledzenia jest niepełny albo został zmieniony. Otwórz go ponownie "
               "z naszej wiadomości.",
        "expired_title": "Ten link do śledzenia wygasł",
        "expired": "Od ostatniej informacji o tej przesyłce minęło sporo czasu, więc strona "
                   "została zamknięta.",
        "later_title": "Spróbuj ponownie później",
        "later": "Nie udało się teraz wyświetlić tej strony.",
        "contact": "Masz pytania? Napisz na {support}.",
    },
}


def texts(lang: str) -> Mapping[str, Any]:
    """The page's texts in ``lang`` (one of :data:`aftersale.web.pages.LANGUAGES`)."""
    return _TEXTS[lang]


def _when(value: datetime, locale: Locale, tz: tzinfo) -> str:
    local = value.astimezone(tz)
    return f"{format_skeleton('MMMEd', local, locale=locale)}, {format_time(local, 'short', locale=locale)}"


def _day(value: datetime, locale: Locale, tz: tzinfo) -> str:
    return format_date(value.astimezone(tz), "full", locale=locale)


def _page(settings: Settings, found: Found, now: datetime, *, status_code: int = 200,
          empty: bool = False, reported: bool = False) -> HTMLResponse:
    lang = language(settings, found.locale)
    t = texts(lang)
    shop = shop_texts(settings.content_dir)
    help_text = shop.help_for(settings, found.locale) or None
    # The help text says how to reach the shop; the bare address only when there is none.
    contact = (t["contact"].format(support=shop.support_email)
               if shop.support_email and not help_text else None)
    if found.expired:
        return render_page("tracking.html", 410, lang=lang, shop=shop.name,
                           title=t["expired_title"], text=t["expired"], help_text=help_text,
                           t=t, contact=contact)
    locale, tz = babel_locale(found.locale, lang), zone(found.timezone)
    key = found.problem or found.status
    estimate = None
    if found.delivered_at is None and found.estimated is not None:
        estimate = {"day": _day(found.estimated, locale, tz), "was": None}
        first = found.first_estimated
        if first is not None and first.astimezone(tz).date() != found.estimated.astimezone(tz).date():
            estimate["was"] = t["was"].format(date=_day(first, locale, tz))
    carrier_link = None
    if found.carrier_url:
        carrier_link = {"href": found.carrier_url,
                        "text": t["carrier_link"].format(carrier=found.carrier) if found.carrier
                        else t["carrier_link_plain"]}
    labels = t["labels"]
    timeline = [{"label": labels.get(u.status, labels["unknown"]), "message": u.message,
                 "when": _when(u.happened_at, locale, tz), "iso": u.happened_at.isoformat()}
                for u in found.updates]
    return render_page(
        "tracking.html", status_code, lang=lang, shop=shop.name, t=t, title=t["title"],
        headline=t["headlines"].get(key, t["headlines"]["unknown"]),
        order=t["order"].format(number=found.order_number),
        advice=t["advice"].get(key), problem=found.problem,
        silent=(t["silent_since"].format(date=_day(found.silent_since, locale, tz))
                if found.silent_since is not None and found.problem != STALLED else None),
        carrier=found.carrier, tracking_number=found.tracking_number, carrier_link=carrier_link,
        estimate=estimate,
        delivered=_day(found.delivered_at, locale, tz) if found.delivered_at else None,
        timeline=timeline, help_text=help_text, contact=contact, limit=COMMENT_LIMIT,
        form=found.problem is not None and found.can_report and not reported,
        alert=t["empty"] if empty else None, reported=t["reported"] if reported else None)


def _error_page(settings: Settings, request: Request, status_code: int) -> HTMLResponse:
    """No customer to take the language from: the browser's Accept-Language decides."""
    lang = language(settings, accepted_language(request.headers.get("accept-language")))
    t = texts(lang)
    shop = shop_texts(settings.content_dir)
    mode = "bad" if status_code in (403, 404, 413) else "later"  # 429, 500, 503: later
    return render_page("tracking.html", status_code, lang=lang, shop=shop.name,
                       title=t[f"{mode}_title"], text=t[mode], t=t,
                       contact=t["contact"].format(support=shop.support_email)
                       if shop.support_email else None)
