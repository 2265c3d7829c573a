"""Tracking page links: their own purpose (a tracking token is no survey or unsubscribe token and
the reverse), what they carry, the page's claims check, the problem rule, the texts in every
language, and the carrier's URL swapped in a message's context."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aftersale.core.links import LEGACY_PURPOSES, BadToken, Links, Purpose, Signer
from aftersale.core.shipments import PROBLEM_STATUSES, ShipmentStatus
from aftersale.pipeline.tracking_links import ShipmentRef, with_tracking_url
from aftersale.web.pages import LANGUAGES
from aftersale.web.tracking import LATE, STALLED, Claims, _claims, problem_of, texts

SIGNER = Signer(b"test-secret-key")
LINKS = Links("https://shop.example.com/", SIGNER)
DAY = date(2026, 3, 2)
TRACKING = {"s": "shopify:1001", "c": "c-1", "d": "2026-03-02", "m": "msg-1"}


def token_of(url: str, prefix: str) -> str:
    match = re.fullmatch(rf"https://shop\.example\.com/{prefix}/([A-Za-z0-9_.-]+)(\?.*)?", url)
    assert match, url
    return match.group(1)


def test_a_tracking_link_carries_shipment_customer_day_and_message():
    url = LINKS.tracking("shopify:1001", "c-1", "msg-1", DAY)
    assert SIGNER.verify(Purpose.TRACKING, token_of(url, "t")) == TRACKING
    bare = LINKS.tracking("shopify:1001", "c-1", None, DAY)
    assert SIGNER.verify(Purpose.TRACKING, token_of(bare, "t")) == {
        "s": "shopify:1001", "c": "c-1", "d": "2026-03-02"}


def test_the_tracking_token_is_pinned():
    # A salt or serializer setting that changed would break every tracking link already sent;
    # the value is HMAC-SHA256(HMAC-SHA256(key, salt), body), computed apart from itsdangerous.
    token = SIGNER.sign(Purpose.TRACKING, TRACKING)
    assert token == ("eyJjIjoiYy0xIiwiZCI6IjIwMjYtMDMtMDIiLCJtIjoibXNnLTEiLCJzIjoic2hvcGlmeToxMDAxIn0"
                     ".IVeoC4s7FIdbLExIRwWwnovzQp4XdOvolkHU00tLeAo")


@pytest.mark.parametrize("other", [Purpose.SURVEY, Purpose.UNSUBSCRIBE])
def test_a_tracking_token_is_no_other_purposes_token_and_the_reverse(other):
    # the same payload under each purpose: only the purpose it was signed for accepts it
    for payload in (TRACKING, {"m": "msg-1", "c": "c-1", "k": "nps"},
                    {"m": "msg-1", "c": "c-1", "ch": "email"}):
        tracking, theirs = SIGNER.sign(Purpose.TRACKING, payload), SIGNER.sign(other, payload)
        assert tracking != theirs
        with pytest.raises(BadToken, match="signature does not match"):
            SIGNER.verify(other, tracking)
        with pytest.raises(BadToken, match="signature does not match"):
            SIGNER.verify(Purpose.TRACKING, theirs)


def test_real_survey_and_unsubscribe_links_do_not_open_the_tracking_page():
    for url, prefix in ((LINKS.survey("msg-1", "c-1", "nps", 9), "s"),
                        (LINKS.unsubscribe("msg-1", "c-1", "email"), "u")):
        assert _claims(SIGNER, token_of(url, prefix)) == 403
    tracking = token_of(LINKS.tracking("shopify:1001", "c-1", "msg-1", DAY), "t")
    assert _claims(SIGNER, tracking) == Claims("shopify:1001", "c-1", DAY, "msg-1")


def test_the_format_before_purposes_never_opens_the_tracking_page():
    """Survey and unsubscribe links of that format still verify for their purposes; no tracking
    link was ever sent in it, so a body signed with the bare key is refused."""
    assert Purpose.TRACKING not in LEGACY_PURPOSES
    body = base64.urlsafe_b64encode(json.dumps(TRACKING, separators=(",", ":"), sort_keys=True)
                                    .encode()).rstrip(b"=").decode()
    mac = base64.urlsafe_b64encode(hmac.new(SIGNER.secret, body.encode(), hashlib.sha256)
                                   .digest()).rstrip(b"=").decode()
    legacy = f"{body}.{mac}"
    assert SIGNER.verify(Purpose.SURVEY, legacy) == TRACKING  # what that format was
    with pytest.raises(BadToken):
        SIGNER.verify(Purpose.TRACKING, legacy)


def test_a_tracking_token_signed_under_the_previous_key_opens_after_rotation():
    rotated = Signer(b"new-secret-key", previous=b"test-secret-key")
    assert rotated.verify(Purpose.TRACKING, SIGNER.sign(Purpose.TRACKING, TRACKING)) == TRACKING
    with pytest.raises(BadToken):
        Signer(b"another-key").verify(Purpose.TRACKING, SIGNER.sign(Purpose.TRACKING, TRACKING))


@pytest.mark.parametrize("payload", [
    {"c": "c-1", "d": "2026-03-02"},  # no shipment
    {"s": "shopify:1", "d": "2026-03-02"},  # no customer
    {"s": "shopify:1", "c": "c-1"},  # no day
    {"s": "shopify:1", "c": "c-1", "d": "yesterday"},
    {"s": "shopify:1", "c": "c-1", "d": 20260302},
    {"s": "", "c": "c-1", "d": "2026-03-02"},
    {"s": "shopify:1", "c": "c-1\x00", "d": "2026-03-02"},
    {"s": "shopify:1", "c": "c-1", "d": "2026-03-02", "m": 7},
    {"s": ["shopify:1"], "c": "c-1", "d": "2026-03-02"},
])
def test_a_signed_token_with_wrong_claims_is_refused(payload):
    assert _claims(SIGNER, SIGNER.sign(Purpose.TRACKING, payload)) == 403


def test_tampered_and_unsigned_tokens_are_refused_and_no_key_is_503():
    token = SIGNER.sign(Purpose.TRACKING, TRACKING)
    assert _claims(SIGNER, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) == 403
    assert _claims(SIGNER, "not-a-token") == 403
    assert _claims(Signer(b"another-key"), token) == 403
    assert _claims(None, token) == 503


# --- what counts as a problem ----------------------------------------------------------------

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
IST = ZoneInfo("Europe/Istanbul")


@pytest.mark.parametrize("status", sorted(PROBLEM_STATUSES))
def test_a_problem_status_is_the_problem(status):
    assert problem_of(status, None, None, None, None, NOW, UTC) == status
    # stalled and late are older news: the carrier's own word comes first
    assert problem_of(status, None, NOW, NOW, NOW - timedelta(days=3), NOW, UTC) == status


def test_stalled_then_late_then_nothing():
    moving = ShipmentStatus.IN_TRANSIT
    assert problem_of(moving, None, NOW, None, None, NOW, UTC) == STALLED
    assert problem_of(moving, None, None, NOW - timedelta(days=1), None, NOW, UTC) == LATE
    assert problem_of(moving, None, None, None, None, NOW, UTC) is None
    assert problem_of(ShipmentStatus.READY_FOR_PICKUP, None, None, None, None, NOW, UTC) is None


def test_late_is_judged_by_the_customers_calendar_day():
    estimate = datetime(2026, 3, 9, 22, 30, tzinfo=UTC)  # 10 March 01:30 in Istanbul
    assert problem_of("in_transit", None, None, None, estimate, NOW, UTC) == LATE
    assert problem_of("in_transit", None, None, None, estimate, NOW, IST) is None


def test_a_delivered_parcel_has_no_problem_left():
    assert problem_of("delivered", NOW, NOW, NOW, NOW - timedelta(days=5), NOW, UTC) is None
    assert problem_of("exception", NOW, None, None, None, NOW, UTC) is None


# --- texts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_status_and_problem_has_its_texts_in_every_language(lang):
    t = texts(lang)
    assert set(t) == set(texts("en")), "every language has every text"
    assert set(t["labels"]) == {s.value for s in ShipmentStatus}
    assert set(t["headlines"]) == {s.value for s in ShipmentStatus} | {STALLED, LATE}
    assert set(PROBLEM_STATUSES) | {STALLED, LATE} <= set(t["advice"])
    for group in ("labels", "headlines", "advice"):
        assert all(isinstance(v, str) and v.strip() for v in t[group].values())
    if lang != "en":  # translated, not copied
        assert t["headlines"]["in_transit"] != texts("en")["headlines"]["in_transit"]
    assert "{number}" in t["order"] and "{date}" in t["was"] and "{carrier}" in t["carrier_link"]


# --- the carrier's URL swapped in a message's context -------------------------------------------

REF = ShipmentRef("shopify:1001", "o-1", "Yurtiçi Kargo", "YK1", NOW)
PAGE = "https://shop.example.com/t/token"


def test_the_orders_tracking_url_becomes_the_page_and_the_rest_stays():
    carrier = {"carrier": "Yurtiçi Kargo", "number": "YK1", "url": "https://track.example/YK1"}
    order = {"id": "o-1", "tracking": carrier}
    context = {"order": order, "shipment": {"id": "shopify:1001", "tracking_url": carrier["url"],
                                            "status": "in_transit"}}
    with_tracking_url(context, PAGE, REF)
    assert context["order"]["tracking"] == {**carrier, "url": PAGE}
    assert context["shipment"] == {"id": "shopify:1001", "tracking_url": PAGE,
                                   "status": "in_transit"}
    assert order["tracking"]["url"] == "https://track.example/YK1"  # copied, never changed


def test_an_order_without_tracking_gets_its_shipments_and_another_shipment_is_left_alone():
    context = {"order": {"id": "o-1", "tracking": None},
               "shipment": {"id": "shopify:other", "tracking_url": "https://track.example/2"}}
    with_tracking_url(context, PAGE, REF)
    assert context["order"]["tracking"] == {"carrier": "Yurtiçi Kargo", "number": "YK1",
                                            "url": PAGE}
    assert context["shipment"]["tracking_url"] == "https://track.example/2"
    bare = {"order": {"id": "o-1", "tracking": None}}  # nothing to say: no carrier, no number
    with_tracking_url(bare, PAGE, ShipmentRef("s", "o-1", None, None, NOW))
    assert bare["order"]["tracking"] is None


# --- which shipment a message is about --------------------------------------------------------


def test_the_message_links_the_enrollments_shipment_else_the_orders_shown_one_else_the_newest():
    from aftersale.db.models import Enrollment, Order
    from aftersale.pipeline.tracking_links import ShipmentLinks

    older = ShipmentRef("shopify:1", "o-1", "DHL", "D-1", NOW - timedelta(days=2))
    newer = ShipmentRef("shopify:2", "o-1", "UPS", "U-2", NOW - timedelta(days=1))
    links = ShipmentLinks(LINKS, {"o-1": [older, newer]})
    order = Order(id="o-1", tracking_number=None)
    assert links.shipment_for(Enrollment(order_id="o-1", shipment_id="shopify:1"), order) == older
    assert links.shipment_for(Enrollment(order_id="o-1", shipment_id=None), order) == newer
    shown = Order(id="o-1", tracking_number="D-1")  # what order.shipped told the customer
    assert links.shipment_for(Enrollment(order_id="o-1", shipment_id=None), shown) == older
    assert links.shipment_for(Enrollment(order_id="o-2", shipment_id=None), None) is None

    context = {"order": {"id": "o-1", "tracking": None}}
    links.apply(context, "msg-1", "c-1", Enrollment(order_id="o-1", shipment_id="shopify:1"),
                order, NOW)
    url = context["order"]["tracking"]["url"]
    assert SIGNER.verify(Purpose.TRACKING, token_of(url, "t")) == {
        "s": "shopify:1", "c": "c-1", "m": "msg-1", "d": NOW.date().isoformat()}

    carrier = ShipmentLinks(Links("https://shop.example.com", SIGNER, tracking_page=False),
                            {"o-1": [older]})
    untouched = {"order": {"id": "o-1", "tracking": {"url": "https://dhl.example/D-1"}}}
    carrier.apply(untouched, "msg-1", "c-1", Enrollment(order_id="o-1"), order, NOW)
    assert untouched["order"]["tracking"]["url"] == "https://dhl.example/D-1"
