"""SMS text rules shared by the local SMS outbox and the real gateway adapters.

Gateways bill per part and refuse or truncate texts longer than the parts allowed, so the adapters
count parts the way the network does before sending, and normalise numbers to E.164 once (a wrong
number is a permanent failure, not something a retry fixes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import phonenumbers

from creditflow.channels.base import PermanentSendError

# 3GPP TS 23.038 default alphabet. ESC (0x1B) is left out on purpose: in text it is not a character
# but the prefix of the extension table.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""Extension-table characters: sent as ESC + char, so each costs two septets."""

SmsEncoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True, slots=True)
class SmsSegments:
    encoding: SmsEncoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def count_sms_segments(text: str) -> SmsSegments:
    """How many SMS parts a text costs, as a gateway bills it.

    GSM-7 if every character is in the default alphabet or its extension table (those count two
    septets), else UCS-2 counted in UTF-16 code units (an emoji is two). One part holds 160
    septets / 70 units; a concatenated message holds 153 / 67 per part because of the header, and
    a part never splits an ESC pair or a surrogate pair, which is why a plain `ceil(units / 153)`
    can be one short. An empty text still costs one part.
    """
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        widths = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return _pack("GSM-7", widths, single=160, multi=153)
    widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return _pack("UCS-2", widths, single=70, multi=67)


def _pack(encoding: SmsEncoding, widths: list[int], *, single: int, multi: int) -> SmsSegments:
    units = sum(widths)
    if units <= single:
        return SmsSegments(encoding, units, 1)
    segments, used = 1, 0
    for width in widths:
        if used + width > multi:
            segments, used = segments + 1, 0
        used += width
    return SmsSegments(encoding, units, segments)


def check_segments(text: str, max_segments: int, key: str = "") -> SmsSegments:
    """The part count, or PermanentSendError when the text needs more parts than allowed."""
    if not text:
        raise PermanentSendError(f"{key}: the SMS text is empty", code="empty-text")
    count = count_sms_segments(text)
    if count.segments > max_segments:
        raise PermanentSendError(
            f"{key}: SMS text needs {count.segments} {count.encoding} segments "
            f"({count.units} units), more than the {max_segments} allowed",
            code="too-long",
        )
    return count


def e164(phone: str | None, key: str = "") -> str:
    """The number in E.164, or PermanentSendError: an SMS to a wrong number never arrives."""
    if not phone:
        raise PermanentSendError(f"{key}: no phone number for this debtor", code="no-recipient")
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise PermanentSendError(
            f"{key}: {phone!r} is not a valid international phone number", code="invalid-phone"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def international_00(e164_number: str) -> str:
    """`+32470123456` -> `0032470123456`: the form CM.com and several Benelux gateways expect."""
    if not e164_number.startswith("+") or not e164_number[1:].isdigit():
        raise ValueError(f"not an E.164 number: {e164_number!r}")
    return "00" + e164_number[1:]
