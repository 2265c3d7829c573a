"""Segments: compiling segments.yaml, priority order, history facts and currency conversion."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.errors import Problem
from aftersale.core.segment_rules import OrderFact, SegmentSet, compile_segments, customer_facts
from aftersale.core.yaml_lines import load_located, parse_located

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PATH = "journeys/segments.yaml"

SEGMENTS = """\
    reporting_currency: EUR
    exchange_rates:
      GBP: 1.17
      try: 0.022
      USD: "0.92"
    segments:
      - name: vip
        description: Big spenders
        when: customer.total_spent >= 1000
      - name: at_risk
        when: customer.days_since_previous_order >= 90
      - name: discount_hunter
        when: customer.orders_count >= 2 and customer.discount_order_share >= 0.5
      - name: repeat
        when: customer.orders_count >= 2
      - name: first_time
        when: customer.orders_count == 1
    """


def compile_text(text: str) -> tuple[SegmentSet | None, list[Problem]]:
    doc, problems = parse_located(textwrap.dedent(text), PATH)
    assert doc is not None and problems == []
    return compile_segments(doc)


def segment_set(text: str = SEGMENTS) -> SegmentSet:
    segments, problems = compile_text(text)
    assert problems == [], [str(p) for p in problems]
    assert segments is not None
    return segments


def problems_of(text: str) -> list[tuple[int, str]]:
    segments, problems = compile_text(text)
    assert segments is None
    return [(p.line, p.message) for p in problems]


def order(days_ago: float, total: str, currency: str | None = "EUR", discount=False) -> OrderFact:
    return OrderFact(NOW - timedelta(days=days_ago), Decimal(total), currency, discount)


def test_segments_compile_in_file_order_with_rates_and_reporting_currency():
    segments = segment_set()
    assert segments.names() == ["vip", "at_risk", "discount_hunter", "repeat", "first_time"]
    assert segments.reporting_currency == "EUR"
    assert segments.exchange_rates == {"EUR": Decimal(1), "GBP": Decimal("1.17"),
                                       "TRY": Decimal("0.022"), "USD": Decimal("0.92")}
    assert segments.segments[0].description == "Big spenders"
    assert segments.segments[0].rule.source == "customer.total_spent >= 1000"


@pytest.mark.parametrize(
    ("customer", "expected"),
    [
        ({"orders_count": 1, "total_spent": 50.0}, "first_time"),
        ({"orders_count": 2, "total_spent": 80.0, "discount_order_share": 0.0}, "repeat"),
        ({"orders_count": 4, "total_spent": 80.0, "discount_order_share": 0.5}, "discount_hunter"),
        ({"orders_count": 2, "total_spent": 80.0, "days_since_previous_order": 120,
          "discount_order_share": 1.0}, "at_risk"),
        ({"orders_count": 1, "total_spent": 1500.0}, "vip"),
        ({"orders_count": 9, "total_spent": 5000.0, "days_since_previous_order": 400,
          "discount_order_share": 1.0}, "vip"),
        ({"orders_count": 0, "total_spent": 0.0}, None),
        ({}, None),
    ],
)
def test_the_first_matching_segment_in_priority_order_wins(customer, expected):
    assert segment_set().assign({"customer": customer}) == expected


def test_reordering_the_file_changes_which_segment_wins():
    vip = ("  - name: vip\n    description: Big spenders\n"
           "    when: customer.total_spent >= 1000\n")
    original = textwrap.dedent(SEGMENTS)
    assert vip in original
    swapped = original.replace(vip, "") + vip
    customer = {"orders_count": 1, "total_spent": 1500.0}
    assert segment_set(SEGMENTS).assign({"customer": customer}) == "vip"
    assert segment_set(swapped).assign({"customer": customer}) == "first_time"


def test_a_catch_all_segment_can_be_written_as_when_true():
    segments = segment_set("""\
        segments:
          - name: big
            when: order.total > 100
          - name: everyone
            when: true
        """)
    assert segments.assign({"order": {"total": 500}}) == "big"
    assert segments.assign({"order": {"total": 5}}) == "everyone"
    assert segments.assign({}) == "everyone"
    assert segments.reporting_currency == "EUR"  # the default


# -- to_reporting -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("100", "EUR", Decimal("100.00")),
        ("100", "GBP", Decimal("117.00")),
        ("100", "gbp", Decimal("117.00")),
        ("129.90", "TRY", Decimal("2.86")),
        ("0.01", "TRY", Decimal("0.00")),
        ("10", None, Decimal("10.00")),
        ("10", "JPY", None),
    ],
)
def test_amounts_are_converted_to_the_reporting_currency_to_the_cent(amount, currency, expected):
    assert segment_set().to_reporting(Decimal(amount), currency) == expected


# -- customer_facts ---------------------------------------------------------------------------

def test_history_facts_of_a_first_order():
    facts = customer_facts([order(3, "50.00")], 0, segment_set(), NOW)
    assert facts == {
        "orders_count": 1, "total_spent": 50.0, "average_order_value": 50.0,
        "days_since_previous_order": None, "days_since_first_order": 3,
        "discount_orders": 0, "discount_order_share": 0.0,
    }


def test_history_facts_are_computed_as_of_the_current_order_in_reporting_currency():
    history = [order(200, "100", "GBP", discount=True), order(100, "1000", "TRY"),
               order(5, "30", "EUR", discount=True), order(1, "999", "EUR")]
    facts = customer_facts(history, 2, segment_set(), NOW)
    assert facts["orders_count"] == 3  # the later order does not count yet
    assert facts["total_spent"] == pytest.approx(117.0 + 22.0 + 30.0)
    assert facts["average_order_value"] == pytest.approx((117.0 + 22.0 + 30.0) / 3)
    assert facts["days_since_previous_order"] == 95
    assert facts["days_since_first_order"] == 200
    assert facts["discount_orders"] == 2
    assert facts["discount_order_share"] == pytest.approx(2 / 3)


def test_history_facts_feed_segment_rules():
    segments = segment_set()
    history = [order(400, "20"), order(10, "20")]
    context = {"customer": customer_facts(history, 1, segments, NOW)}
    assert segments.assign(context) == "at_risk"
    context = {"customer": customer_facts(history[:1], 0, segments, NOW)}
    assert segments.assign(context) == "first_time"


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 10**6), st.booleans()),
                min_size=1, max_size=8))
def test_history_facts_are_consistent_for_any_history(rows):
    rows = sorted(rows, key=lambda r: -r[0])  # oldest first
    history = [order(days, f"{cents / 100:.2f}", "EUR", disc) for days, cents, disc in rows]
    facts = customer_facts(history, len(history) - 1, segment_set(), NOW)
    assert facts["orders_count"] == len(history)
    assert facts["total_spent"] == pytest.approx(sum(c for _, c, _ in rows) / 100)
    assert 0 <= facts["discount_order_share"] <= 1
    assert facts["discount_orders"] == sum(1 for *_, d in rows if d)
    if len(history) == 1:
        assert facts["days_since_previous_order"] is None
    else:
        assert facts["days_since_previous_order"] >= 0


# -- problems ---------------------------------------------------------------------------------

def test_a_segment_rule_cannot_read_a_survey_response_or_the_segment_itself():
    assert problems_of("""\
        segments:
          - name: happy
            when: response.nps >= 9
          - name: self
            when: segment == "vip"
        """) == [
        (3, "unknown root 'response'; conditions here can use customer, order"),
        (5, "'segment' cannot be used here"),
    ]


def test_segment_problems_are_reported_on_their_lines():
    problems = problems_of("""\
        reporting_currency: EUR
        colour: blue
        exchange_rates:
          USD: lots
        segments:
          - name: VIP Customers
            when: customer.total_spent > 1
          - name: repeat
            when: customer.orders_count >= 2
            priority: 1
          - name: repeat
            when: customer.orders_count >= 3
          - name: nothing
          - name: broken
            when: customer.orders_count >=
          - just a string
        """)
    assert sorted(problems) == [
        (2, "unknown field 'colour'"),
        (4, "rate for USD is not a number"),
        (6, "segment name must be lowercase_with_underscores"),
        (10, "unknown field 'priority' in a segment"),
        (11, "segment 'repeat' is defined twice"),
        (13, "segment 'nothing' needs a 'when' rule"),
        (15, "cannot parse condition 'customer.orders_count >=': invalid syntax"),
        (16, "a segment needs 'name' and 'when'"),
    ]


@pytest.mark.parametrize("text", ["reporting_currency: EUR\n", "segments: vip\n", "- a\n- b\n", ""])
def test_a_file_without_a_segments_list_is_one_problem_with_a_hint(text):
    doc, _ = parse_located(text, PATH)
    segments, problems = compile_segments(doc)
    assert segments is None
    assert [(p.line, p.message) for p in problems] == [(1, "segments.yaml needs a 'segments:' list")]
    assert "priority order" in problems[0].hint


def test_exchange_rates_that_are_not_a_mapping_are_a_problem_not_a_crash():
    problems = problems_of("""\
        exchange_rates: [1.17, 0.92]
        segments:
          - name: all
            when: true
        """)
    assert [line for line, _ in problems] == [1]


def test_the_shipped_segments_file_compiles():
    path = Path(__file__).resolve().parents[2] / "journeys" / "segments.yaml"
    doc, problems = load_located(path)
    assert problems == []
    segments, problems = compile_segments(doc)
    assert problems == []
    assert segments.names()[0] == "vip"
    assert segments.to_reporting(Decimal(100), "GBP") == Decimal("117.00")
