"""The normalized event format: what parse_event accepts, normalizes and refuses, and why."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.errors import EventError
from aftersale.core.events import STORED, SURVEY_SCALES, Event, EventType, normalize_phone, parse_event
from aftersale.intake.inbox import event_row

DESIGN_EVENT = {
    "id": "evt-1001", "type": "order.placed", "occurred_at": "2026-03-01T10:00:00+03:00",
    "customer": {"id": "c-1", "email": "ayse@example.com", "phone": "+905321234567",
                 "first_name": "Ayşe", "locale": "tr", "timezone": "Europe/Istanbul",
                 "country": "TR", "consent": {"email": True, "sms": False, "whatsapp": True}},
    "order": {"id": "o-1", "number": "#1001", "total": "129.90", "currency": "TRY",
              "items": [{"sku": "DRN-1", "title": "Drone X", "category": "drones",
                         "quantity": 1, "price": "129.90"}],
              "discount_codes": [], "referral_code": None},
}
KNOWN = ("order.placed, order.shipped, order.delivered, order.cancelled, order.refunded, "
         "customer.updated, consent.changed, survey.responded, shipment.updated")


def event(**changes) -> dict:
    data = copy.deepcopy(DESIGN_EVENT)
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        if value is ...:
            target.pop(last, None)
        else:
            target[last] = value
    return data


def rejected(data) -> str:
    with pytest.raises(EventError) as info:
        parse_event(data)
    return str(info.value)


def test_the_design_example_parses_into_normalized_parts():
    parsed = parse_event(DESIGN_EVENT)
    assert isinstance(parsed, Event)
    assert parsed.id == "evt-1001"
    assert parsed.type is EventType.ORDER_PLACED
    assert parsed.occurred_at == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
    assert parsed.customer.phone == "+905321234567"
    assert parsed.customer.consent.whatsapp is True and parsed.customer.consent.sms is False
    assert parsed.order.total == Decimal("129.90")
    assert parsed.order.items[0].price == Decimal("129.90")
    assert parsed.customer_id == "c-1"
    assert parsed.order_id == "o-1"


def test_the_input_dict_is_not_modified():
    data = copy.deepcopy(DESIGN_EVENT)
    parse_event(data)
    assert data == DESIGN_EVENT


# -- type -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["order.exploded", "Order.Placed", "", "order"])
def test_an_unknown_type_is_rejected_with_the_list_of_known_types(kind):
    message = rejected(event(type=kind))
    assert message == f"type: unknown event type '{kind}'; known types: {KNOWN}"


@pytest.mark.parametrize("kind", [["order.placed"], {"name": "order.placed"}, 7, None])
def test_a_type_that_is_not_text_is_an_event_error_not_a_crash(kind):
    message = rejected(event(type=kind))
    assert message.startswith("type: ")


# -- time -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("written", "utc"),
    [
        ("2026-03-01T10:00:00+03:00", datetime(2026, 3, 1, 7, 0, tzinfo=UTC)),
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("2026-03-01T01:30:00-05:00", datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
        ("2026-03-01T00:30:00+01:00", datetime(2026, 2, 28, 23, 30, tzinfo=UTC)),
    ],
)
def test_occurred_at_is_converted_to_utc(written, utc):
    parsed = parse_event(event(occurred_at=written))
    assert parsed.occurred_at == utc
    assert parsed.occurred_at.utcoffset().total_seconds() == 0


def test_occurred_at_without_an_offset_is_rejected_with_an_example():
    assert rejected(event(occurred_at="2026-03-01T10:00:00")) == (
        "occurred_at: occurred_at needs a UTC offset, e.g. 2026-03-01T10:00:00+03:00")


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T10:00:00Z", ...])
def test_a_missing_or_unreadable_occurred_at_is_rejected(value):
    assert rejected(event(occurred_at=value)).startswith("occurred_at: ")


# -- phone and e-mail -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("+905321234567", "TR", "+905321234567"),
        ("0532 123 45 67", "TR", "+905321234567"),
        ("0532 123 45 67", "tr", "+905321234567"),
        ("+90 (532) 123-45-67", None, "+905321234567"),
        ("07400 123456", "GB", "+447400123456"),
        ("512 345 678", "PL", "+48512345678"),
        ("(201) 555-0123", "US", "+12015550123"),
    ],
)
def test_a_phone_is_normalized_to_e164_using_the_customer_country(raw, country, e164):
    parsed = parse_event(event(customer__phone=raw, customer__country=country))
    assert parsed.customer.phone == e164


def test_a_national_number_without_a_country_is_rejected_with_what_to_do():
    message = rejected(event(customer__phone="0532 123 45 67", customer__country=None))
    assert message == ("customer: '0532 123 45 67' is not a phone number; use E.164 "
                       "(+905321234567) or give customer.country")


@pytest.mark.parametrize("raw", ["+90 123", "+1 000 000 0000", "0532 12"])
def test_a_phone_that_is_not_a_valid_number_is_rejected(raw):
    message = rejected(event(customer__phone=raw))
    assert f"'{raw}' is not a valid phone number for its country" in message
    assert message.startswith("customer: ")


def test_normalize_phone_can_be_used_on_its_own():
    assert normalize_phone("0532 123 45 67", "TR") == "+905321234567"
    with pytest.raises(ValueError, match="not a phone number"):
        normalize_phone("call me", None)


@pytest.mark.parametrize("email", ["not-an-email", "ayse@", "@example.com", "a b@example.com"])
def test_an_invalid_email_is_rejected_with_a_clear_message(email):
    message = rejected(event(customer__email=email))
    assert message.startswith(f"customer.email: '{email}' is not a valid e-mail address")


def test_an_email_is_normalized_and_an_empty_one_means_none():
    assert parse_event(event(customer__email="ayse@EXAMPLE.COM")).customer.email == (
        "ayse@example.com")
    assert parse_event(event(customer__email="")).customer.email is None


@pytest.mark.parametrize(("email", "phone", "country"), [
    ("Ayse@EXAMPLE.COM", "0532 123 45 67", "TR"), ("ayse@example.com", "+905321234567", None),
    ("", "(201) 555-0123", "US"), (None, None, "DE")])
def test_a_stored_payload_reads_back_as_the_event_that_was_stored(email, phone, country):
    """Processing validates inbox payloads with STORED, which trusts the e-mail address and
    phone number intake normalized: reading back must give exactly the event intake made."""
    parsed = parse_event(event(customer__email=email, customer__phone=phone,
                               customer__country=country))
    text = event_row(parsed, "test", parsed.occurred_at)["payload_json"]
    assert isinstance(text, str)
    assert Event.model_validate_json(text, context=STORED) == parsed  # as process-events reads
    assert Event.model_validate(json.loads(text), context=STORED) == parsed  # a scrubbed one
    assert Event.model_validate(json.loads(text)) == parsed  # normalizing again changes nothing


def test_only_stored_payloads_skip_normalizing_contact_details():
    raw = event(customer__email="Ayse@EXAMPLE.COM", customer__phone="0532 123 45 67")
    assert Event.model_validate(raw).customer.phone == "+905321234567"
    trusted = Event.model_validate(raw, context=STORED).customer
    assert (trusted.email, trusted.phone) == ("Ayse@EXAMPLE.COM", "0532 123 45 67")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("customer__timezone", "Mars/Olympus", "is not an IANA time zone"),
        ("customer__country", "TUR", "customer.country"),
        ("customer__id", "", "customer.id"),
        ("order__id", "", "order.id"),
        ("order__currency", "LIRA", "order.currency"),
        ("order__items", [{"quantity": 0, "price": "1"}], "order.items.0.quantity"),
        ("id", "", "id: "),
    ],
)
def test_invalid_customer_and_order_fields_are_rejected_naming_the_field(field, value, fragment):
    assert fragment in rejected(event(**{field: value}))


def test_codes_and_currency_are_normalized():
    parsed = parse_event(event(customer__country="tr", order__currency="try",
                               order__discount_codes=[{"code": "WELCOME10", "amount": "5"},
                                                      "SPRING"]))
    assert parsed.customer.country == "TR"
    assert parsed.order.currency == "TRY"
    assert parsed.order.discount_codes == ["WELCOME10", "SPRING"]


# -- money ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("written", "amount"), [("129.90", "129.90"), ("0", "0"), (100, "100"),
                                                 ("1e3", "1000")])
def test_money_is_read_as_an_exact_decimal(written, amount):
    assert parse_event(event(order__total=written)).order.total == Decimal(amount)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("order__total", 129.9, 'money must be a decimal string such as "129.90", not a float'),
        ("order__total", "12,90", "'12,90' is not a decimal amount"),
        ("order__total", "-5", "'-5' is not a non-negative amount"),
        ("order__total", "NaN", "'NaN' is not a non-negative amount"),
        ("order__total", "Infinity", "is not a non-negative amount"),
        ("order__items", [{"sku": "A", "price": 9.99}], "not a float"),
    ],
)
def test_bad_money_is_refused_with_the_reason(field, value, fragment):
    message = rejected(event(**{field: value}))
    assert fragment in message
    assert message.startswith("order.")


def test_an_order_placed_without_a_total_gets_the_sum_of_its_items():
    parsed = parse_event(event(order__total=..., order__items=[
        {"sku": "A", "quantity": 2, "price": "10.25"}, {"sku": "B", "price": "1.00"}]))
    assert parsed.order.total == Decimal("21.50")


# -- unknown fields and required parts --------------------------------------------------------

def test_unknown_fields_are_kept_at_every_level():
    parsed = parse_event(event(source="shopify", customer__tags=["vip"],
                               order__note="gift wrap",
                               order__items=[{"sku": "A", "price": "1", "colour": "red"}]))
    assert parsed.model_extra == {"source": "shopify"}
    assert parsed.customer.model_extra == {"tags": ["vip"]}
    assert parsed.order.model_extra == {"note": "gift wrap"}
    assert parsed.order.items[0].model_extra == {"colour": "red"}
    dumped = parsed.model_dump(mode="json")
    assert dumped["source"] == "shopify" and dumped["order"]["note"] == "gift wrap"


@pytest.mark.parametrize(
    ("kind", "removed", "message"),
    [
        ("order.placed", "order", "a order.placed event needs order"),
        ("order.placed", "customer", "a order.placed event needs customer"),
        ("order.shipped", "order", "a order.shipped event needs order"),
        ("order.delivered", "order", "a order.delivered event needs order"),
        ("order.cancelled", "order", "a order.cancelled event needs order"),
        ("order.refunded", "order", "a order.refunded event needs order"),
        ("customer.updated", "customer", "a customer.updated event needs customer"),
        ("consent.changed", "customer", "a consent.changed event needs customer"),
        ("survey.responded", "customer", "a survey.responded event needs customer and survey"),
    ],
)
def test_each_type_requires_its_parts(kind, removed, message):
    data = {k: v for k, v in event(type=kind).items() if k != removed}
    assert rejected(data) == f"event: {message}"


@pytest.mark.parametrize(
    ("kind", "parts"),
    [
        ("order.shipped", {"order": {"id": "o-1"},
                           "shipment": {"carrier": "UPS", "tracking_number": "1Z",
                                        "tracking_url": "https://ups.example/1Z"}}),
        ("order.delivered", {"order": {"id": "o-1"}}),
        ("order.cancelled", {"order": {"id": "o-1"}}),
        ("order.refunded", {"order": {"id": "o-1"}}),
        ("customer.updated", {"customer": {"id": "c-1", "locale": "pl"}}),
        ("consent.changed", {"customer": {"id": "c-1", "consent": {"sms": True}}}),
        ("survey.responded", {"customer": {"id": "c-1"},
                              "survey": {"kind": "nps", "score": 9, "order_id": "o-1"}}),
    ],
)
def test_each_type_parses_with_only_its_required_parts(kind, parts):
    parsed = parse_event({"id": "e-1", "type": kind, "occurred_at": "2026-03-01T10:00:00Z",
                          **parts})
    assert parsed.type == kind
    if kind == "order.shipped":
        assert parsed.shipment.tracking_url == "https://ups.example/1Z"
    if kind == "survey.responded":
        assert parsed.order_id == "o-1"  # linked through the survey
        assert parsed.survey.score == 9


def test_an_order_event_without_a_total_other_than_placed_keeps_total_unknown():
    parsed = parse_event({"id": "e", "type": "order.shipped",
                          "occurred_at": "2026-03-01T10:00:00Z", "order": {"id": "o"}})
    assert parsed.order.total is None


# -- surveys ----------------------------------------------------------------------------------

def survey(kind, score) -> dict:
    return {"id": "e-s", "type": "survey.responded", "occurred_at": "2026-03-01T10:00:00Z",
            "customer": {"id": "c-1"}, "survey": {"kind": kind, "score": score}}


@pytest.mark.parametrize(("kind", "score"), [(k, s) for k, (lo, hi) in SURVEY_SCALES.items()
                                             for s in (lo, hi)])
def test_survey_scores_at_the_ends_of_each_scale_are_accepted(kind, score):
    assert parse_event(survey(kind, score)).survey.score == score


@pytest.mark.parametrize(
    ("kind", "score", "message"),
    [
        ("nps", 11, "survey: nps score must be between 0 and 10, got 11"),
        ("nps", -1, "survey: nps score must be between 0 and 10, got -1"),
        ("csat", 0, "survey: csat score must be between 1 and 5, got 0"),
        ("csat", 6, "survey: csat score must be between 1 and 5, got 6"),
        ("ces", 0, "survey: ces score must be between 1 and 7, got 0"),
        ("ces", 8, "survey: ces score must be between 1 and 7, got 8"),
    ],
)
def test_survey_scores_outside_the_scale_are_rejected(kind, score, message):
    assert rejected(survey(kind, score)) == message


@given(kind=st.sampled_from(sorted(SURVEY_SCALES)), score=st.integers(-50, 50))
def test_a_survey_score_is_accepted_exactly_when_it_is_on_the_scale(kind, score):
    low, high = SURVEY_SCALES[kind]
    if low <= score <= high:
        assert parse_event(survey(kind, score)).survey.score == score
    else:
        with pytest.raises(EventError, match=f"{kind} score must be between"):
            parse_event(survey(kind, score))


def test_an_unknown_survey_kind_is_rejected():
    assert rejected(survey("ces2", 3)).startswith("survey.kind: ")


# -- shape ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [[], "order.placed", None, 42])
def test_an_event_that_is_not_an_object_is_rejected(data):
    assert rejected(data) == "an event must be a JSON object"


def test_every_reason_is_reported_in_one_line():
    message = rejected(event(customer__email="nope", order__total=1.5, occurred_at="soon"))
    assert "\n" not in message
    for where in ("occurred_at: ", "customer.email: ", "order.total: "):
        assert where in message
    assert message.count("; ") >= 2


def _consent_event(consent):
    return {"id": "e-1", "type": "consent.changed", "occurred_at": "2026-03-01T10:00:00Z",
            "customer": {"id": "c-1", "consent": consent}}


def test_order_update_opt_ins_sit_beside_marketing_consent():
    parsed = parse_event(_consent_event({"sms": False, "order_updates": {"sms": True,
                                                                         "whatsapp": True}}))
    consent = parsed.customer.consent
    assert (consent.sms, consent.email, consent.whatsapp) == (False, None, None)
    assert (consent.order_updates.sms, consent.order_updates.whatsapp) == (True, True)
    assert parse_event(_consent_event({"sms": True})).customer.consent.order_updates is None


@pytest.mark.parametrize(
    ("consent", "message"),
    [
        ({"sms": "yes"}, "customer.consent.sms: must be true, false or null, got 'yes'"),
        ({"email": "false"}, "customer.consent.email: must be true, false or null, got 'false'"),
        ({"whatsapp": 1}, "customer.consent.whatsapp: must be true, false or null, got 1"),
        ({"order_updates": {"sms": "on"}},
         "customer.consent.order_updates.sms: must be true, false or null, got 'on'"),
        ({"order_updates": {"whatsapp": 0}},
         "customer.consent.order_updates.whatsapp: must be true, false or null, got 0"),
        ({"order_updates": True}, "customer.consent.order_updates: must be an object"),
        ("yes", "customer.consent: must be an object"),
        (["sms"], "customer.consent: must be an object"),
    ],
)
def test_a_consent_of_the_wrong_type_is_refused_naming_the_field(consent, message):
    with pytest.raises(EventError) as caught:
        parse_event(_consent_event(consent))
    assert message in str(caught.value)
