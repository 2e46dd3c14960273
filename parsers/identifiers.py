"""Identifier helpers shared by the parsers (python-stdnum does the arithmetic)."""

from __future__ import annotations

from stdnum import iban as stdnum_iban


def compact_iban(raw: str) -> str | None:
    """The compact IBAN when `raw` is a valid one (checksum and country length), else None."""
    compact = stdnum_iban.compact(raw)
    return compact if stdnum_iban.is_valid(compact, check_country=False) else None
