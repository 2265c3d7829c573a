"""An HTTP fuzzer over every route of the app's OpenAPI, on SQLite and PostgreSQL (issue 7,
item 4): hypothesis builds requests (right, wrong and missing credentials and signatures, bodies
from plausible to garbage) and sends them to the app served by uvicorn.

For every request: no 5xx, no traceback or exception repr in the body, and a rejected request
(4xx) wrote nothing: the row count of every table is the same before and after. A webhook with
a bad signature is 401/403. The endpoints read raw bodies (signatures are over the bytes), so
the OpenAPI has no body schemas for a schema-driven tool to use: the bodies come from here, and
the test checks that the routes it fuzzes are exactly the ones the OpenAPI lists.
``make fuzz`` runs it with AFTERSALE_FUZZ_EXAMPLES examples.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from aftersale.config import Settings
from aftersale.core.links import Purpose, Signer, referral_code
from aftersale.db.models import Base
from aftersale.pipeline.runtime import Runtime
from aftersale.web.app import create_app
from tests.conftest import START
from tests.integration.helpers import serve

EXAMPLES = int(os.environ.get("AFTERSALE_FUZZ_EXAMPLES", "0")) or None
TOKEN, SHOP_SECRET, TWILIO_TOKEN, SECRET_KEY = "api-token", "shpss_x", "twilio-token", "test-secret-key"
AFTERSHIP_SECRET = "as-secret"
PUBLIC = "https://shop.example.com"
KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_KEY = base64.b64encode(KEY.public_key().public_bytes(
    Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()
NOW_TS = str(int(START.timestamp()))
# What a leaked exception looks like: a traceback, or a repr such as KeyError('x') / <ValueError
EXCEPTION_REPR = re.compile(r"Traceback \(most recent call last\)|\b\w*(Error|Exception)\(['\"]"
                            r"|<\w*(Error|Exception)\b|File \"/")


@dataclass
class Call:
    route: str  # the OpenAPI path template it exercises
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    forged: bool = False  # a webhook whose signature (or bearer token) is wrong or missing


# --- what to send ------------------------------------------------------------------------------

text = st.one_of(st.text(max_size=20),
                 st.sampled_from(["", "\x00", "\ud800", "<script>alert(1)</script>", "🔟", "9",
                                  "1e999999", "0001-01-01T00:00:00+14:00", "x" * 300]))
# what can be in a URL or a form: anything but a lone surrogate (it cannot be encoded)
url_text = text.filter(lambda t: not re.search("[\ud800-\udfff]", t))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30),
                    st.floats(allow_nan=False, allow_infinity=False), text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(text, inner, max_size=4), max_leaves=12)
event_like = st.fixed_dictionaries(
    {"id": text, "type": st.sampled_from(["order.placed", "customer.updated", "survey.responded",
                                          "nope"]),
     "occurred_at": st.sampled_from(["2026-03-01T10:00:00+00:00", "2026-03-01T10:00:00",
                                     "0001-01-01T00:00:00+14:00", "x"])},
    optional={"customer": st.fixed_dictionaries({"id": text}, optional={
                  "email": text, "phone": text, "first_name": text, "consent": values}),
              "order": st.fixed_dictionaries({"id": text}, optional={
                  "total": text, "items": st.lists(st.fixed_dictionaries(
                      {"price": text, "quantity": st.integers(-2, 10**20)}), max_size=2)}),
              "survey": st.fixed_dictionaries({"kind": text, "score": values})})


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()  # \ud800 and \x00 travel as escapes, as a client sends them


raw_bodies = st.one_of(
    st.binary(max_size=100),
    values.map(_json_bytes),
    st.sampled_from([b"1" * 5000, b"[" * 3000, b'{"a": NaN}', b'"\\ud800"', b'{"id": "\\u0000"}',
                     b"\xff\xfe[\x00]\x00", b"{}", b"[]", b"null"]),
)
event_bodies = st.one_of(raw_bodies, event_like.map(_json_bytes),
                         st.lists(event_like, max_size=3).map(_json_bytes))


def _shopify_sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(SHOP_SECRET.encode(), body, hashlib.sha256).digest()).decode()


def _aftership_sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(AFTERSHIP_SECRET.encode(), body, hashlib.sha256).digest()
                            ).decode()


def _sendgrid_sign(body: bytes, timestamp: str) -> str:
    return base64.b64encode(KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def _sign_token(payload: Any) -> str:
    """Signed as links were before purposes; both pages still accept the format."""
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    mac = hmac.new(SECRET_KEY.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


claims = st.fixed_dictionaries({}, optional={"m": text | values, "c": text | values,
                                             "k": st.sampled_from(["nps", "csat", "ces"]) | values,
                                             "ch": st.sampled_from(["email", "sms"]) | values,
                                             "s": text | values,
                                             "d": st.sampled_from(["2026-03-02", "x"]) | values})
def _encodable(data: object) -> bool:
    """aftersale only signs claims it wrote itself (ids from the database), which are valid
    UTF-8; a lone surrogate in generated claims would fail in the test's own signing."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


tokens = st.one_of(
    url_text.filter(lambda t: t not in ("", ".", "..")),
    claims.map(_sign_token),
    values.map(_sign_token),
    st.builds(lambda purpose, payload: Signer(SECRET_KEY.encode()).sign(purpose, payload),
              st.sampled_from(list(Purpose)), claims.filter(_encodable)),
    st.tuples(text, text).filter(_encodable).map(
        lambda mc: Signer(b"another-key").sign(Purpose.SURVEY, {"m": mc[0], "c": mc[1], "k": "nps"})),
)


@st.composite
def calls(draw: st.DrawFn) -> Call:
    kind = draw(st.sampled_from(["events", "shopify", "aftership", "sendgrid", "twilio", "survey",
                                 "unsubscribe", "tracking", "referral", "healthz"]))
    if kind == "events":
        auth = draw(st.sampled_from(["right", "wrong", "missing", "scheme"]))
        headers = {"right": {"Authorization": f"Bearer {TOKEN}"}, "wrong": {
            "Authorization": "Bearer nope"}, "missing": {}, "scheme": {"Authorization": TOKEN}}[auth]
        query = draw(st.sampled_from(["", "?skip_invalid=true", "?skip_invalid=maybe"]))
        return Call("/events", "POST", "/events" + query, headers, draw(event_bodies),
                    forged=auth != "right")
    if kind == "shopify":
        body = draw(raw_bodies | values.map(lambda v: _json_bytes({"id": 1, "x": v})))
        signed = draw(st.booleans())
        headers = {"X-Shopify-Topic": draw(st.sampled_from(
            ["orders/create", "fulfillments/update", "fulfillment_events/create",
             "customers_marketing_consent/update", "products/update", ""]) | text.filter(lambda t: t.isprintable() and t.isascii())),
                   "X-Shopify-Hmac-Sha256": _shopify_sign(body) if signed else draw(
                       st.sampled_from(["", "AAAA", _shopify_sign(body + b" ")]))}
        return Call("/webhooks/shopify", "POST", "/webhooks/shopify", headers, body,
                    forged=not signed)
    if kind == "aftership":
        msg = st.dictionaries(st.sampled_from(
            ["id", "order_id", "tag", "subtag", "slug", "tracking_number", "updated_at",
             "checkpoints", "expected_delivery", "destination_country_region"]) | text,
            st.sampled_from(["t1", "o-1", "InTransit", "Exception_011", "2026-03-01",
                             "2026-03-01T10:00:00", "USA"]) | values, max_size=8)
        body = draw(raw_bodies | st.builds(
            lambda e, m: _json_bytes({"event": e, "event_id": "ev-1", "msg": m}),
            st.sampled_from(["tracking_update", "edd_revise", "tracking_pending_time"]) | values,
            msg))
        signed = draw(st.booleans())
        headers = {"aftership-hmac-sha256": _aftership_sign(body) if signed else draw(
            st.sampled_from(["", "AAAA", _aftership_sign(body + b" ")]))}
        return Call("/webhooks/aftership", "POST", "/webhooks/aftership", headers, body,
                    forged=not signed)
    if kind == "sendgrid":
        body = draw(raw_bodies | st.lists(st.dictionaries(st.sampled_from(
            ["event", "email", "timestamp", "sg_event_id", "reason", "type"]) | text, values,
            max_size=5), max_size=3).map(_json_bytes))
        signed = draw(st.booleans())
        headers = {"X-Twilio-Email-Event-Webhook-Timestamp": NOW_TS,
                   "X-Twilio-Email-Event-Webhook-Signature":
                       _sendgrid_sign(body, NOW_TS) if signed else draw(st.sampled_from(
                           ["", "bm9wZQ==", _sendgrid_sign(body, str(int(NOW_TS) - 3600))]))}
        return Call("/webhooks/sendgrid/events", "POST", "/webhooks/sendgrid/events", headers,
                    body, forged=not signed)
    if kind == "twilio":
        route = draw(st.sampled_from(["/webhooks/twilio/status", "/webhooks/twilio/inbound"]))
        params = draw(st.dictionaries(st.sampled_from(
            ["MessageSid", "MessageStatus", "From", "To", "Body", "ErrorCode", "OptOutType"]),
            st.sampled_from(["SM1", "delivered", "+905321234567", "whatsapp:+905321234567",
                             "STOP", "HELP", "9", "\x00", "30003"]) | url_text, max_size=6))
        path = route + draw(st.sampled_from(["", "?m=msg-1", "?m=" + "x" * 50]))
        signed = draw(st.booleans())
        signature = (RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + path, params)
                     if signed else draw(st.sampled_from(["", "bm9wZQ=="])))
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   **({"X-Twilio-Signature": signature} if signature else {})}
        return Call(route, "POST", path, headers, urlencode(params).encode(), forged=not signed)
    if kind in ("survey", "unsubscribe", "tracking"):
        route = {"survey": "/s/{token}", "unsubscribe": "/u/{token}", "tracking": "/t/{token}"}[kind]
        path = route.replace("{token}", quote(draw(tokens), safe=""))
        method = draw(st.sampled_from(["GET", "POST"]))
        if kind == "survey" and draw(st.booleans()):
            path += "?" + urlencode({"score": draw(st.sampled_from(["5", "10", "-1", "7.5", "１"])
                                                   | url_text)})
        body = b""
        if method == "POST":
            body = draw(st.one_of(st.binary(max_size=60), st.builds(
                lambda s, c: urlencode({"score": s, "comment": c, "words": c}).encode(),
                st.sampled_from(["1", "x"]), url_text)))
        return Call(route, method, path,
                    {"Content-Type": "application/x-www-form-urlencoded",
                     "Accept-Language": draw(st.sampled_from(["tr", "pl;q=nan", "*;q=1e999"]))},
                    body)
    if kind == "referral":
        code = draw(st.one_of(st.just(referral_code("nobody")), url_text, st.from_regex(
            r"\AR[A-Z2-7]{1,31}\Z")).filter(lambda c: c not in ("", ".", "..")))
        return Call("/r/{code}", "GET", "/r/" + quote(code, safe=""))
    return Call("/healthz", "GET", "/healthz")


# --- the app ---------------------------------------------------------------------------------------


def fuzz_settings(settings: Settings) -> Settings:
    return Settings(_env_file=None, **settings.model_dump() | {  # type: ignore[call-arg]
        "api_token": TOKEN, "secret_key": SECRET_KEY, "shopify_webhook_secret": SHOP_SECRET,
        "aftership_webhook_secret": AFTERSHIP_SECRET,
        "twilio_auth_token": TWILIO_TOKEN, "sendgrid_webhook_public_key": PUBLIC_KEY,
        "public_url": PUBLIC, "prefect_events": False})


@pytest.fixture
def served(settings: Settings, rt: Runtime) -> Iterator[tuple[str, Runtime]]:
    with serve(create_app(fuzz_settings(settings), rt)) as url:
        yield url, rt


def row_counts(rt: Runtime) -> dict[str, int]:
    with rt.factory() as session:
        return {table.name: session.scalar(select(func.count()).select_from(table)) or 0
                for table in Base.metadata.sorted_tables}


def send(client: httpx.Client, call: Call) -> httpx.Response:
    return client.request(call.method, call.path, headers=call.headers, content=call.body)


def check(call: Call, response: httpx.Response, before: dict[str, int],
          after: dict[str, int]) -> None:
    where = f"{call.method} {call.path[:80]} {call.body[:80]!r}"
    assert response.status_code < 500, (where, response.status_code, response.text[:300])
    assert not EXCEPTION_REPR.search(response.text), (where, response.text[:300])
    if response.status_code >= 400:
        assert after == before, (where, response.status_code, response.text[:200])
    if call.forged:
        assert response.status_code in (401, 403), (where, response.status_code)
    if call.route == "/r/{code}":  # nobody here has a code: a click is never stored
        assert after == before, where


# --- the tests -----------------------------------------------------------------------------------

FUZZ = settings(max_examples=EXAMPLES or 100, deadline=None, derandomize=EXAMPLES is None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@FUZZ
@given(call=calls())
def test_no_request_gets_a_5xx_a_traceback_or_writes_when_refused(
        served: tuple[str, Runtime], call: Call) -> None:
    base_url, rt = served
    before = row_counts(rt)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        response = send(client, call)
    check(call, response, before, row_counts(rt))


def test_the_fuzzer_covers_every_route_the_openapi_lists(settings: Settings, rt: Runtime) -> None:
    paths = create_app(fuzz_settings(settings), rt).openapi()["paths"]
    listed = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    fuzzed = {("POST", "/events"), ("GET", "/healthz"), ("POST", "/webhooks/shopify"),
              ("POST", "/webhooks/aftership"),
              ("POST", "/webhooks/sendgrid/events"), ("POST", "/webhooks/twilio/status"),
              ("POST", "/webhooks/twilio/inbound"), ("GET", "/s/{token}"), ("POST", "/s/{token}"),
              ("GET", "/u/{token}"), ("POST", "/u/{token}"), ("GET", "/t/{token}"),
              ("POST", "/t/{token}"), ("GET", "/r/{code}")}
    assert listed == fuzzed


def test_requests_that_used_to_get_a_500_are_refused_and_write_nothing(
        served: tuple[str, Runtime]) -> None:
    """The fuzzer's first finds, kept as plain examples (each was a 500 before the fix)."""
    base_url, rt = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    event = {"id": "e1", "type": "customer.updated", "occurred_at": "2026-03-01T10:00:00+00:00",
             "customer": {"id": "c1"}}
    shop_body = _json_bytes({"id": 5, "created_at": "0001-01-01T00:00:00+10:00"})
    cases = [
        (Call("/events", "POST", "/events", auth, b"1" * 5000), 400),
        (Call("/events", "POST", "/events", auth, b"[" * 100_000), 400),
        (Call("/events", "POST", "/events", auth, _json_bytes({**event, "id": "e\ud800"})), 400),
        (Call("/events", "POST", "/events", auth, _json_bytes({**event, "id": "e\x00"})), 400),
        (Call("/events", "POST", "/events", auth,
              _json_bytes({**event, "occurred_at": "0001-01-01T00:00:00+14:00"})), 422),
        (Call("/events", "POST", "/events", auth, _json_bytes({
            **event, "type": "order.placed", "order": {"id": "o", "items": [
                {"price": "1e999999", "quantity": 1000}]}})), 422),
        (Call("/webhooks/shopify", "POST", "/webhooks/shopify", {
            "X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": _shopify_sign(shop_body)},
            shop_body), 400),
        (Call("/webhooks/shopify", "POST", "/webhooks/shopify", {
            "X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": _shopify_sign(b"[" * 5000)},
            b"[" * 5000), 400),
        (Call("/webhooks/sendgrid/events", "POST", "/webhooks/sendgrid/events", {
            "X-Twilio-Email-Event-Webhook-Timestamp": NOW_TS,
            "X-Twilio-Email-Event-Webhook-Signature": _sendgrid_sign(b"[" * 5000, NOW_TS)},
            b"[" * 5000), 400),
    ]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for call, status in cases:
            before = row_counts(rt)
            response = send(client, call)
            assert response.status_code == status, (call.body[:60], response.text[:200])
            check(call, response, before, row_counts(rt))


def test_provider_text_that_cannot_be_stored_is_cleaned_not_a_500(served: tuple[str, Runtime]) -> None:
    """NUL characters and lone surrogates from a signed provider are stored without them: a
    500 would make the provider retry the same bytes for a day or two."""
    base_url, rt = served
    sendgrid = _json_bytes([{"event": "dropped", "email": "a@example.com", "reason": "r\x00\ud800",
                             "sg_event_id": "sg-1"}])
    params = {"MessageSid": "SM1\x00", "From": "+905321234567", "Body": "hi\x00"}
    twilio_sig = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC + "/webhooks/twilio/inbound", params)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        answer = client.post("/webhooks/sendgrid/events", content=sendgrid, headers={
            "X-Twilio-Email-Event-Webhook-Timestamp": NOW_TS,
            "X-Twilio-Email-Event-Webhook-Signature": _sendgrid_sign(sendgrid, NOW_TS)})
        assert answer.status_code == 200 and answer.json()["stored"] == 1
        answer = client.post("/webhooks/twilio/inbound", content=urlencode(params).encode(),
                             headers={"X-Twilio-Signature": twilio_sig,
                                      "Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200
    counts = row_counts(rt)
    assert counts["delivery_events"] == 1 and counts["inbound_messages"] == 1
