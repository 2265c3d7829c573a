"""Segments: named rules over a customer's order history, in priority order.

A customer who matches several segments gets the first one listed in ``segments.yaml``, so
every enrollment has exactly one well-defined segment. Money is compared in the reporting
currency, converted with the rates in the same file, so "VIP" means the same in TRY and GBP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from aftersale.core.conditions import Condition, ConditionError, parse_condition
from aftersale.core.errors import Problem
from aftersale.core.yaml_lines import Located

SEGMENT_ROOTS = frozenset({"customer", "order"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TOP = {"reporting_currency", "exchange_rates", "segments"}


@dataclass(frozen=True)
class Segment:
    name: str
    rule: Condition
    description: str = ""


@dataclass(frozen=True)
class SegmentSet:
    segments: tuple[Segment, ...]
    reporting_currency: str
    exchange_rates: dict[str, Decimal]

    def names(self) -> list[str]:
        return [s.name for s in self.segments]

    def assign(self, context: dict[str, Any]) -> str | None:
        """The first segment whose rule holds, or None (the customer enters no journey)."""
        for segment in self.segments:
            if segment.rule.evaluate(context):
                return segment.name
        return None

    def to_reporting(self, amount: Decimal, currency: str | None) -> Decimal | None:
        rate = self.exchange_rates.get((currency or self.reporting_currency).upper())
        return None if rate is None else (amount * rate).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class OrderFact:
    """What segment rules need to know about one past or current order."""

    placed_at: datetime
    total: Decimal
    currency: str | None
    used_discount: bool


def customer_facts(orders: list[OrderFact], current_index: int, segments: SegmentSet,
                   now: datetime) -> dict[str, Any]:
    """History facts as of the order at ``current_index`` (orders sorted by time, cancelled
    and refunded ones already left out): they are what the rules read as ``customer.*``."""
    history = orders[: current_index + 1]
    current = history[-1]
    spent = [segments.to_reporting(o.total, o.currency) for o in history]
    total = sum((s for s in spent if s is not None), Decimal("0"))
    previous = history[-2] if len(history) > 1 else None
    discounted = sum(1 for o in history if o.used_discount)
    return {
        "orders_count": len(history),
        "total_spent": float(total),
        "average_order_value": float(total / len(history)),
        "days_since_previous_order": (
            (current.placed_at - previous.placed_at).days if previous else None
        ),
        "days_since_first_order": (now - history[0].placed_at).days,
        "discount_orders": discounted,
        "discount_order_share": discounted / len(history),
    }


def compile_segments(doc: Located) -> tuple[SegmentSet | None, list[Problem]]:
    problems: list[Problem] = []
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
        return None, [doc.problem((), "segments.yaml needs a 'segments:' list",
                                  "list segments in priority order, each with name and when")]
    for key in set(data) - _TOP:
        problems.append(doc.problem((key,), f"unknown field '{key}'",
                                    f"known fields: {', '.join(sorted(_TOP))}"))
    currency = str(data.get("reporting_currency", "EUR")).upper()
    rates: dict[str, Decimal] = {currency: Decimal(1)}
    raw_rates = data.get("exchange_rates") or {}
    if not isinstance(raw_rates, dict):
        problems.append(doc.problem(("exchange_rates",), "exchange_rates must map currency "
                                    "codes to rates", "e.g. exchange_rates: {GBP: 1.17}"))
        raw_rates = {}
    for code, rate in raw_rates.items():
        try:
            rates[str(code).upper()] = Decimal(str(rate))
        except ArithmeticError:
            problems.append(doc.problem(("exchange_rates", code), f"rate for {code} is not a number"))
    segments: list[Segment] = []
    seen: set[str] = set()
    for index, item in enumerate(data["segments"]):
        loc = ("segments", index)
        if not isinstance(item, dict):
            problems.append(doc.problem(loc, "a segment needs 'name' and 'when'"))
            continue
        for key in set(item) - {"name", "when", "description"}:
            problems.append(doc.problem((*loc, key), f"unknown field '{key}' in a segment",
                                        "a segment has name, when and description"))
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(doc.problem((*loc, "name"), "segment name must be lowercase_with_underscores"))
            continue
        if name in seen:
            problems.append(doc.problem((*loc, "name"), f"segment '{name}' is defined twice"))
        seen.add(name)
        if "when" not in item:
            problems.append(doc.problem(loc, f"segment '{name}' needs a 'when' rule",
                                        "e.g. when: customer.orders_count == 1"))
            continue
        try:
            rule = parse_condition(str(item["when"]), SEGMENT_ROOTS)
        except ConditionError as exc:
            problems.append(doc.problem((*loc, "when"), str(exc)))
            continue
        segments.append(Segment(name, rule, str(item.get("description", ""))))
    if problems:
        return None, problems
    return SegmentSet(tuple(segments), currency, rates), []
