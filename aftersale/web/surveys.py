"""The survey answer pages and the referral redirect.

- ``GET /s/{token}?score=N``  records the click, then thanks, with a comment box; the click
                              becomes the answer once it is judged a person's (a second click
                              changes it, processing keeps one answer per message)
- ``GET /s/{token}``          the question with one button per score
- ``POST /s/{token}``         the comment box: ``score`` (hidden) and ``comment``
- ``GET /r/{code}``           counts the click and redirects to ``SHOP_URL?ref=CODE``

A token is checked before anything is read or stored: a bad signature, or a message that is not
the token's customer's, answers 403; a survey older than ``SURVEY_DAYS`` 410; a score outside the
scale 400 with the buttons again. Each answer is a ``survey.responded`` event in the inbox, like
a text reply, so journeys resume and branch the same way whichever way the customer answered.

Mail scanners fetch every link of a message: a click is judged first
(:mod:`aftersale.core.scanners`, :mod:`aftersale.surveys.clicks`). Everyone gets the same
page whatever the verdict, which is never shown; a suspect click is only marked. ``HEAD`` is
answered like ``GET`` (without a body) and is a suspect click. One client address gets
``SURVEY_RATE_PER_SECOND`` requests a second (``SURVEY_RATE_BURST`` at once); more are 429.
Page texts are in ``content/_pages/survey.yaml`` (en/tr/pl), next to the rest of the content.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from aftersale.config import Settings
from aftersale.content import read_yaml
from aftersale.core.errors import Problem
from aftersale.core.links import HONEYPOT_PARAM, Purpose, Signer
from aftersale.core.scanners import Click
from aftersale.core.survey_scales import COMMENT_LIMIT, SURVEY_SCALES, clean_comment, scale
from aftersale.db.models import Customer, Message, ReferralClick, SurveyResponse
from aftersale.intake import notify
from aftersale.pipeline.runtime import Runtime, link_signer
from aftersale.surveys.answers import (
    SurveyMessage,
    current_answer,
    store_answer,
    survey_message,
)
from aftersale.surveys.clicks import (
    PENDING,
    SETTLE_AFTER,
    confirm_pending,
    record_click,
    settle_due,
)
from aftersale.web.bodies import read_form
from aftersale.web.pages import (
    LANGUAGES,
    accepted_language,
    language,
    render_page,
    shop_texts,
    signed_payload,
)
from aftersale.web.throttle import ClientBuckets, too_fast

log = logging.getLogger(__name__)

TEXTS_FILE = Path("_pages") / "survey.yaml"
# A comment is at most COMMENT_LIMIT characters; form encoding can make one up to 12 bytes per
# character (a 4-byte emoji, percent-encoded). Anything larger is not our form.
MAX_FORM = 12 * COMMENT_LIMIT + 1024
# referral_code() gives "R" + base32 (A-Z, 2-7); Customer.referral_code is 32 characters wide.
REFERRAL_CODE = re.compile(r"R[A-Z2-7]{1,31}")
_SCORE = re.compile(r"[0-9]{1,2}")  # not int(): it takes "+7", " 7", "1_0" and "７"


def surveys_router(settings: Settings, runtime: Runtime) -> APIRouter:
    router = APIRouter()
    signer = link_signer(settings)

    buckets = ClientBuckets(settings.survey_rate_per_second, settings.survey_rate_burst)
    settling: set[asyncio.Task[None]] = set()  # kept referenced until done

    def throttled(request: Request) -> HTMLResponse | None:
        return too_fast(buckets, request, lambda status: _error_page(settings, request, status))

    async def settle() -> None:
        try:
            settled = await run_in_threadpool(settle_due, runtime.factory, runtime.now())
        except Exception:  # the next process-events run settles them
            log.exception("settling survey clicks failed")
            return
        if settled:
            await run_in_threadpool(notify.inbox_received, settings, settled, "survey")

    def settle_soon() -> None:
        """A pending click becomes the answer once its burst window is over; process-events
        settles it too (every run), should this process stop before."""
        loop = asyncio.get_running_loop()

        def start() -> None:
            task = loop.create_task(settle())
            settling.add(task)
            task.add_done_callback(settling.discard)

        loop.call_later(SETTLE_AFTER.total_seconds() + 0.5, start)

    async def record(request: Request, claims: _Claims, score: int | None, comment: str | None,
                     store: bool, what: str, click: Click | None = None,
                     ) -> tuple[SurveyMessage, str | None, SurveyResponse | None] | HTMLResponse:
        """Check the token against its message and keep the click or the answer (see
        ``_answer``); or the page to answer instead: an error, or "this survey has closed"."""
        now = runtime.now()
        try:
            found = await run_in_threadpool(_answer, settings, runtime, claims, score, comment,
                                            store, now, replace(click, at=now) if click else None)
        except Exception:  # rolled back
            log.exception("recording a survey %s failed", what)
            return _error_page(settings, request, 500)
        if isinstance(found, int):
            return _error_page(settings, request, found)
        survey, locale, current, verdict = found
        if survey.expired(now, settings.survey_days):
            return _page(settings, locale, "closed", survey.kind, status_code=410)
        if verdict == PENDING:
            settle_soon()
        return survey, locale, current

    @router.get("/s/{token}")
    async def survey_link(token: str, request: Request) -> HTMLResponse:
        claims = _claims(signer, token)
        if isinstance(claims, int):  # a forged link costs no database work: no rate to mind
            return _error_page(settings, request, claims)
        if (slow := throttled(request)) is not None:
            return slow
        raw = request.query_params.get("score")
        score = _score(raw, claims.kind)
        honeypot = HONEYPOT_PARAM in request.query_params
        click = Click(at=runtime.now(), score=score, honeypot=honeypot, method=request.method,
                      headers={k.lower(): v for k, v in request.headers.items()})
        found = await record(request, claims, score, None, honeypot or score is not None,
                             "answer", click)
        if isinstance(found, HTMLResponse):
            return found
        survey, locale, current = found
        if raw is None:  # just looking: the question, the current answer marked if there is one
            return _page(settings, locale, "ask", survey.kind, chosen=current.score if current else None)
        if score is None:
            return _page(settings, locale, "ask", survey.kind, status_code=400, invalid=True)
        return _page(settings, locale, "thanks", survey.kind, chosen=score,
                     comment=current.comment if current else None)

    # Link checkers send HEAD: the same answer without a body (and a suspect mark).
    router.add_api_route("/s/{token}", survey_link, methods=["HEAD"], include_in_schema=False)

    @router.post("/s/{token}")
    async def survey_comment(token: str, request: Request) -> HTMLResponse:
        claims = _claims(signer, token)
        if isinstance(claims, int):  # a forged link costs no database work: no rate to mind
            return _error_page(settings, request, claims)
        if (slow := throttled(request)) is not None:
            return slow
        form = await read_form(request, MAX_FORM)  # a comment box is not an upload
        if form is None:
            return _error_page(settings, request, 413)
        # The form sends the score it was shown with; the URL still carries the clicked one.
        score = _score(form.get("score") or request.query_params.get("score"), claims.kind)
        comment = clean_comment(form.get("comment"))
        found = await record(request, claims, score, comment, comment is not None, "comment")
        if isinstance(found, HTMLResponse):
            return found
        survey, locale, current = found
        if score is None:
            score = current.score if current else None
        if score is None:  # no score in the form and none recorded yet: ask for one first
            return _page(settings, locale, "ask", survey.kind, status_code=400, invalid=True)
        if comment is None:  # nothing was stored; offer the box again
            return _page(settings, locale, "thanks", survey.kind, status_code=400, chosen=score,
                         empty=True)
        return _page(settings, locale, "commented", survey.kind, chosen=score, comment=comment)

    @router.get("/r/{code}")
    async def referral(code: str, request: Request) -> Response:
        code = code.strip().upper()  # base32 is case-insensitive; people retype links
        if not REFERRAL_CODE.fullmatch(code):
            return _error_page(settings, request, 404)
        try:
            known = await run_in_threadpool(_record_click, runtime, code, runtime.now())
        except Exception:
            # The visitor still reaches the shop; the code stays in the URL, so an order can
            # still be attributed (processing checks the code against the customers).
            log.exception("recording a referral click failed")
            known = True
        target = with_ref(str(settings.shop_url), code) if known else str(settings.shop_url)
        return RedirectResponse(target, status_code=302,
                                headers={"Cache-Control": "no-store",
                                         "Referrer-Policy": "no-referrer"})

    return router


# --- tokens and answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Claims:
    message_id: str
    customer_id: str
    kind: str


def _claims(signer: Signer | None, token: str) -> _Claims | int:
    """The token's claims, or the status to answer: 403 tampered or malformed, 503 no key."""
    payload = signed_payload(signer, Purpose.SURVEY, token, 403)
    if isinstance(payload, int):
        return payload
    message_id, customer_id, kind = payload.get("m"), payload.get("c"), payload.get("k")
    # An unsubscribe token's signature fails above; one sent before purposes existed verifies
    # (signed alike for every purpose): it has "ch", not "k", and ends here.
    if (not isinstance(message_id, str) or not message_id or not isinstance(customer_id, str)
            or not customer_id or not isinstance(kind, str) or kind not in SURVEY_SCALES
            or "\x00" in message_id + customer_id):  # PostgreSQL refuses NUL even to look up
        return 403
    return _Claims(message_id, customer_id, str(kind))


def _score(raw: str | None, kind: str) -> int | None:
    if raw is None or not _SCORE.fullmatch(raw.strip()):
        return None
    score = int(raw.strip())
    low, high = SURVEY_SCALES[kind]
    return score if low <= score <= high else None


def _answer(settings: Settings, runtime: Runtime, claims: _Claims, score: int | None,
            comment: str | None, store: bool, now: datetime, click: Click | None,
            ) -> tuple[SurveyMessage, str | None, SurveyResponse | None, str | None] | int:
    """Check the token against its message and, if ``store`` and the survey is still open, keep
    the click (``click``: judged, see :mod:`aftersale.surveys.clicks`) or the commented answer
    (a person's act: in the inbox at once). Returns the survey, the customer's locale, the
    answer recorded so far (processed answers only) and the click's verdict; or the status to
    answer."""
    stored = False
    verdict = None
    with runtime.factory() as session, session.begin():
        survey = survey_message(session, claims.message_id, claims.kind)
        # The signature binds message, customer and kind together, so a message that is not
        # the token's customer's means a misused key: nothing is shown or stored.
        if survey is None or survey.customer_id != claims.customer_id:
            return 403
        customer = session.get(Customer, claims.customer_id)
        locale = customer.locale if customer is not None and customer.locale else None
        if locale is None:
            locale = session.scalar(select(Message.locale).where(Message.id == survey.message_id))
        current = current_answer(session, survey.message_id)
        if current is not None:
            session.expunge(current)  # read after the session has closed
        if store and not survey.expired(now, settings.survey_days):
            if click is not None:
                verdict = record_click(session, survey, replace(click, sent_at=survey.sent_at))
            else:
                if score is None and current is not None:
                    score = current.score  # a comment whose form lost its score keeps it
                if score is not None:
                    event = store_answer(session, survey, score, comment, source="email", now=now)
                    confirm_pending(session, survey.message_id, event.id)
                    stored = True
    if stored:  # after the commit: the nudge must never announce an event that is not there
        notify.inbox_received(settings, 1, "survey")
    return survey, locale, current, verdict


def _record_click(runtime: Runtime, code: str, now: datetime) -> bool:
    """Count a click on a known code; an unknown code is not stored (no referrer to credit)."""
    with runtime.factory() as session, session.begin():
        referrer = session.scalar(select(Customer.id).where(Customer.referral_code == code))
        if referrer is None:
            return False
        session.add(ReferralClick(code=code, referrer_id=referrer, clicked_at=now))
    return True


def with_ref(url: str, code: str) -> str:
    """``url`` with ``ref=code`` in its query, keeping the shop's own parameters."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ref"]
    query.append(("ref", code))
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- page texts (content/_pages/survey.yaml) ------------------------------------------------

#: Every text the pages use; ``en`` must have them all, tr and pl fall back to en per key.
KEYS = (
    "shop", "nps_question", "nps_low", "nps_high", "csat_question", "csat_low", "csat_high",
    "ces_question", "ces_low", "ces_high", "ask_hint", "invalid_score", "your_answer",
    "thanks_title", "thanks", "change", "comment_label", "comment_hint", "send", "comment_empty",
    "commented_title", "commented", "your_comment", "bad_title", "bad", "closed_title", "closed",
    "later_title", "later", "referral_title", "referral", "referral_button", "contact",
)
PLACEHOLDERS = frozenset({"shop", "score", "limit", "days", "support"})
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

_TEXTS_CACHE: dict[Path, tuple[int, dict[str, dict[str, str]]]] = {}


def page_texts(content_dir: Path) -> dict[str, dict[str, str]]:
    """Texts per language, re-read when the file changes. A missing or broken file must not
    lose an answer: the page then shows the text's key, and ``check_page_texts`` names it."""
    path = Path(content_dir) / TEXTS_FILE
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        log.error("%s is missing: the survey pages show text keys", path)
        return {lang: {} for lang in LANGUAGES}
    cached = _TEXTS_CACHE.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    data, _, _ = read_yaml(path)
    blocks = data if isinstance(data, dict) else {}
    own = {lang: {str(k): str(v) for k, v in block.items() if isinstance(v, str)}
           for lang in LANGUAGES if isinstance(block := blocks.get(lang), dict)}
    english = own.get("en", {})
    texts = {lang: {**english, **own.get(lang, {})} for lang in LANGUAGES}
    _TEXTS_CACHE[path] = (stamp, texts)
    return texts


def check_page_texts(content_dir: Path) -> list[Problem]:
    """Problems in ``_pages/survey.yaml`` for ``aftersale validate``, with their lines."""
    path = Path(content_dir) / TEXTS_FILE
    if not path.exists():
        return [Problem(str(path), 1, "the survey page texts are missing",
                        "copy content/_pages/survey.yaml from the aftersale repository")]
    data, lines, problems = read_yaml(path)
    if problems:
        return problems
    if not isinstance(data, dict):
        return [Problem(str(path), 1, "expected one block per language (en:, tr:, pl:)")]
    for lang, block in data.items():
        line = lines.get((lang,), (1, 1))[0]
        if lang not in LANGUAGES:
            problems.append(Problem(str(path), line, f"'{lang}' is not a language the pages speak",
                                    f"use {', '.join(LANGUAGES)}"))
            continue
        if not isinstance(block, dict):
            problems.append(Problem(str(path), line, f"'{lang}' should hold the texts"))
            continue
        missing = [k for k in KEYS if k not in block] if lang == "en" else []
        if missing:
            problems.append(Problem(str(path), line, f"en has no {', '.join(missing)}",
                                    "en is the fallback of every language: give it every text"))
        for key, value in block.items():
            where = lines.get((lang, key), (line, line))[0]
            if key not in KEYS:
                problems.append(Problem(str(path), where, f"unknown text '{key}'",
                                        "check the spelling against the en block"))
            elif not isinstance(value, str) or not value.strip():
                problems.append(Problem(str(path), where, f"'{key}' should be a text"))
            else:
                for name in set(_PLACEHOLDER.findall(value)) - PLACEHOLDERS:
                    problems.append(Problem(str(path), where, f"unknown placeholder {{{name}}}",
                                            f"use {', '.join(sorted(PLACEHOLDERS))}"))
    return problems


def _fill(text: str, values: Mapping[str, object]) -> str:
    """``{name}`` placeholders; anything else (a stray brace, a typo) is left as written."""
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


# --- pages ----------------------------------------------------------------------------------

class _Texts(dict[str, str]):
    """A text, or its key when the file lacks it (``aftersale validate`` reports that)."""

    def __missing__(self, key: str) -> str:
        return key


def _page(settings: Settings, locale: str | None, mode: str, kind: str | None, *,
          status_code: int = 200, chosen: int | None = None, comment: str | None = None,
          invalid: bool = False, empty: bool = False) -> HTMLResponse:
    """One of the pages: ``ask`` (the question), ``thanks`` (after a click: comment box and the
    other scores), ``commented``, or a message (``closed``, ``bad``, ``later``, ``referral``)."""
    lang = language(settings, locale)
    shop = shop_texts(settings.content_dir)
    t = _Texts(page_texts(settings.content_dir)[lang])
    values = {"shop": shop.name or t["shop"], "score": chosen, "limit": COMMENT_LIMIT,
              "days": settings.survey_days, "support": shop.support_email}
    f = {key: _fill(t[key], values) for key in KEYS}
    context: dict[str, Any] = {"lang": lang, "shop": shop.name, "t": f, "chosen": chosen,
                               "limit": COMMENT_LIMIT}
    if kind is not None:
        context.update(scale=scale(kind), low=f[f"{kind}_low"],
                       high=f[f"{kind}_high"])
    if mode == "ask":
        context.update(title=f[f"{kind}_question"], text=f["ask_hint"],
                       alert=f["invalid_score"] if invalid else None)
    elif mode == "thanks":
        context.update(title=f["thanks_title"], status=f["thanks"], form=True, comment=comment,
                       comment_hint=f["comment_hint"], alert=f["comment_empty"] if empty else None,
                       question=f[f"{kind}_question"], hint=f["change"])
    elif mode == "commented":
        context.update(title=f["commented_title"], status=f["commented"], shown_comment=comment,
                       scale=None)
    else:
        context.update(title=f[f"{mode}_title"], text=f[mode], scale=None)
        if mode == "referral":
            context["button"] = {"href": str(settings.shop_url), "text": f["referral_button"]}
    if shop.support_email:
        context["contact"] = f["contact"]
    return render_page("survey.html", status_code, **context)


def _error_page(settings: Settings, request: Request, status_code: int) -> HTMLResponse:
    """No customer to take the language from: the browser's Accept-Language decides."""
    locale = accepted_language(request.headers.get("accept-language"))
    mode = {403: "bad", 413: "bad", 404: "referral"}.get(status_code, "later")  # 429: later
    return _page(settings, locale, mode, None, status_code=status_code)
