"""Signed links: tokens that cannot be forged, tampered with, reused under another key or for
another purpose; key rotation; links sent in the old format; and stable referral codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.config import Settings
from aftersale.core.links import LEGACY_PURPOSES, BadToken, Links, Purpose, Signer, referral_code
from aftersale.pipeline.runtime import link_signer

SIGNER = Signer(b"test-secret-key")
SURVEY, UNSUBSCRIBE = Purpose.SURVEY, Purpose.UNSUBSCRIBE
PAYLOAD = {"m": "msg-1", "c": "c-1", "k": "nps"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_with(secret: bytes, body_bytes: bytes) -> str:
    """A token as links were signed before purposes and itsdangerous (the old algorithm)."""
    body = b64(body_bytes)
    return f"{body}.{b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())}"


def test_a_signed_payload_verifies_to_the_same_payload():
    token = SIGNER.sign(SURVEY, PAYLOAD)
    assert SIGNER.verify(SURVEY, token) == PAYLOAD
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)  # safe in a URL path


def test_signing_is_deterministic_and_independent_of_key_order():
    assert SIGNER.sign(SURVEY, {"a": 1, "b": 2}) == SIGNER.sign(SURVEY, {"b": 2, "a": 1})


def test_a_token_signed_with_another_key_is_refused():
    token = Signer(b"another-key").sign(SURVEY, PAYLOAD)
    with pytest.raises(BadToken, match="signature does not match"):
        SIGNER.verify(SURVEY, token)


def test_a_token_whose_payload_was_changed_is_refused():
    token = SIGNER.sign(SURVEY, PAYLOAD)
    mac = token.split(".")[1]
    forged_body = b64(b'{"c":"c-2","k":"nps","m":"msg-1"}')
    with pytest.raises(BadToken):
        SIGNER.verify(SURVEY, f"{forged_body}.{mac}")


def test_a_token_whose_signature_was_swapped_from_another_token_is_refused():
    mine = SIGNER.sign(SURVEY, PAYLOAD)
    theirs = SIGNER.sign(SURVEY, {**PAYLOAD, "c": "c-2"})
    with pytest.raises(BadToken):
        SIGNER.verify(SURVEY, mine.split(".")[0] + "." + theirs.split(".")[1])


@given(data=st.data())
def test_changing_any_character_of_the_body_or_the_start_of_the_signature_is_detected(data):
    token = SIGNER.sign(SURVEY, PAYLOAD)
    body = token.split(".")[0]
    # the last signature character also carries padding bits, so only the first 40 are checked
    position = data.draw(st.sampled_from(list(range(len(body))) +
                                         [len(body) + 1 + i for i in range(40)]))
    replacement = data.draw(st.sampled_from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    if token[position] == replacement:
        return
    tampered = token[:position] + replacement + token[position + 1:]
    with pytest.raises(BadToken):
        SIGNER.verify(SURVEY, tampered)


@pytest.mark.parametrize(
    "garbage",
    ["", "no-dot-here", ".", "a.b", "abc.", ".abc", "!!!.???", "é.ü", "a.b.c",
     SIGNER.sign(SURVEY, PAYLOAD).split(".")[0]],
)
def test_garbage_is_refused_as_a_bad_token(garbage):
    for purpose in Purpose:
        with pytest.raises(BadToken):
            SIGNER.verify(purpose, garbage)


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"42"])
def test_a_correctly_signed_body_that_is_not_a_json_object_is_refused(body):
    token = signed_with(SIGNER.secret, body)  # in the format of links sent before
    with pytest.raises(BadToken):
        SIGNER.verify(SURVEY, token)


@pytest.mark.parametrize("payload", [[1, 2], "text", 42, None])
def test_a_payload_signed_today_that_is_not_a_json_object_is_refused(payload):
    with pytest.raises(BadToken, match="not an object"):
        SIGNER.verify(SURVEY, SIGNER.sign(SURVEY, payload))


def test_bad_token_is_a_value_error_so_callers_can_treat_it_as_bad_input():
    assert issubclass(BadToken, ValueError)


@given(st.dictionaries(st.text(max_size=8),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                       max_size=5))
def test_any_json_payload_round_trips(payload):
    assert SIGNER.verify(SURVEY, SIGNER.sign(SURVEY, payload)) == payload
    assert SIGNER.verify(UNSUBSCRIBE, SIGNER.sign(UNSUBSCRIBE, payload)) == payload


# -- purposes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    PAYLOAD, {"m": "msg-1", "c": "c-1", "ch": "email"},
    {"m": "msg-1", "c": "c-1", "k": "nps", "ch": "email"},  # a shape both pages would accept
])
def test_a_token_of_one_purpose_is_refused_by_the_other_with_the_same_key(payload):
    survey, unsubscribe = SIGNER.sign(SURVEY, payload), SIGNER.sign(UNSUBSCRIBE, payload)
    assert survey != unsubscribe
    with pytest.raises(BadToken, match="signature does not match"):
        SIGNER.verify(UNSUBSCRIBE, survey)
    with pytest.raises(BadToken, match="signature does not match"):
        SIGNER.verify(SURVEY, unsubscribe)
    assert SIGNER.verify(SURVEY, survey) == SIGNER.verify(UNSUBSCRIBE, unsubscribe) == payload


# -- key rotation --------------------------------------------------------------------------------

ROTATED = Signer(b"new-secret-key", previous=b"test-secret-key")


# Tokens of today's format, pinned: a salt, digest or serializer setting that changed (a module
# renamed into a salt, an itsdangerous default that moved) would break every link already sent.
SENT_TODAY = {
    SURVEY: ({"m": "msg-1", "c": "cust-1", "k": "nps"},
             "eyJjIjoiY3VzdC0xIiwiayI6Im5wcyIsIm0iOiJtc2ctMSJ9.579MfO_Xv7HVn8eIP3fv4OULqVmAcEc9_hkmuepzscY"),
    UNSUBSCRIBE: ({"c": "cust-1", "ch": "email"},
                  "eyJjIjoiY3VzdC0xIiwiY2giOiJlbWFpbCJ9.ospCPGIDSYPilAcAiJXCOm8xAqperB862KAr_UoKyTE"),
}


@pytest.mark.parametrize("purpose", [SURVEY, UNSUBSCRIBE])
def test_todays_tokens_are_pinned_per_purpose(purpose):
    payload, token = SENT_TODAY[purpose]
    assert SIGNER.sign(purpose, payload) == token
    assert SIGNER.verify(purpose, token) == payload


@pytest.mark.parametrize("purpose", list(Purpose))
def test_a_token_signed_under_the_previous_key_verifies_after_rotation(purpose):
    before = SIGNER.sign(purpose, PAYLOAD)
    assert ROTATED.verify(purpose, before) == PAYLOAD


def test_after_rotation_tokens_are_signed_with_the_new_key_only():
    token = ROTATED.sign(SURVEY, PAYLOAD)
    assert token == Signer(b"new-secret-key").sign(SURVEY, PAYLOAD)
    with pytest.raises(BadToken):
        SIGNER.verify(SURVEY, token)  # the previous key alone does not verify it


def test_after_rotation_a_token_of_an_unknown_key_is_still_refused():
    for unknown in (Signer(b"another-key"), Signer(b"another-key", previous=b"test-secret-key")):
        with pytest.raises(BadToken, match="signature does not match"):
            ROTATED.verify(SURVEY, unknown.sign(SURVEY, PAYLOAD))
    # and once the previous key is dropped, what it signed is refused too
    with pytest.raises(BadToken):
        Signer(b"new-secret-key").verify(SURVEY, SIGNER.sign(SURVEY, PAYLOAD))


def test_the_keys_come_from_the_settings_and_a_blank_previous_key_is_none(monkeypatch):
    monkeypatch.setenv("AFTERSALE_SECRET_KEY", "new-secret-key")
    monkeypatch.setenv("AFTERSALE_SECRET_KEY_PREVIOUS", "test-secret-key")
    assert link_signer(Settings(_env_file=None)) == ROTATED  # type: ignore[call-arg]
    for blank in ("", "  "):  # emptied after a rotation: an empty key must verify nothing
        monkeypatch.setenv("AFTERSALE_SECRET_KEY_PREVIOUS", blank)
        assert link_signer(Settings(_env_file=None)) == Signer(b"new-secret-key")  # type: ignore[call-arg]
    monkeypatch.delenv("AFTERSALE_SECRET_KEY")
    assert link_signer(Settings(_env_file=None)) is None  # type: ignore[call-arg]


# -- links sent before itsdangerous and purposes -------------------------------------------------

# Produced by aftersale.core.links at 7b825b9 (the last commit before itsdangerous), with
# Signer(b"test-secret-key") and Links("https://shop.example.com", ...): the tokens of
# .survey("msg-1", "c-1", "nps", 9) and .unsubscribe("msg-1", "c-1", "email"). Frozen so that
# the check does not depend on signed_with() reproducing the old algorithm faithfully.
SENT_SURVEY = ("eyJjIjoiYy0xIiwiayI6Im5wcyIsIm0iOiJtc2ctMSJ9"
               ".ftQv2R1K8DBql4NWfJOcmILfZQH-EouZgVFEVY9ZUvk")
SENT_UNSUBSCRIBE = ("eyJjIjoiYy0xIiwiY2giOiJlbWFpbCIsIm0iOiJtc2ctMSJ9"
                    ".ZC9HoWCxYR9a2uPn30TDKZ9zKXoFK4WC37lquX27vyo")


def test_links_sent_before_still_verify_with_the_current_or_the_previous_key():
    for signer in (SIGNER, ROTATED):
        assert signer.verify(SURVEY, SENT_SURVEY) == PAYLOAD
        assert signer.verify(UNSUBSCRIBE, SENT_UNSUBSCRIBE) == {"m": "msg-1", "c": "c-1",
                                                                "ch": "email"}
    with pytest.raises(BadToken):
        Signer(b"another-key").verify(SURVEY, SENT_SURVEY)


def test_the_old_algorithm_reproduced_gives_the_tokens_sent():
    assert signed_with(SIGNER.secret, b'{"c":"c-1","k":"nps","m":"msg-1"}') == SENT_SURVEY


@given(st.dictionaries(st.sampled_from(["m", "c", "k", "ch"]), st.text(max_size=20), max_size=4))
def test_any_payload_in_the_old_format_verifies_under_either_key(payload):
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    for key in (b"test-secret-key", b"new-secret-key"):
        for purpose in LEGACY_PURPOSES:  # tracking links never had the old format
            assert ROTATED.verify(purpose, signed_with(key, body)) == payload


def test_the_old_format_is_never_signed_again():
    body = json.dumps(PAYLOAD, separators=(",", ":"), sort_keys=True).encode()
    for purpose in Purpose:
        assert SIGNER.sign(purpose, PAYLOAD) != signed_with(SIGNER.secret, body)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_an_old_format_token_changed_anywhere_is_refused(purpose):
    for position in range(len(SENT_SURVEY) - 1):  # the last character carries padding bits
        replacement = "A" if SENT_SURVEY[position] != "A" else "B"
        with pytest.raises(BadToken):
            SIGNER.verify(purpose, SENT_SURVEY[:position] + replacement + SENT_SURVEY[position + 1:])


# -- links and referral codes -----------------------------------------------------------------

def test_survey_and_unsubscribe_links_carry_a_token_that_verifies():
    links = Links("https://shop.example.com/", SIGNER)
    survey = links.survey("msg-1", "c-1", "nps", 9)
    match = re.fullmatch(r"https://shop\.example\.com/s/([^?]+)\?score=9", survey)
    assert match
    assert SIGNER.verify(SURVEY, match.group(1)) == {"m": "msg-1", "c": "c-1", "k": "nps"}
    unsubscribe = links.unsubscribe("msg-1", "c-1", "sms")
    assert unsubscribe.startswith("https://shop.example.com/u/")
    token = unsubscribe.rsplit("/", 1)[1]
    assert SIGNER.verify(UNSUBSCRIBE, token) == {"m": "msg-1", "c": "c-1", "ch": "sms"}


def test_the_referral_link_uses_the_customers_stable_code():
    links = Links("https://shop.example.com", SIGNER)
    assert links.referral("c-1") == f"https://shop.example.com/r/{referral_code('c-1')}"


def test_a_referral_code_is_stable_short_and_url_safe():
    code = referral_code("c-1")
    assert code == referral_code("c-1")
    assert re.fullmatch(r"R[A-Z2-7]{10}", code)


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_different_customers_get_different_referral_codes(a, b):
    if a != b:
        assert referral_code(a) != referral_code(b)


def test_referral_codes_do_not_collide_across_many_customers():
    codes = {referral_code(f"c-{n}") for n in range(20_000)}
    assert len(codes) == 20_000
