"""Safe conditions for journeys and segments.

Marketers write Python-looking expressions (``order.total >= 100 and customer.locale == "tr"``,
``order.has_category("drones")``, ``response.nps <= 6``). They are parsed with :mod:`ast` and
only a whitelisted subset is accepted: literals, boolean logic, comparisons, attribute access on
the known roots and calls to the known helper methods. Nothing is ever passed to ``eval``; an
unknown field is caught when the file is validated, not when a customer hits it.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aftersale.core.survey_scales import SURVEY_KINDS

#: The fields a condition may read, per root. ``response`` is the latest survey answer in the
#: enrollment (``None`` until the customer answers). ``shipment`` is the parcel a shipment
#: journey is about (``moment``: what started it, e.g. ``attempted_delivery``, ``stalled``,
#: ``late:2026-03-04``); journeys triggered by other events cannot read it.
FIELDS: dict[str, frozenset[str]] = {
    "customer": frozenset(
        {
            "id", "first_name", "locale", "language", "country", "timezone", "orders_count",
            "total_spent", "average_order_value", "days_since_previous_order",
            "days_since_first_order", "discount_orders", "discount_order_share",
            "has_email", "has_phone", "referred",
        }
    ),
    "order": frozenset(
        {"id", "number", "total", "currency", "item_count", "discount_used", "is_first_order",
         "total_in_reporting_currency", "status", "has_guide", "had_delivery_problem"}
    ),
    "shipment": frozenset(
        {"id", "status", "raw_status", "moment", "carrier", "days_late", "is_international",
         "destination_country", "days_since_update", "has_estimate"}
    ),
    "response": frozenset({*SURVEY_KINDS, "comment"}),
    # The switches of content/shop.yaml (aftersale.content.library.SHOP_SWITCHES; a test keeps
    # the two equal): what the shop turned on, e.g. "arriving today" messages.
    "shop": frozenset({"arriving_today_messages"}),
}
#: Helper methods, per root, with their arity.
METHODS: dict[str, dict[str, int]] = {
    "order": {"has_category": 1, "has_sku": 1, "has_discount_code": 1},
}
#: Bare names usable without a root.
NAMES = frozenset({"segment", "true", "false", "null"})

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is not None and a not in b,
}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


class ConditionError(ValueError):
    """The expression is not allowed or does not parse; the message says what to write instead."""


@dataclass(frozen=True)
class Condition:
    """A parsed, checked condition; evaluate it against a context with :meth:`evaluate`."""

    source: str
    tree: ast.expr

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        return bool(_eval(self.tree, context))


def parse_condition(source: str, roots: frozenset[str] | None = None) -> Condition:
    """Parse and check ``source``; ``roots`` limits which roots may be used (segments have no
    order response, for example)."""
    if not isinstance(source, str) or not source.strip():
        raise ConditionError("a condition must be a non-empty expression, e.g. order.total >= 100")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConditionError(f"cannot parse condition '{source}': {exc.msg}") from None
    _check(tree, roots if roots is not None else frozenset(FIELDS) | {"segment"})
    return Condition(source=source.strip(), tree=tree)


def _check(node: ast.expr, roots: frozenset[str]) -> None:
    match node:
        case ast.Constant(value=value):
            if not isinstance(value, (str, int, float, bool, type(None))):
                raise ConditionError(f"literal {value!r} is not allowed")
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            for elt in elts:
                _check(elt, roots)
        case ast.BoolOp(values=values):
            for part in values:
                _check(part, roots)
        case ast.UnaryOp(op=ast.Not() | ast.USub(), operand=operand):
            _check(operand, roots)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            for op in ops:
                if type(op) not in _COMPARE:
                    raise ConditionError(
                        f"operator '{type(op).__name__}' is not allowed; use ==, !=, <, <=, >, >=, in"
                    )
            for part in (left, *comparators):
                _check(part, roots)
        case ast.Name(id=name):
            if name not in NAMES:
                raise ConditionError(
                    f"unknown name '{name}'; use segment, or a field such as customer.orders_count"
                )
            if name == "segment" and "segment" not in roots:
                raise ConditionError("'segment' cannot be used here")
        case ast.Attribute(value=ast.Name(id=root), attr=attr):
            _check_field(root, attr, roots)
        case ast.Call(func=ast.Attribute(value=ast.Name(id=root), attr=method), args=args,
                      keywords=[]):
            arity = METHODS.get(root, {}).get(method)
            if root not in roots or arity is None:
                known = ", ".join(f"{r}.{m}(...)" for r, ms in METHODS.items() for m in ms)
                raise ConditionError(f"unknown function {root}.{method}(); known: {known}")
            if len(args) != arity:
                raise ConditionError(f"{root}.{method}() takes {arity} argument(s)")
            for arg in args:
                _check(arg, roots)
        case _:
            raise ConditionError(
                f"'{ast.unparse(node)}' is not allowed in a condition; use fields, literals, "
                "comparisons, and/or/not"
            )


def _check_field(root: str, attr: str, roots: frozenset[str]) -> None:
    if root not in FIELDS or root not in roots:
        allowed = ", ".join(sorted(r for r in roots if r in FIELDS))
        raise ConditionError(f"unknown root '{root}'; conditions here can use {allowed}")
    if attr not in FIELDS[root]:
        raise ConditionError(
            f"unknown field {root}.{attr}; known: {', '.join(sorted(FIELDS[root]))}"
        )


def _eval(node: ast.expr, ctx: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_eval(e, ctx) for e in elts]
        case ast.BoolOp(op=ast.And(), values=values):
            return all(_eval(v, ctx) for v in values)
        case ast.BoolOp(op=ast.Or(), values=values):
            return any(_eval(v, ctx) for v in values)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _eval(operand, ctx)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            value = _eval(operand, ctx)
            if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
                return None  # "minus a text" is missing, not an error mid-journey
            return -value
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _eval(left, ctx)
            for op, comparator in zip(ops, comparators, strict=True):
                other = _eval(comparator, ctx)
                # A missing value (no answer yet, no previous order) makes any ordering false
                # rather than raising: "response.nps <= 6" is simply not true before an answer.
                if isinstance(op, _ORDERING) and (current is None or other is None):
                    return False
                try:
                    if not _COMPARE[type(op)](current, other):
                        return False
                except TypeError:
                    return False
                current = other
            return True
        case ast.Name(id="segment"):
            return ctx.get("segment")
        case ast.Name(id=name):
            return {"true": True, "false": False, "null": None}[name]
        case ast.Attribute(value=ast.Name(id=root), attr=attr):
            return _lookup(ctx.get(root), attr)
        case ast.Call(func=ast.Attribute(value=ast.Name(id=root), attr=method), args=args):
            target = _lookup(ctx.get(root), method)
            if target is None:
                return False
            return target(*(_eval(a, ctx) for a in args))
    raise ConditionError(f"cannot evaluate '{ast.unparse(node)}'")  # pragma: no cover - checked


def _lookup(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)
