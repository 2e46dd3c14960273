"""Bancontact Payment V3 adapter against a local fake, and the callback signature check."""

from __future__ import annotations

import base64
import json
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from creditflow.channels import registry
from creditflow.channels.bancontact import (
    BancontactPayments,
    CallbackSignatureError,
    verify_callback,
)
from creditflow.channels.base import PermanentSendError, TransientSendError
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Message
from fakes.bancontact import PROFILE_ID, FakeBancontact, b64url, check_create
from fakes.http_server import Reply

API_KEY = "bc-test-key-0123456789"
CALLBACK = "https://creditflow.example/callbacks/bancontact"
KEY = "demo-utility/INV-2026-001/initial/payment_request"


@pytest.fixture
def fake():
    with FakeBancontact(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def adapter(fake):
    channel = BancontactPayments(API_KEY, callback_url=CALLBACK, base_url=fake.url,
                                 timeout_seconds=5)
    yield channel
    channel.close()


def make_message(**overrides) -> Message:
    values = dict(
        idempotency_key=KEY, channel="payment_request", creditor_id="demo-utility",
        invoice_number="INV-2026-001", language="nl", sender_name="Demo Nutsbedrijf",
        sender_email="facturen@demo-utility.example", subject="Factuur INV-2026-001",
        amount_cents=12345, reference="+++090/9337/55493+++",
    )
    values.update(overrides)
    return Message(**values)


# --------------------------------------------------------------------------------------------------
# Creating a payment
# --------------------------------------------------------------------------------------------------


def test_create_payment_request_and_keep_links(fake, adapter):
    result = adapter.send(make_message())

    assert fake.rejections == []
    (request,) = fake.requests
    assert request.method == "POST" and request.path == "/v3/payments"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = request.json()
    assert body == {"amount": 12345, "currency": "EUR", "reference": "+++090/9337/55493+++",
                    "description": "Factuur INV-2026-001", "callbackUrl": CALLBACK}
    assert type(body["amount"]) is int
    detail = json.loads(result.detail)
    payment_id = detail["paymentId"]
    assert result.provider_id == payment_id and payment_id in fake.payments
    assert detail["status"] == "PENDING"
    assert detail["deeplink"] == f"https://pay.bancontact.net/pay/2/{payment_id}"
    assert detail["qrcode"].startswith("https://qrcodegenerator.api.bancontact.net/qrcode?c=")
    assert detail["qrcode"].endswith(payment_id)
    assert detail["cancel"] == f"{fake.url}/v3/payments/{payment_id}"


def test_reference_falls_back_to_invoice_number_and_description_is_bounded(fake, adapter):
    adapter.send(make_message(reference=None, subject="Factuur " + "lang " * 40))
    body = fake.requests[0].json()
    assert body["reference"] == "INV-2026-001"
    assert len(body["description"]) == 140 and body["description"].endswith("…")


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount_cents": None},
        {"amount_cents": 0},
        {"amount_cents": -500},
        {"amount_cents": True},
        {"currency": "USD"},
        {"reference": "R" * 36},
        {"reference": "factuur_1"},  # "_" is not in the SEPA character set
    ],
)
def test_unpayable_requests_refused_before_any_request(fake, adapter, overrides):
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(make_message(**overrides))
    assert caught.value.code == "invalid-message"
    assert fake.requests == []


def test_callback_url_must_be_https():
    with pytest.raises(ValueError, match="HTTPS"):
        BancontactPayments(API_KEY, callback_url="http://creditflow.example/cb")


def test_wrong_key_is_permanent_credentials(fake):
    channel = BancontactPayments("bc-revoked", callback_url=CALLBACK, base_url=fake.url)
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message())
    assert caught.value.code == "credentials"
    assert "UNAUTHORIZED" in str(caught.value) and "bc-revoked" not in str(caught.value)


def test_provider_validation_error_is_permanent_with_its_code(fake, adapter):
    fake.queue_reply(Reply.json(400, {"code": "AMOUNT_TOO_LARGE", "message": "max 1500 EUR",
                                      "traceId": "t-1", "spanId": "s-1"}))
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(make_message(amount_cents=200_000))
    assert caught.value.code == "rejected"
    assert "AMOUNT_TOO_LARGE" in str(caught.value) and "t-1" in str(caught.value)


def test_429_and_5xx_are_transient(fake, adapter):
    fake.queue_reply(Reply.json(429, {"code": "TOO_MANY_REQUESTS", "message": "slow down"},
                                **{"Retry-After": "30"}))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "rate-limited" and caught.value.retry_after == 30.0
    fake.queue_reply(Reply(503, b"upstream unavailable"))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "provider-unavailable"


def test_success_without_payment_id_is_transient_bad_response(fake, adapter):
    fake.queue_reply(Reply.json(201, {"status": "PENDING"}))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "bad-response"


def test_unreachable_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = BancontactPayments(API_KEY, callback_url=CALLBACK, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientSendError) as caught:
        channel.send(make_message())
    assert caught.value.code == "connection"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 123.45}, "INVALID_AMOUNT"),
        ({"amount": "12345"}, "INVALID_AMOUNT"),
        ({"amount": 0}, "AMOUNT_TOO_SMALL"),
        ({"currency": "USD"}, "CURRENCY_NOT_SUPPORTED"),
        ({"reference": "x" * 36}, "INVALID_REFERENCE"),
        ({"description": "d" * 141}, "INVALID_DESCRIPTION"),
        ({"callbackUrl": "http://insecure.example/cb"}, "INVALID_CALLBACK_URL"),
        ({"callbackURL": CALLBACK}, "INVALID_REQUEST"),
    ],
)
def test_fake_refuses_what_payment_v3_documents_as_invalid(change, code):
    body = {"amount": 100, "currency": "EUR", "reference": "INV-1", "description": "x",
            "callbackUrl": CALLBACK}
    assert check_create(body) is None
    assert check_create({**body, **change})[0] == code


def test_fake_serves_the_created_payment(fake, adapter):
    payment_id = adapter.send(make_message()).provider_id
    answer = httpx.get(f"{fake.url}/v3/payments/{payment_id}",
                       headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200 and answer.json()["amount"] == 12345


def test_registered_as_bancontact_from_env(fake, monkeypatch):
    monkeypatch.setenv("CREDITFLOW_BANCONTACT_API_KEY", API_KEY)
    monkeypatch.setenv("CREDITFLOW_BANCONTACT_CALLBACK_URL", CALLBACK)
    monkeypatch.setenv("CREDITFLOW_BANCONTACT_BASE_URL", fake.url)
    channel = registry.build_channels(["bancontact"], Settings())["bancontact"]
    assert isinstance(channel, BancontactPayments)
    assert channel.send(make_message()).provider_id in fake.payments
    assert API_KEY not in repr(channel)


# --------------------------------------------------------------------------------------------------
# Callback signatures
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def paid(fake, adapter):
    """(fake, body, signature) of a SUCCEEDED callback signed just now."""
    payment_id = adapter.send(make_message()).provider_id
    body, signature = fake.signed_callback(payment_id, "SUCCEEDED", path=CALLBACK)
    return fake, body, signature


def now() -> datetime:
    return datetime.now(UTC)


def test_valid_callback_accepted(paid):
    fake, body, signature = paid
    header = verify_callback(body, signature, fake.jwks, now(), expected_subject=PROFILE_ID,
                             expected_path=CALLBACK)
    assert header["kid"] == fake.kid and header["alg"] == "ES256"
    assert json.loads(body)["status"] == "SUCCEEDED"


def test_unencoded_payload_variant_accepted(fake, adapter):
    payment_id = adapter.send(make_message()).provider_id
    body, signature = fake.signed_callback(payment_id, unencoded_payload=True)
    assert verify_callback(body, signature, fake.jwks, now())["b64"] is False


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b'"SUCCEEDED"', b'"SUCCEEDEDX"'),
        lambda b: b.replace(b"12345", b"12346"),
        lambda b: b + b" ",
        lambda b: b"",
    ],
)
def test_tampered_body_rejected(paid, tamper):
    fake, body, signature = paid
    with pytest.raises(CallbackSignatureError, match="does not match"):
        verify_callback(tamper(body), signature, fake.jwks, now())


def test_wrong_kid_rejected(paid):
    fake, body, _ = paid
    signature = fake.sign(body, kid="es.signature.someone-else")
    with pytest.raises(CallbackSignatureError, match="no key"):
        verify_callback(body, signature, fake.jwks, now())


def test_right_kid_but_another_key_rejected(paid):
    fake, body, signature = paid
    impostor = FakeBancontact(kid=fake.kid)  # same kid, its own key pair
    with pytest.raises(CallbackSignatureError, match="does not match"):
        verify_callback(body, signature, impostor.jwks, now())


def test_old_and_future_signatures_rejected(paid):
    fake, body, _ = paid
    stale = fake.sign(body, signed_at=now() - timedelta(hours=2))
    with pytest.raises(CallbackSignatureError, match="too old"):
        verify_callback(body, stale, fake.jwks, now())
    early = fake.sign(body, signed_at=now() + timedelta(hours=1))
    with pytest.raises(CallbackSignatureError, match="future"):
        verify_callback(body, early, fake.jwks, now())
    assert verify_callback(body, stale, fake.jwks, now(), max_age=timedelta(hours=3))


def test_claims_pinned_when_asked(paid):
    fake, body, signature = paid
    with pytest.raises(CallbackSignatureError, match="payment profile"):
        verify_callback(body, signature, fake.jwks, now(), expected_subject="another-profile")
    with pytest.raises(CallbackSignatureError, match="callback URL"):
        verify_callback(body, signature, fake.jwks, now(), expected_path="https://evil.example/")


def _reheader(signature: str, **changes) -> str:
    protected, _, sig = signature.split(".")
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    header.update(changes)
    return f"{b64url(json.dumps(header).encode())}..{sig}"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"alg": "none"}, "only ES256"),
        ({"alg": "HS256"}, "only ES256"),
        ({"crit": ["https://payconiq.com/iat", "exp"]}, "not understood"),
        ({"b64": "false", "crit": ["b64"]}, "b64 must be a boolean"),
    ],
)
def test_header_games_rejected(paid, changes, reason):
    fake, body, signature = paid
    with pytest.raises(CallbackSignatureError, match=reason):
        verify_callback(body, _reheader(signature, **changes), fake.jwks, now())


def test_a_changed_header_breaks_the_signature(paid):
    fake, body, signature = paid
    forged = _reheader(signature, **{"https://payconiq.com/sub": "another-profile"})
    with pytest.raises(CallbackSignatureError, match="does not match"):
        verify_callback(body, forged, fake.jwks, now())


@pytest.mark.parametrize("signature", ["", "abc", "a.b.c.d", "e30.e30.AAAA", "!!..AAAA"])
def test_malformed_signatures_rejected(paid, signature):
    fake, body, _ = paid
    with pytest.raises(CallbackSignatureError):
        verify_callback(body, signature, fake.jwks, now())


def test_attached_payload_rejected(paid):
    fake, body, signature = paid
    protected, _, sig = signature.split(".")
    with pytest.raises(CallbackSignatureError, match="detached"):
        verify_callback(body, f"{protected}.{b64url(body)}.{sig}", fake.jwks, now())


def test_interoperates_with_joserfc(paid):
    """A second, independent JOSE implementation agrees with ours in both directions."""
    jws = pytest.importorskip("joserfc.jws")
    jwk = pytest.importorskip("joserfc.jwk")
    from joserfc.registry import HeaderParameter

    fake, body, signature = paid
    claims = {
        "https://payconiq.com/iat": now().isoformat(),
        "https://payconiq.com/jti": "abc123",
        "https://payconiq.com/path": CALLBACK,
        "https://payconiq.com/iss": "Payconiq",
        "https://payconiq.com/sub": PROFILE_ID,
    }
    registry_ = jws.JWSRegistry(
        header_registry={name: HeaderParameter(name, "str") for name in claims},
        algorithms=["ES256"],
    )
    registry_.max_header_length = 2048  # joserfc's 512-byte default is below what these headers use
    key = jwk.ECKey.generate_key("P-256", parameters={"kid": "joserfc-key"})
    attached = jws.serialize_compact({"alg": "ES256", "kid": "joserfc-key", **claims,
                                      "crit": list(claims)}, body, key, registry=registry_)
    detached = jws.detach_content(attached)
    jwks = {"keys": [key.as_dict(private=False)]}
    assert verify_callback(body, detached, jwks, now())["kid"] == "joserfc-key"
    with pytest.raises(CallbackSignatureError):
        verify_callback(body + b"x", detached, jwks, now())

    # ... and joserfc verifies what the fake signs (the fake is not only consistent with us).
    protected, _, sig = signature.split(".")
    fake_key = jwk.ECKey.import_key(fake.jwks["keys"][0])
    verified = jws.deserialize_compact(f"{protected}.{b64url(body)}.{sig}", fake_key,
                                       registry=registry_)
    assert verified.payload == body
