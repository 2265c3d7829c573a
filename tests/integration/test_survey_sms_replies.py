"""Survey answers by SMS/WhatsApp reply, with Twilio's real signatures: the survey
is sent by the real pipeline (orders in, journeys run on a simulated clock, the sandbox channel
sends), the reply comes in at ``POST /webhooks/twilio/inbound``, and the answer reaches the
inbox and, once processed, ``survey_responses``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from aftersale.config import Settings
from aftersale.db.models import InboundMessage, InboxEvent, Message, SurveyResponse
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.runtime import Runtime
from aftersale.surveys.sms_answers import TEXTS_FILE, check_reply_texts, load_reply_texts
from aftersale.web.app import create_app
from aftersale.webhooks import twilio as tw
from tests.conftest import START
from tests.factories import days, follow, placed
from tests.integration.helpers import feed, in_process, run_to, sent, treated_customer

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://shop.example.com"
PHONE = "+905321234567"
ACCOUNT = "AC" + "0" * 32
# No e-mail consent, so onboarding's CSAT check-in and NPS question both go out by SMS.
SMS_ONLY = {"email": False, "sms": True, "whatsapp": True}
CLARIFY = {
    "en": "Sorry, we could not read that. Please reply with a number from 0 to 10.",
    "tr": "Yanıtınızı okuyamadık. Lütfen 0 ile 10 arasında bir sayı yazın.",
    "pl": "Nie udało się odczytać odpowiedzi. Odpisz liczbą od 0 do 10.",
}
THANKS = {"en": "Thank you for your answer!", "tr": "Yanıtınız için teşekkürler!",
          "pl": "Dziękujemy za odpowiedź!"}


@pytest.fixture
def twilio_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"twilio_auth_token": SecretStr(TOKEN)})


@pytest.fixture
def web(twilio_settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(create_app(twilio_settings, rt)) as client:
        yield client


def send_surveys(rt: Runtime, locale: str = "tr") -> tuple[str, Message, Message]:
    """A first-time drone buyer (not in the holdout) goes through onboarding: the CSAT check-in
    and, two weeks later, the NPS question, both by SMS. (customer id, CSAT, NPS)."""
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid, locale=locale, consent=SMS_ONLY),
         follow("shipped", "o-1", START, cid), follow("delivered", "o-1", START + days(2), cid))
    run_to(rt, rt.definitions(), START + days(30), tick=days(1))
    surveys = {m.template: m for m in sent(rt, cid) if m.template in ("csat_checkin", "nps_survey")}
    csat, nps = surveys["csat_checkin"], surveys["nps_survey"]
    assert (csat.channel, nps.channel) == ("sms", "sms") and nps.recipient == PHONE
    assert csat.sent_at is not None and nps.sent_at is not None and csat.sent_at < nps.sent_at
    return cid, csat, nps


@pytest.fixture
def nps(rt: Runtime) -> Message:
    return send_surveys(rt)[2]


def reply(web: TestClient, body: str, sid: str, sender: str = PHONE) -> str | None:
    """Post a reply the way Twilio does; the text of the TwiML <Message>, if any."""
    params = {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "MessageSid": sid,
              "SmsMessageSid": sid, "SmsSid": sid, "From": sender, "To": "+15017122661",
              "Body": body, "NumMedia": "0", "NumSegments": "1"}
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + tw.INBOUND_PATH, params)
    response = web.post(tw.INBOUND_PATH, data=params,
                        headers={tw.SIGNATURE_HEADER: signature})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    messages = root.findall("Message")
    assert len(messages) == len(root) <= 1
    return messages[0].text if messages else None


def answers(rt: Runtime) -> list[dict]:
    """The survey.responded events in the inbox, oldest first."""
    with rt.factory() as session:
        rows = session.scalars(select(InboxEvent).where(InboxEvent.type == "survey.responded")
                               .order_by(InboxEvent.seq))
        return [{"source": r.source, **r.payload["survey"]} for r in rows]


def responses(rt: Runtime) -> list[SurveyResponse]:
    with rt.factory() as session:
        return list(session.scalars(select(SurveyResponse).order_by(SurveyResponse.id)))


def clarified_at(rt: Runtime, message_id: str) -> datetime | None:
    with rt.factory() as session:
        return session.get(Message, message_id).clarified_at  # type: ignore[union-attr]


def test_a_score_with_a_comment_answers_the_latest_sms_survey(
        web: TestClient, rt: Runtime) -> None:
    cid, csat, nps = send_surveys(rt)
    answered_at = rt.now()
    assert reply(web, "9 great service", "SM-1") == THANKS["tr"]
    [answer] = answers(rt)
    assert answer == {"kind": "nps", "score": 9, "comment": "great service", "source": "sms",
                      "message_id": nps.id, "order_id": "o-1"}
    drain_inbox(rt, rt.definitions())
    [response] = responses(rt)
    assert (response.customer_id, response.message_id, response.kind, response.score,
            response.comment, response.source, response.order_id) == (
        cid, nps.id, "nps", 9, "great service", "sms", "o-1")
    assert response.responded_at == answered_at
    assert clarified_at(rt, nps.id) is None and clarified_at(rt, csat.id) is None


@pytest.mark.parametrize(("locale", "body", "score"), [
    ("tr", "dokuz", 9), ("tr", "DÖRT", 4), ("pl", "dziewięć", 9), ("en", "nine", 9),
])
def test_number_words_are_read_and_thanked_in_the_customers_language(
        web: TestClient, rt: Runtime, locale: str, body: str, score: int) -> None:
    _, _, nps = send_surveys(rt, locale)
    assert reply(web, body, "SM-1") == THANKS[locale]
    assert [(a["score"], a.get("comment"), a["message_id"]) for a in answers(rt)] == [
        (score, None, nps.id)]


@pytest.mark.parametrize("locale", ["en", "tr", "pl"])
def test_an_unreadable_reply_is_clarified_once_and_then_never_again(
        web: TestClient, rt: Runtime, locale: str) -> None:
    _, _, nps = send_surveys(rt, locale)
    assert reply(web, "hmm, it depends", "SM-1") == CLARIFY[locale]
    assert clarified_at(rt, nps.id) == rt.now()
    assert reply(web, "7 or 8?", "SM-2") is None  # an auto-responder cannot loop with us
    assert reply(web, "👍", "SM-3") is None
    assert answers(rt) == []
    # A readable answer after the clarification is still taken.
    assert reply(web, "8", "SM-4") == THANKS[locale]
    assert [a["score"] for a in answers(rt)] == [8]


def test_a_second_readable_reply_changes_the_answer(web: TestClient, rt: Runtime,
                                                    nps: Message) -> None:
    reply(web, "6", "SM-1")
    drain_inbox(rt, rt.definitions())
    reply(web, "8, sorry, I meant 8", "SM-2")
    drain_inbox(rt, rt.definitions())
    [response] = responses(rt)
    assert (response.message_id, response.score, response.comment) == (
        nps.id, 8, "sorry, I meant 8")


def test_after_an_answer_an_unreadable_reply_is_only_kept(web: TestClient, rt: Runtime,
                                                          nps: Message) -> None:
    reply(web, "10", "SM-1")
    assert reply(web, "Teşekkürler!", "SM-2") is None  # before processing
    drain_inbox(rt, rt.definitions())
    assert reply(web, "Çok teşekkürler", "SM-3") is None  # and after
    assert clarified_at(rt, nps.id) is None
    assert [a["score"] for a in answers(rt)] == [10]
    with rt.factory() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 3


def test_a_repeated_message_sid_records_once_and_clarifies_once(
        web: TestClient, rt: Runtime, nps: Message) -> None:
    assert reply(web, "9 harika", "SM-1") == THANKS["tr"]
    assert reply(web, "9 harika", "SM-1") is None  # Twilio retrying the same message
    assert [a["score"] for a in answers(rt)] == [9]
    assert reply(web, "???", "SM-2") is None  # answered already: nothing to clarify
    assert reply(web, "???", "SM-2") is None
    drain_inbox(rt, rt.definitions())
    assert len(responses(rt)) == 1


def test_a_repeated_unreadable_message_sid_clarifies_once(web: TestClient, rt: Runtime,
                                                          nps: Message) -> None:
    assert reply(web, "hmm", "SM-1") == CLARIFY["tr"]
    assert reply(web, "hmm", "SM-1") is None
    assert answers(rt) == []


@pytest.mark.parametrize("body", ["11", "7.5", "", "😀😀"])
def test_out_of_scale_decimal_empty_and_emoji_replies_are_clarified(
        web: TestClient, rt: Runtime, nps: Message, body: str) -> None:
    assert reply(web, body, "SM-1") == CLARIFY["tr"]
    assert answers(rt) == []


def test_html_and_a_very_long_comment_are_kept_as_text_and_cut(
        web: TestClient, rt: Runtime, nps: Message) -> None:
    comment = "<b>Great</b> <script>alert(1)</script> & more " + "x" * 1600
    assert reply(web, f"9 {comment}", "SM-1") == THANKS["tr"]
    [answer] = answers(rt)
    assert answer["comment"].startswith("<b>Great</b> <script>alert(1)</script> & more xxx")
    assert len(answer["comment"]) <= 2000  # COMMENT_LIMIT; an SMS tops out at 1600 anyway
    long = "y" * 3000
    reply(web, f"8 {long}", "SM-2")
    assert len(answers(rt)[-1]["comment"]) == 2000 and answers(rt)[-1]["comment"].endswith("…")


def test_without_an_open_survey_a_reply_gets_nothing(web: TestClient, rt: Runtime) -> None:
    _, _, nps = send_surveys(rt)
    assert reply(web, "9", "SM-1", sender="+48601234567") is None  # not a customer
    assert reply(web, "hmm", "SM-2", sender=f"whatsapp:{PHONE}") is None  # asked by SMS
    assert clarified_at(rt, nps.id) is None and answers(rt) == []


def test_a_survey_older_than_survey_days_is_closed(web: TestClient, rt: Runtime, nps: Message,
                                                  twilio_settings: Settings) -> None:
    assert nps.sent_at is not None
    rt.clock.set(nps.sent_at + timedelta(days=twilio_settings.survey_days, hours=1))  # type: ignore[attr-defined]
    assert reply(web, "9", "SM-1") is None
    assert reply(web, "hmm", "SM-2") is None
    assert answers(rt) == []


def test_a_customer_with_no_survey_sent_gets_nothing(web: TestClient, rt: Runtime) -> None:
    feed(rt, placed("o-1", START, "c-9", consent=SMS_ONLY))
    run_to(rt, rt.definitions(), START)
    assert reply(web, "hmm", "SM-1") is None
    assert reply(web, "9", "SM-2") is None
    assert answers(rt) == []


def test_stop_help_and_start_are_not_survey_replies(web: TestClient, rt: Runtime,
                                                    nps: Message) -> None:
    assert reply(web, "STOP", "SM-1") is None
    assert reply(web, "START", "SM-2") is None
    help_text = reply(web, "HELP", "SM-3")
    assert help_text is not None and help_text.startswith("Atlas Store:")
    assert clarified_at(rt, nps.id) is None and answers(rt) == []


def test_a_whatsapp_survey_is_answered_on_whatsapp_on_its_own_scale(web: TestClient,
                                                                    rt: Runtime) -> None:
    """The customer wrote to us on WhatsApp half a day before the CSAT check-in, so it goes out
    as free-form WhatsApp text ([email, whatsapp, sms], no e-mail consent); the reply on
    WhatsApp answers it, on the CSAT scale."""
    cid = treated_customer("onboarding", 10)
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, cid, locale="pl", consent=SMS_ONLY),
         follow("shipped", "o-1", START, cid), follow("delivered", "o-1", START + days(2), cid))
    run_to(rt, definitions, START + days(8.5), tick=days(1) / 2)
    assert reply(web, "Dzień dobry!", "SM-0", sender=f"whatsapp:{PHONE}") is None
    # the check-in is due 7 days after the delivery, at day 9
    run_to(rt, definitions, START + days(9), tick=days(1) / 2)
    [csat] = [m for m in sent(rt, cid) if m.template == "csat_checkin"]
    assert csat.channel == "whatsapp"
    assert reply(web, "9", "SM-1") is None  # by SMS: that survey was not asked there
    assert reply(web, "9", "SM-2", sender=f"whatsapp:{PHONE}") == (
        "Nie udało się odczytać odpowiedzi. Odpisz liczbą od 1 do 5.")  # CSAT is 1-5
    assert reply(web, "cztery, szybka dostawa", "SM-3",
                 sender=f"whatsapp:{PHONE}") == THANKS["pl"]
    assert answers(rt) == [{"kind": "csat", "score": 4, "comment": "szybka dostawa",
                            "source": "whatsapp", "message_id": csat.id, "order_id": "o-1"}]


def test_the_shop_can_edit_the_texts_or_turn_the_thank_you_off(
        web: TestClient, rt: Runtime, nps: Message, twilio_settings: Settings) -> None:
    path = twilio_settings.content_dir / TEXTS_FILE
    path.write_text(path.read_text(encoding="utf-8").replace(
        'thanks: "Yanıtınız için teşekkürler!"', 'thanks: ""').replace(
        "Lütfen {low} ile {high} arasında", "Lütfen {low}-{high} arası"), encoding="utf-8")
    assert reply(web, "hmm", "SM-1") == "Yanıtınızı okuyamadık. Lütfen 0-10 arası bir sayı yazın."
    assert reply(web, "9", "SM-2") is None  # answered, without a thank-you
    assert [a["score"] for a in answers(rt)] == [9]
    assert check_reply_texts(twilio_settings.content_dir) == []


def test_validate_names_a_broken_reply_text(settings: Settings) -> None:
    path = settings.content_dir / TEXTS_FILE
    assert check_reply_texts(settings.content_dir) == []
    path.write_text('en:\n  clarify: "Reply {lo} to {high}"\n  thanks: "Thanks"\n  thank: "x"\n',
                    encoding="utf-8")
    assert [(p.line, p.message) for p in check_reply_texts(settings.content_dir)] == [
        (2, "unknown placeholder {lo}"), (4, "unknown text 'thank'")]
    # A text that does not format is replaced by the built-in one, never sent broken.
    texts = load_reply_texts(settings.content_dir)
    assert texts.text("clarify", "en", "nps") == CLARIFY["en"]
