"""The shared OGM/RF rules against python-stdnum, the authority they must never drift from."""

from __future__ import annotations

import random

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stdnum import iso11649
from stdnum.be import ogm_vcs

from creditflow.ogm_rf import (
    OGM_BASE_MAX,
    compact_ogm_is_valid,
    ogm_from_base,
    ogm_is_valid,
    rf_from_base,
    strip_statement_separators,
    strip_written_ogm,
)


def _vectorised(texts: list[str | None]) -> list[bool]:
    frame = pl.DataFrame({"t": texts}, schema={"t": pl.String})
    return frame.select(ok=ogm_is_valid(pl.col("t")))["ok"].to_list()


def test_vectorised_ogm_check_equals_stdnum_on_random_numbers_and_edges():
    rng = random.Random(97)
    texts = [f"{rng.randrange(10**12):012d}" for _ in range(300)]  # almost all invalid
    bases = [f"{rng.randrange(10**10):010d}" for _ in range(300)]
    texts += [b + ogm_vcs.calc_check_digits(b) for b in bases]  # valid ones
    texts += [f"{97 * rng.randrange(10**8):010d}{check}" for check in ("97", "00") for _ in range(20)]
    texts += ["000000000097", "000000000000", "000000000100", "000000009797", "999999999968",
              "00000000009", "0000000000970", "+++090/9337/55493+++", "09093375549A", "",
              "０９０９３３７５５４９３"]
    # The expression takes compact text: a +++…+++ spelling is False there, where stdnum compacts it first.
    expected = [ogm_vcs.is_valid(t) and t == ogm_vcs.compact(t) and t.isascii() for t in texts]
    assert _vectorised(texts) == expected
    assert 300 < sum(expected) < len(texts) - 300  # both outcomes well represented


def test_vectorised_ogm_check_is_false_not_null_for_null():
    assert _vectorised([None, "090933755493"]) == [False, True]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**12 - 1), min_size=1, max_size=300))
def test_vectorised_ogm_check_agrees_with_stdnum(numbers):
    # Half of them made valid on purpose, so both outcomes are exercised.
    texts = [f"{n:012d}" for n in numbers]
    texts += [f"{n // 100:010d}" + ogm_vcs.calc_check_digits(f"{n // 100:010d}") for n in numbers]
    assert _vectorised(texts) == [ogm_vcs.is_valid(t) for t in texts]


def test_ogm_from_base_writes_a_zero_remainder_as_97():
    assert ogm_from_base(909337554) == "090933755493"
    assert ogm_from_base(0) == "000000000097"
    assert ogm_from_base(97 * 12345) == f"{97 * 12345:010d}97"
    assert ogm_from_base(OGM_BASE_MAX) == "9999999999" + ogm_vcs.calc_check_digits("9999999999")


@pytest.mark.parametrize("bad", [-1, OGM_BASE_MAX + 1, True, "123", 12.0])
def test_ogm_from_base_rejects_what_is_not_a_ten_digit_base(bad):
    with pytest.raises(ValueError, match="OGM base"):
        ogm_from_base(bad)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=OGM_BASE_MAX))
def test_generated_ogm_is_valid_for_stdnum_and_carries_its_base(base):
    ogm = ogm_from_base(base)
    assert ogm_vcs.validate(ogm) == ogm
    assert int(ogm[:10]) == base


def test_rf_from_base_known_values():
    assert rf_from_base("539007547034") == "RF18539007547034"
    assert rf_from_base("INV20260042") == "RF73INV20260042"


@pytest.mark.parametrize("bad", ["", "A" * 22, "inv1", "INV-1", "INV 1", "É1"])
def test_rf_from_base_wants_a_compact_upper_case_base(bad):
    with pytest.raises(ValueError, match="RF base"):
        rf_from_base(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=21))
def test_generated_rf_is_valid_for_stdnum(base):
    rf = rf_from_base(base)
    assert iso11649.validate(rf) == rf
    assert rf[4:] == base


@pytest.mark.parametrize(
    "written",
    ["+++090/9337/55493+++", "***090/9337/55493***", "090 9337 55493", "090/9337/55493", "\t090933755493\n"],
)
def test_written_ogm_spellings_strip_to_the_twelve_digits(written):
    assert strip_written_ogm(written) == "090933755493"


def test_statement_separators_also_drop_dots_and_dashes_written_ones_keep_them():
    text = "090.9337-55493"
    assert strip_written_ogm(text) == text
    assert strip_statement_separators("+++090.9337-55493+++ ") == "090933755493"


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\A[0-9]{12}\Z"))
@example("000000000097")
@example("000000000000")
@example("090933755493")
@example("123456789012")
def test_scalar_check_of_compact_digits_equals_stdnum(digits):
    assert compact_ogm_is_valid(digits) == ogm_vcs.is_valid(digits)
