"""EPC069-12 payload: exact bytes for both OGM placements, and every validation error."""

from decimal import Decimal

import pytest

from creditflow.renderers.epc import EpcError, build_epc_payload, format_epc_amount, remittance_for

CREDITOR = dict(name="Démo Incasso BV", iban="BE71 0961 2345 6769", bic="GKCCBEBB")


def test_structured_ogm_exact_bytes():
    payload = build_epc_payload(amount=123456, **CREDITOR, **remittance_for("090933755493", "ogm", "structured"))
    assert payload == (
        b"BCD\n002\n1\nSCT\nGKCCBEBB\nD\xc3\xa9mo Incasso BV\nBE71096123456769\nEUR1234.56\n\n090933755493"
    )


def test_unstructured_ogm_exact_bytes():
    payload = build_epc_payload(
        amount=Decimal("12.30"), **CREDITOR, **remittance_for("+++090/9337/55493+++", "ogm", "unstructured")
    )
    assert payload == (
        b"BCD\n002\n1\nSCT\nGKCCBEBB\nD\xc3\xa9mo Incasso BV\nBE71096123456769\nEUR12.3\n\n\n+++090/9337/55493+++"
    )


def test_rf_always_goes_in_the_structured_line():
    for placement in ("structured", "unstructured"):
        assert remittance_for("rf18 5390 0754 7034", "rf", placement) == {"structured": "RF18539007547034"}


def test_optional_bic_purpose_and_info():
    payload = build_epc_payload(name="A", iban="BE71096123456769", amount=1, unstructured="x", purpose="GDDS",
                                info="Thanks")
    assert payload.split(b"\n") == [b"BCD", b"002", b"1", b"SCT", b"", b"A", b"BE71096123456769", b"EUR0.01",
                                    b"GDDS", b"", b"x", b"Thanks"]


@pytest.mark.parametrize(
    ("amount", "text"),
    [(1, "EUR0.01"), (10, "EUR0.1"), (100, "EUR1"), (2000, "EUR20"), (123456, "EUR1234.56"),
     (99_999_999_999, "EUR999999999.99"), (Decimal("0.05"), "EUR0.05"), (Decimal("20.00"), "EUR20"),
     (Decimal("1588.56"), "EUR1588.56")],
)
def test_amount_formatting(amount, text):
    assert format_epc_amount(amount) == text


def _error(**overrides):
    fields = dict(name="Démo Incasso BV", iban="BE71096123456769", bic="GKCCBEBB", amount=1000,
                  structured="090933755493")
    fields.update(overrides)
    with pytest.raises(EpcError) as err:
        build_epc_payload(**fields)
    return err.value.field, err.value.code


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"name": ""}, ("name", "length")),
        ({"name": "   "}, ("name", "length")),
        ({"name": "N" * 71}, ("name", "length")),
        ({"name": "Demo\nBV"}, ("name", "line_break")),
        ({"name": "Demo\rBV"}, ("name", "line_break")),
        ({"name": "Demo\tBV"}, ("name", "control_character")),
        ({"name": None}, ("name", "missing")),
        ({"iban": "BE00096123456769"}, ("iban", "invalid")),
        ({"iban": "TR330006100519786457841326"}, ("iban", "not_sepa")),
        ({"iban": "BE71096123456769\n"}, ("iban", "line_break")),
        ({"bic": "12345678"}, ("bic", "invalid")),
        ({"bic": "GKCCBEBBX"}, ("bic", "invalid")),
        ({"amount": 12.5}, ("amount", "invalid_type")),
        ({"amount": True}, ("amount", "invalid_type")),
        ({"amount": 0}, ("amount", "out_of_range")),
        ({"amount": -100}, ("amount", "out_of_range")),
        ({"amount": 100_000_000_000}, ("amount", "out_of_range")),
        ({"amount": Decimal("12.345")}, ("amount", "too_many_decimals")),
        ({"amount": Decimal("NaN")}, ("amount", "invalid_value")),
        ({"structured": None}, ("remittance", "exactly_one")),
        ({"unstructured": "text"}, ("remittance", "exactly_one")),
        ({"structured": "123456789012"}, ("structured", "invalid_checksum")),
        ({"structured": "RF18539007547034" + "1" * 20}, ("structured", "length")),
        ({"structured": None, "unstructured": "x" * 141}, ("unstructured", "length")),
        ({"structured": None, "unstructured": "a\nb"}, ("unstructured", "line_break")),
        ({"purpose": "AB"}, ("purpose", "invalid")),
        ({"purpose": "gdds"}, ("purpose", "invalid")),
        ({"info": "i" * 71}, ("info", "length")),
        ({"name": "N" * 70, "bic": "GKCCBEBBXXX", "structured": None, "unstructured": "u" * 140, "info": "i" * 70},
         ("payload", "too_long")),
    ],
)
def test_every_epc_error_names_its_field(overrides, expected):
    assert _error(**overrides) == expected


def test_remittance_errors():
    with pytest.raises(EpcError) as err:
        remittance_for("+++123/4567/89012+++", "ogm", "structured")
    assert (err.value.field, err.value.code) == ("structured", "invalid_checksum")
    with pytest.raises(EpcError) as err:
        remittance_for("RF18539007547034", "ogm", "structured")
    assert err.value.code == "kind_mismatch"


def test_largest_valid_payload_fits_331_bytes():
    payload = build_epc_payload(name="N" * 70, iban="BE71096123456769", bic="GKCCBEBB", amount=99_999_999_999,
                                unstructured="u" * 140, info="i" * 50)
    assert len(payload) <= 331
