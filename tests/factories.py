"""Events in the contract format, for tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aftersale.core.events import Event, parse_event


def customer(cid: str = "c-1", **overrides: Any) -> dict[str, Any]:
    data = {"id": cid, "email": f"{cid}@example.com", "phone": "+905321234567",
            "first_name": "Ayşe", "last_name": "Yılmaz", "locale": "tr",
            "timezone": "Europe/Istanbul", "country": "TR",
            "consent": {"email": True, "sms": True, "whatsapp": True}}
    data.update(overrides)
    return data


def placed(oid: str, at: datetime, cid: str = "c-1", total: str = "129.90",
           category: str = "drones", currency: str = "TRY", codes: list[str] | None = None,
           **customer_overrides: Any) -> dict[str, Any]:
    return {"id": f"evt-{oid}-placed", "type": "order.placed", "occurred_at": at.isoformat(),
            "customer": customer(cid, **customer_overrides),
            "order": {"id": oid, "number": f"#{oid}", "total": total, "currency": currency,
                      "items": [{"sku": "DRN-1", "title": "Drone X", "category": category,
                                 "quantity": 1, "price": total}],
                      "discount_codes": codes or [], "referral_code": None}}


def follow(kind: str, oid: str, at: datetime, cid: str = "c-1") -> dict[str, Any]:
    event: dict[str, Any] = {"id": f"evt-{oid}-{kind}", "type": f"order.{kind}",
                             "occurred_at": at.isoformat(), "customer": {"id": cid},
                             "order": {"id": oid}}
    if kind == "shipped":
        event["shipment"] = {"carrier": "Yurtiçi Kargo", "tracking_number": f"YK{oid}",
                             "tracking_url": f"https://track.example.com/{oid}"}
    return event


def answer(eid: str, kind: str, score: int, at: datetime, cid: str = "c-1",
           comment: str | None = None) -> dict[str, Any]:
    return {"id": eid, "type": "survey.responded", "occurred_at": at.isoformat(),
            "customer": {"id": cid},
            "survey": {"kind": kind, "score": score, "comment": comment}}


def parsed(*raw: dict[str, Any]) -> list[Event]:
    return [parse_event(r) for r in raw]


def days(n: float) -> timedelta:
    return timedelta(days=n)
