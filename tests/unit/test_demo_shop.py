"""The synthetic shop and simulated customers behind `aftersale demo`."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aftersale.core.links import referral_code
from aftersale.core.survey_scales import SURVEY_SCALES
from aftersale.demo.behaviour import react, sentiment
from aftersale.demo.shop import (
    ARCHETYPES,
    CURRENCY_BY_COUNTRY,
    EUR_RATES,
    Persona,
    SyntheticShop,
    basket,
    build_shop,
    order_event,
)

MONEY = re.compile(r"^\d+\.\d{2}$")
TYPES = {"order.placed", "order.shipped", "order.delivered", "order.cancelled", "order.refunded",
         "shipment.updated"}
CUSTOMER_KEYS = {
    "id", "email", "phone", "first_name", "last_name", "locale", "timezone", "country", "consent",
}  # fmt: skip
ZONES = {
    "GB": {"Europe/London"},
    "US": {"America/New_York", "America/Chicago", "America/Los_Angeles"},
    "TR": {"Europe/Istanbul"},
    "PL": {"Europe/Warsaw"},
}


@pytest.fixture(scope="module")
def shop() -> SyntheticShop:
    return build_shop()


def instant(event: dict) -> datetime:
    return datetime.fromisoformat(event["occurred_at"]).astimezone(UTC)


def placed_orders(shop: SyntheticShop) -> list[dict]:
    return [e for e in shop.events if e["type"] == "order.placed"]


def by_order(shop: SyntheticShop) -> dict[str, list[dict]]:
    events: dict[str, list[dict]] = defaultdict(list)
    for event in shop.events:
        events[event["order"]["id"]].append(event)
    return events


# --- determinism ------------------------------------------------------------------------------


def test_the_same_seed_builds_the_same_shop() -> None:
    one, two = build_shop(300, 60, seed=3), build_shop(300, 60, seed=3)
    assert one.events == two.events
    assert one.personas == two.personas


def test_a_different_seed_builds_a_different_shop() -> None:
    assert build_shop(300, 60, seed=3).events != build_shop(300, 60, seed=4).events


# --- the event format -------------------------------------------------------------------------


def test_every_event_has_a_known_type_and_the_linking_ids(shop: SyntheticShop) -> None:
    for event in shop.events:
        assert event["type"] in TYPES
        assert {"id", "type", "occurred_at", "customer", "order"} <= set(event)
        assert event["customer"]["id"] in shop.personas
        assert event["order"]["id"].startswith("o-")


def test_event_ids_are_unique_and_stable_in_shape(shop: SyntheticShop) -> None:
    ids = [e["id"] for e in shop.events]
    assert len(ids) == len(set(ids))
    for event in shop.events:
        if event["type"] == "shipment.updated":
            shipment = event["shipment"]
            assert shipment["id"].startswith(f"demo:{event['order']['id']}:")
            assert event["id"] == f"evt-{shipment['id']}-{shipment['status']}"
        else:
            kind = event["type"].split(".")[1]
            assert event["id"] == f"evt-{event['order']['id']}-{kind}"


def test_events_are_sorted_by_time_and_carry_the_customers_offset(shop: SyntheticShop) -> None:
    instants = [instant(e) for e in shop.events]
    assert instants == sorted(instants)
    for event in shop.events:
        when = datetime.fromisoformat(event["occurred_at"])
        persona = shop.personas[event["customer"]["id"]]
        local = when.astimezone(ZoneInfo(persona.timezone))
        assert when.utcoffset() == local.utcoffset()
        assert when.microsecond == 0


def test_no_event_lies_after_the_window(shop: SyntheticShop) -> None:
    assert instant(shop.events[-1]) <= shop.end


def test_placed_orders_carry_the_full_customer_and_order(shop: SyntheticShop) -> None:
    numbers = set()
    for event in placed_orders(shop):
        customer, order = event["customer"], event["order"]
        persona = shop.personas[customer["id"]]
        assert set(customer) == CUSTOMER_KEYS
        assert set(customer["consent"]) == {"email", "sms", "whatsapp", "order_updates"}
        assert customer["consent"]["order_updates"] == persona.order_updates
        assert order["currency"] == CURRENCY_BY_COUNTRY[persona.country]
        assert re.fullmatch(r"#\d{4,}", order["number"])
        numbers.add(order["number"])
        assert all(isinstance(code, str) for code in order["discount_codes"])
        assert order["items"]
    assert len(numbers) == len(placed_orders(shop))


def test_money_has_two_decimals_and_totals_are_the_sum_of_items(shop: SyntheticShop) -> None:
    for event in placed_orders(shop):
        order = event["order"]
        assert MONEY.match(order["total"])
        lines = Decimal(0)
        for item in order["items"]:
            assert {"sku", "title", "category", "quantity", "price"} <= set(item)
            assert MONEY.match(item["price"]) and item["quantity"] >= 1
            lines += Decimal(item["price"]) * item["quantity"]
        assert Decimal(order["total"]) == lines


def test_phones_are_valid_mobile_e164_numbers_of_the_customers_country(shop: SyntheticShop) -> None:
    phones = [p.phone for p in shop.personas.values() if p.phone]
    assert len(phones) == len(set(phones))
    for persona in shop.personas.values():
        if persona.phone is None:
            continue
        assert re.fullmatch(r"\+[1-9]\d{7,14}", persona.phone)
        number = phonenumbers.parse(persona.phone)
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.region_code_for_number(number) == persona.country
        assert phonenumbers.number_type(number) in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        )


def test_emails_use_reserved_example_domains_only(shop: SyntheticShop) -> None:
    emails = [p.email for p in shop.personas.values() if p.email]
    assert len(emails) == len(set(emails))
    for email in emails:
        assert re.fullmatch(r"[a-z0-9.]+@example\.(com|org|net)", email)


def test_personas_live_where_their_locale_and_time_zone_say(shop: SyntheticShop) -> None:
    for persona in shop.personas.values():
        assert persona.timezone in ZONES[persona.country]
        expected = "en" if persona.country in ("GB", "US") else persona.country.lower()
        assert persona.language == expected
        assert persona.locale in (expected, f"{expected}-{persona.country}")


def test_shipments_name_a_carrier_of_the_country_and_a_tracking_link(shop: SyntheticShop) -> None:
    carriers: dict[str, set[str]] = defaultdict(set)
    for event in shop.events:
        if event["type"] != "shipment.updated":
            continue
        shipment = event["shipment"]
        assert shipment["destination_country"] == shop.personas[event["customer"]["id"]].country
        assert shipment["tracking_url"].startswith("https://")
        assert shipment["tracking_number"] in shipment["tracking_url"]
        carriers[shop.personas[event["customer"]["id"]].country].add(shipment["carrier"])
    assert carriers["TR"] == {"Yurtiçi Kargo", "Aras Kargo"}
    assert carriers["PL"] == {"InPost", "DPD"}
    assert "Royal Mail" in carriers["GB"]


# --- order lifecycles -------------------------------------------------------------------------


def test_a_cancelled_order_is_never_shipped_or_delivered(shop: SyntheticShop) -> None:
    for events in by_order(shop).values():
        types = [e["type"] for e in events]
        if "order.cancelled" in types:
            assert not {"order.shipped", "order.delivered", "order.refunded",
                        "shipment.updated"} & set(types)


def test_lifecycles_happen_in_order(shop: SyntheticShop) -> None:
    rank = {"order.placed": 0, "order.cancelled": 1, "order.shipped": 1, "shipment.updated": 1,
            "order.delivered": 2, "order.refunded": 3}  # fmt: skip
    for events in by_order(shop).values():
        assert [rank[e["type"]] for e in events] == sorted(rank[e["type"]] for e in events)
        kinds = {e["type"]: local_date(e) for e in events}
        labels = [local_date(e) for e in events if e["type"] == "shipment.updated"
                  and e["shipment"]["status"] == "label_created"]
        if "order.placed" in kinds and labels:
            assert 1 <= (min(labels) - kinds["order.placed"]).days <= 3
        if "order.shipped" in kinds and "order.delivered" in kinds:
            assert 0 <= (kinds["order.delivered"] - kinds["order.shipped"]).days <= 10


def local_date(event: dict) -> date:
    """Calendar day where the customer is: "shipped 1-3 days later" counts those."""
    return datetime.fromisoformat(event["occurred_at"]).date()


def test_cancellations_and_refunds_are_rare(shop: SyntheticShop) -> None:
    counts = Counter(e["type"] for e in shop.events)
    placed = counts["order.placed"]
    assert 0.015 < counts["order.cancelled"] / placed < 0.05
    assert 0.015 < counts["order.refunded"] / placed < 0.045  # 2%, and the lost parcels


# --- the shape of the default shop ------------------------------------------------------------


def test_the_default_shop_has_every_archetype_and_a_realistic_order_count(
    shop: SyntheticShop,
) -> None:
    assert len(shop.personas) == 2000
    assert {p.archetype for p in shop.personas.values()} == set(ARCHETYPES)
    assert 3000 <= len(placed_orders(shop)) <= 5000


def test_some_orders_were_placed_before_the_window(shop: SyntheticShop) -> None:
    earlier = [e for e in placed_orders(shop) if instant(e) <= shop.start]
    assert len(earlier) > 100
    assert min(instant(e) for e in earlier) >= shop.start - timedelta(days=400)


def test_lapsing_customers_come_back_after_ninety_days_or_more(shop: SyntheticShop) -> None:
    times: dict[str, list[datetime]] = defaultdict(list)
    for event in placed_orders(shop):
        times[event["customer"]["id"]].append(instant(event))
    lapsing = [p for p in shop.personas.values() if p.archetype == "lapsing"]
    for persona in lapsing:
        own = times[persona.customer_id]
        first_in_window = next(t for t in own if t > shop.start)
        previous = max(t for t in own if t < first_in_window)
        assert first_in_window - previous >= timedelta(days=90)


def test_vips_spend_big_and_bargain_hunters_use_codes(shop: SyntheticShop) -> None:
    spent: dict[str, Decimal] = defaultdict(Decimal)
    orders: Counter[str] = Counter()
    coded: Counter[str] = Counter()
    for event in placed_orders(shop):
        order, cid = event["order"], event["customer"]["id"]
        spent[cid] += Decimal(order["total"]) / EUR_RATES[order["currency"]]
        orders[cid] += 1
        coded[cid] += bool(order["discount_codes"])
    vips = [c for c, p in shop.personas.items() if p.archetype == "vip"]
    assert sum(spent[c] >= 1000 for c in vips) / len(vips) > 0.9
    hunters = [c for c, p in shop.personas.items() if p.archetype == "bargain" and orders[c] >= 2]
    assert sum(coded[c] * 2 >= orders[c] for c in hunters) / len(hunters) > 0.8
    repeaters = sum(n >= 2 for n in orders.values())
    assert repeaters > 600


def test_market_mix_and_consent_shares(shop: SyntheticShop) -> None:
    personas = list(shop.personas.values())
    n = len(personas)
    language = Counter(p.language for p in personas)
    assert 0.40 < language["en"] / n < 0.50
    assert 0.25 < language["tr"] / n < 0.35
    assert 0.20 < language["pl"] / n < 0.30
    assert 0.64 < sum(p.consent["email"] for p in personas) / n < 0.76
    assert 0.44 < sum(p.consent["sms"] for p in personas) / n < 0.56
    assert 0.33 < sum(p.consent["whatsapp"] for p in personas) / n < 0.47
    unreachable = sum(not p.reachable_channels for p in personas) / n
    assert 0.015 < unreachable < 0.05
    assert any(p.email is None for p in personas) and any(p.phone is None for p in personas)


def test_a_share_of_customers_with_a_phone_ask_for_order_updates_there(
        shop: SyntheticShop) -> None:
    with_phone = [p for p in shop.personas.values() if p.phone]
    n = len(with_phone)
    assert 0.5 < sum(p.order_updates["sms"] for p in with_phone) / n < 0.7
    assert 0.25 < sum(p.order_updates["whatsapp"] for p in with_phone) / n < 0.45
    assert not any(any(p.order_updates.values()) for p in shop.personas.values() if not p.phone)


def test_consent_is_never_given_for_an_address_we_do_not_have(shop: SyntheticShop) -> None:
    for persona in shop.personas.values():
        if persona.email is None:
            assert not persona.consent["email"]
        if persona.phone is None:
            assert not persona.consent["sms"] and not persona.consent["whatsapp"]


def test_names_are_spelt_as_in_their_language(shop: SyntheticShop) -> None:
    names = defaultdict(str)
    for persona in shop.personas.values():
        names[persona.language] += persona.first_name + persona.last_name
    assert set("çğıöşü") <= set(names["tr"].lower())
    assert set("ąęłśż") <= set(names["pl"].lower())
    for persona in shop.personas.values():
        if persona.language == "pl" and persona.first_name in ("Anna", "Zofia", "Ewa"):
            assert not persona.last_name.endswith("ski")


def test_referred_customers_carry_an_earlier_customers_code(shop: SyntheticShop) -> None:
    first_order: dict[str, datetime] = {}
    owners = {persona.referral_code: cid for cid, persona in shop.personas.items()}
    referred = 0
    for event in placed_orders(shop):
        cid, code = event["customer"]["id"], event["order"]["referral_code"]
        if code is not None:
            referrer = owners[code]
            assert code == referral_code(referrer) and referrer != cid
            assert cid not in first_order, "only a new customer's first order is referred"
            assert first_order[referrer] < instant(event)
            referred += 1
        first_order.setdefault(cid, instant(event))
    assert referred > 50


# --- events_between ---------------------------------------------------------------------------


def test_events_between_is_open_at_the_start_and_closed_at_the_end(shop: SyntheticShop) -> None:
    event = shop.events[len(shop.events) // 2]
    at = instant(event)
    assert event in shop.events_between(at - timedelta(seconds=1), at)
    assert event not in shop.events_between(at, at + timedelta(seconds=1))
    naive = at.replace(tzinfo=None)  # naive times are read as UTC
    assert event in shop.events_between(naive - timedelta(seconds=1), naive)


def test_consecutive_windows_cover_every_event_exactly_once(shop: SyntheticShop) -> None:
    edges = [shop.start - timedelta(days=401)]
    edges += [shop.start + timedelta(days=d) for d in range(0, shop.days + 1, 7)]
    edges.append(shop.end)
    seen = [e for a, b in pairwise(edges) for e in shop.events_between(a, b)]
    assert seen == shop.events


# --- helpers for the runner -----------------------------------------------------


def test_order_event_builds_a_placed_event_for_a_prompted_purchase(shop: SyntheticShop) -> None:
    persona = shop.personas["c-00001"]
    items = basket(persona, random.Random(1))
    when = shop.start + timedelta(days=3)
    event = order_event(persona, "o-x-1", "#99999", when, items, "GBP", [], None, "evt-x")
    assert event["type"] == "order.placed" and instant(event) == when
    assert Decimal(event["order"]["total"]) == sum(
        Decimal(i["price"]) * i["quantity"] for i in items
    )


# --- reactions --------------------------------------------------------------------------------

personas = st.builds(
    Persona,
    customer_id=st.just("c-1"),
    locale=st.sampled_from(["en", "tr", "pl", "tr-TR", "pl-PL", "en-GB"]),
    country=st.just("GB"),
    timezone=st.just("Europe/London"),
    first_name=st.just("Ada"),
    last_name=st.just("Lovelace"),
    email=st.just("ada@example.com"),
    phone=st.none(),
    consent=st.just({"email": True, "sms": False, "whatsapp": False}),
    archetype=st.sampled_from(ARCHETYPES),
    satisfaction=st.floats(0, 1),
    responsiveness=st.floats(0, 1),
    reorder_propensity=st.floats(0, 1),
)


@settings(max_examples=300, deadline=None)
@given(
    persona=personas,
    kind=st.sampled_from(["nps", "csat", "ces"]),
    channel=st.sampled_from(["email", "sms", "whatsapp"]),
    seed=st.integers(0, 2**32),
)
def test_survey_scores_stay_on_their_scale(
    persona: Persona, kind: str, channel: str, seed: int
) -> None:
    reaction = react(persona, f"{kind}_survey", channel, kind, random.Random(seed))
    low, high = SURVEY_SCALES[kind]
    if reaction.survey_score is not None:
        assert reaction.opened and reaction.clicked
        assert low <= reaction.survey_score <= high
    else:
        assert reaction.comment is None
    assert timedelta(0) < reaction.reply_delay <= timedelta(days=3)
    if reaction.buys_again_in is not None:
        assert timedelta(days=3) <= reaction.buys_again_in <= timedelta(days=30)


def test_a_message_without_a_survey_gets_no_score(shop: SyntheticShop) -> None:
    rng = random.Random(5)
    for persona in list(shop.personas.values())[:200]:
        assert react(persona, "shipping_update", "sms", None, rng).survey_score is None


def test_happy_archetypes_promote_and_unhappy_ones_detract(shop: SyntheticShop) -> None:
    rng = random.Random(11)
    scores: dict[str, list[int]] = defaultdict(list)
    for persona in shop.personas.values():
        for _ in range(5):
            score = react(persona, "nps_survey", "sms", "nps", rng).survey_score
            if score is not None:
                scores[persona.archetype].append(score)

    def share(archetype: str, test: object) -> float:
        values = scores[archetype]
        return sum(1 for s in values if test(s)) / len(values)  # type: ignore[operator]

    assert share("vip", lambda s: s >= 9) > 0.5
    assert share("loyal", lambda s: s >= 9) > 0.5
    assert share("one_off", lambda s: s <= 6) > 0.15
    assert share("lapsing", lambda s: s <= 6) > 0.3


def test_comments_are_in_the_customers_language(shop: SyntheticShop) -> None:
    rng = random.Random(2)
    comments: dict[str, set[str]] = defaultdict(set)
    for persona in shop.personas.values():
        reaction = react(persona, "csat_checkin", "whatsapp", "csat", rng)
        if reaction.comment:
            comments[persona.language].add(reaction.comment)
    assert any(set("çğışü") & set(c) for c in comments["tr"])
    assert any(set("ąęłśżó") & set(c) for c in comments["pl"])
    assert not any(set("çğışąęłśż") & set(c) for c in comments["en"])


def test_ces_seven_means_very_easy_and_counts_as_positive() -> None:
    assert sentiment("ces", 7) == "positive" and sentiment("ces", 1) == "negative"
    assert sentiment("nps", 6) == "negative" and sentiment("nps", 8) == "neutral"
    assert sentiment("csat", 5) == "positive"


def test_texts_are_opened_far_more_often_than_emails(shop: SyntheticShop) -> None:
    rng = random.Random(3)
    people = [p for p in shop.personas.values() if p.archetype in ("loyal", "vip")]
    email = sum(react(p, "x", "email", None, rng).opened for p in people) / len(people)
    sms = sum(react(p, "x", "sms", None, rng).opened for p in people) / len(people)
    assert 0.4 <= email <= 0.6
    assert sms > 0.85


def test_treatment_lifts_purchases_over_the_holdout(shop: SyntheticShop) -> None:
    """A treated customer gets a journey's messages; a holdout customer gets none, so only
    the treated can be prompted to buy. The lift is a few points, not a landslide."""
    journey = ["shipping_update", "product_tutorial", "csat_checkin", "nps_survey", "winback"]
    people = [p for p in shop.personas.values() if p.archetype in ("one_off", "lapsing")]
    rng = random.Random(8)
    bought = 0
    for persona in people:
        reactions = [react(persona, t, "email", None, rng) for t in journey]
        bought += any(r.buys_again_in is not None for r in reactions)
    lift = bought / len(people)
    assert 0.03 < lift < 0.25


def test_a_winback_prompts_more_purchases_than_a_shipping_update(shop: SyntheticShop) -> None:
    rng = random.Random(9)
    people = list(shop.personas.values())

    def rate(template: str) -> float:
        hits = sum(
            react(p, template, "sms", None, rng).buys_again_in is not None
            for p in people
            for _ in range(5)
        )
        return hits / (5 * len(people))

    assert rate("winback") > rate("shipping_update") + 0.02


def test_an_unknown_survey_kind_is_refused(shop: SyntheticShop) -> None:
    with pytest.raises(ValueError, match="survey kind"):
        react(shop.personas["c-00001"], "nps_survey", "email", "xyz", random.Random(1))
