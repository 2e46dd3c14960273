"""Signed payment links: round trip, expiry, tampering, malformed input."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditflow.renderers.links import LinkError, sign_payment_link, verify_payment_link

KEY = b"0123456789abcdef0123456789abcdef"
BASE = "https://pay.creditflow.example/p/"
EXPIRES = datetime(2026, 6, 30, 22, 0, tzinfo=UTC)
BEFORE = EXPIRES - timedelta(days=1)


def _link(**overrides):
    fields = dict(invoice_id=4711, invoice_number="F2026-000123", amount_cents=123456, expires_at=EXPIRES, key=KEY)
    fields.update(overrides)
    return sign_payment_link(BASE, **fields)


def test_round_trip_from_url_and_token():
    url = _link()
    assert url.startswith(BASE)
    token = url[len(BASE):]
    assert "=" not in token and "/" not in token and "+" not in token
    for given_text in (url, token, url + "?utm=x"):
        claims = verify_payment_link(given_text, KEY, BEFORE)
        assert claims.invoice_id == 4711
        assert claims.invoice_number == "F2026-000123"
        assert claims.amount_cents == 123456
        assert claims.expires_at == EXPIRES


def test_string_ids_and_other_timezones():
    brussels = timezone(timedelta(hours=2))
    url = _link(invoice_id="inv_01HZX", expires_at=EXPIRES.astimezone(brussels))
    claims = verify_payment_link(url, KEY, BEFORE.astimezone(brussels))
    assert claims.invoice_id == "inv_01HZX"
    assert claims.expires_at == EXPIRES


def test_link_is_short_enough_for_an_sms():
    assert len(_link()) <= 90


def test_expired_at_and_after_expiry_keeps_claims():
    for now in (EXPIRES, EXPIRES + timedelta(seconds=1)):
        with pytest.raises(LinkError) as err:
            verify_payment_link(_link(), KEY, now)
        assert err.value.code == "expired"
        assert err.value.claims.invoice_number == "F2026-000123"


def test_tampered_token_is_rejected():
    url = _link()
    token = url[len(BASE):]
    for i in range(len(token)):
        replacement = "A" if token[i] != "A" else "B"
        forged = token[:i] + replacement + token[i + 1:]
        with pytest.raises(LinkError) as err:
            verify_payment_link(forged, KEY, BEFORE)
        assert err.value.code in ("bad_signature", "malformed")


def test_wrong_key_is_a_bad_signature():
    with pytest.raises(LinkError) as err:
        verify_payment_link(_link(), b"another-key-of-sufficient-length", BEFORE)
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize("garbage", ["", "   ", "abc", "!!!notbase64!!!", BASE, "https://x.example/p/AAAA"])
def test_malformed(garbage):
    with pytest.raises(LinkError) as err:
        verify_payment_link(garbage, KEY, BEFORE)
    assert err.value.code == "malformed"


def test_naive_datetimes_and_weak_keys_are_refused():
    with pytest.raises(TypeError):
        _link(expires_at=datetime(2026, 6, 30))
    with pytest.raises(TypeError):
        verify_payment_link(_link(), KEY, datetime(2026, 6, 1))
    with pytest.raises(ValueError):
        _link(key=b"short")
    with pytest.raises(ValueError):
        _link(amount_cents=-1)


@settings(max_examples=100, deadline=None)
@given(
    invoice_id=st.one_of(st.integers(min_value=0, max_value=2**62), st.text(min_size=1, max_size=40)),
    number=st.text(min_size=1, max_size=40),
    amount=st.integers(min_value=0, max_value=10**12),
    seconds=st.integers(min_value=1, max_value=10**8),
)
def test_round_trip_property(invoice_id, number, amount, seconds):
    expires = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    url = sign_payment_link(BASE, invoice_id=invoice_id, invoice_number=number, amount_cents=amount,
                            expires_at=expires, key=KEY)
    claims = verify_payment_link(url, KEY, datetime(2026, 1, 1, tzinfo=UTC))
    assert (claims.invoice_id, claims.invoice_number, claims.amount_cents) == (invoice_id, number, amount)
    assert claims.expires_at == expires.replace(microsecond=0)
