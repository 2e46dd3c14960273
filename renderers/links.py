"""Signed payment links: the URL in an email, an SMS and on the PDF that opens the pay page.

The token is binary, not JSON, because it has to fit an SMS next to the amount and the OGM
(160 GSM-7 characters in all): version byte, expiry (uint32 Unix seconds), amount (varint cents),
invoice id (varint when an int, else UTF-8), invoice number (UTF-8), then the first 16 bytes of
HMAC-SHA256 over all of it (a 128-bit tag, RFC 4868's truncation; forgery would need ~2^128 online
guesses), base64url without padding. The MAC is checked, in constant time, before a single byte of
the payload is interpreted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

TOKEN_VERSION = 1
MAC_BYTES = 16
MIN_KEY_BYTES = 16
_MAX_TEXT_BYTES = 200


class LinkError(ValueError):
    """A link that must not open the pay page; `code` is malformed | bad_signature | expired."""

    def __init__(self, code: str, reason: str, claims: "PaymentLinkClaims | None" = None):
        self.code = code
        self.reason = reason
        self.claims = claims  # set for `expired`: the pay page can still say which invoice it was
        super().__init__(f"payment link: {reason} [{code}]")


@dataclass(frozen=True, slots=True)
class PaymentLinkClaims:
    invoice_id: int | str
    invoice_number: str
    amount_cents: int
    expires_at: datetime  # UTC


def sign_payment_link(
    base_url: str,
    *,
    invoice_id: int | str,
    invoice_number: str,
    amount_cents: int,
    expires_at: datetime,
    key: bytes,
) -> str:
    """`base_url` + token. The URL carries no secret and no personal data beyond the invoice number."""
    _check_key(key)
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise TypeError("expires_at must be timezone-aware")
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents < 0:
        raise ValueError("amount_cents must be a non-negative integer")
    expiry = int(expires_at.timestamp())
    if not 0 < expiry < 2**32:
        raise ValueError("expires_at is out of range")
    body = bytearray([TOKEN_VERSION])
    body += struct.pack(">I", expiry)
    body += _varint(amount_cents)
    if isinstance(invoice_id, bool):
        raise TypeError("invoice_id must be an int or a str")
    if isinstance(invoice_id, int):
        if invoice_id < 0:
            raise ValueError("an integer invoice_id must be non-negative")
        body += b"\x00" + _varint(invoice_id)
    elif isinstance(invoice_id, str) and invoice_id:
        body += b"\x01" + _text(invoice_id, "invoice_id")
    else:
        raise TypeError("invoice_id must be an int or a non-empty str")
    body += _text(invoice_number, "invoice_number")
    token = _b64(bytes(body) + _mac(key, bytes(body)))
    return _join(base_url, token)


def verify_payment_link(url_or_token: str, key: bytes, now: datetime) -> PaymentLinkClaims:
    """The claims of a genuine, unexpired link; otherwise LinkError (never a partial result)."""
    _check_key(key)
    if now.tzinfo is None or now.utcoffset() is None:
        raise TypeError("now must be timezone-aware")
    token = _token_of(url_or_token)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkError("malformed", "token is not base64url") from None
    if len(raw) < 1 + 4 + 1 + 2 + 1 + MAC_BYTES:
        raise LinkError("malformed", "token is too short")
    body, tag = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(tag, _mac(key, body)):
        raise LinkError("bad_signature", "signature does not match")
    claims = _decode(body)
    if now >= claims.expires_at:
        raise LinkError("expired", f"link expired at {claims.expires_at.isoformat()}", claims)
    return claims


def _decode(body: bytes) -> PaymentLinkClaims:
    """Parse an authenticated body; a structural problem here means a key was misused, still typed."""
    try:
        if body[0] != TOKEN_VERSION:
            raise LinkError("malformed", f"unknown token version {body[0]}")
        (expiry,) = struct.unpack_from(">I", body, 1)
        pos = 5
        amount, pos = _read_varint(body, pos)
        kind = body[pos]
        pos += 1
        if kind == 0:
            invoice_id, pos = _read_varint(body, pos)
        elif kind == 1:
            invoice_id, pos = _read_text(body, pos)
        else:
            raise LinkError("malformed", "unknown invoice id kind")
        number, pos = _read_text(body, pos)
        if pos != len(body):
            raise LinkError("malformed", "trailing bytes in token")
    except (IndexError, struct.error, UnicodeDecodeError):
        raise LinkError("malformed", "token payload is truncated or corrupt") from None
    return PaymentLinkClaims(
        invoice_id=invoice_id,
        invoice_number=number,
        amount_cents=amount,
        expires_at=datetime.fromtimestamp(expiry, UTC),
    )


def _token_of(url_or_token: str) -> str:
    if not isinstance(url_or_token, str) or not url_or_token.strip():
        raise LinkError("malformed", "no token given")
    text = url_or_token.strip()
    if "://" in text:
        path = urlsplit(text).path
        text = path.rstrip("/").rsplit("/", 1)[-1]
    if not text or any(ch not in _B64_ALPHABET for ch in text):
        raise LinkError("malformed", "token has characters outside base64url")
    return text


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"link key must be at least {MIN_KEY_BYTES} bytes")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _join(base_url: str, token: str) -> str:
    return base_url + token if base_url.endswith("/") else f"{base_url}/{token}"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise LinkError("malformed", "varint too long")


def _text(value: str, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty str")
    data = value.encode("utf-8")
    if len(data) > _MAX_TEXT_BYTES:
        raise ValueError(f"{field} is longer than {_MAX_TEXT_BYTES} bytes")
    return bytes([len(data)]) + data


def _read_text(data: bytes, pos: int) -> tuple[str, int]:
    length = data[pos]
    end = pos + 1 + length
    if end > len(data):
        raise IndexError
    return data[pos + 1 : end].decode("utf-8"), end
