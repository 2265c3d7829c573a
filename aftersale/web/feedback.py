"""What comes back after a send: provider webhooks and the unsubscribe page.

- ``POST /webhooks/sendgrid/events``  signed Event Webhook (ECDSA over the raw body)
- ``POST /webhooks/twilio/status``    delivery status callbacks (``X-Twilio-Signature``)
- ``POST /webhooks/twilio/inbound``   SMS/WhatsApp replies: STOP, START, HELP, survey answers
                                     (:mod:`aftersale.surveys.sms_answers`), anything else
- ``GET|POST /u/{token}``             unsubscribe page and RFC 8058 one-click unsubscribe

Every guard runs before anything is parsed or stored: a failed check answers 403 (503 when the
check cannot run because a setting is missing) and writes nothing. A malformed body is a 400;
an unexpected error a 500 so the provider retries, with the transaction rolled back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from aftersale.config import Settings
from aftersale.core.errors import WebhookRejected
from aftersale.core.links import Purpose, Signer
from aftersale.db.models import Customer, Message
from aftersale.intake import jsontext
from aftersale.intake.notify import inbox_received
from aftersale.pipeline.runtime import Runtime, link_signer
from aftersale.pipeline.send_outcomes import (
    DeliveryCounts,
    Inbound,
    InboundResult,
    apply_deliveries,
    apply_inbound,
)
from aftersale.pipeline.suppression import CHANNELS, UNSUBSCRIBE, set_consent, suppress
from aftersale.surveys.sms_answers import CachedSurveyKinds, SurveyReplies, load_reply_texts
from aftersale.web.bodies import read_limited
from aftersale.web.pages import accepted_language, language, render_page, shop_texts, signed_payload
from aftersale.webhooks import sendgrid as sendgrid_webhook
from aftersale.webhooks import twilio as twilio_webhook

log = logging.getLogger(__name__)

MAX_BODY = 10 * 1024 * 1024
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def feedback_router(settings: Settings, runtime: Runtime) -> APIRouter:
    router = APIRouter()
    signer = link_signer(settings)
    kinds = CachedSurveyKinds(lambda: runtime.definitions().content)

    @router.post("/webhooks/sendgrid/events")
    async def sendgrid_events(request: Request) -> JSONResponse:
        body = await read_limited(request, MAX_BODY)
        if body is None:
            return JSONResponse({"error": "body too large"}, status_code=413)
        now = runtime.now()
        try:
            sendgrid_webhook.verify(settings, body,
                                    request.headers.get(sendgrid_webhook.SIGNATURE_HEADER),
                                    request.headers.get(sendgrid_webhook.TIMESTAMP_HEADER), now)
        except WebhookRejected as exc:
            log.warning("SendGrid webhook rejected (%s): %s", exc.status, exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        try:
            # SendGrid cannot change what it sends: NULs are dropped, lone surrogates replaced.
            deliveries = sendgrid_webhook.parse(jsontext.loads(body, clean=True), now)
        except ValueError as exc:  # JSONTextError is a ValueError
            return JSONResponse({"error": f"not a SendGrid event batch: {exc}"}, status_code=400)
        try:
            counts = await run_in_threadpool(_apply, runtime, deliveries, now)
        except Exception:  # rolled back; a 5xx makes SendGrid retry
            log.exception("storing %d SendGrid events failed", len(deliveries))
            return JSONResponse({"error": "internal error; nothing was stored, please retry"},
                                status_code=500)
        return JSONResponse({"received": counts.received, "stored": counts.stored,
                             "duplicates": counts.duplicates, "suppressed": counts.suppressed,
                             "lifted": counts.lifted})

    @router.post(twilio_webhook.STATUS_PATH)
    async def twilio_status(request: Request) -> Response:
        form, rejected = await _twilio_form(settings, request)
        if rejected is not None:
            return rejected
        now = runtime.now()
        try:
            delivery = twilio_webhook.parse_status(form, message_id=request.query_params.get("m"),
                                                   received_at=now)
        except ValueError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        try:
            await run_in_threadpool(_apply, runtime, [delivery], now)
        except Exception:  # rolled back; a 5xx makes Twilio retry
            log.exception("storing a Twilio status callback failed")
            return Response("internal error", status_code=500, media_type="text/plain")
        return Response(status_code=200)

    @router.post(twilio_webhook.INBOUND_PATH)
    async def twilio_inbound(request: Request) -> Response:
        form, rejected = await _twilio_form(settings, request)
        if rejected is not None:
            return rejected
        now = runtime.now()
        try:
            inbound = twilio_webhook.parse_inbound(form)
        except ValueError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        try:
            result: InboundResult = await run_in_threadpool(_inbound, settings, runtime, kinds,
                                                            inbound, now)
        except Exception:  # rolled back
            log.exception("storing an inbound Twilio message failed")
            return Response("internal error", status_code=500, media_type="text/plain")
        if result.survey is not None and result.survey.action == "answered":
            await run_in_threadpool(inbox_received, settings, 1, inbound.channel)
        # STOP/START get an empty answer: Twilio's Advanced Opt-Out sends its own confirmation.
        reply = help_reply(settings, result.locale) if result.keyword == "help" else result.reply
        return Response(twiml_message(reply), media_type="text/xml")

    @router.get("/u/{token}")
    async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
        claims = _claims(signer, token)
        if not isinstance(claims, _Claims):
            return _error_page(settings, claims, request)
        try:
            locale = await run_in_threadpool(_locale_of, runtime, claims)
        except Exception:
            log.exception("loading the unsubscribe page failed")
            return _error_page(settings, 500, request)
        return _page(settings, locale, "ask", claims.channel, 200)

    @router.post("/u/{token}")
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        # RFC 8058: mail providers POST "List-Unsubscribe=One-Click"; the page's button sends
        # the same. The signed token is the authority, so the body is not required.
        claims = _claims(signer, token)
        if not isinstance(claims, _Claims):
            return _error_page(settings, claims, request)
        try:
            locale = await run_in_threadpool(_unsubscribe, runtime, claims, runtime.now())
        except Exception:  # rolled back
            log.exception("unsubscribing failed")
            return _error_page(settings, 500, request)
        return _page(settings, locale, "done", claims.channel, 200)

    return router


# --- webhooks ---------------------------------------------------------------------------------


async def _twilio_form(settings: Settings, request: Request,
                       ) -> tuple[twilio_webhook.FormParams, Response | None]:
    body = await read_limited(request, MAX_BODY)
    if body is None:
        return twilio_webhook.FormParams([]), Response("body too large", status_code=413)
    form = twilio_webhook.parse_form(body)
    try:
        twilio_webhook.verify(settings, _path_and_query(request), form,
                              request.headers.get(twilio_webhook.SIGNATURE_HEADER))
    except WebhookRejected as exc:
        log.warning("Twilio webhook rejected (%s): %s", exc.status, exc.reason)
        return form, Response(exc.reason, status_code=exc.status, media_type="text/plain")
    return form, None


def _path_and_query(request: Request) -> str:
    """Path and query exactly as requested (still percent-encoded), to rebuild the signed URL."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _apply(runtime: Runtime, deliveries: list[Any], now: datetime) -> DeliveryCounts:
    with runtime.factory() as session, session.begin():
        return apply_deliveries(session, deliveries, now)


def twiml_message(text: str | None) -> str:
    """TwiML answering with one message (escaped), or with nothing."""
    if not text:
        return TWIML_EMPTY
    return (f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(text)}'
            "</Message></Response>")


def _inbound(settings: Settings, runtime: Runtime, kinds: CachedSurveyKinds, inbound: Inbound,
             now: datetime) -> InboundResult:
    surveys = None
    if inbound.keyword is None:
        # Before the transaction: loading definitions may write, and on SQLite a second writer
        # would wait for this transaction's lock.
        surveys = SurveyReplies(kinds.get(), settings.survey_days,
                                load_reply_texts(settings.content_dir, settings.default_locale))
    with runtime.factory() as session, session.begin():
        return apply_inbound(session, inbound, now, surveys)


_STOP_HINTS = {
    "en": "Reply STOP to stop messages, START to get them again.",
    "tr": "Mesajları durdurmak için STOP, yeniden almak için START yazın.",
    "pl": "Odpisz STOP, aby nie dostawać wiadomości, lub START, aby znów je otrzymywać.",
}


def help_reply(settings: Settings, locale: str | None) -> str:
    """The answer to HELP: the shop's name, its help text in the customer's language and how to
    opt out (carriers require all three)."""
    shop = shop_texts(settings.content_dir)
    lang = language(settings, locale)
    parts = [f"{shop.name}:" if shop.name else "", shop.help_for(settings, locale),
             _STOP_HINTS[lang]]
    return " ".join(p for p in parts if p)


# --- unsubscribe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claims:
    message_id: str | None
    customer_id: str
    channel: str


def _claims(signer: Signer | None, token: str) -> _Claims | int:
    """The token's claims, or the status to answer: 400 tampered/malformed, 503 no key."""
    payload = signed_payload(signer, Purpose.UNSUBSCRIBE, token, 400)
    if isinstance(payload, int):
        return payload
    message_id, customer_id, channel = payload.get("m"), payload.get("c"), payload.get("ch")
    if (not isinstance(customer_id, str) or not customer_id or channel not in CHANNELS
            or not (message_id is None or isinstance(message_id, str))
            or "\x00" in customer_id + (message_id or "")):  # PostgreSQL refuses NUL
        return 400
    return _Claims(message_id, customer_id, str(channel))


def _locale_of(runtime: Runtime, claims: _Claims) -> str | None:
    with runtime.factory() as session:
        customer = session.get(Customer, claims.customer_id)
        if customer is not None and customer.locale:
            return customer.locale
        message = session.get(Message, claims.message_id) if claims.message_id else None
        return message.locale if message is not None else None


def _unsubscribe(runtime: Runtime, claims: _Claims, now: datetime) -> str | None:
    """Suppress the address the message went to (else the customer's current one) on the
    token's channel and withdraw consent; the customer's locale for the answer page."""
    with runtime.factory() as session, session.begin():
        customer = session.get(Customer, claims.customer_id)
        message = session.get(Message, claims.message_id) if claims.message_id else None
        address = None
        if (message is not None and message.customer_id == claims.customer_id
                and message.channel == claims.channel and message.recipient):
            address = message.recipient
        elif customer is not None:
            address = customer.email if claims.channel == "email" else customer.phone
        if address:
            suppress(session, claims.channel, address, claims.customer_id, UNSUBSCRIBE,
                     "unsubscribe_link", now)
        else:
            set_consent(session, claims.channel, False, now, customer_id=claims.customer_id)
        if customer is not None and customer.locale:
            return customer.locale
        return message.locale if message is not None else None


_TEXTS: dict[str, dict[str, Any]] = {
    "en": {
        "channels": {"email": "e-mail", "sms": "SMS", "whatsapp": "WhatsApp"},
        "shop": "this shop",
        "ask_title": "Unsubscribe",
        "ask": "Press the button and {shop} will stop sending you messages by {channel}.",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done": "{shop} will not send you messages by {channel} any more.",
        "bad_title": "This link does not work",
        "bad": "The unsubscribe link is incomplete or has been changed. Please open it again "
               "from the message we sent you.",
        "later_title": "Please try again later",
        "later": "We could not handle this link just now. Nothing was changed.",
        "contact": "Questions? Write to {support}.",
    },
    "tr": {
        "channels": {"email": "e-posta", "sms": "SMS", "whatsapp": "WhatsApp"},
        "shop": "Mağazamız",
        "ask_title": "Abonelikten çık",
        "ask": "Düğmeye bastığınızda {shop} size artık {channel} ile mesaj göndermeyecek.",
        "button": "Abonelikten çık",
        "done_title": "Abonelikten çıktınız",
        "done": "{shop} size artık {channel} ile mesaj göndermeyecek.",
        "bad_title": "Bu bağlantı çalışmıyor",
        "bad": "Abonelikten çıkma bağlantısı eksik ya da değiştirilmiş. Lütfen size gönderdiğimiz "
               "mesajdaki bağlantıyı yeniden açın.",
        "later_title": "Lütfen daha sonra yeniden deneyin",
        "later": "Bu bağlantıyı şu anda işleyemedik. Hiçbir şey değiştirilmedi.",
        "contact": "Sorunuz mu var? {support} adresine yazın.",
    },
    "pl": {
        "channels": {"email": "e-mail", "sms": "SMS", "whatsapp": "WhatsApp"},
        "shop": "Nasz sklep",
        "ask_title": "Wypisz się",
        "ask": "Po naciśnięciu przycisku {shop} przestanie wysyłać Ci wiadomości przez {channel}.",
        "button": "Wypisz się",
        "done_title": "Wypisano Cię",
        "done": "{shop} nie będzie już wysyłać Ci wiadomości przez {channel}.",
        "bad_title": "Ten link nie działa",
        "bad": "Link do wypisania się jest niepełny albo został zmieniony. Otwórz go ponownie "
               "z naszej wiadomości.",
        "later_title": "Spróbuj ponownie później",
        "later": "Nie udało się teraz obsłużyć tego linku. Nic nie zostało zmienione.",
        "contact": "Masz pytania? Napisz na {support}.",
    },
}

def _page(settings: Settings, locale: str | None, kind: str, channel: str | None,
          status_code: int) -> HTMLResponse:
    lang = language(settings, locale)
    texts = _TEXTS[lang]
    shop = shop_texts(settings.content_dir)
    values = {"shop": shop.name or texts["shop"],
              "channel": texts["channels"].get(channel or "", channel or "")}
    return render_page(
        "unsubscribe.html", status_code,
        lang=lang, shop=shop.name, title=texts[f"{kind}_title"],
        text=texts[kind].format(**values), status=kind == "done",
        button=texts["button"] if kind == "ask" else None,
        contact=texts["contact"].format(support=shop.support_email) if shop.support_email else None)


def _error_page(settings: Settings, status_code: int, request: Request) -> HTMLResponse:
    """No customer to take the language from: the browser's Accept-Language decides."""
    locale = accepted_language(request.headers.get("accept-language"))
    return _page(settings, locale, "bad" if status_code == 400 else "later", None, status_code)
