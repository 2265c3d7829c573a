"""The demo's carriers and what deliveries do to the simulated customers (issue 17 item 8)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from aftersale.core.events import parse_event
from aftersale.core.shipments import ShipmentStatus
from aftersale.demo.behaviour import (
    HANDLED,
    ON_TIME,
    PROBLEM,
    keeps_buying,
    purchase_probability,
    react,
)
from aftersale.demo.shop import (
    ATTEMPT_RATE,
    DELAY_RATE,
    LOST_RATE,
    SyntheticShop,
    build_shop,
    delivery_problems,
    fulfilment_events,
)
from aftersale.demo.simulator import Simulator

# A parcel's whole story lies within 3 days (shipping) + 14 days (the longest, lost) of its
# order: parcels labelled this long before the window's end are told to their end.
TOLD = timedelta(days=20)


@pytest.fixture(scope="module")
def shop() -> SyntheticShop:
    return build_shop()


def happened(event: dict) -> datetime:
    return datetime.fromisoformat(event["shipment"]["happened_at"]).astimezone(UTC)


def parcels(shop: SyntheticShop) -> dict[str, list[dict]]:
    """Every parcel told to its end, its updates in the order the shop emits them."""
    updates: dict[str, list[dict]] = defaultdict(list)
    for event in shop.events:
        if event["type"] == "shipment.updated":
            updates[event["shipment"]["id"]].append(event)
    return {pid: ups for pid, ups in updates.items()
            if happened(ups[0]) <= shop.end - TOLD and happened(ups[0]) > shop.start}


def story(updates: list[dict]) -> str:
    """What happened to a parcel, read from its carrier's words alone."""
    statuses = [u["shipment"]["status"] for u in updates]
    if "exception" in statuses:
        return "lost"
    if "attempted_delivery" in statuses:
        return "attempted"
    promise = datetime.fromisoformat(updates[0]["shipment"]["estimated_delivery_at"])
    delivered = next(happened(u) for u in updates if u["shipment"]["status"] == "delivered")
    return "delayed" if "delayed" in statuses or delivered > promise else "on_time"


# --- the carriers -----------------------------------------------------------------------------


def test_parcels_are_delayed_fail_a_first_attempt_or_get_lost_at_the_set_rates(
        shop: SyntheticShop) -> None:
    """Seeded, so the counts are fixed; the bounds are what any seed should give: the rate
    within 4 binomial standard errors, sqrt(p (1 - p) / n), of the parcels told to their end
    (n is 2,715 here: 8% +- 2.1 points, 3% +- 1.3, 1% +- 0.8; seed 7 gives 7.6%, 3.1%, 1.2%)."""
    told = parcels(shop)
    n = len(told)
    assert n > 2500
    stories = Counter(story(updates) for updates in told.values())
    for name, rate in (("delayed", DELAY_RATE), ("attempted", ATTEMPT_RATE),
                       ("lost", LOST_RATE)):
        tolerance = 4 * math.sqrt(rate * (1 - rate) / n)
        assert abs(stories[name] / n - rate) < tolerance, (name, stories[name], n)
    assert stories["on_time"] / n > 0.84


def test_every_parcel_tells_its_story_in_time_order_and_ends_delivered_or_lost(
        shop: SyntheticShop) -> None:
    for updates in parcels(shop).values():
        statuses = [u["shipment"]["status"] for u in updates]
        times = [happened(u) for u in updates]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert 3 <= len(updates) <= 4
        assert statuses[:2] == ["label_created", "in_transit"]
        assert len(set(statuses)) == len(statuses)
        assert statuses[-1] in ("delivered", "exception")
        if statuses[-1] == "exception":
            assert updates[-1]["shipment"]["raw_status"] == "lost"
            assert times[-1] - times[1] >= timedelta(days=8)  # silence first
        assert set(statuses) <= {s.value for s in ShipmentStatus}
        assert len({u["shipment"]["tracking_number"] for u in updates}) == 1


def test_a_delay_said_out_loud_names_a_later_date(shop: SyntheticShop) -> None:
    said = 0
    for updates in parcels(shop).values():
        estimates = [datetime.fromisoformat(u["shipment"]["estimated_delivery_at"])
                     for u in updates]
        statuses = [u["shipment"]["status"] for u in updates]
        if "delayed" in statuses:
            said += 1
            at = statuses.index("delayed")
            assert estimates[at] > estimates[0] and estimates[-1] == estimates[at]
            assert happened(updates[-1]) <= estimates[at]  # kept the new promise
        else:
            assert len(set(estimates)) == 1
    assert said > 50


def test_no_parcel_on_time_goes_three_days_without_a_word(shop: SyntheticShop) -> None:
    """Otherwise aftersale would call it stalled (3 business days) and count a problem."""
    for updates in parcels(shop).values():
        if story(updates) == "on_time":
            times = [happened(u) for u in updates]
            assert max(b - a for a, b in pairwise(times)) < timedelta(days=3)


def test_some_orders_ship_in_two_parcels(shop: SyntheticShop) -> None:
    per_order: dict[str, set[str]] = defaultdict(set)
    for event in shop.events:
        if event["type"] == "shipment.updated":
            per_order[event["order"]["id"]].add(event["shipment"]["id"])
    split = [o for o, ids in per_order.items() if len(ids) == 2]
    assert 40 < len(split) < 200
    for order in split:
        assert sorted(per_order[order]) == [f"demo:{order}:1", f"demo:{order}:2"]


def test_the_legacy_switch_off_leaves_only_the_carriers_updates(shop: SyntheticShop) -> None:
    persona = shop.personas["c-00001"]
    placed = shop.start + timedelta(days=2)
    types: Counter[str] = Counter()
    for n in range(300):
        for event in fulfilment_events(persona, f"o-t{n}", placed, random.Random(n), 2,
                                       legacy=False):
            types[event["type"]] += 1
    assert set(types) <= {"shipment.updated", "order.cancelled", "order.refunded"}
    assert types["shipment.updated"] > 800


def test_legacy_order_events_follow_the_parcels(shop: SyntheticShop) -> None:
    """Switched on: shipped at the first parcel's first scan, delivered when the last parcel
    is, never for an order with a lost parcel."""
    persona = shop.personas["c-00001"]
    placed = shop.start + timedelta(days=2)
    split = 0
    for n in range(1500):
        events = fulfilment_events(persona, f"o-t{n}", placed, random.Random(n), 2, legacy=True)
        moments = {e["type"]: datetime.fromisoformat(e["occurred_at"]) for e in events
                   if e["type"] in ("order.shipped", "order.delivered")}
        updates = [e for e in events if e["type"] == "shipment.updated"]
        if not updates:
            continue
        split += len({u["shipment"]["id"] for u in updates}) == 2
        assert moments["order.shipped"] == min(
            happened(u) for u in updates if u["shipment"]["status"] == "in_transit")
        delivered = [happened(u) for u in updates if u["shipment"]["status"] == "delivered"]
        if any(u["shipment"]["status"] == "exception" for u in updates):
            assert "order.delivered" not in moments
        else:
            assert moments["order.delivered"] == max(delivered)
    assert split > 20


def test_every_update_passes_the_real_intake(shop: SyntheticShop) -> None:
    for event in shop.events[:: 7]:
        parsed = parse_event(event)
        if parsed.shipment is not None and event["type"] == "shipment.updated":
            assert parsed.shipment.status == event["shipment"]["status"]
            assert parsed.shipment.estimated_delivery_at is not None
            assert parsed.shipment.destination_country == event["shipment"]["destination_country"]


def update(order: str, status: str, at: str, estimate: str = "2026-03-05T20:00:00+00:00",
           n: int = 1) -> dict:
    return {"type": "shipment.updated", "order": {"id": order},
            "shipment": {"id": f"demo:{order}:{n}", "status": status, "happened_at": at,
                         "estimated_delivery_at": estimate}}


def test_delivery_problems_are_read_from_the_carriers_words() -> None:
    events = [
        update("ok", "in_transit", "2026-03-03T10:00:00+00:00"),
        update("ok", "delivered", "2026-03-05T17:00:00+00:00"),
        update("quiet", "in_transit", "2026-03-03T10:00:00+00:00"),
        update("quiet", "delivered", "2026-03-08T11:00:00+00:00"),
        update("said", "in_transit", "2026-03-03T10:00:00+00:00"),
        update("said", "delayed", "2026-03-04T07:30:00+00:00", "2026-03-07T20:00:00+00:00"),
        update("said", "delivered", "2026-03-07T10:00:00+00:00", "2026-03-07T20:00:00+00:00"),
        update("lost", "in_transit", "2026-03-03T10:00:00+00:00"),
        # two parcels: the second one's failed attempt makes the order's problem
        update("two", "delivered", "2026-03-04T12:00:00+00:00"),
        update("two", "attempted_delivery", "2026-03-05T09:00:00+01:00", n=2),
        update("two", "delivered", "2026-03-06T09:00:00+01:00", n=2),
    ]
    assert delivery_problems(events) == {
        "quiet": datetime(2026, 3, 5, 20, tzinfo=UTC),  # the promise passed undelivered
        "said": datetime(2026, 3, 4, 7, 30, tzinfo=UTC),
        "lost": datetime(2026, 3, 5, 20, tzinfo=UTC),
        "two": datetime(2026, 3, 5, 8, tzinfo=UTC),
    }


# --- what the customers make of it ------------------------------------------------------------


def nps(scores: list[int]) -> float:
    return 100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores)


def test_a_delivery_problem_lowers_the_answers_and_handling_it_wins_some_back(
        shop: SyntheticShop) -> None:
    """The same customers, the same draws, three experiences: NPS about 35 points lower after
    a problem left alone, about 20 when the shop spoke first; CSAT alike."""
    people = list(shop.personas.values())
    scores: dict[str, dict[str, list[int]]] = {}
    for experience in (ON_TIME, PROBLEM, HANDLED):
        scores[experience] = defaultdict(list)
        rng = random.Random(21)
        for persona in people:
            for kind in ("nps", "csat"):
                for _ in range(3):
                    score = react(persona, f"{kind}_survey", "sms", kind, rng,
                                  experience).survey_score
                    if score is not None:
                        scores[experience][kind].append(score)
    on_time, problem, handled = (nps(scores[e]["nps"]) for e in (ON_TIME, PROBLEM, HANDLED))
    assert 28 <= on_time - problem <= 42
    assert problem + 10 <= handled <= on_time - 14

    def csat(experience: str) -> float:
        values = scores[experience]["csat"]
        return sum(v >= 4 for v in values) / len(values)

    assert csat(ON_TIME) > csat(HANDLED) > csat(PROBLEM) + 0.05


def test_a_delivery_problem_costs_purchases(shop: SyntheticShop) -> None:
    people = list(shop.personas.values())
    for persona in people[:50]:
        on_time = purchase_probability(persona, "winback", ON_TIME)
        assert on_time > purchase_probability(persona, "winback", HANDLED) > purchase_probability(
            persona, "winback", PROBLEM)
    rng = random.Random(4)
    stay = {e: sum(keeps_buying(p, e, rng) for p in people) / len(people)
            for e in (ON_TIME, PROBLEM, HANDLED)}
    assert stay[ON_TIME] == 1.0
    assert stay[PROBLEM] + 0.15 < stay[HANDLED] < 0.95


def test_an_unknown_experience_is_refused(shop: SyntheticShop) -> None:
    with pytest.raises(ValueError, match="delivery experience"):
        react(shop.personas["c-00001"], "nps_survey", "email", "nps", random.Random(1), "meh")


def test_the_simulator_knows_each_orders_experience_as_it_unfolds() -> None:
    shop = build_shop(300, 60, seed=5)
    sim = Simulator(shop, random.Random(1))
    order, at = min(sim.problems.items(), key=lambda item: item[1])
    assert sim.experience(order, at - timedelta(minutes=1)) == ON_TIME
    assert sim.experience(order, at) == PROBLEM
    sim.cared[order] = at + timedelta(hours=2)  # the delivery-care journey's apology
    assert sim.experience(order, at + timedelta(hours=1)) == PROBLEM
    assert sim.experience(order, at + timedelta(hours=3)) == HANDLED
    assert sim.experience(None, at) == ON_TIME
    fine = next(e["order"]["id"] for e in shop.events if e["type"] == "order.placed"
                and e["order"]["id"] not in sim.problems)
    assert sim.experience(fine, shop.end) == ON_TIME


def test_customers_let_down_stop_buying_and_fewer_when_the_shop_cared(
        shop: SyntheticShop) -> None:
    """Over the whole window: orders not placed after a delivery problem, the same shop and
    seed, once with no care message and once with every problem handled at once."""
    def dropped(cared: bool) -> set[str]:
        sim = Simulator(shop, random.Random(3))
        if cared:
            sim.cared = dict(sim.problems)
        sim.due(shop.start - timedelta(days=3650), shop.end + timedelta(days=60))
        return sim.dropped

    alone, handled = dropped(False), dropped(True)
    placed = sum(e["type"] == "order.placed" for e in shop.events)
    assert 0.02 * placed < len(alone) < 0.12 * placed
    assert 0 < len(handled) < 0.7 * len(alone)
    sim = Simulator(shop, random.Random(3))
    items = sim.due(shop.start - timedelta(days=3650), shop.end + timedelta(days=60))
    orders = {i["order"]["id"] for i in items if isinstance(i, dict)}
    assert not orders & sim.dropped  # nothing of an order never placed reaches the inbox


def test_the_demo_groups_answers_by_the_delivery_experience_of_their_order() -> None:
    from aftersale.demo.runner import answers_by_experience

    went_wrong = datetime(2026, 3, 5, 20, tzinfo=UTC)
    problems = {"late": went_wrong, "cared": went_wrong}
    cared = {"cared": went_wrong + timedelta(hours=5)}
    day = timedelta(days=1)
    answers = [
        ("nps", 10, went_wrong + day, "fine"),  # promoter, on time
        ("nps", 9, went_wrong + day, None),  # no order: on time
        ("nps", 3, went_wrong + day, "late"),  # detractor, left alone
        ("nps", 8, went_wrong - day, "late"),  # answered before it went wrong: on time
        ("nps", 7, went_wrong + day, "cared"),  # passive, handled
        ("nps", 10, went_wrong + timedelta(hours=1), "cared"),  # before the apology: alone
        ("csat", 5, went_wrong + day, "cared"),
        ("csat", 2, went_wrong + day, "late"),
        ("ces", 1, went_wrong + day, "late"),  # neither NPS nor CSAT
    ]
    groups = answers_by_experience(answers, problems, cared)
    on_time, handled, alone = groups[ON_TIME], groups[HANDLED], groups[PROBLEM]
    assert (on_time.nps.promoters, on_time.nps.passives, on_time.nps.n) == (2, 1, 3)
    assert on_time.nps.value == 66.7
    assert (handled.nps.passives, handled.nps.n, handled.nps.value) == (1, 1, 0.0)
    assert (alone.nps.promoters, alone.nps.detractors, alone.nps.value) == (1, 1, 0.0)
    assert (handled.csat.numerator, handled.csat.denominator) == (1, 1)
    assert (alone.csat.numerator, alone.csat.denominator) == (0, 1)
    assert on_time.csat.value is None


def test_a_care_message_counts_once_the_customer_saw_it() -> None:
    from aftersale.demo.runner import care_reached

    t = datetime(2026, 3, 5, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    reports = [
        ("a", "email", "delivered", t),  # an e-mail delivered is not yet read
        ("a", "email", "opened", t + 3 * hour),
        ("a", "whatsapp", "read", t + 2 * hour),  # a second message, read sooner
        ("b", "sms", "delivered", t + hour),  # SMS reports no opens: delivered is read
        ("c", "email", "delivered", t),
        ("c", "email", "machine_opened", t),  # Apple's proxy is nobody reading
        ("d", "whatsapp", "delivered", t),
        ("d", "whatsapp", "clicked", t + 5 * hour),
        (None, "sms", "delivered", t),
    ]
    assert care_reached(reports) == {"a": t + 2 * hour, "b": t + hour, "d": t + 5 * hour}
