"""Bancontact Pro payment requests (Payment V3 API) and the check of their signed callbacks.

`send()` creates one payment (`POST /v3/payments`) for the invoice's open amount and returns the
provider's paymentId, with the deeplink and QR code URL in `SendResult.detail` (JSON) so the caller
can store them and put them in front of the debtor. Payment V3 takes no idempotency key: a retry
after a lost answer creates a second payment request for the same invoice; the older one simply
expires unpaid, which is why the outbox should not retry this channel aggressively.

Callbacks are POSTed by Bancontact with a detached JWS (ES256) over the raw body in the `signature`
header; `verify_callback` checks it against Bancontact's JWKS before anything in the body is
believed.
Even then the handler should re-GET the payment: callbacks may arrive out of order.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditflow.channels import http_errors
from creditflow.channels.base import (
    Channel,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from creditflow.channels.registry import register
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Message

PROVIDER = "Bancontact"
PROD_URL = "https://merchant.api.bancontact.net"
PREPROD_URL = "https://merchant.api.preprod.bancontact.net"
MAX_REFERENCE_CHARS = 35
MAX_DESCRIPTION_CHARS = 140
_SEPA_CHARS = re.compile(r"^[A-Za-z0-9/\-?:().,'+ ]*$")


class BancontactSettings(BaseSettings):
    """`CREDITFLOW_BANCONTACT_*`. The default host is PREPROD on purpose: a forgotten setting then
    fails with "credentials" instead of asking real debtors for real money from a test setup."""

    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_BANCONTACT_", extra="ignore")

    api_key: SecretStr
    callback_url: str = Field(description="Our HTTPS endpoint Bancontact POSTs status changes to.")
    base_url: str = PREPROD_URL
    timeout_seconds: float = Field(15.0, gt=0)


class BancontactPayments:
    name = "bancontact"

    def __init__(
        self,
        api_key: SecretStr | str,
        *,
        callback_url: str,
        base_url: str = PREPROD_URL,
        timeout_seconds: float = 15.0,
    ):
        secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not secret:
            raise ValueError("a Bancontact API key is required")
        if not callback_url.startswith("https://"):
            raise ValueError("Bancontact only calls back HTTPS URLs")
        self.base_url = base_url.rstrip("/")
        self.callback_url = callback_url
        self._http = httpx.Client(
            timeout=timeout_seconds,
            headers={"Authorization": f"Bearer {secret}", "Accept": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings: BancontactSettings) -> BancontactPayments:
        return cls(
            settings.api_key,
            callback_url=settings.callback_url,
            base_url=settings.base_url,
            timeout_seconds=settings.timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"BancontactPayments(base_url={self.base_url!r})"

    def build_body(self, message: Message) -> dict[str, Any]:
        key = message.idempotency_key
        amount = message.amount_cents
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise PermanentSendError(
                f"{key}: a payment request needs a positive amount in cents, got {amount!r}",
                code="invalid-message",
            )
        if message.currency != "EUR":
            raise PermanentSendError(
                f"{key}: Bancontact takes EUR only, not {message.currency}", code="invalid-message"
            )
        reference = (message.reference or message.invoice_number).strip()
        if len(reference) > MAX_REFERENCE_CHARS or not _SEPA_CHARS.match(reference):
            raise PermanentSendError(
                f"{key}: reference {reference!r} is not at most {MAX_REFERENCE_CHARS} SEPA "
                "characters",
                code="invalid-message",
            )
        description = message.subject or f"{message.sender_name} {message.invoice_number}"
        description = " ".join(description.split())
        if len(description) > MAX_DESCRIPTION_CHARS:
            description = description[: MAX_DESCRIPTION_CHARS - 1] + "…"
        return {
            "amount": amount,
            "currency": "EUR",
            "reference": reference,
            "description": description,
            "callbackUrl": self.callback_url,
        }

    def send(self, message: Message) -> SendResult:
        key = message.idempotency_key
        body = self.build_body(message)
        try:
            response = self._http.post(f"{self.base_url}/v3/payments", json=body)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise PermanentSendError(
                f"{key}: bad Bancontact URL {self.base_url!r}: {exc}", code="configuration"
            ) from None
        except httpx.TransportError as exc:
            raise http_errors.error_for_transport(exc, provider=PROVIDER, key=key) from None
        if not response.is_success:
            raise http_errors.error_for_status(
                response.status_code,
                provider=PROVIDER,
                key=key,
                detail=_error_summary(response),
                retry_after=response.headers.get("Retry-After"),
            )
        try:
            payment = response.json()
            payment_id = payment["paymentId"]
            links = payment.get("_links") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TransientSendError(
                f"{key}: Bancontact answered HTTP {response.status_code} without a paymentId",
                code=http_errors.BAD_RESPONSE,
            ) from None
        detail = {
            "paymentId": payment_id,
            "status": payment.get("status"),
            "expiresAt": payment.get("expiresAt"),
            "deeplink": _href(links.get("deeplink")),
            "qrcode": _href(links.get("qrcode")),
            "cancel": _href(links.get("cancel")),
        }
        return SendResult(str(payment_id), detail=json.dumps(detail))

    def close(self) -> None:
        self._http.close()


def _href(link: Any) -> str | None:
    """Payment V3 links are `{"href": ...}` objects; tolerate a bare string."""
    if isinstance(link, dict):
        href = link.get("href")
        return href if isinstance(href, str) else None
    return link if isinstance(link, str) else None


def _error_summary(response: httpx.Response) -> str:
    """Payment V3 errors are `{"code", "message", "traceId", "spanId"}`."""
    try:
        body = response.json()
    except ValueError:
        return http_errors.quote_body(response.content)
    if isinstance(body, dict) and body.get("code"):
        trace = f" (traceId {body['traceId']})" if body.get("traceId") else ""
        return http_errors.quote_body(f"{body['code']}: {body.get('message', '')}{trace}")
    return http_errors.quote_body(response.content)


@register("bancontact")
def _bancontact_channel(settings: Settings) -> Channel:
    return BancontactPayments.from_settings(BancontactSettings())


# --------------------------------------------------------------------------------------------------
# Callback signatures
# --------------------------------------------------------------------------------------------------

CLAIM = "https://payconiq.com/"
IAT, JTI, PATH, ISS, SUB = (CLAIM + n for n in ("iat", "jti", "path", "iss", "sub"))
UNDERSTOOD_CRIT = frozenset({IAT, JTI, PATH, ISS, SUB, "b64"})


class CallbackSignatureError(ValueError):
    """The callback cannot be shown to come from Bancontact: answer 4xx, believe nothing in it."""


def verify_callback(
    body: bytes,
    signature_header: str,
    jwks: dict[str, Any],
    now: datetime,
    *,
    max_age: timedelta = timedelta(minutes=30),
    max_clock_skew: timedelta = timedelta(minutes=2),
    expected_subject: str | None = None,
    expected_path: str | None = None,
) -> dict[str, Any]:
    """Check a detached JWS (RFC 7515 appendix F, RFC 7797) over `body`; return its JOSE header.

    Only ES256 with a key of `jwks` named by `kid` is accepted (no algorithm taken from the token
    alone); every `crit` name must be one we check; the signature time (`…/iat`) must be recent,
    so a captured callback cannot be replayed days later. `expected_subject` (our payment profile
    id) and `expected_path` (our callback URL) pin the claims when given. The payload is base64url
    encoded for signing unless the header says `"b64": false`.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    parts = signature_header.strip().split(".")
    if len(parts) != 3:
        raise CallbackSignatureError("the signature is not a compact JWS (three parts)")
    protected_b64, payload_b64, signature_b64 = parts
    if payload_b64:
        raise CallbackSignatureError("the JWS carries a payload; Bancontact sends detached ones")
    try:
        header = json.loads(_b64url_decode(protected_b64))
    except (ValueError, binascii.Error):
        raise CallbackSignatureError("the JOSE header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise CallbackSignatureError("the JOSE header is not a JSON object")
    if header.get("alg") != "ES256":
        raise CallbackSignatureError(f"algorithm {header.get('alg')!r} refused; only ES256")

    crit = header.get("crit", [])
    if not isinstance(crit, list) or not all(isinstance(name, str) for name in crit):
        raise CallbackSignatureError("crit must be a list of names")
    unknown = [name for name in crit if name not in UNDERSTOOD_CRIT or name not in header]
    if unknown:
        raise CallbackSignatureError(f"critical header parameters not understood: {unknown}")
    encode_payload = header.get("b64", True)
    if encode_payload is not True and (encode_payload is not False or "b64" not in crit):
        raise CallbackSignatureError("b64 must be a boolean listed in crit (RFC 7797 section 6)")

    jwk = _find_key(jwks, header.get("kid"))
    public_key = _ec_public_key(jwk)
    thumbprint = header.get("x5t#S256")
    if thumbprint is not None and jwk.get("x5t#S256") not in (None, thumbprint):
        raise CallbackSignatureError("x5t#S256 does not match the key named by kid")

    signed = protected_b64.encode("ascii") + b"." + (
        _b64url_encode(body).encode("ascii") if encode_payload else body
    )
    try:
        raw = _b64url_decode(signature_b64)
    except (ValueError, binascii.Error):
        raise CallbackSignatureError("the signature is not base64url") from None
    if len(raw) != 64:
        raise CallbackSignatureError("an ES256 signature is 64 bytes (r || s)")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CallbackSignatureError("the signature does not match the body") from None

    _check_claims(header, now, max_age, max_clock_skew, expected_subject, expected_path)
    return header


def _check_claims(
    header: dict[str, Any],
    now: datetime,
    max_age: timedelta,
    max_clock_skew: timedelta,
    expected_subject: str | None,
    expected_path: str | None,
) -> None:
    issued_text = header.get(IAT)
    if not isinstance(issued_text, str):
        raise CallbackSignatureError(f"the signature has no {IAT} time")
    try:
        issued = datetime.fromisoformat(issued_text.replace("Z", "+00:00"))
    except ValueError:
        raise CallbackSignatureError(f"{IAT} is not an ISO 8601 time: {issued_text!r}") from None
    if issued.tzinfo is None:
        raise CallbackSignatureError(f"{IAT} has no time zone")
    if issued > now + max_clock_skew:
        raise CallbackSignatureError(f"the signature is dated in the future ({issued_text})")
    if now - issued > max_age:
        raise CallbackSignatureError(f"the signature is too old ({issued_text})")
    if expected_subject is not None and header.get(SUB) != expected_subject:
        raise CallbackSignatureError(f"{SUB} is not our payment profile")
    if expected_path is not None and header.get(PATH) != expected_path:
        raise CallbackSignatureError(f"{PATH} is not our callback URL")


def _find_key(jwks: dict[str, Any], kid: Any) -> dict[str, Any]:
    if not isinstance(kid, str) or not kid:
        raise CallbackSignatureError("the JOSE header names no kid")
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    for jwk in keys or []:
        if isinstance(jwk, dict) and jwk.get("kid") == kid:
            if jwk.get("use", "sig") != "sig" or jwk.get("alg", "ES256") != "ES256":
                raise CallbackSignatureError(f"key {kid!r} is not an ES256 signing key")
            return jwk
    raise CallbackSignatureError(f"no key {kid!r} in the JWKS")


def _ec_public_key(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise CallbackSignatureError("the key is not an EC P-256 key")
    try:
        x = int.from_bytes(_b64url_decode(jwk["x"]), "big")
        y = int.from_bytes(_b64url_decode(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise CallbackSignatureError("the key's x/y are not a point on P-256") from None


def _b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
