"""Signed links: tokens that cannot be forged, tampered with or reused under another key, and
stable referral codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.links import BadToken, Links, Signer, referral_code

SIGNER = Signer(b"test-secret-key")
PAYLOAD = {"m": "msg-1", "c": "c-1", "k": "nps"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_with(secret: bytes, body_bytes: bytes) -> str:
    body = b64(body_bytes)
    return f"{body}.{b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())}"


def test_a_signed_payload_verifies_to_the_same_payload():
    token = SIGNER.sign(PAYLOAD)
    assert SIGNER.verify(token) == PAYLOAD
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)  # safe in a URL path


def test_signing_is_deterministic_and_independent_of_key_order():
    assert SIGNER.sign({"a": 1, "b": 2}) == SIGNER.sign({"b": 2, "a": 1})


def test_a_token_signed_with_another_key_is_refused():
    token = Signer(b"another-key").sign(PAYLOAD)
    with pytest.raises(BadToken, match="signature does not match"):
        SIGNER.verify(token)


def test_a_token_whose_payload_was_changed_is_refused():
    token = SIGNER.sign(PAYLOAD)
    mac = token.split(".")[1]
    forged_body = b64(b'{"c":"c-2","k":"nps","m":"msg-1"}')
    with pytest.raises(BadToken):
        SIGNER.verify(f"{forged_body}.{mac}")


def test_a_token_whose_signature_was_swapped_from_another_token_is_refused():
    mine = SIGNER.sign(PAYLOAD)
    theirs = SIGNER.sign({**PAYLOAD, "c": "c-2"})
    with pytest.raises(BadToken):
        SIGNER.verify(mine.split(".")[0] + "." + theirs.split(".")[1])


@given(data=st.data())
def test_changing_any_character_of_the_body_or_the_start_of_the_signature_is_detected(data):
    token = SIGNER.sign(PAYLOAD)
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
        SIGNER.verify(tampered)


@pytest.mark.parametrize(
    "garbage",
    ["", "no-dot-here", ".", "a.b", "abc.", ".abc", "!!!.???", "é.ü", "a.b.c",
     SIGNER.sign(PAYLOAD).split(".")[0]],
)
def test_garbage_is_refused_as_a_bad_token(garbage):
    with pytest.raises(BadToken):
        SIGNER.verify(garbage)


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"42"])
def test_a_correctly_signed_body_that_is_not_a_json_object_is_refused(body):
    token = signed_with(SIGNER.secret, body)
    with pytest.raises(BadToken):
        SIGNER.verify(token)


def test_bad_token_is_a_value_error_so_callers_can_treat_it_as_bad_input():
    assert issubclass(BadToken, ValueError)


@given(st.dictionaries(st.text(max_size=8),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                       max_size=5))
def test_any_json_payload_round_trips(payload):
    assert SIGNER.verify(SIGNER.sign(payload)) == payload


# -- links and referral codes -----------------------------------------------------------------

def test_survey_and_unsubscribe_links_carry_a_token_that_verifies():
    links = Links("https://shop.example.com/", SIGNER)
    survey = links.survey("msg-1", "c-1", "nps", 9)
    match = re.fullmatch(r"https://shop\.example\.com/s/([^?]+)\?score=9", survey)
    assert match
    assert SIGNER.verify(match.group(1)) == {"m": "msg-1", "c": "c-1", "k": "nps"}
    unsubscribe = links.unsubscribe("msg-1", "c-1", "sms")
    assert unsubscribe.startswith("https://shop.example.com/u/")
    token = unsubscribe.rsplit("/", 1)[1]
    assert SIGNER.verify(token) == {"m": "msg-1", "c": "c-1", "ch": "sms"}


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
