"""OGM/VCS and RF references: generation, formatting and the spellings payers type."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import iso11649
from stdnum.be import ogm_vcs

from creditflow.renderers.references import (
    ReferenceError,
    format_ogm,
    format_rf,
    normalise_reference,
    ogm_from_base,
    rf_from_base,
)


def test_ogm_from_base_uses_mod97_with_97_for_zero_remainder():
    assert ogm_from_base(909337554) == "090933755493"
    assert ogm_from_base(0) == "000000000097"
    assert ogm_from_base(97) == "000000009797"


@pytest.mark.parametrize("bad", [-1, 10_000_000_000, True, "123"])
def test_ogm_from_base_rejects_out_of_range(bad):
    with pytest.raises(ReferenceError) as err:
        ogm_from_base(bad)
    assert err.value.code == "invalid_base"


def test_format_ogm():
    assert format_ogm("090933755493") == "+++090/9337/55493+++"


def test_known_valid_and_invalid_ogm():
    assert normalise_reference("+++123/4567/89002+++") == ("ogm", "123456789002")
    with pytest.raises(ReferenceError) as err:
        normalise_reference("+++123/4567/89012+++")
    assert err.value.code == "invalid_checksum"
    assert err.value.field == "structured_reference"


@pytest.mark.parametrize(
    "text",
    ["+++090/9337/55493+++", "***090/9337/55493***", "090 9337 55493", "090/9337/55493", "090933755493",
     " +++090/9337/55493+++ "],
)
def test_ogm_spellings(text):
    assert normalise_reference(text) == ("ogm", "090933755493")


@pytest.mark.parametrize("text", ["RF18539007547034", "rf18 5390 0754 7034", "RF18 5390 0754 7034"])
def test_rf_spellings(text):
    assert normalise_reference(text) == ("rf", "RF18539007547034")


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty"), ("   ", "empty"), ("hello", "invalid_format"), ("12345678901", "invalid_length"),
     ("RF19539007547034", "invalid_checksum"), ("000000000000", "invalid_format")],
)
def test_invalid_references_are_typed(text, code):
    with pytest.raises(ReferenceError) as err:
        normalise_reference(text)
    assert err.value.code == code


def test_rf_from_base_and_format():
    assert rf_from_base("539007547034") == "RF18539007547034"
    assert rf_from_base("090933755493") == "RF48090933755493"
    assert rf_from_base("inv20260042") == "RF73INV20260042"
    assert format_rf("RF18539007547034") == "RF18 5390 0754 7034"
    with pytest.raises(ReferenceError):
        rf_from_base("A" * 22)
    with pytest.raises(ReferenceError):
        rf_from_base("INV-1")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=9_999_999_999))
def test_generated_ogm_always_valid_and_round_trips(base):
    ogm = ogm_from_base(base)
    assert ogm_vcs.is_valid(ogm)
    assert int(ogm[:10]) == base
    assert normalise_reference(format_ogm(ogm)) == ("ogm", ogm)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=21))
def test_generated_rf_always_valid(base):
    rf = rf_from_base(base)
    assert iso11649.is_valid(rf)
    assert normalise_reference(format_rf(rf)) == ("rf", rf)
