"""The vectorised keys against python-stdnum and against the spellings payers really type."""

from __future__ import annotations

import polars as pl
from stdnum.be import ogm_vcs

from creditflow.reconciliation.normalise import name_key, ogm_candidates, reference_key, text_key

# The vectorised OGM check itself (creditflow.ogm_rf.ogm_is_valid) is held to stdnum in test_ogm_rf.py.


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
