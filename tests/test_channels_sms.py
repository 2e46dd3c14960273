"""SMS gateway adapter against a local fake of CM.com's Business Messaging API; channels.sms_text."""

from __future__ import annotations

import json
import logging
import re
import socket

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from creditflow.channels import registry, sms_text
from creditflow.channels.base import PermanentSendError, TransientSendError
from creditflow.channels.sms_gateway import SmsGateway, SmsSettings, gateway_reference
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Message
from fakes.http_server import Reply
from fakes.sms_gateway import FakeCmGateway, cm_error

TOKEN = "6b0a3f5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
KEY = "demo-utility/INV-2026-001/reminder-1/sms"
TEXT = "Demo Nutsbedrijf: factuur INV-2026-001 (€ 123,45) is vervallen. Betaal via https://pay.example/p/abc"


@pytest.fixture
def fake():
    with FakeCmGateway(product_token=TOKEN) as server:
        yield server


@pytest.fixture
def adapter(fake):
    channel = SmsGateway(TOKEN, url=fake.url + fake.path, sender="DemoNuts", timeout_seconds=5)
    yield channel
    channel.close()


def make_message(**overrides) -> Message:
    values = dict(
        idempotency_key=KEY, channel="sms", creditor_id="demo-utility",
        invoice_number="INV-2026-001", language="nl", sender_name="Demo Nutsbedrijf",
        sender_email="facturen@demo-utility.example", text=TEXT, to_phone="+32470123456",
    )
    values.update(overrides)
    return Message(**values)


# --------------------------------------------------------------------------------------------------
# What reaches the gateway
# --------------------------------------------------------------------------------------------------


def test_send_posts_cm_business_messaging_json(fake, adapter):
    result = adapter.send(make_message())

    assert fake.rejections == []
    (request,) = fake.requests
    assert request.method == "POST" and request.path == "/v1.0/message"
    assert request.headers["x-cm-producttoken"] == TOKEN
    assert TOKEN.encode() not in request.body  # the secret stays in the header
    (msg,) = request.json()["messages"]["msg"]
    assert msg == {
        "from": "DemoNuts",
        "to": [{"number": "0032470123456"}],
        "body": {"type": "auto", "content": TEXT},
        "reference": gateway_reference(KEY),
        "allowedChannels": ["SMS"],
        "minimumNumberOfMessageParts": 1,
        "maximumNumberOfMessageParts": 2,
    }
    assert result.provider_id == gateway_reference(KEY)
    assert json.loads(result.detail) == {
        "reference": gateway_reference(KEY), "segments": 1, "encoding": "GSM-7"}


def test_national_formatting_is_normalised(fake, adapter):
    adapter.send(make_message(to_phone="+32 470 12 34 56"))
    assert fake.accepted[0]["to"] == [{"number": "0032470123456"}]


def test_connection_is_kept_alive_across_a_batch(fake, adapter):
    for n in range(4):
        adapter.send(make_message(idempotency_key=f"k-{n}"))
    assert len({request.client for request in fake.requests}) == 1
    assert [m["reference"] for m in fake.accepted] == [f"k-{n}" for n in range(4)]


# --------------------------------------------------------------------------------------------------
# Refused before any request
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"to_phone": None}, "no-recipient"),
        ({"to_phone": "+3247012"}, "invalid-phone"),
        ({"to_phone": "0470123456"}, "invalid-phone"),  # national form: country unknown
        ({"text": ""}, "empty-text"),
        ({"text": "x" * 307}, "too-long"),  # 3 GSM-7 parts
        ({"text": "Betaal 🙂 " + "é" * 130}, "too-long"),  # UCS-2: 3 parts of 67
    ],
)
def test_local_refusals_send_nothing(fake, adapter, overrides, code):
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(make_message(**overrides))
    assert caught.value.code == code
    assert fake.requests == []


def test_more_parts_allowed_when_configured(fake):
    channel = SmsGateway(TOKEN, url=fake.url + fake.path, max_segments=3)
    result = channel.send(make_message(text="x" * 307))
    channel.close()
    assert json.loads(result.detail)["segments"] == 3
    assert fake.accepted[0]["maximumNumberOfMessageParts"] == 3


# --------------------------------------------------------------------------------------------------
# Gateway errors
# --------------------------------------------------------------------------------------------------


def test_wrong_token_is_permanent_credentials(fake):
    channel = SmsGateway("11111111-2222-3333-4444-555555555555", url=fake.url + fake.path)
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message())
    assert caught.value.code == "credentials"
    assert "11111111-2222" not in str(caught.value)


def test_number_refused_by_the_gateway_is_permanent_invalid_phone(fake, adapter):
    fake.refuse_numbers.add("0032470123456")
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "invalid-phone"
    assert "302" in str(caught.value)


def test_insufficient_balance_waits_for_a_top_up(fake, adapter):
    fake.queue_reply(cm_error(400, 102, "The account using this authentication has insufficient "
                                        "balance"))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "provider-account"


def test_spam_filtered_is_permanent(fake, adapter):
    fake.queue_reply(cm_error(400, 201, "errors in messages", [
        {"to": "0032470123456", "status": "Rejected", "reference": "x", "parts": 0,
         "messageDetails": "Message has been spam filtered", "messageErrorCode": 401}]))
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "rejected" and "spam" in str(caught.value)


def test_429_with_retry_after_is_transient(fake, adapter):
    fake.queue_reply(Reply(429, b"Too Many Requests", {"Retry-After": "12"}))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "rate-limited" and caught.value.retry_after == 12.0


@pytest.mark.parametrize("reply", [
    Reply(503, b"<html>Service Unavailable</html>", {"Content-Type": "text/html"}),
    cm_error(500, 500, "An internal error has occurred"),
])
def test_gateway_outage_is_transient(fake, adapter, reply):
    fake.queue_reply(reply)
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "provider-unavailable"


def test_success_without_json_is_transient_bad_response(fake, adapter):
    fake.queue_reply(Reply(200, b"OK"))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "bad-response"


def test_connection_refused_and_timeout_are_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = SmsGateway(TOKEN, url=f"http://127.0.0.1:{port}/v1.0/message")
    with pytest.raises(TransientSendError) as caught:
        refused.send(make_message())
    assert caught.value.code == "connection"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        slow = SmsGateway(TOKEN, url=f"http://127.0.0.1:{silent.getsockname()[1]}/v1.0/message",
                          timeout_seconds=0.3)
        with pytest.raises(TransientSendError) as caught:
            slow.send(make_message())
    assert caught.value.code == "timeout"


def test_bad_url_is_permanent_configuration():
    channel = SmsGateway(TOKEN, url="ftp://gateway.example/v1.0/message")
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message())
    assert caught.value.code == "configuration"


def test_token_never_logged(fake, caplog):
    caplog.set_level(logging.DEBUG)
    channel = SmsGateway(TOKEN, url=fake.url + fake.path)
    channel.send(make_message())
    channel.close()
    assert caplog.records  # httpx/httpcore do log at DEBUG
    assert TOKEN not in caplog.text and TOKEN not in repr(channel)


# --------------------------------------------------------------------------------------------------
# The fake enforces CM's documented rules
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error_code"),
    [
        ({"from": "ThisSenderIsTooLong"}, 300),
        ({"to": []}, 301),
        ({"to": [{"number": "+32470123456"}]}, 302),  # CM wants 00-prefixed numbers
        ({"body": {"type": "auto", "content": ""}}, 303),
        ({"reference": "demo-utility/INV-2026-001"}, 304),
        ({"reference": "x" * 33}, 304),
        ({"maximumNumberOfMessageParts": 9}, 304),
    ],
)
def test_fake_gateway_refuses_undocumented_shapes(fake, change, error_code):
    msg = {"from": "DemoNuts", "to": [{"number": "0032470123456"}],
           "body": {"type": "auto", "content": "hi"}, "reference": "ok-1"}
    with httpx.Client() as client:
        assert client.post(fake.url + fake.path, json={"messages": {"msg": [msg]}},
                           headers={"X-CM-PRODUCTTOKEN": TOKEN}).status_code == 200
        answer = client.post(fake.url + fake.path, json={"messages": {"msg": [{**msg, **change}]}},
                             headers={"X-CM-PRODUCTTOKEN": TOKEN})
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == 201
    assert answer.json()["messages"][0]["messageErrorCode"] == error_code


def test_fake_gateway_accepts_the_token_in_the_body_too(fake):
    body = {"messages": {"authentication": {"producttoken": TOKEN}, "msg": [
        {"from": "DemoNuts", "to": [{"number": "0032470123456"}], "body": {"content": "hi"}}]}}
    assert httpx.post(fake.url + fake.path, json=body).json()["errorCode"] == 0


# --------------------------------------------------------------------------------------------------
# References, settings, registry
# --------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_reference_always_fits_cm_and_is_stable(key):
    reference = gateway_reference(key)
    assert re.fullmatch(r"[A-Za-z0-9-]{1,32}", reference)
    assert reference == gateway_reference(key)


def test_reference_keeps_short_plain_keys_and_separates_long_ones():
    assert gateway_reference("INV-1-sms") == "INV-1-sms"
    assert gateway_reference(KEY) != gateway_reference(KEY.replace("1", "2"))
    assert gateway_reference(KEY).startswith("cf-")


def test_registered_as_sms_http_from_env(fake, monkeypatch):
    monkeypatch.setenv("CREDITFLOW_SMS_TOKEN", TOKEN)
    monkeypatch.setenv("CREDITFLOW_SMS_URL", fake.url + fake.path)
    monkeypatch.setenv("CREDITFLOW_SMS_MAX_SEGMENTS", "3")
    channel = registry.build_channels(["sms-http"], Settings())["sms-http"]
    assert isinstance(channel, SmsGateway) and channel.max_segments == 3
    channel.send(make_message())
    channel.close()
    assert fake.accepted[0]["from"] == "Creditflow"


def test_sender_too_long_refused_by_settings(monkeypatch):
    monkeypatch.setenv("CREDITFLOW_SMS_TOKEN", TOKEN)
    monkeypatch.setenv("CREDITFLOW_SMS_SENDER", "DemoNutsbedrijf")
    with pytest.raises(ValidationError):
        SmsSettings()


# --------------------------------------------------------------------------------------------------
# channels.sms_text
# --------------------------------------------------------------------------------------------------

GSM_CHARS = sorted(sms_text.GSM7_BASIC | sms_text.GSM7_EXTENSION)


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("€" * 80, "GSM-7", 160, 1),
        ("a" * 158 + "€", "GSM-7", 160, 1),  # the ESC pair counts two septets
        ("a" * 159 + "€", "GSM-7", 161, 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # ceil(306 / 153) would say 2
        ("ł" * 70, "UCS-2", 70, 1),
        ("ł" * 71, "UCS-2", 71, 2),
        ("🙂" * 35, "UCS-2", 70, 1),
        ("ł" * 66 + "🙂" + "ł" * 66, "UCS-2", 134, 3),  # surrogate pair not split
    ],
)
def test_segment_examples(text, encoding, units, segments):
    assert sms_text.count_sms_segments(text) == sms_text.SmsSegments(encoding, units, segments)


def test_e164_and_00_form():
    assert sms_text.e164("+32 (0)470 12.34.56".replace("(0)", "")) == "+32470123456"
    assert sms_text.international_00("+32470123456") == "0032470123456"
    with pytest.raises(ValueError):
        sms_text.international_00("0470123456")
