"""Mail scanners fetch every link of a survey e-mail: their fetches are suspect marks, never
answers; a person's click is. Real HTTP against the survey pages, on both databases, with
survey e-mails the real journeys sent through the sandbox channel."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from aftersale.config import Settings
from aftersale.db.models import AlertRecord, InboxEvent, SandboxOutbox, SurveyClick, SurveyResponse
from aftersale.metrics.compute import compute
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.runtime import Runtime
from aftersale.surveys.sms_answers import survey_kinds
from tests.integration.helpers import run_to, sent, serve
from tests.integration.test_survey_pages import (
    FIREFOX,
    PUBLIC,
    responses,
    settle,
    survey_app,
    survey_clicks,
    survey_email,
)

# A person's browser (these tests keep a real server: scanners send their requests at once,
# and the click throttle goes by the client's address).
browser = httpx.Client(headers={"User-Agent": FIREFOX}, timeout=30)
# What Safe Links-style scanners send: a desktop browser's User-Agent, every link at once.
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")


@pytest.fixture
def base_url(settings: Settings, rt: Runtime) -> Iterator[str]:
    with serve(survey_app(settings, rt)) as url:
        yield url


def every_link(rt: Runtime, message_id: str, base_url: str) -> list[str]:
    """Every link of the e-mail to our survey pages, the hidden one included."""
    with rt.factory() as session:
        html = session.scalars(select(SandboxOutbox.body_html)
                               .where(SandboxOutbox.message_id == message_id)).one()
    found = re.findall(r'href="https://shop\.example\.com(/s/[^"]+)"', html or "")
    return [base_url + path.replace("&amp;", "&") for path in found]


def scan(links: list[str], method: str = "GET") -> list[httpx.Response]:
    """A scanner: every link at once, from one address."""
    with httpx.Client(headers={"User-Agent": CHROME}, timeout=30) as scanner, \
            ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda url: scanner.request(method, url), links))


def metrics_json(rt: Runtime, end: datetime) -> str:
    with rt.factory() as session:
        report = compute(session, None, end, survey_kinds(rt.definitions().content), as_of=end)
    return report.to_json()


def count(rt: Runtime, model: type) -> int:
    with rt.factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize("after_send", [timedelta(seconds=1), timedelta(seconds=45)],
                         ids=["within-2s-of-the-send", "later-a-burst"])
def test_a_scanner_fetching_every_link_answers_nothing_and_a_person_a_minute_later_does(
        rt: Runtime, base_url: str, after_send: timedelta) -> None:
    message = survey_email(rt, "nps", "en")
    assert message.sent_at is not None
    links = every_link(rt, message.id, base_url)
    assert len(links) == 12 and sum("hp=1" in link for link in links) == 1  # 0-10 and the honeypot
    measured_at = message.sent_at + after_send + timedelta(seconds=30)
    before = metrics_json(rt, measured_at)
    inbox_before = count(rt, InboxEvent)

    # the scanner: every link, GET and HEAD, at once (within 2 s of the send, or a burst later)
    rt.clock.set(message.sent_at + after_send)  # type: ignore[attr-defined]
    pages = scan(links) + scan(links, "HEAD")
    assert {page.status_code for page in pages} == {200}  # the same pages a person gets
    assert all("Thank you!" in page.text for page in pages[:12] if "score=" in str(page.url))
    settle(rt)
    drain_inbox(rt, rt.definitions())

    assert count(rt, InboxEvent) == inbox_before  # no answer reached the inbox
    assert count(rt, SurveyResponse) == 0
    marks = survey_clicks(rt, message.id)
    assert marks and {verdict for _, verdict, _ in marks} == {"suspect"}
    assert {score for score, _, _ in marks} == {None, *range(11)}
    assert metrics_json(rt, measured_at) == before  # the scanner changed no metric

    # a person, a minute later: one click, one answer
    rt.clock.set(message.sent_at + after_send + timedelta(minutes=1))  # type: ignore[attr-defined]
    page = browser.get(next(link for link in links if link.endswith("score=9")))
    assert page.status_code == 200 and "Thank you!" in page.text
    [response] = responses(rt)
    assert (response.message_id, response.score, response.source) == (message.id, 9, "email")
    assert survey_clicks(rt, message.id)[-1] == (9, "answer", None)

    # the journey resumed on the person's answer: a promoter's referral invite, and no alert
    run_to(rt, rt.definitions(), rt.now() + timedelta(days=1))
    assert count(rt, AlertRecord) == 0
    templates = [m.template for m in sent(rt, message.customer_id)]
    assert "referral_invite" in templates and "detractor_followup" not in templates


def test_a_scanners_detractor_scores_raise_no_alert_but_a_persons_does(
        rt: Runtime, base_url: str) -> None:
    message = survey_email(rt, "nps", "en", prefix="d")
    assert message.sent_at is not None
    links = every_link(rt, message.id, base_url)
    rt.clock.set(message.sent_at + timedelta(seconds=2))  # type: ignore[attr-defined]
    scan(links)
    run_to(rt, rt.definitions(), rt.now() + timedelta(hours=2))
    assert count(rt, AlertRecord) == 0
    rt.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    assert browser.get(next(u for u in links if u.endswith("score=2"))).status_code == 200
    settle(rt)
    run_to(rt, rt.definitions(), rt.now() + timedelta(hours=2))
    with rt.factory() as session:
        [alert] = session.scalars(select(AlertRecord)).all()
    assert (alert.kind, alert.details["answer"]["score"]) == ("detractor", 2)


def test_a_comment_confirms_a_click_that_came_too_soon(rt: Runtime, base_url: str) -> None:
    """A person quick enough to look like a scanner: the comment they send is theirs."""
    message = survey_email(rt, "nps", "en", prefix="q")
    assert message.sent_at is not None
    link = next(u for u in every_link(rt, message.id, base_url) if u.endswith("score=6"))
    rt.clock.set(message.sent_at + timedelta(seconds=5))  # type: ignore[attr-defined]
    page = browser.get(link)
    assert page.status_code == 200 and "<textarea" in page.text  # the same thank-you page
    assert responses(rt) == []
    assert survey_clicks(rt, message.id) == [(6, "suspect", "too_soon")]
    page = browser.post(link, data={"score": "6", "comment": "The box was crushed"})
    assert page.status_code == 200
    [response] = responses(rt)
    assert (response.score, response.comment) == (6, "The box was crushed")


def test_a_double_click_is_one_answer(rt: Runtime, base_url: str) -> None:
    message = survey_email(rt, "csat", "en", prefix="w")
    link = next(u for u in every_link(rt, message.id, base_url) if u.endswith("score=5"))
    assert browser.get(link).status_code == 200
    assert browser.get(link).status_code == 200
    [response] = responses(rt)
    assert response.score == 5
    assert survey_clicks(rt, message.id) == [(5, "answer", None)]
    with rt.factory() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent)
                              .where(InboxEvent.type == "survey.responded")) == 1


def test_a_person_correcting_a_mis_tap_at_once_keeps_the_second_score(
        rt: Runtime, base_url: str) -> None:
    """7, then 8 straight after (a phone's 0-10 grid): the answer is 8, not lost as a burst."""
    message = survey_email(rt, "nps", "en", prefix="m")
    links = every_link(rt, message.id, base_url)
    for score in (7, 8):
        link = next(u for u in links if u.endswith(f"score={score}"))
        assert browser.get(link).status_code == 200
    [response] = responses(rt)
    assert response.score == 8
    assert sorted(survey_clicks(rt, message.id)) == [(7, "answer", None), (8, "answer", None)]


def test_a_scanner_hammering_a_link_is_slowed_down_alone_and_leaves_only_its_marks(
        settings: Settings, rt: Runtime, base_url: str) -> None:
    hammered = survey_email(rt, "nps", "en", prefix="h")
    other = survey_email(rt, "nps", "en", prefix="o")
    target = next(u for u in every_link(rt, hammered.id, base_url) if u.endswith("score=0"))
    rt.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    inbox_before = count(rt, InboxEvent)
    statuses = []
    with httpx.Client(headers={"User-Agent": "python-requests/2.32.3"}, timeout=30) as scanner:
        for n in range(300):
            url = target.replace("score=0", f"score={n % 11}")
            page = scanner.get(url)
            statuses.append(page.status_code)
            if page.status_code == 200:
                assert "Thank you!" in page.text  # the same page as anyone
            else:
                assert page.headers["retry-after"].isdigit()
    assert set(statuses) == {200, 429}
    assert statuses.count(200) >= settings.survey_rate_burst
    # another customer, from another address, is not slowed down by it
    other_link = next(u for u in every_link(rt, other.id, base_url) if u.endswith("score=10"))
    with httpx.Client(headers={"User-Agent": FIREFOX}, timeout=30,
                      transport=httpx.HTTPTransport(local_address="127.0.0.2")) as person:
        assert person.get(other_link).status_code == 200
    [response] = responses(rt)
    assert (response.message_id, response.score) == (other.id, 10)
    # the scanner wrote one mark per score and reason, nothing else
    marks = survey_clicks(rt, hammered.id)
    assert {verdict for _, verdict, _ in marks} == {"suspect"}
    assert sorted(score for score, _, _ in marks) == list(range(11))
    assert count(rt, InboxEvent) == inbox_before + 1  # the other customer's answer only


def test_the_honeypot_is_hidden_from_people_and_absent_from_the_text_part(
        rt: Runtime, base_url: str) -> None:
    message = survey_email(rt, "ces", "tr", prefix="p")
    with rt.factory() as session:
        outbox = session.scalars(select(SandboxOutbox)
                                 .where(SandboxOutbox.message_id == message.id)).one()
    [anchor] = re.findall(r'<a href="https://shop\.example\.com/s/[^"]+\?hp=1"[^>]*>[^<]*</a>',
                          outbox.body_html or "")
    assert 'aria-hidden="true"' in anchor and 'tabindex="-1"' in anchor
    assert "display:none" in anchor and anchor.endswith("></a>")  # nothing to read or click
    assert "hp=1" not in outbox.body_text
    assert PUBLIC + "/s/" in outbox.body_text  # the text part keeps its score links
    with rt.factory() as session:
        assert session.scalar(select(func.count()).select_from(SurveyClick)) == 0


def test_a_burst_partner_slowed_by_the_storm_still_finds_the_first_click_pending(
        rt: Runtime) -> None:
    """A scanner's first click looks like a person's; its partners, stamped within the burst
    window, reach the database only later (queued behind the storm's own requests). A settle
    in between (the web process's timer, a process-events run) must not have made the first
    one an answer already."""
    from aftersale.core.scanners import BURST_SECONDS, Click
    from aftersale.surveys.answers import survey_message
    from aftersale.surveys.clicks import record_click, settle_clicks

    message = survey_email(rt, "nps", "en", prefix="r")
    first = rt.now() + timedelta(minutes=5)
    headers = {"user-agent": CHROME}

    def click(at: datetime, score: int) -> str:
        with rt.factory() as session, session.begin():
            survey = survey_message(session, message.id, "nps")
            assert survey is not None
            return record_click(session, survey, Click(at=at, score=score, headers=headers,
                                                       sent_at=message.sent_at))

    assert click(first, 0) == "pending"
    with rt.factory() as session, session.begin():  # half a second after the burst window
        assert settle_clicks(session, first + timedelta(seconds=BURST_SECONDS + 0.5)) == 0
    click(first + timedelta(seconds=2.5), 1)  # the partners, committed only now
    click(first + timedelta(seconds=2.9), 2)
    with rt.factory() as session, session.begin():
        assert settle_clicks(session, first + timedelta(minutes=1)) == 0
    assert [v for _, v, _ in survey_clicks(rt, message.id)] == ["suspect"] * 3
    assert count(rt, SurveyResponse) == 0
