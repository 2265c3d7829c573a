"""The rules that tell a person's survey click from a mail scanner's, at their thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aftersale.core.scanners import (
    BURST_SECONDS,
    SCANNER_SECONDS,
    Click,
    Seen,
    burst_partners,
    is_scanner_agent,
    suspect_reason,
)
from aftersale.web.throttle import ClientBuckets

SENT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LATER = SENT + timedelta(hours=2)
FIREFOX = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}


def person(**changes: object) -> Click:
    values: dict[str, object] = {"at": LATER, "score": 9, "headers": FIREFOX, "sent_at": SENT}
    return Click(**(values | changes))  # type: ignore[arg-type]


def test_a_person_clicking_one_score_hours_after_the_send_is_not_suspect() -> None:
    assert suspect_reason(person()) is None


def test_the_hidden_honeypot_link_is_always_a_machine() -> None:
    assert suspect_reason(person(honeypot=True, score=None)) == "honeypot"


@pytest.mark.parametrize("headers", [{"sec-purpose": "prefetch;prerender"}, {"purpose": "prefetch"},
                                     {"x-purpose": "preview"}, {"x-moz": "prefetch"}])
def test_head_and_prefetch_requests_are_suspect(headers: dict[str, str]) -> None:
    assert suspect_reason(person(method="HEAD")) == "prefetch"
    assert suspect_reason(person(headers=FIREFOX | headers)) == "prefetch"


@pytest.mark.parametrize("agent", [
    "Mozilla/5.0 (compatible; Barracuda Sentinel)", "Mimecast URL Protect", "python-requests/2.32.3",
    "Microsoft Office Existence Discovery", "Mozilla/5.0 (compatible; bingbot/2.0)", "curl/8.5.0", "",
])
def test_scanner_user_agents_and_a_missing_one_are_suspect(agent: str) -> None:
    assert suspect_reason(person(headers={"user-agent": agent})) == "scanner_agent"
    assert suspect_reason(person(headers={})) == "scanner_agent"


def test_a_provider_report_without_a_user_agent_tells_nothing_about_it() -> None:
    assert suspect_reason(Click(at=LATER, score=1)) is None
    assert suspect_reason(Click(at=LATER, score=1, user_agent="Mimecast")) == "scanner_agent"
    assert not is_scanner_agent(FIREFOX["user-agent"])


def test_a_click_within_the_scanner_window_of_the_send_is_too_soon() -> None:
    edge = SENT + timedelta(seconds=SCANNER_SECONDS)
    assert suspect_reason(person(at=edge - timedelta(milliseconds=1))) == "too_soon"
    assert suspect_reason(person(at=edge)) is None
    # a provider's click dated before our send: the clocks differ, it says nothing
    assert suspect_reason(person(at=SENT - timedelta(seconds=1))) is None


def test_three_scores_within_the_burst_window_are_a_burst_on_every_side() -> None:
    window = timedelta(seconds=BURST_SECONDS)
    earlier = [Seen(LATER - window, 3, key=1), Seen(LATER - timedelta(seconds=1), 4, key=2)]
    assert suspect_reason(person(), earlier) == "burst"
    assert burst_partners(person(), earlier) == earlier
    # one of them just outside the window: two scores, a correction, not a burst
    outside = [Seen(LATER - window - timedelta(milliseconds=1), 3), earlier[1]]
    assert suspect_reason(person(), outside) is None


def test_a_person_correcting_a_mis_tap_at_once_is_not_a_burst() -> None:
    """7, then 8 a second later on the thank-you page's own links: two answers in order (the
    second changes the first), not a scanner."""
    assert suspect_reason(person(score=8), [Seen(LATER - timedelta(seconds=1), 7)]) is None
    assert burst_partners(person(score=8), [Seen(LATER - timedelta(seconds=1), 7)]) == []


def test_the_same_score_twice_is_a_double_click_but_near_the_honeypot_it_is_a_burst() -> None:
    assert suspect_reason(person(), [Seen(LATER, 9)]) is None
    assert suspect_reason(person(), [Seen(LATER + timedelta(seconds=1), None)]) == "burst"


def test_the_bucket_slows_one_address_and_leaves_the_others_alone() -> None:
    now = [0.0]
    buckets = ClientBuckets(rate=2, burst=3, clock=lambda: now[0])
    assert [buckets.wait("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    assert buckets.wait("10.0.0.1") == pytest.approx(0.5)
    assert buckets.wait("10.0.0.2") == 0  # another customer
    now[0] += 0.5  # refilled at 2 a second
    assert buckets.wait("10.0.0.1") == 0
    assert buckets.wait("10.0.0.1") > 0


def test_the_bucket_forgets_the_longest_idle_address_first() -> None:
    now = [0.0]
    buckets = ClientBuckets(rate=1, burst=1, clients=2, clock=lambda: now[0])
    buckets.wait("a")
    buckets.wait("b")
    buckets.wait("c")  # "a" is forgotten: a full bucket again
    assert buckets.wait("a") == 0
    assert buckets.wait("c") > 0
