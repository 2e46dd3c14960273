"""SendGrid adapter against a local fake that checks the v3 Mail Send body, and the HTTP error map."""

from __future__ import annotations

import base64
import logging
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from creditflow.channels import http_errors, registry
from creditflow.channels.base import PermanentSendError, TransientSendError
from creditflow.channels.sendgrid_email import SendGridEmail, SendGridSettings
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Attachment, Message
from fakes.http_server import Reply
from sample_pdf import one_page_pdf
from fakes.sendgrid import (
    FakeSendGrid,
    rate_limited,
    server_error,
    validate_mail_send,
)

API_KEY = "SG.test-key.abcdefghijklmnop"
KEY = "demo-utility/INV-2026-001/initial/email"


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    return one_page_pdf("Factuur INV-2026-001")


@pytest.fixture
def fake():
    with FakeSendGrid(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def adapter(fake):
    channel = SendGridEmail(API_KEY, host=fake.url, timeout_seconds=5)
    yield channel
    channel.close()


def make_message(pdf: bytes = b"%PDF-1.4 tiny", **overrides) -> Message:
    values = dict(
        idempotency_key=KEY,
        channel="email",
        creditor_id="demo-utility",
        invoice_number="INV-2026-001",
        language="nl",
        sender_name="Demo Nutsbedrijf",
        sender_email="facturen@demo-utility.example",
        subject="Factuur INV-2026-001",
        text="Beste klant,\nIn bijlage uw factuur.",
        html="<p>Beste klant,</p><p>In bijlage uw factuur.</p>",
        to_email="klant@example.com",
        to_name="Klant BV",
        attachments=(Attachment("factuur-INV-2026-001.pdf", "application/pdf", pdf),),
        metadata={"purpose": "initial"},
    )
    values.update(overrides)
    return Message(**values)


# --------------------------------------------------------------------------------------------------
# Happy path: what reaches SendGrid
# --------------------------------------------------------------------------------------------------


def test_send_posts_documented_body_and_returns_message_id(fake, adapter, pdf_bytes):
    result = adapter.send(make_message(pdf_bytes))

    assert fake.rejections == []
    (request,) = fake.requests
    assert request.method == "POST" and request.path == "/v3/mail/send"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["user-agent"].startswith("sendgrid/")
    body = request.json()
    assert body["personalizations"] == [{
        "to": [{"email": "klant@example.com", "name": "Klant BV"}],
        "custom_args": {"delivery_key": KEY, "creditor": "demo-utility",
                        "invoice": "INV-2026-001"},
    }]
    assert body["from"] == {"email": "facturen@demo-utility.example", "name": "Demo Nutsbedrijf"}
    assert body["subject"] == "Factuur INV-2026-001"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["categories"] == ["invoice", "demo-utility"]
    assert body["custom_args"] == {"purpose": "initial", "language": "nl"}
    (attachment,) = body["attachments"]
    assert "\n" not in attachment["content"]
    assert base64.b64decode(attachment["content"], validate=True) == pdf_bytes
    assert attachment["type"] == "application/pdf"
    assert attachment["filename"] == "factuur-INV-2026-001.pdf"
    assert result.provider_id.startswith("fake") and len(result.provider_id) == 22
    assert result.duplicate is False


def test_text_only_message_without_name_or_attachments(fake, adapter):
    adapter.send(make_message(html=None, to_name=None, attachments=(), metadata={}))
    body = fake.accepted[0]
    assert body["content"] == [{"type": "text/plain", "value": "Beste klant,\nIn bijlage uw factuur."}]
    assert body["personalizations"][0]["to"] == [{"email": "klant@example.com"}]
    assert "attachments" not in body


def test_sandbox_reply_to_and_unsubscribe_group(fake):
    channel = SendGridEmail(API_KEY, host=fake.url, sandbox_mode=True,
                            reply_to="debiteuren@demo-utility.example", asm_group_id=4242)
    channel.send(make_message())
    body = fake.accepted[0]
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert body["reply_to"] == {"email": "debiteuren@demo-utility.example"}
    assert body["asm"] == {"group_id": 4242}


def test_category_not_doubled_when_creditor_is_called_invoice(fake, adapter):
    adapter.send(make_message(creditor_id="invoice"))
    assert fake.accepted[0]["categories"] == ["invoice"]


# --------------------------------------------------------------------------------------------------
# The fake itself enforces the documented rules (otherwise the tests above prove little)
# --------------------------------------------------------------------------------------------------


def _valid_body() -> dict:
    return {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "b@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "x"}],
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("personalizations"), "personalizations"),
        (lambda b: b.update(personalizations=[{"to": [{"email": "a@example.com"}]}] * 1001),
         "personalizations"),
        (lambda b: b["personalizations"][0].update(to=[]), "personalizations.0.to"),
        (lambda b: b["personalizations"][0].update(cc=[{"email": "A@example.com"}]),
         "personalizations.0.cc.0.email"),
        (lambda b: b.update({"from": {"name": "x"}}), "from.email"),
        (lambda b: b.pop("subject"), "subject"),
        (lambda b: b.update(content=[{"type": "text/html", "value": "<p>"},
                                     {"type": "text/plain", "value": "x"}]), "content.0.type"),
        (lambda b: b.update(content=[{"type": "text/plain", "value": ""}]), "content.0.value"),
        (lambda b: b.update(attachments=[{"content": "QUJD\nREVG", "filename": "a.pdf"}]),
         "attachments.0.content"),
        (lambda b: b.update(attachments=[{"content": "not base64!", "filename": "a.pdf"}]),
         "attachments.0.content"),
        (lambda b: b.update(attachments=[{"content": "QUJD"}]), "attachments.0.filename"),
        (lambda b: b.update(categories=[str(i) for i in range(11)]), "categories"),
        (lambda b: b.update(custom_args={"n": 1}), "custom_args.n"),
        (lambda b: b["personalizations"][0].update(custom_args={"x": "y" * 10_001}),
         "personalizations.0.custom_args"),
        (lambda b: b.update(subjct="typo"), "subjct"),
    ],
)
def test_fake_refuses_what_sendgrid_documents_as_invalid(mutate, field):
    body = _valid_body()
    assert validate_mail_send(body) == []
    mutate(body)
    assert field in [f for f, _ in validate_mail_send(body)]


def test_fake_answers_400_with_sendgrid_error_shape(fake):
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{fake.url}/v3/mail/send", data=json.dumps({"subject": "x"}).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    errors = json.loads(caught.value.read())["errors"]
    assert {"message", "field", "help"} <= set(errors[0])


# --------------------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------------------


def test_address_refused_by_sendgrid_is_permanent_invalid_address(fake, adapter):
    # passes our local syntax check, but SendGrid's (the fake's) rules refuse the "_" in the domain
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(make_message(to_email="klant@exa_mple.com"))
    assert caught.value.code == "invalid-address"
    assert "personalizations.0.to.0.email" in str(caught.value)
    assert fake.rejections and fake.rejections[0][1].status == 400


def test_wrong_api_key_is_permanent_credentials_not_bad_address(fake):
    channel = SendGridEmail("SG.revoked", host=fake.url)
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message())
    assert caught.value.code == "credentials"
    assert "SG.revoked" not in str(caught.value)


def test_forbidden_is_credentials_too(fake, adapter):
    fake.queue_reply(Reply.json(403, {"errors": [{"field": None, "message": "access forbidden"}]}))
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "credentials"
    assert "access forbidden" in str(caught.value)


def test_429_honours_retry_after_seconds(fake, adapter):
    fake.queue_reply(rate_limited("7"))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "rate-limited"
    assert caught.value.retry_after == 7.0
    adapter.send(make_message())  # the next request goes through again
    assert len(fake.accepted) == 1


def test_429_honours_retry_after_http_date(fake, adapter):
    when = datetime.now(UTC) + timedelta(seconds=90)
    fake.queue_reply(rate_limited(format_datetime(when, usegmt=True)))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert 80 <= caught.value.retry_after <= 91


def test_429_without_retry_after_uses_ratelimit_reset(fake, adapter):
    reset = int(datetime.now(UTC).timestamp()) + 30
    fake.queue_reply(Reply.json(429, {"errors": []}, **{"X-RateLimit-Reset": str(reset)}))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert 25 <= caught.value.retry_after <= 31


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(fake, adapter, status):
    fake.queue_reply(Reply(status, server_error().body, server_error().headers))
    with pytest.raises(TransientSendError) as caught:
        adapter.send(make_message())
    assert caught.value.code == "provider-unavailable"
    assert caught.value.retry_after is None


def test_connection_refused_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = SendGridEmail(API_KEY, host=f"http://127.0.0.1:{port}", timeout_seconds=2)
    with pytest.raises(TransientSendError) as caught:
        channel.send(make_message())
    assert caught.value.code == "connection"


def test_silent_server_times_out_as_transient():
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        channel = SendGridEmail(API_KEY, host=f"http://127.0.0.1:{silent.getsockname()[1]}",
                                timeout_seconds=0.3)
        with pytest.raises(TransientSendError) as caught:
            channel.send(make_message())
    assert caught.value.code == "timeout"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"to_email": None}, "no-recipient"),
        ({"to_email": "not an address"}, "invalid-address"),
        ({"subject": ""}, "invalid-message"),
        ({"text": "", "html": None}, "invalid-message"),
        ({"metadata": {"blob": "x" * 10_000}}, "invalid-message"),
    ],
)
def test_what_sendgrid_would_refuse_fails_before_any_request(fake, adapter, overrides, code):
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(make_message(**overrides))
    assert caught.value.code == code
    assert fake.requests == []


def test_api_key_never_logged_or_shown(fake, caplog):
    caplog.set_level(logging.DEBUG)
    channel = SendGridEmail(API_KEY, host=fake.url)
    channel.send(make_message())
    fake.queue_reply(server_error())
    with pytest.raises(TransientSendError) as caught:
        channel.send(make_message())
    assert caplog.records, "python_http_client should have logged something at DEBUG"
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(channel) and API_KEY not in str(caught.value)


# --------------------------------------------------------------------------------------------------
# Registry and settings
# --------------------------------------------------------------------------------------------------


def test_registered_as_sendgrid_from_env(fake, monkeypatch):
    monkeypatch.setenv("CREDITFLOW_SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("CREDITFLOW_SENDGRID_HOST", fake.url)
    channels = registry.build_channels(["sendgrid"], Settings())
    assert isinstance(channels["sendgrid"], SendGridEmail)
    channels["sendgrid"].send(make_message())
    assert len(fake.accepted) == 1
    assert API_KEY not in repr(SendGridSettings())


def test_missing_api_key_fails_at_build_time(monkeypatch):
    monkeypatch.delenv("CREDITFLOW_SENDGRID_API_KEY", raising=False)
    with pytest.raises(ValidationError):
        registry.build_channels(["sendgrid"], Settings())


# --------------------------------------------------------------------------------------------------
# channels.http_errors
# --------------------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Mon, 02 Mar 2026 09:31:00 GMT", 60.0),
        ("Mon, 02 Mar 2026 09:00:00 GMT", 0.0),  # in the past: now
        ("Monday, 02-Mar-26 09:30:30 GMT", 30.0),  # obsolete RFC 850 form
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", 0.0),
        ("nan", None),
    ],
)
def test_parse_retry_after(value, seconds):
    assert http_errors.parse_retry_after(value, now=NOW) == seconds


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10**7))
def test_retry_after_delta_seconds_round_trip(seconds):
    assert http_errors.parse_retry_after(str(seconds), now=NOW) == seconds


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_http_date_round_trip(seconds):
    header = format_datetime(NOW + timedelta(seconds=seconds), usegmt=True)
    assert http_errors.parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, PermanentSendError, "rejected"),
        (422, PermanentSendError, "rejected"),
        (401, PermanentSendError, "credentials"),
        (403, PermanentSendError, "credentials"),
        (404, PermanentSendError, "configuration"),
        (413, PermanentSendError, "too-large"),
        (408, TransientSendError, "provider-unavailable"),
        (429, TransientSendError, "rate-limited"),
        (500, TransientSendError, "provider-unavailable"),
        (503, TransientSendError, "provider-unavailable"),
        (599, TransientSendError, "provider-unavailable"),
    ],
)
def test_error_for_status(status, kind, code):
    error = http_errors.error_for_status(status, provider="X", key="k", retry_after="3", now=NOW)
    assert type(error) is kind and error.code == code
    assert error.retry_after == (3.0 if kind is TransientSendError else None)


def test_quote_body_is_one_bounded_line():
    quoted = http_errors.quote_body(b"line one\r\nline two " + b"x" * 1000)
    assert "\n" not in quoted and quoted.startswith("line one line two")
    assert len(quoted) == http_errors.BODY_QUOTE_CHARS
