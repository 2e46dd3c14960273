"""OGM/VCS and ISO 11649 RF rules that parsers, the ledger, renderers and reconciliation share.

Why a module of its own at the package root: the check-digit rule must exist once, and the layers that
need it may not import one another (docs/adr/0001-layout.md: the ledger imports config and parsers'
schema, renderers only config, reconciliation only parsers' schema). Like config, this module imports
nothing of ours, so every layer may import it (docs/adr/0004-shared-reference-rules.md).

python-stdnum does the check-digit maths; this module adds what stdnum has no function for: a reference
built from a number, the OGM check as a polars expression for columns of a million values, and the
separators a written reference may carry. It does not import polars at run time: renderers and channels
use only the scalar rules and otherwise never load it (about half a second per worker process).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from stdnum.be import ogm_vcs
from stdnum.iso7064 import mod_97_10

if TYPE_CHECKING:
    import polars as pl

OGM_BASE_MAX = 9_999_999_999
"""An OGM carries a 10-digit base followed by 2 check digits."""

RF_BODY_MAX_LEN = 21
"""'RF' + 2 check digits + at most 21 letters or digits: the 25 characters ISO 11649 allows."""

WRITTEN_OGM_SEPARATORS = r"[\s+*/]"
"""What a creditor may write around an OGM's 12 digits: `+++…+++`, `***…***`, slashes and blanks.

Billing-file validation and rendering accept exactly these (stdnum's own compaction knows only ` +/`).
Narrower than STATEMENT_REFERENCE_SEPARATORS on purpose: a creditor's odd spelling goes back to them in
the error report, and what we accept is what we store and print.
"""

STATEMENT_REFERENCE_SEPARATORS = r"[\s+*/.-]"
"""What banks and payers leave inside a reference on a statement, dots and dashes included.

Matching compacts them away (CAMT references, reconciliation keys): a payer's typing cannot be sent
back, and the check digits and the open invoices still decide what is a reference.
"""

_WRITTEN_OGM_SEPARATORS = re.compile(WRITTEN_OGM_SEPARATORS)
_STATEMENT_REFERENCE_SEPARATORS = re.compile(STATEMENT_REFERENCE_SEPARATORS)


def strip_written_ogm(text: str) -> str:
    """`text` without the separators a creditor may write in an OGM; still to be checked (stdnum)."""
    return _WRITTEN_OGM_SEPARATORS.sub("", text)


def strip_statement_separators(text: str) -> str:
    """`text` without what banks and payers leave inside a reference (STATEMENT_REFERENCE_SEPARATORS)."""
    return _STATEMENT_REFERENCE_SEPARATORS.sub("", text)


def compact_ogm_is_valid(digits: str) -> bool:
    """`stdnum.be.ogm_vcs.is_valid` for a string already known to be 12 ASCII digits.

    stdnum cleans every value character by character first, which cost a UBL parse a third of its time
    per document (every invoice has a distinct OGM, so a cache does not help). Same rule: check digits
    = first ten mod 97, 0 written as 97; tests/test_ogm_rf.py holds the two equal.
    """
    return int(digits[10:]) == (int(digits[:10]) % 97 or 97)


def ogm_from_base(base: int) -> str:
    """The 12-digit OGM whose first ten digits are `base` (check = base mod 97, 97 when that is 0).

    ValueError for anything but an int in 0..OGM_BASE_MAX: a longer base would silently make a
    13-digit "OGM", and a bool is an int to Python but never a base.
    """
    if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base <= OGM_BASE_MAX:
        raise ValueError(f"OGM base must be an integer 0..{OGM_BASE_MAX}, not {base!r}")
    digits = f"{base:010d}"
    return digits + ogm_vcs.calc_check_digits(digits)


def rf_from_base(base: str) -> str:
    """The ISO 11649 reference 'RF' + check digits + `base` (1..21 upper-case ASCII letters or digits).

    The base must already be compact: cleaning what a person typed is the caller's decision.
    stdnum's ISO 7064 mod 97-10 gives the check digits (stdnum.iso11649 only validates).
    """
    if not (0 < len(base) <= RF_BODY_MAX_LEN and base.isascii() and base.isalnum() and base == base.upper()):
        raise ValueError(f"RF base must be 1..{RF_BODY_MAX_LEN} upper-case letters or digits, not {base!r}")
    return "RF" + mod_97_10.calc_check_digits(base + "RF") + base


def ogm_is_valid(digits: pl.Expr) -> pl.Expr:
    """`stdnum.be.ogm_vcs.is_valid` for a column of compact strings: exactly 12 ASCII digits whose last
    two are the first ten mod 97, written 97 when that is 0. False (never null) for null or other text.

    Vectorised because calling stdnum per value costs minutes per million; the tests hold the two equal.
    """
    base = digits.str.slice(0, 10).cast(int, strict=False)  # int: polars' Int64, without importing polars
    check = digits.str.slice(10, 2).cast(int, strict=False)
    expected = (base + 96) % 97 + 1  # base mod 97 in 1..97, 0 coming out as 97 (no when/then: one pass)
    return (digits.str.contains(r"^[0-9]{12}$") & (check == expected)).fill_null(False)
