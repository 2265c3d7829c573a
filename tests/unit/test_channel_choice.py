"""Channel choice: the first channel in the step's order that is configured, has content, has an
address and the consent its purpose needs; every skipped channel says why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.channel_choice import Choice, Contact, choose_channel

ALL = {"email", "sms", "whatsapp"}
EMAIL, PHONE = "ayse@example.com", "+905321234567"
FULL = Contact(EMAIL, PHONE, {"email": True, "sms": True, "whatsapp": True}, whatsapp_window_open=True)


def everything(channel: str) -> bool:
    return True


def choose(channels, contact=FULL, transactional=False, available=ALL, content=everything):
    return choose_channel(channels, contact, transactional, set(available), content)


@pytest.mark.parametrize(
    ("channels", "channel", "recipient"),
    [
        (["whatsapp", "sms", "email"], "whatsapp", f"whatsapp:{PHONE}"),
        (["sms", "whatsapp"], "sms", PHONE),
        (["email", "sms"], "email", EMAIL),
        (("email",), "email", EMAIL),
    ],
)
def test_the_first_listed_channel_that_works_is_chosen(channels, channel, recipient):
    choice = choose(channels)
    assert (choice.channel, choice.recipient, choice.skipped) == (channel, recipient, [])


def test_a_whatsapp_recipient_is_the_phone_prefixed_with_whatsapp():
    choice = choose(["whatsapp"])
    assert choice.recipient == "whatsapp:+905321234567"


@pytest.mark.parametrize(
    ("contact", "available", "content", "skipped"),
    [
        (FULL, {"email"}, everything,
         [("whatsapp", "channel not configured"), ("sms", "channel not configured")]),
        (FULL, ALL, lambda ch: ch == "email",
         [("whatsapp", "no content for this channel"), ("sms", "no content for this channel")]),
        (Contact(EMAIL, None, {"email": True, "sms": True, "whatsapp": True}), ALL, everything,
         [("whatsapp", "no phone number"), ("sms", "no phone number")]),
        (Contact(EMAIL, PHONE, {"email": True, "whatsapp": False}), ALL, everything,
         [("whatsapp", "no consent"), ("sms", "no consent")]),
    ],
)
def test_each_skipped_channel_has_its_reason_and_the_next_one_is_used(
        contact, available, content, skipped):
    choice = choose(["whatsapp", "sms", "email"], contact, available=available, content=content)
    assert choice.channel == "email"
    assert choice.recipient == EMAIL
    assert choice.skipped == skipped


def test_the_reasons_are_checked_in_order_configured_content_address_consent():
    nobody = Contact(None, None, {})
    choice = choose(["whatsapp", "sms", "email"], nobody, available={"sms", "email"},
                    content=lambda ch: ch != "sms")
    assert choice.skipped == [("whatsapp", "channel not configured"),
                              ("sms", "no content for this channel"),
                              ("email", "no e-mail address")]
    assert choice.channel is None and choice.recipient is None


def test_when_no_channel_works_the_reason_lists_every_skip():
    choice = choose(["sms", "email"], Contact(None, PHONE, {"sms": False}))
    assert choice == Choice(None, None, [("sms", "no consent"), ("email", "no e-mail address")])
    assert choice.reason == "sms: no consent; email: no e-mail address"


def test_an_empty_channel_list_chooses_nothing_and_says_so():
    choice = choose([])
    assert choice.channel is None
    assert choice.reason == "no channel listed"


def test_a_transactional_email_needs_an_address_but_no_marketing_consent():
    no_consent = Contact(EMAIL, PHONE, {"email": False})
    assert choose(["email"], no_consent, transactional=True).channel == "email"
    assert choose(["email"], no_consent, transactional=False).channel is None


OUTSIDE_WINDOW = {"whatsapp_window_open": False}


def contact(consent=None, order_updates=None, **kwargs):
    return Contact(EMAIL, PHONE, consent or {}, order_updates=order_updates or {}, **kwargs)


def choose_tx(channels, who):
    """A transactional message, with an approved WhatsApp template (the 24-hour rule apart)."""
    return choose_channel(channels, who, True, set(ALL), everything,
                          has_approved_whatsapp_template=True)


@pytest.mark.parametrize("sms_consent", [None, False])
def test_an_order_update_is_not_texted_without_sms_consent_or_an_order_updates_opt_in(
        sms_consent):
    consent = {} if sms_consent is None else {"sms": sms_consent}
    choice = choose_tx(["sms", "email"], contact(consent))
    assert choice.channel == "email"
    assert choice.skipped == [("sms", "no consent and no order-updates opt-in")]


def test_an_order_update_is_texted_with_the_sms_order_updates_opt_in_even_without_marketing():
    choice = choose_tx(["sms", "email"], contact({"sms": False}, {"sms": True}))
    assert (choice.channel, choice.recipient, choice.skipped) == ("sms", PHONE, [])


def test_an_order_update_is_texted_with_sms_marketing_consent():
    assert choose_tx(["sms"], contact({"sms": True})).channel == "sms"


def test_an_order_update_goes_to_whatsapp_only_with_a_whatsapp_opt_in():
    no_opt_in = contact({"sms": True}, {"sms": True}, **OUTSIDE_WINDOW)
    choice = choose_tx(["whatsapp", "sms"], no_opt_in)
    assert choice.channel == "sms"
    assert choice.skipped == [("whatsapp", "no consent and no order-updates opt-in")]
    with_order_updates = contact({}, {"whatsapp": True}, **OUTSIDE_WINDOW)
    assert choose_tx(["whatsapp", "sms"], with_order_updates).channel == "whatsapp"
    with_marketing = contact({"whatsapp": True}, {}, **OUTSIDE_WINDOW)
    assert choose_tx(["whatsapp", "sms"], with_marketing).channel == "whatsapp"


def test_an_order_update_replying_inside_the_window_the_customer_opened_needs_no_opt_in():
    wrote_to_us = contact({}, {}, whatsapp_window_open=True)
    choice = choose_channel(["whatsapp"], wrote_to_us, True, set(ALL), everything)
    assert choice.channel == "whatsapp"


def test_an_order_updates_opt_in_is_not_marketing_consent():
    opted_in = contact({}, {"sms": True, "whatsapp": True})
    choice = choose(["whatsapp", "sms"], opted_in, transactional=False)
    assert choice.channel is None
    assert choice.skipped == [("whatsapp", "no consent"), ("sms", "no consent")]


def test_a_suppression_wins_over_every_consent_and_opt_in():
    everything_given = contact({"email": True, "sms": True, "whatsapp": True},
                               {"sms": True, "whatsapp": True},
                               suppressed={"sms": "stop", "whatsapp": "stop", "email": "bounce"})
    for transactional in (True, False):
        choice = choose_channel(["whatsapp", "sms", "email"], everything_given, transactional,
                                set(ALL), everything, has_approved_whatsapp_template=True)
        assert choice.channel is None
        assert choice.skipped == [("whatsapp", "suppressed (stop)"), ("sms", "suppressed (stop)"),
                                  ("email", "suppressed (bounce)")]


def test_a_transactional_message_still_needs_an_address_configuration_and_content():
    choice = choose(["sms", "whatsapp", "email"], Contact(None, None, {}), transactional=True,
                    available={"whatsapp", "email", "sms"}, content=lambda ch: ch != "whatsapp")
    assert choice.skipped == [("sms", "no phone number"),
                              ("whatsapp", "no content for this channel"),
                              ("email", "no e-mail address")]
    assert choice.channel is None


def test_missing_consent_is_treated_as_no_consent():
    assert choose(["email"], Contact(EMAIL, PHONE, {"sms": True})).skipped == [
        ("email", "no consent")]


@given(
    channels=st.lists(st.sampled_from(sorted(ALL)), unique=True, max_size=3),
    email=st.sampled_from([None, EMAIL]), phone=st.sampled_from([None, PHONE]),
    consent=st.dictionaries(st.sampled_from(sorted(ALL)), st.booleans()),
    order_updates=st.dictionaries(st.sampled_from(["sms", "whatsapp"]), st.booleans()),
    window_open=st.booleans(),
    transactional=st.booleans(),
    available=st.sets(st.sampled_from(sorted(ALL))),
    with_content=st.sets(st.sampled_from(sorted(ALL))),
)
def test_a_chosen_channel_always_satisfies_every_rule_and_every_skip_is_explained(
        channels, email, phone, consent, order_updates, window_open, transactional, available,
        with_content):
    contact = Contact(email, phone, consent, whatsapp_window_open=window_open,
                      order_updates=order_updates)
    choice = choose_channel(channels, contact, transactional, available,
                            lambda ch: ch in with_content, has_approved_whatsapp_template=True)
    skipped_channels = [c for c, _ in choice.skipped]
    if choice.channel is None:
        assert skipped_channels == list(channels)
        assert choice.recipient is None
        return
    # every channel before the chosen one was skipped with a reason, none after it was tried
    assert skipped_channels == list(channels[: channels.index(choice.channel)])
    assert all(reason for _, reason in choice.skipped)
    assert choice.channel in available and choice.channel in with_content
    address = email if choice.channel == "email" else phone
    assert address
    assert choice.recipient.endswith(address)
    if not transactional:
        assert consent.get(choice.channel, False)
    elif choice.channel == "sms":
        assert consent.get("sms", False) or order_updates.get("sms", False)
    elif choice.channel == "whatsapp":
        assert (consent.get("whatsapp", False) or order_updates.get("whatsapp", False)
                or window_open)
