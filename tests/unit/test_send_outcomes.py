"""Provider payloads -> the normalized Delivery/Inbound models, and what each report does to an
address: tables over every SendGrid event kind and every Twilio status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aftersale.pipeline.send_outcomes import (
    MESSAGE_STATUS_RANK,
    Delivery,
    DeliveryKind,
    Effect,
    effect_of,
    sendgrid_dropped_suppression,
    twilio_error_suppression,
)
from aftersale.webhooks import sendgrid as sg
from aftersale.webhooks import twilio as tw

RECEIVED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TS = 1772441940  # 2026-03-02 08:59:00 UTC
SG_ID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"


def sg_event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"email": "Ayse@Example.com", "timestamp": TS, "event": kind,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "sg_event_id": f"ev-{kind}",
            "sg_message_id": SG_ID, "category": ["shipping_update"],
            "aftersale_message_id": "msg_1", **fields}


# kind, extra fields, normalized kind, reason, error_code, bounce_type, suppression reason
SENDGRID_TABLE: list[tuple[str, dict[str, Any], str, str | None, str | None, str | None, str | None]] = [
    ("processed", {}, "processed", None, None, None, None),
    ("deferred", {"response": "400 try again later", "attempt": "5"}, "deferred",
     "400 try again later", None, None, None),
    ("delivered", {"response": "250 OK", "tls": 1}, "delivered", "250 OK", None, None, None),
    ("bounce", {"type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 no such user",
                "bounce_classification": "Invalid Address"},
     "bounced", "550 5.1.1 no such user", "5.1.1", "hard", "bounce"),
    ("bounce", {"type": "blocked", "status": "4.0.0", "reason": "421 rate limited"},
     "bounced", "421 rate limited", "4.0.0", "soft", None),
    ("bounce", {"reason": "550 gone"}, "bounced", "550 gone", None, "hard", "bounce"),
    ("dropped", {"reason": "Bounced Address", "status": "5.0.0"}, "dropped", "Bounced Address",
     "5.0.0", None, "bounce"),
    ("dropped", {"reason": "Invalid SMTPAPI header"}, "dropped", "Invalid SMTPAPI header",
     None, None, None),
    ("open", {"sg_machine_open": False, "useragent": "Mozilla/5.0", "ip": "1.2.3.4"},
     "opened", None, None, None, None),
    ("click", {"url": "https://track.example.com/o-1", "useragent": "Mozilla/5.0"},
     "clicked", None, None, None, None),
    ("spamreport", {}, "spam_report", None, None, None, "spam_report"),
    ("unsubscribe", {}, "unsubscribed", None, None, None, "unsubscribe"),
    ("group_unsubscribe", {"asm_group_id": 42}, "unsubscribed", None, None, None, "unsubscribe"),
    ("group_resubscribe", {"asm_group_id": 42}, "resubscribed", None, None, None, None),
    ("account_status_change", {"type": "compliance_suspend"}, "unknown",
     "unknown SendGrid event 'account_status_change'", None, None, None),
]


@pytest.mark.parametrize(("name", "fields", "kind", "reason", "code", "bounce", "suppresses"),
                         SENDGRID_TABLE, ids=[f"{r[0]}-{r[2]}-{r[5]}" for r in SENDGRID_TABLE])
def test_every_sendgrid_event_kind_is_normalized(name: str, fields: dict[str, Any], kind: str,
                                                reason: str | None, code: str | None,
                                                bounce: str | None, suppresses: str | None) -> None:
    raw = sg_event(name, **fields)
    [delivery] = sg.parse([raw], RECEIVED)
    assert delivery == Delivery(
        provider="sendgrid", provider_event_id=f"ev-{name}", kind=DeliveryKind(kind),
        message_id="msg_1", provider_message_id=SG_ID, recipient="ayse@example.com",
        occurred_at=datetime(2026, 3, 2, 8, 59, tzinfo=UTC), reason=reason, error_code=code,
        bounce_type=bounce, raw=raw, channel="email")  # type: ignore[arg-type]
    effect = effect_of(delivery)
    if name == "group_resubscribe":
        assert effect == Effect("lift", "email", "ayse@example.com", "unsubscribe")
    elif suppresses is None:
        assert effect is None
    else:
        assert effect == Effect("suppress", "email", "ayse@example.com", suppresses)


def test_a_sendgrid_event_missing_optional_fields_still_parses() -> None:
    [delivery] = sg.parse([{"event": "delivered"}], RECEIVED)
    assert delivery.occurred_at == RECEIVED
    assert (delivery.message_id, delivery.provider_message_id, delivery.recipient) == (None, None, None)
    assert delivery.provider_event_id.startswith("sha256:")
    # The same event again gets the same stand-in id, so a resend is a duplicate.
    assert sg.parse([{"event": "delivered"}], RECEIVED)[0].provider_event_id == delivery.provider_event_id
    assert effect_of(delivery) is None


def test_an_implausible_message_id_in_custom_args_is_ignored() -> None:
    [delivery] = sg.parse([sg_event("delivered", aftersale_message_id="x" * 41)], RECEIVED)
    assert delivery.message_id is None


@pytest.mark.parametrize("payload", [{"event": "delivered"}, "x", None, [1], [{"event": "open"}, []]])
def test_a_sendgrid_body_must_be_an_array_of_objects(payload: Any) -> None:
    with pytest.raises(ValueError, match=r"array|object"):
        sg.parse(payload, RECEIVED)


# status, normalized kind
TWILIO_TABLE = [
    ("accepted", "queued"), ("scheduled", "queued"), ("queued", "queued"), ("sending", "sent"),
    ("sent", "sent"), ("delivered", "delivered"), ("undelivered", "undelivered"),
    ("failed", "failed"), ("read", "read"), ("canceled", "failed"), ("receiving", "unknown"),
    ("received", "unknown"), ("partially_delivered", "unknown"),
]


@pytest.mark.parametrize(("status", "kind"), TWILIO_TABLE)
def test_every_twilio_status_is_normalized(status: str, kind: str) -> None:
    form = {"MessageSid": "SM123", "MessageStatus": status, "To": "+905321234567",
            "From": "+15017122661", "AccountSid": "AC1"}
    delivery = tw.parse_status(form, message_id="msg_1", received_at=RECEIVED)
    assert (delivery.provider, delivery.provider_event_id, delivery.kind) == (
        "twilio", f"SM123:{status}", DeliveryKind(kind))
    assert (delivery.message_id, delivery.provider_message_id, delivery.recipient,
            delivery.channel) == ("msg_1", "SM123", "+905321234567", "sms")
    assert delivery.occurred_at == RECEIVED and delivery.raw == form
    assert delivery.error_code is None and effect_of(delivery) is None


@pytest.mark.parametrize(("code", "suppresses"), [
    ("21610", "stop"), ("21211", "invalid"), ("21614", "invalid"), ("21635", "invalid"),
    ("30003", None), ("30007", None), ("63016", None),
])
def test_twilio_error_codes_that_rule_out_a_number_suppress_it(code: str,
                                                               suppresses: str | None) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": code,
            "To": "whatsapp:+905321234567"}
    delivery = tw.parse_status(form, received_at=RECEIVED)
    assert (delivery.error_code, delivery.channel, delivery.recipient) == (
        code, "whatsapp", "+905321234567")
    assert delivery.reason == tw.ERROR_TEXTS[code]
    assert twilio_error_suppression(code) == suppresses
    expected = Effect("suppress", "whatsapp", "+905321234567", suppresses) if suppresses else None
    assert effect_of(delivery) == expected


def test_a_delivered_callback_with_error_code_zero_has_no_error() -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "ErrorCode": "0", "To": "+1555"}
    assert tw.parse_status(form, received_at=RECEIVED).error_code is None


def test_a_status_callback_needs_a_message_sid() -> None:
    with pytest.raises(ValueError, match="MessageSid"):
        tw.parse_status({"MessageStatus": "sent"}, received_at=RECEIVED)


@pytest.mark.parametrize(("sender", "channel", "address"), [
    ("+905321234567", "sms", "+905321234567"),
    ("whatsapp:+905321234567", "whatsapp", "+905321234567"),
])
def test_inbound_messages_are_normalized(sender: str, channel: str, address: str) -> None:
    form = tw.parse_form(f"MessageSid=SM9&From={sender.replace('+', '%2B')}&To=%2B15017122661"
                         "&Body=+Stop+&OptOutType=STOP".encode())
    inbound = tw.parse_inbound(form)
    assert (inbound.provider, inbound.provider_message_id, inbound.channel, inbound.from_address,
            inbound.to_address, inbound.body, inbound.opt_out_type) == (
        "twilio", "SM9", channel, address, "+15017122661", " Stop ", "STOP")
    assert inbound.keyword == "stop"
    assert inbound.raw["From"] == sender


def test_twilios_opt_out_type_wins_over_our_keyword_table() -> None:
    form = {"MessageSid": "SM1", "From": "+1555", "Body": "ARRET", "OptOutType": "STOP"}
    assert tw.parse_inbound(form).keyword == "stop"
    assert tw.parse_inbound({**form, "OptOutType": ""}).keyword is None


def test_a_repeated_form_parameter_keeps_every_value() -> None:
    form = tw.parse_form(b"MessageSid=SM1&From=%2B1555&MediaUrl0=a&Tag=x&Tag=y&Empty=")
    assert form["Tag"] == "x" and form.getlist("Tag") == ["x", "y"]
    assert tw.raw_form(form) == {"MessageSid": "SM1", "From": "+1555", "MediaUrl0": "a",
                                 "Tag": ["x", "y"], "Empty": ""}


@pytest.mark.parametrize("form", [{"From": "+1555"}, {"MessageSid": "SM1"}, {}])
def test_an_inbound_message_needs_sid_and_sender(form: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="MessageSid and From"):
        tw.parse_inbound(form)


@pytest.mark.parametrize(("reason", "suppresses"), [
    ("Bounced Address", "bounce"), ("Invalid", "invalid"), ("Unsubscribed Address", "provider_suppression"),
    ("Spam Reporting Address", "provider_suppression"), ("Invalid SMTPAPI header", None),
    ("Spam Content (if spam checker app enabled)", None), ("Recipient List over Package Quota", None),
    (None, None),
])
def test_a_drop_suppresses_only_for_reasons_about_the_address(reason: str | None,
                                                              suppresses: str | None) -> None:
    assert sendgrid_dropped_suppression(reason) == suppresses


def test_status_ranks_only_move_forward() -> None:
    order = ["queued", "processed", "deferred", "delivered", "opened", "clicked", "spam_report"]
    ranks = [MESSAGE_STATUS_RANK[k] for k in order]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert MESSAGE_STATUS_RANK["sent"] == MESSAGE_STATUS_RANK["processed"]
    assert MESSAGE_STATUS_RANK["read"] == MESSAGE_STATUS_RANK["opened"] > MESSAGE_STATUS_RANK["delivered"]
    assert {"unknown", "resubscribed"}.isdisjoint(MESSAGE_STATUS_RANK)
    assert all(type(k) is str for k in MESSAGE_STATUS_RANK)  # drivers must see plain strings
