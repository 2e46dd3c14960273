"""E-mail over SMTP (smtplib): STARTTLS, implicit TLS, or plain for a loopback test server.

The message is built by channels.mime, byte for byte what the local outbox writes as .eml, with a
Message-ID derived from the idempotency key. SMTP has no idempotency, so a resend after a lost "250"
is delivered twice; the stable Message-ID lets mail clients and people see it is the same message.

One connection is kept open between sends (a batch pays the TCP, TLS and AUTH handshakes once) and
checked with NOOP after an idle pause, because servers drop idle clients. Reply codes decide: 4xx
is "later" (greylisting, a full queue), 5xx on a recipient is "never at this address", 535/530 is a
credentials problem the operator must fix.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditflow.channels import http_errors
from creditflow.channels.base import (
    Channel,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)
from creditflow.channels.mime import build_email
from creditflow.channels.registry import register
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Message

Security = Literal["starttls", "tls", "plain"]
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "plain": 25}
IDLE_CHECK_SECONDS = 5.0


class SmtpSettings(BaseSettings):
    """`CREDITFLOW_SMTP_*`; only the host is required."""

    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_SMTP_", extra="ignore")

    host: str
    port: int | None = Field(None, description="Default: 587 starttls, 465 tls, 25 plain.")
    security: Security = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    envelope_from: str | None = Field(None, description="Bounce address; default: the sender.")
    ca_file: Path | None = Field(None, description="CA bundle for a private or self-signed server.")
    local_hostname: str | None = Field(None, description="Name sent in EHLO; default: our FQDN.")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SmtpEmail:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: Security = "starttls",
        username: str | None = None,
        password: SecretStr | str | None = None,
        timeout_seconds: float = 30.0,
        envelope_from: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ):
        if security not in DEFAULT_PORTS:
            raise ValueError(f"security must be one of {sorted(DEFAULT_PORTS)}, not {security!r}")
        if (username is None) != (password is None):
            raise ValueError("SMTP AUTH needs both a username and a password")
        if security == "plain" and username is not None and not _is_loopback(host):
            raise ValueError("refusing to send SMTP credentials in clear text to a remote host")
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.security = security
        self.username = username
        self._password = password if isinstance(password, SecretStr) or password is None \
            else SecretStr(password)
        self.timeout_seconds = timeout_seconds
        self.envelope_from = envelope_from
        self.local_hostname = local_hostname
        self._ssl_context = ssl_context  # None: the system's CAs, loaded on first TLS connect
        self._clock = clock
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: SmtpSettings) -> SmtpEmail:
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
        return cls(
            settings.host,
            settings.port,
            security=settings.security,
            username=settings.username,
            password=settings.password,
            timeout_seconds=settings.timeout_seconds,
            envelope_from=settings.envelope_from,
            ssl_context=context,
            local_hostname=settings.local_hostname,
        )

    def __repr__(self) -> str:
        return f"SmtpEmail(host={self.host!r}, port={self.port}, security={self.security!r})"

    # ----------------------------------------------------------------------------------------------

    def send(self, message: Message) -> SendResult:
        key = message.idempotency_key
        built = build_email(message, now=self._clock())
        envelope_from = self.envelope_from or built.sender
        with self._lock:
            try:
                smtp = self._connection()
                reply = _transmit(smtp, envelope_from, built.recipient, built.data)
                self._last_used = time.monotonic()
            except smtplib.SMTPResponseException as exc:
                # The server answered: the session is still usable (smtplib sent RSET for us)
                # unless it said goodbye (421).
                if exc.smtp_code == 421:
                    self._drop()
                raise _error_for_reply(exc, key, self.host) from None
            except smtplib.SMTPRecipientsRefused as exc:
                raise _error_for_refused(exc, key) from None
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                raise PermanentSendError(
                    f"{key}: the certificate of {self.host} does not verify: {exc.verify_message}",
                    code="tls",
                ) from None
            except smtplib.SMTPNotSupportedError as exc:
                self._drop()
                raise PermanentSendError(
                    f"{key}: {self.host} does not support what we need: {exc}",
                    code=http_errors.CONFIGURATION,
                ) from None
            except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, TLS errors
                self._drop()
                raise http_errors.error_for_transport(
                    exc, provider=f"SMTP server {self.host}", key=key
                ) from None
        return SendResult(built.message_id, detail=f"{self.host}: {reply}")

    def close(self) -> None:
        with self._lock:
            if self._smtp is not None:
                try:
                    self._smtp.quit()
                except (smtplib.SMTPException, OSError):
                    pass
            self._drop()

    # ----------------------------------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            if time.monotonic() - self._last_used < IDLE_CHECK_SECONDS:
                return self._smtp
            try:
                if self._smtp.noop()[0] == 250:
                    return self._smtp
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        self._smtp = self._connect()
        return self._smtp

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, local_hostname=self.local_hostname,
                timeout=self.timeout_seconds, context=self._tls_context(),
            )
        else:
            smtp = smtplib.SMTP(
                self.host, self.port, local_hostname=self.local_hostname,
                timeout=self.timeout_seconds,
            )
        try:
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if self.username is not None and self._password is not None:
                _login(smtp, self.username, self._password.get_secret_value())
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            except OSError:
                pass
        self._smtp = None


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH with one mechanism (PLAIN, else LOGIN), unlike smtplib.login, which tries every
    advertised mechanism in turn: after a 535 the password is wrong whatever the mechanism, and
    each further try counts against the account's lockout (some servers also hang on the retry)."""
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("the server offers no SMTP AUTH")
    advertised = smtp.esmtp_features["auth"].upper().split()
    mechanism = next((m for m in ("PLAIN", "LOGIN") if m in advertised), None)
    if mechanism is None:
        raise smtplib.SMTPNotSupportedError(f"no AUTH mechanism we use among {advertised}")
    smtp.user, smtp.password = username, password
    try:
        smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
    finally:
        smtp.password = ""  # smtplib keeps it on the object otherwise


def _transmit(smtp: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> str:
    """MAIL, RCPT, DATA for one recipient; returns the server's final reply (often a queue id).

    smtplib's sendmail does the same but hides that last reply, which is the only handle a mail
    administrator has to find the message in the server's logs.
    """
    options = [f"SIZE={len(data)}"] if smtp.has_extn("size") else []
    code, reply = smtp.mail(sender, options)
    if code != 250:
        _reset(smtp, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = smtp.rcpt(recipient)
    if code not in (250, 251):
        _reset(smtp, code)
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = smtp.data(data)
    if code != 250:
        _reset(smtp, code)
        raise smtplib.SMTPDataError(code, reply)
    return f"{code} {reply.decode('utf-8', 'replace')}"


def _reset(smtp: smtplib.SMTP, code: int) -> None:
    if code == 421:  # the server is closing the connection: nothing to reset
        return
    try:
        smtp.rset()
    except (smtplib.SMTPException, OSError):
        pass


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return http_errors.quote_body(text)


def _error_for_reply(exc: smtplib.SMTPResponseException, key: str, host: str) -> SendError:
    code = exc.smtp_code
    text = f"{code} {_reply_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPAuthenticationError) or code in (530, 535, 534, 538):
        if 400 <= code < 500:  # 454: temporary authentication failure
            return TransientSendError(f"{key}: {host} cannot authenticate now: {text}",
                                      code="auth-unavailable")
        return PermanentSendError(f"{key}: {host} refused our SMTP login: {text}",
                                  code=http_errors.CREDENTIALS)
    if 400 <= code < 500:
        return TransientSendError(f"{key}: {host} deferred the message: {text}", code="deferred")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        error_code = http_errors.TOO_LARGE if code == 552 else "sender-refused"
        return PermanentSendError(f"{key}: {host} refused the sender: {text}", code=error_code)
    if code == 552:
        return PermanentSendError(f"{key}: {host} refused the size: {text}", code="too-large")
    return PermanentSendError(f"{key}: {host} refused the message: {text}", code="rejected")


def _error_for_refused(exc: smtplib.SMTPRecipientsRefused, key: str) -> SendError:
    (address, (code, reply)), *_ = exc.recipients.items()
    text = f"{code} {_reply_text(reply)}"
    if 400 <= code < 500:
        return TransientSendError(f"{key}: {address} deferred: {text}", code="deferred")
    if code in (530, 535):
        return PermanentSendError(f"{key}: login needed to send: {text}",
                                  code=http_errors.CREDENTIALS)
    return PermanentSendError(f"{key}: {address} refused: {text}", code="invalid-address")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register("smtp")
def _smtp_channel(settings: Settings) -> Channel:
    return SmtpEmail.from_settings(SmtpSettings())
