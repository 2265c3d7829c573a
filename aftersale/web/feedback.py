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
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool

from aftersale.config import Settings
from aftersale.content import read_yaml
from aftersale.content.render import locale_candidates, pick_locale
from aftersale.core.errors import WebhookRejected
from aftersale.core.links import BadToken, Purpose, Signer
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
from aftersale.webhooks import sendgrid as sendgrid_webhook
from aftersale.webhooks import twilio as twilio_webhook

log = logging.getLogger(__name__)

MAX_BODY = 10 * 1024 * 1024
LANGUAGES = ("en", "tr", "pl")
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


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


# --- shop texts (content/shop.yaml) -------------------------------------------------------------


@dataclass(frozen=True)
class ShopTexts:
    name: str = ""
    support_email: str = ""
    help_text: Mapping[str, str] = field(default_factory=dict)


_SHOP_CACHE: dict[Path, tuple[int, ShopTexts]] = {}


def shop_texts(content_dir: Path) -> ShopTexts:
    """``shop.yaml`` read with the content library's own reader, re-read when the file changes.
    An unreadable file gives empty texts: a HELP reply or a page must still go out."""
    path = Path(content_dir) / "shop.yaml"
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return ShopTexts()
    cached = _SHOP_CACHE.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    data, _, _ = read_yaml(path)
    texts = ShopTexts()
    if isinstance(data, dict):
        help_text = data.get("help_text")
        if isinstance(help_text, str):
            help_text = {"*": help_text}
        texts = ShopTexts(str(data.get("name") or ""), str(data.get("support_email") or ""),
                          {str(k): str(v) for k, v in help_text.items()}
                          if isinstance(help_text, dict) else {})
    _SHOP_CACHE[path] = (stamp, texts)
    return texts


def _language(settings: Settings, locale: str | None) -> str:
    default = settings.default_locale if settings.default_locale in LANGUAGES else "en"
    return pick_locale(LANGUAGES, locale, default)


_STOP_HINTS = {
    "en": "Reply STOP to stop messages, START to get them again.",
    "tr": "Mesajları durdurmak için STOP, yeniden almak için START yazın.",
    "pl": "Odpisz STOP, aby nie dostawać wiadomości, lub START, aby znów je otrzymywać.",
}


def help_reply(settings: Settings, locale: str | None) -> str:
    """The answer to HELP: the shop's name, its help text in the customer's language and how to
    opt out (carriers require all three)."""
    shop = shop_texts(settings.content_dir)
    lang = _language(settings, locale)
    if "*" in shop.help_text:
        text = shop.help_text["*"]
    else:
        default = settings.default_locale if settings.default_locale in shop.help_text else "en"
        text = shop.help_text.get(pick_locale(shop.help_text.keys(), locale, default), "")
    parts = [f"{shop.name}:" if shop.name else "", text, _STOP_HINTS[lang]]
    return " ".join(p for p in parts if p)


# --- unsubscribe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claims:
    message_id: str | None
    customer_id: str
    channel: str


def _claims(signer: Signer | None, token: str) -> _Claims | int:
    """The token's claims, or the status to answer: 400 tampered/malformed, 503 no key."""
    if signer is None:
        log.error("unsubscribe link used but AFTERSALE_SECRET_KEY is not set")
        return 503
    try:
        payload = signer.verify(Purpose.UNSUBSCRIBE, token)
    except BadToken:
        return 400
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

_PAGE = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }}{% if shop %} – {{ shop }}{% endif %}</title>
<style>
body{margin:0;padding:1rem;background:#f4f4f2;color:#1d1d1b;
font:1.0625rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:32rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:.75rem;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
button{font:inherit;font-weight:600;width:100%;min-height:3rem;padding:.75rem 1rem;border:0;
border-radius:.5rem;background:#1f4fd1;color:#fff;cursor:pointer}
button:hover{background:#173da6}
button:focus-visible{outline:3px solid #0b2a80;outline-offset:3px}
.note{color:#4a4a48;font-size:.95rem;margin-top:1.5rem}
</style>
</head>
<body>
<main>
<h1>{{ title }}</h1>
<p{% if status %} role="status"{% endif %}>{{ text }}</p>
{% if button %}<form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">{{ button }}</button>
</form>{% endif %}
{% if contact %}<p class="note">{{ contact }}</p>{% endif %}
</main>
</body>
</html>
""")


def _page(settings: Settings, locale: str | None, kind: str, channel: str | None,
          status_code: int) -> HTMLResponse:
    lang = _language(settings, locale)
    texts = _TEXTS[lang]
    shop = shop_texts(settings.content_dir)
    values = {"shop": shop.name or texts["shop"],
              "channel": texts["channels"].get(channel or "", channel or "")}
    html = _PAGE.render(
        lang=lang, shop=shop.name, title=texts[f"{kind}_title"],
        text=texts[kind].format(**values), status=kind == "done",
        button=texts["button"] if kind == "ask" else None,
        contact=texts["contact"].format(support=shop.support_email) if shop.support_email else None)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def _error_page(settings: Settings, status_code: int, request: Request) -> HTMLResponse:
    """No customer to take the language from: the browser's Accept-Language decides."""
    locale = accepted_language(request.headers.get("accept-language"))
    return _page(settings, locale, "bad" if status_code == 400 else "later", None, status_code)


def accepted_language(header: str | None) -> str | None:
    """The most preferred of our languages in an ``Accept-Language`` header, if any."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        if any(c in LANGUAGES for c in locale_candidates(tag)):
            return tag
    return None
