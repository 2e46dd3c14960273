"""Fake Bancontact Pro Payment V3 (`POST /v3/payments`, `GET /v3/payments/{id}`) plus signed callbacks.

Checked (docs.bancontactpro.com, Payment V3 OpenAPI): `Authorization: Bearer <API key>`; JSON body;
`amount` an integer number of cents >= 1 (a float or a string is refused), `currency` "EUR",
`reference` at most 35 SEPA characters, `description` at most 140 characters, `callbackUrl` an HTTPS
URL. Unknown keys are refused so a misspelt field fails a test instead of being ignored.

Answers 201 with the payment (`paymentId`, `status` PENDING, `createdAt`, `expiresAt`, the request's
fields, `creditor`, `_links{self, deeplink, qrcode, cancel}` with the post-May-2026 URL formats);
errors as `{"code", "message", "traceId", "spanId"}`.

`signed_callback()` produces what Bancontact POSTs to `callbackUrl`: the payment JSON and a detached
JWS (ES256, RFC 7515 appendix F) in the shape Bancontact uses, signed with a key generated here;
`jwks` is the matching key set.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fakes.http_server import FakeProvider, Recorded, Reply, bearer, json_body

_SEPA = re.compile(r"^[A-Za-z0-9/\-?:().,'+ ]{1,35}$")
KNOWN_KEYS = {"amount", "currency", "reference", "description", "callbackUrl",
              "identifyCallbackUrl", "bulkId", "returnUrl"}
PROFILE_ID = "5fd0c1a2b3c4d5e6f7a8b9c0"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def error(status: int, code: str, message: str) -> Reply:
    return Reply.json(status, {"code": code, "message": message,
                               "traceId": secrets.token_hex(8), "spanId": secrets.token_hex(4)})


class FakeBancontact(FakeProvider):
    def __init__(self, api_key: str = "bc-test-key", *, kid: str = "es.signature.test.2026"):
        super().__init__()
        self.api_key = api_key
        self.kid = kid
        self.payments: dict[str, dict[str, Any]] = {}
        self._private_key = ec.generate_private_key(ec.SECP256R1())
        self._ids = itertools.count(1)

    # -- the API -----------------------------------------------------------------------------------

    def answer(self, request: Recorded) -> Reply:
        if bearer(request) != self.api_key:
            return error(401, "UNAUTHORIZED", "Invalid or missing API key")
        if request.method == "GET" and request.path.startswith("/v3/payments/"):
            payment = self.payments.get(request.path.rsplit("/", 1)[-1])
            return Reply.json(200, payment) if payment else error(404, "PAYMENT_NOT_FOUND",
                                                                  "Payment not found")
        if request.method != "POST" or request.path != "/v3/payments":
            return error(404, "NOT_FOUND", "Not found")
        body, problem = json_body(request)
        if problem or not isinstance(body, dict):
            return error(400, "INVALID_REQUEST", problem or "body must be a JSON object")
        problem = check_create(body)
        if problem:
            return error(400, *problem)
        payment_id = f"{next(self._ids):024x}"
        now = datetime.now(UTC)
        base = self.url
        payment = {
            "paymentId": payment_id,
            "status": "PENDING",
            "createdAt": now.isoformat().replace("+00:00", "Z"),
            "expiresAt": (now + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
            "amount": body["amount"],
            "currency": body.get("currency", "EUR"),
            "description": body.get("description"),
            "reference": body.get("reference"),
            "creditor": {"profileId": PROFILE_ID, "merchantId": "m-1", "name": "Demo Incasso",
                         "iban": "BE68539007547034", "callbackUrl": body.get("callbackUrl")},
            "_links": {
                "self": {"href": f"{base}/v3/payments/{payment_id}"},
                "deeplink": {"href": f"https://pay.bancontact.net/pay/2/{payment_id}"},
                "qrcode": {"href": "https://qrcodegenerator.api.bancontact.net/qrcode?c="
                                   f"https://pay.bancontact.net/pay/2/{payment_id}"},
                "cancel": {"href": f"{base}/v3/payments/{payment_id}"},
            },
        }
        if self.record_requests:
            self.payments[payment_id] = payment
        return Reply.json(201, payment)

    # -- callbacks ---------------------------------------------------------------------------------

    @property
    def jwks(self) -> dict[str, Any]:
        numbers = self._private_key.public_key().public_numbers()
        return {"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big")),
        }]}

    def signed_callback(
        self,
        payment_id: str,
        status: str = "SUCCEEDED",
        *,
        signed_at: datetime | None = None,
        path: str = "https://creditflow.example/callbacks/bancontact",
        unencoded_payload: bool = False,
    ) -> tuple[bytes, str]:
        """(body, `signature` header) as Bancontact POSTs them for a status change."""
        payment = dict(self.payments[payment_id], status=status)
        if status == "SUCCEEDED":
            payment["succeededAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            payment["debtor"] = {"name": "Klant", "iban": "*************24680"}
        body = json.dumps(payment, separators=(",", ":")).encode()
        return body, self.sign(body, signed_at=signed_at, path=path,
                               unencoded_payload=unencoded_payload)

    def sign(
        self,
        body: bytes,
        *,
        signed_at: datetime | None = None,
        path: str = "https://creditflow.example/callbacks/bancontact",
        unencoded_payload: bool = False,
        kid: str | None = None,
    ) -> str:
        claims = {
            "https://payconiq.com/iat": (signed_at or datetime.now(UTC)).isoformat().replace(
                "+00:00", "Z"),
            "https://payconiq.com/jti": secrets.token_hex(8),
            "https://payconiq.com/path": path,
            "https://payconiq.com/iss": "Payconiq",
            "https://payconiq.com/sub": PROFILE_ID,
        }
        header: dict[str, Any] = {"typ": "JOSE+JSON", "kid": kid or self.kid, "alg": "ES256",
                                  **claims, "crit": list(claims)}
        if unencoded_payload:
            header["b64"] = False
            header["crit"].append("b64")
        protected = b64url(json.dumps(header, separators=(",", ":")).encode())
        payload = body if unencoded_payload else b64url(body).encode()
        der = self._private_key.sign(protected.encode() + b"." + payload,
                                     ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{protected}..{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def check_create(body: dict[str, Any]) -> tuple[str, str] | None:
    """(code, message) of the first documented rule the create-payment body breaks."""
    unknown = sorted(set(body) - KNOWN_KEYS)
    if unknown:
        return "INVALID_REQUEST", f"unknown fields {unknown}"
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool):
        return "INVALID_AMOUNT", "amount is required and must be an integer number of cents"
    if amount < 1:
        return "AMOUNT_TOO_SMALL", "amount must be at least 1 cent"
    if amount > 999_999_999:
        return "AMOUNT_TOO_LARGE", "amount too large"
    if body.get("currency", "EUR") != "EUR":
        return "CURRENCY_NOT_SUPPORTED", "only EUR is supported"
    reference = body.get("reference")
    if reference is not None and (not isinstance(reference, str) or not _SEPA.match(reference)):
        return "INVALID_REFERENCE", "reference: 1-35 characters of the SEPA character set"
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 140):
        return "INVALID_DESCRIPTION", "description: a string of at most 140 characters"
    for field in ("callbackUrl", "identifyCallbackUrl", "returnUrl"):
        url = body.get(field)
        if url is not None and (not isinstance(url, str) or not url.startswith("https://")):
            return "INVALID_CALLBACK_URL", f"{field} must be an HTTPS URL"
    return None


def thumbprint(der_certificate: bytes) -> str:
    """x5t#S256 of a certificate, for tests that pin it."""
    return b64url(hashlib.sha256(der_certificate).digest())
