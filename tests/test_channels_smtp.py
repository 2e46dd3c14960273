"""SMTP adapter against a real aiosmtpd server (plain, AUTH, STARTTLS, implicit TLS), and channels.mime."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from creditflow.channels import registry, smtp_email
from creditflow.channels.base import PermanentSendError, TransientSendError
from creditflow.channels.local_outbox import LocalEmailOutbox
from creditflow.channels.mime import build_email, message_id_for
from creditflow.channels.smtp_email import SmtpEmail
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Attachment, Message
from sample_pdf import one_page_pdf

# Plain AUTH on loopback is what the AUTH tests want; aiosmtpd warns about it at every start.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

FIXED_NOW = dt.datetime(2026, 3, 2, 9, 30, 15, tzinfo=dt.UTC)
KEY = "demo-utility/INV-2026-001/initial/email"
USER, PASSWORD = "creditflow", "s3cret-smtp-pass"


def fixed_clock() -> dt.datetime:
    return FIXED_NOW


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    return one_page_pdf("Factuur INV-2026-001 — €1.234,56")


def make_message(pdf: bytes, **overrides) -> Message:
    values = dict(
        idempotency_key=KEY,
        channel="email",
        creditor_id="demo-utility",
        invoice_number="INV-2026-001",
        language="fr",
        sender_name="Démo Énergie",
        sender_email="factures@demo-utility.example",
        subject="Votre facture INV-2026-001 — échéance 16/03",
        text="Bonjour,\n.\nVeuillez trouver votre facture ci-jointe.\n",  # a lone "." line
        html="<p>Bonjour,</p>",
        to_email="client@example.com",
        to_name="Client SPRL",
        attachments=(Attachment("facture-INV-2026-001.pdf", "application/pdf", pdf),),
    )
    values.update(overrides)
    return Message(**values)


# --------------------------------------------------------------------------------------------------
# aiosmtpd server
# --------------------------------------------------------------------------------------------------


@dataclass
class Sink:
    """Records every message; answers chosen recipients / data with chosen replies."""

    messages: list[dict] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    sessions: set[int] = field(default_factory=set)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.sessions.add(id(session))
        self.messages.append({
            "from": envelope.mail_from,
            "rcpt": list(envelope.rcpt_tos),
            "raw": envelope.original_content or envelope.content,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": session.authenticated,
        })
        return "250 2.0.0 Ok: queued as FAKE123"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sink():
    return Sink()


@pytest.fixture
def plain_server(sink):
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def auth_server(sink):
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(),
                            authenticator=authenticator, auth_required=True,
                            auth_require_tls=False)
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made here: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "creditflow test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_tls_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


def client_tls_context(certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


# --------------------------------------------------------------------------------------------------
# Plain delivery: the real message, byte for byte
# --------------------------------------------------------------------------------------------------


def test_server_receives_the_same_bytes_as_the_eml(plain_server, sink, pdf_bytes, tmp_path):
    message = make_message(pdf_bytes)
    channel = SmtpEmail("127.0.0.1", plain_server.port, security="plain", clock=fixed_clock)
    result = channel.send(message)
    channel.close()

    (received,) = sink.messages
    assert received["from"] == "factures@demo-utility.example"
    assert received["rcpt"] == ["client@example.com"]
    assert received["raw"] == build_email(message, now=FIXED_NOW).data
    parsed = message_from_bytes(received["raw"], policy=policy.default)
    eml_path = Path(LocalEmailOutbox(tmp_path, clock=fixed_clock).send(message).detail)
    assert _shape(parsed) == _shape(message_from_bytes(eml_path.read_bytes(), policy=policy.default))

    assert parsed["Message-ID"] == message_id_for(KEY, "demo-utility.example")
    assert result.provider_id == parsed["Message-ID"]
    assert parsed["Content-Language"] == "fr"
    assert "queued as FAKE123" in result.detail
    assert parsed["Subject"] == message.subject
    assert parsed["From"].addresses[0].display_name == "Démo Énergie"
    assert parsed["X-Creditflow-Key"] == KEY
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == "facture-INV-2026-001.pdf"
    assert attachment.get_content() == pdf_bytes
    body = parsed.get_body(("plain",)).get_content()
    assert body.replace("\r\n", "\n") == message.text  # the lone "." survived dot-stuffing


def _shape(mail) -> list:
    """Headers and decoded parts, boundaries aside: what a reader of the message sees."""
    shape = []
    for part in mail.walk():
        # Content-Language: the local outbox's own builder loses it (set_content clears Content-*
        # headers); mime.build_email sets it afterwards. Compared on its own below.
        headers = [(k, str(v)) for k, v in part.items()
                   if k not in ("Content-Type", "Content-Language")]
        shape.append((part.get_content_type(), headers,
                      None if part.is_multipart() else part.get_content()))
    return shape


def test_envelope_from_can_differ_from_the_header_sender(plain_server, sink, pdf_bytes):
    channel = SmtpEmail("127.0.0.1", plain_server.port, security="plain",
                        envelope_from="bounces@demo-utility.example")
    channel.send(make_message(pdf_bytes))
    assert sink.messages[0]["from"] == "bounces@demo-utility.example"


def test_one_connection_serves_a_batch(plain_server, sink, pdf_bytes):
    channel = SmtpEmail("127.0.0.1", plain_server.port, security="plain")
    for n in range(5):
        channel.send(make_message(pdf_bytes, idempotency_key=f"{KEY}/{n}"))
    channel.close()
    assert len(sink.messages) == 5
    assert len(sink.sessions) == 1
    ids = {message_from_bytes(m["raw"], policy=policy.default)["Message-ID"] for m in sink.messages}
    assert len(ids) == 5


def test_reconnects_after_the_server_dropped_an_idle_connection(sink, pdf_bytes, monkeypatch):
    monkeypatch.setattr(smtp_email, "IDLE_CHECK_SECONDS", 0.0)  # always NOOP before reuse
    port = free_port()
    first = Controller(sink, hostname="127.0.0.1", port=port)
    first.start()
    channel = SmtpEmail("127.0.0.1", port, security="plain")
    channel.send(make_message(pdf_bytes))
    first.stop()  # drops the connection the adapter holds
    second = Controller(sink, hostname="127.0.0.1", port=port)
    second.start()
    try:
        channel.send(make_message(pdf_bytes, idempotency_key=KEY + "/2"))
    finally:
        channel.close()
        second.stop()
    assert len(sink.messages) == 2


# --------------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------------


def test_refused_recipient_is_permanent_invalid_address(plain_server, sink, pdf_bytes):
    sink.rcpt_replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: user unknown"
    channel = SmtpEmail("127.0.0.1", plain_server.port, security="plain")
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message(pdf_bytes, to_email="gone@example.com"))
    assert caught.value.code == "invalid-address"
    assert "user unknown" in str(caught.value)
    channel.send(make_message(pdf_bytes))  # the session is still good after RSET
    assert len(sink.messages) == 1


def test_451_on_recipient_is_transient(plain_server, sink, pdf_bytes):
    sink.rcpt_replies["client@example.com"] = "451 4.7.1 Greylisted, try again later"
    channel = SmtpEmail("127.0.0.1", plain_server.port, security="plain")
    with pytest.raises(TransientSendError) as caught:
        channel.send(make_message(pdf_bytes))
    assert caught.value.code == "deferred"
    assert "Greylisted" in str(caught.value)


def test_451_after_data_is_transient(plain_server, sink, pdf_bytes):
    sink.data_reply = "451 4.3.0 Queue full"
    channel = SmtpEmail("127.0.0.1", plain_server.port, security="plain")
    with pytest.raises(TransientSendError) as caught:
        channel.send(make_message(pdf_bytes))
    assert caught.value.code == "deferred"


def test_554_after_data_is_permanent(plain_server, sink, pdf_bytes):
    sink.data_reply = "554 5.7.1 Message rejected as spam"
    channel = SmtpEmail("127.0.0.1", plain_server.port, security="plain")
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message(pdf_bytes))
    assert caught.value.code == "rejected"


def test_no_server_is_transient():
    channel = SmtpEmail("127.0.0.1", free_port(), security="plain", timeout_seconds=2)
    with pytest.raises(TransientSendError) as caught:
        channel.send(make_message(b"%PDF-1.4"))
    assert caught.value.code == "connection"


def test_unbuildable_message_is_permanent_before_connecting(pdf_bytes):
    channel = SmtpEmail("127.0.0.1", free_port(), security="plain")
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message(pdf_bytes, subject="two\nlines"))
    assert caught.value.code == "invalid-message"
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message(pdf_bytes, to_email=None))
    assert caught.value.code == "no-recipient"


# --------------------------------------------------------------------------------------------------
# AUTH
# --------------------------------------------------------------------------------------------------


def test_auth_login_then_send(auth_server, sink, pdf_bytes):
    channel = SmtpEmail("127.0.0.1", auth_server.port, security="plain",
                        username=USER, password=PASSWORD)
    channel.send(make_message(pdf_bytes))
    channel.close()
    assert sink.messages[0]["authenticated"] is True


def test_wrong_password_is_permanent_credentials(auth_server, sink, pdf_bytes, caplog):
    caplog.set_level(logging.DEBUG)
    channel = SmtpEmail("127.0.0.1", auth_server.port, security="plain",
                        username=USER, password="wrong-password-123")
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message(pdf_bytes))
    assert caught.value.code == "credentials"
    assert "535" in str(caught.value)
    assert "wrong-password-123" not in str(caught.value) + caplog.text + repr(channel)
    assert sink.messages == []


def test_missing_login_is_permanent_credentials(auth_server, pdf_bytes):
    channel = SmtpEmail("127.0.0.1", auth_server.port, security="plain")
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message(pdf_bytes))
    assert caught.value.code == "credentials"
    assert "530" in str(caught.value)


def test_credentials_in_clear_text_to_a_remote_host_refused():
    with pytest.raises(ValueError, match="clear text"):
        SmtpEmail("smtp.example.com", 25, security="plain", username=USER, password=PASSWORD)
    with pytest.raises(ValueError, match="both"):
        SmtpEmail("127.0.0.1", 25, security="plain", username=USER)


# --------------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------------


def test_starttls_with_auth(sink, certificate, pdf_bytes):
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(),
                            tls_context=server_tls_context(certificate), require_starttls=True,
                            authenticator=authenticator, auth_required=True,
                            auth_require_tls=True)
    controller.start()
    try:
        channel = SmtpEmail("127.0.0.1", controller.port, security="starttls",
                            username=USER, password=PASSWORD,
                            ssl_context=client_tls_context(certificate))
        channel.send(make_message(pdf_bytes))
        channel.close()
    finally:
        controller.stop()
    (received,) = sink.messages
    assert received["tls"] is True and received["authenticated"] is True
    attachment = next(message_from_bytes(received["raw"], policy=policy.default).iter_attachments())
    assert attachment.get_content() == pdf_bytes


def test_starttls_with_an_untrusted_certificate_is_permanent_tls(sink, certificate, pdf_bytes):
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(),
                            tls_context=server_tls_context(certificate), require_starttls=True)
    controller.start()
    try:
        channel = SmtpEmail("127.0.0.1", controller.port, security="starttls")  # system CAs
        with pytest.raises(PermanentSendError) as caught:
            channel.send(make_message(pdf_bytes))
    finally:
        controller.stop()
    assert caught.value.code == "tls"
    assert sink.messages == []


def test_starttls_required_but_not_offered_is_permanent_configuration(plain_server, pdf_bytes):
    channel = SmtpEmail("127.0.0.1", plain_server.port, security="starttls")
    with pytest.raises(PermanentSendError) as caught:
        channel.send(make_message(pdf_bytes))
    assert caught.value.code == "configuration"


def test_implicit_tls(sink, certificate, pdf_bytes):
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(),
                            ssl_context=server_tls_context(certificate))
    controller.start()
    try:
        channel = SmtpEmail("127.0.0.1", controller.port, security="tls",
                            ssl_context=client_tls_context(certificate))
        channel.send(make_message(pdf_bytes))
        channel.close()
    finally:
        controller.stop()
    assert sink.messages[0]["tls"] is True


# --------------------------------------------------------------------------------------------------
# Registry and settings
# --------------------------------------------------------------------------------------------------


def test_registered_as_smtp_from_env(plain_server, sink, pdf_bytes, monkeypatch):
    monkeypatch.setenv("CREDITFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CREDITFLOW_SMTP_PORT", str(plain_server.port))
    monkeypatch.setenv("CREDITFLOW_SMTP_SECURITY", "plain")
    channel = registry.build_channels(["smtp"], Settings())["smtp"]
    assert isinstance(channel, SmtpEmail) and channel.port == plain_server.port
    channel.send(make_message(pdf_bytes))
    channel.close()
    assert len(sink.messages) == 1


def test_default_ports_follow_security():
    assert SmtpEmail("smtp.example.com").port == 587
    assert SmtpEmail("smtp.example.com", security="tls").port == 465


# --------------------------------------------------------------------------------------------------
# channels.mime
# --------------------------------------------------------------------------------------------------


def test_build_email_is_deterministic_and_ascii(pdf_bytes):
    message = make_message(pdf_bytes)
    first = build_email(message, now=FIXED_NOW)
    assert first == build_email(message, now=FIXED_NOW)
    first.data.decode("ascii")  # RFC 2047 / base64 applied: no SMTPUTF8 needed
    assert b"\r\n" in first.data and b"\n" not in first.data.replace(b"\r\n", b"")
    assert first.sender == "factures@demo-utility.example"
    assert first.recipient == "client@example.com"


def test_message_id_depends_on_the_key_only():
    assert message_id_for("a", "Example.BE") == message_id_for("a", "example.be")
    assert message_id_for("a", "example.be") != message_id_for("b", "example.be")
    assert message_id_for("a", " ").endswith("@creditflow.invalid>")


def test_build_email_needs_an_aware_date(pdf_bytes):
    with pytest.raises(ValueError):
        build_email(make_message(pdf_bytes), now=dt.datetime(2026, 1, 1))


def test_smtplib_reply_codes_map_consistently():
    refused = smtplib.SMTPRecipientsRefused({"x@example.com": (552, b"mailbox full")})
    error = smtp_email._error_for_refused(refused, "k")
    assert isinstance(error, PermanentSendError)
    error = smtp_email._error_for_reply(smtplib.SMTPAuthenticationError(454, b"try later"), "k", "h")
    assert isinstance(error, TransientSendError) and error.code == "auth-unavailable"
    error = smtp_email._error_for_reply(smtplib.SMTPSenderRefused(552, b"too big", "a@b"), "k", "h")
    assert isinstance(error, PermanentSendError) and error.code == "too-large"
