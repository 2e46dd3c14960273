"""Which channels can reach a debtor, in the order we try them.

The creditor's profile gives the order of preference; a channel is only possible when the debtor
row gives what it needs (an e-mail address, a mobile number, a full postal address). Later, known
debtor preferences (a bounced address, an opt-out) are applied here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

NEEDS: dict[str, tuple[str, ...]] = {
    "email": ("debtor_email",),
    "sms": ("debtor_phone",),
    "post": ("debtor_street", "debtor_postcode", "debtor_city"),
    "payment_request": ("debtor_phone",),
}


def possible_channels(preference: Iterable[str], debtor: Mapping[str, Any],
                      exclude: Iterable[str] = ()) -> list[str]:
    excluded = set(exclude)
    return [
        channel for channel in preference
        if channel not in excluded and all(debtor.get(f) for f in NEEDS.get(channel, ("_never_",)))
    ]


def next_channel(preference: Iterable[str], debtor: Mapping[str, Any], tried: Iterable[str]) -> str | None:
    options = possible_channels(preference, debtor, exclude=tried)
    return options[0] if options else None
