"""The vectorised keys against python-stdnum and against the spellings payers really type."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.be import ogm_vcs

from creditflow.reconciliation.normalise import name_key, ogm_candidates, ogm_is_valid, reference_key, text_key


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**12 - 1), min_size=1, max_size=300))
def test_vectorised_ogm_check_agrees_with_stdnum(numbers):
    # Half of them made valid on purpose, so both outcomes are exercised.
    texts = [f"{n:012d}" for n in numbers]
    texts += [f"{n // 100:010d}" + ogm_vcs.calc_check_digits(f"{n // 100:010d}") for n in numbers]
    got = pl.DataFrame({"t": texts}).select(ok=ogm_is_valid(pl.col("t")))["ok"].to_list()
    assert got == [ogm_vcs.is_valid(t) for t in texts]


def test_base_divisible_by_97_uses_check_digits_97():
    base = f"{97 * 12345:010d}"
    assert pl.select(ogm_is_valid(pl.lit(base + "97"))).item() is True
    assert pl.select(ogm_is_valid(pl.lit(base + "00"))).item() is False


def test_ogm_candidates_finds_every_typed_ogm_once():
    good = "090933755493"
    other = "0000000101" + ogm_vcs.calc_check_digits("0000000101")
    frame = pl.DataFrame({
        "movement_key": ["a", "b", "c", "d"],
        "communication": [
            f"+++{good[:3]}/{good[3:7]}/{good[7:]}+++ en ook {good}",
            f"***{other[:3]}/{other[3:7]}/{other[7:]}*** {good[:3]} {good[3:7]} {good[7:]}",
            f"IBAN BE68 5390 0754 7034 {good}9",
            None,
        ],
    })
    found = ogm_candidates(frame).sort(["movement_key", "cand"]).rows()
    assert found == [("a", good), ("b", other), ("b", good)]


def test_keys_ignore_case_spacing_and_placeholders():
    frame = pl.DataFrame({"v": ["+++090/9337/55493+++", " rf18 5390 0754 7034", "NOTPROVIDED", "f2024 - 01", None]})
    out = frame.select(ref=reference_key(pl.col("v")), text=text_key(pl.col("v")))
    assert out["ref"].to_list()[:2] == ["090933755493", "RF18539007547034"]
    assert out["text"].to_list()[2:] == [None, "F2024-01", None]


def test_name_key_survives_accents_case_punctuation_and_order():
    frame = pl.DataFrame({"n": ["Hélène Lefèvre", "LEFEVRE, HELENE", "  lefèvre   hélène. ", "Helen Lefevre"]})
    keys = frame.select(k=name_key(pl.col("n")))["k"].to_list()
    assert keys[0] == keys[1] == keys[2] == "helene lefevre" and keys[3] != keys[0]
