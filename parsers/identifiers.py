"""Identifier helpers shared by the parsers (python-stdnum does the arithmetic)."""

from __future__ import annotations

from functools import lru_cache

from stdnum import iban as stdnum_iban

NOT_PROVIDED = ("NOTPROVIDED", "NOT PROVIDED")
"""What banks write in a statement's reference field (SEPA end-to-end id, CODA 2.2 customer reference)
when there is none, compared in upper case. Both statement parsers drop it, so a payment reads the
same whichever format the bank sent."""


@lru_cache(maxsize=8192)
def compact_iban(raw: str) -> str | None:
    """The compact IBAN when `raw` is a valid one (checksum and country length), else None.

    Cached because stdnum looks the country's format up in its registry on every call (~45 us),
    and a batch repeats the same few accounts: every UBL invoice of a creditor names its one
    payee IBAN, every CAMT statement its own account. benchmarks/bench_ubl.py measures it.
    """
    compact = stdnum_iban.compact(raw)
    return compact if stdnum_iban.is_valid(compact, check_country=False) else None
