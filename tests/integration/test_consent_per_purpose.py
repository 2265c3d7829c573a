"""Consent per purpose through the real pipeline (process-events, dispatch, sandbox channels),
and the newest fact per customer field, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from aftersale.db.models import Customer, Message
from aftersale.orchestration.passes import dispatch_due, drain_inbox
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import follow, placed
from tests.integration.helpers import feed, run_to, sent

NO_MARKETING = {"email": False, "sms": False, "whatsapp": False}
NO_OPT_IN = "no consent and no order-updates opt-in"


def _tracking_link(rt: Runtime, cid: str) -> Message:
    [message] = [m for m in sent(rt, cid) if m.template == "shipping_update"]
    return message


def _ship(rt: Runtime, cid: str, **customer: Any) -> None:
    feed(rt, placed(f"o-{cid}", START, cid, **customer), follow("shipped", f"o-{cid}", START, cid))


def _with_approved_whatsapp_template(content: Path) -> None:
    path = content / "shipping_update" / "tr.yaml"
    path.write_text(path.read_text(encoding="utf-8") + (
        "whatsapp_template:\n  content_sid: HX0123456789abcdef0123456789abcdef\n"
        "  variables:\n    \"1\": \"{{ order.tracking.url }}\"\n"), encoding="utf-8")


def test_a_tracking_link_goes_by_sms_or_whatsapp_only_with_an_opt_in(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    _with_approved_whatsapp_template(definitions_dirs[1])  # so only consent decides WhatsApp
    definitions = rt.definitions()
    assert rt.problems == []
    _ship(rt, "no-opt-in", consent=NO_MARKETING)
    _ship(rt, "phone-only", email=None, consent={"sms": False})
    _ship(rt, "sms-updates", consent=NO_MARKETING | {"order_updates": {"sms": True}})
    _ship(rt, "wa-updates", consent=NO_MARKETING | {"order_updates": {"whatsapp": True}})
    _ship(rt, "wa-marketing", consent=NO_MARKETING | {"whatsapp": True})
    drain_inbox(rt, definitions)
    counts = dispatch_due(rt, definitions)

    no_opt_in = _tracking_link(rt, "no-opt-in")
    assert (no_opt_in.status, no_opt_in.channel) == ("sent", "email")  # e-mail needs no consent
    assert no_opt_in.skips == [["whatsapp", NO_OPT_IN], ["sms", NO_OPT_IN]]
    phone_only = _tracking_link(rt, "phone-only")
    assert phone_only.status == "not_sent" and phone_only.channel is None
    assert phone_only.status_reason is not None and f"sms: {NO_OPT_IN}" in phone_only.status_reason
    sms = _tracking_link(rt, "sms-updates")
    assert (sms.status, sms.channel, sms.skips) == ("sent", "sms", [["whatsapp", NO_OPT_IN]])
    for cid in ("wa-updates", "wa-marketing"):
        whatsapp = _tracking_link(rt, cid)
        assert (whatsapp.status, whatsapp.channel, whatsapp.skips) == ("sent", "whatsapp", [])
    # every skip counted, as the flow reports it
    assert counts.channel_skips[f"whatsapp: {NO_OPT_IN}"] == 3
    assert counts.channel_skips[f"sms: {NO_OPT_IN}"] == 2
    assert counts.not_sent == 1


def test_a_reply_inside_the_window_the_customer_opened_needs_no_whatsapp_opt_in(
        rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1", consent=NO_MARKETING))
    drain_inbox(rt, definitions)
    with rt.factory() as session, session.begin():
        session.execute(update(Customer).where(Customer.id == "c-1")
                        .values(whatsapp_last_inbound_at=START - timedelta(hours=2)))
    feed(rt, follow("shipped", "o-1", START, "c-1"))
    run_to(rt, definitions, START)
    assert _tracking_link(rt, "c-1").channel == "whatsapp"


def test_an_order_updates_opt_in_withdrawn_later_stops_order_updates_by_sms(rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1", email=None,
                    consent={"sms": False, "order_updates": {"sms": True}}),
         {"id": "opt-out", "type": "consent.changed",
          "occurred_at": (START + timedelta(minutes=5)).isoformat(),
          "customer": {"id": "c-1", "consent": {"order_updates": {"sms": False}}}},
         follow("shipped", "o-1", START + timedelta(minutes=10), "c-1"))
    run_to(rt, definitions, START + timedelta(minutes=10))
    message = _tracking_link(rt, "c-1")
    assert message.status == "not_sent"
    assert message.skips == [["whatsapp", NO_OPT_IN], ["sms", NO_OPT_IN],
                             ["email", "no e-mail address"]]


# -- the newest fact per field wins ----------------------------------------------------------

def _customer(rt: Runtime, cid: str) -> Customer:
    with rt.factory() as session:
        customer = session.get(Customer, cid)
        assert customer is not None
        return customer


def _update(eid: str, minutes: int, **customer: Any) -> dict[str, Any]:
    return {"id": eid, "type": "customer.updated",
            "occurred_at": (START + timedelta(minutes=minutes)).isoformat(),
            "customer": {"id": "c-1", **customer}}


NEWER = _update("newer", 10, email="new@example.com", locale="pl",
                consent={"sms": False, "order_updates": {"whatsapp": False}})
OLDER = _update("older", 5, email="old@example.com", locale="tr", first_name="Ayşe",
                consent={"sms": True, "email": True,
                         "order_updates": {"whatsapp": True, "sms": True}})


def _assert_newest_facts_won(customer: Customer) -> None:
    # the newer event's facts stand
    assert (customer.email, customer.locale) == ("new@example.com", "pl")
    assert customer.consent_sms is False and customer.order_updates_whatsapp is False
    # what only the older event stated still fills what was unknown
    assert customer.first_name == "Ayşe"
    assert customer.consent_email is True and customer.order_updates_sms is True


def test_a_late_event_in_a_later_batch_does_not_overwrite_newer_fields_or_consent(
        rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, NEWER)
    drain_inbox(rt, definitions)
    feed(rt, OLDER)  # a retried webhook, arriving after the newer fact was applied
    counts = drain_inbox(rt, definitions)
    assert counts.processed == 1 and counts.failed == 0
    _assert_newest_facts_won(_customer(rt, "c-1"))


def test_a_late_event_in_the_same_batch_does_not_overwrite_newer_fields_or_consent(
        rt: Runtime) -> None:
    feed(rt, NEWER, OLDER)
    counts = drain_inbox(rt, rt.definitions())
    assert counts.processed == 2
    _assert_newest_facts_won(_customer(rt, "c-1"))


def test_a_newer_event_still_changes_what_an_older_one_set(rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, OLDER)
    drain_inbox(rt, definitions)
    feed(rt, NEWER)
    drain_inbox(rt, definitions)
    customer = _customer(rt, "c-1")
    _assert_newest_facts_won(customer)
    assert customer.fact_times is not None
    assert customer.fact_times["email"] == (START + timedelta(minutes=10)).isoformat()
    assert customer.fact_times["first_name"] == (START + timedelta(minutes=5)).isoformat()
