"""The one rule for creditor ids, and for the names of our own bank areas that sit beside them.

A creditor id names folders (local drop zones, documents), paths on SFTP servers (the creditor's
own area, the print shop), S3 key prefixes and ledger rows. It is checked where a profile is read
and again where it becomes a path, so the rule lives here, below every package that needs it
(config imports nothing of ours).

A bank area ("_bank") is one of our own drop zones for bank statements: a creditor-id-shaped name
behind a leading underscore, so an area name can never equal a creditor id, and both can share one
store cache and one drop-zone folder.
"""

from __future__ import annotations

import re

BANK_AREA_PREFIX = "_"

# 2-63 lower case letters, digits or dashes, not starting with a dash: safe as a path segment.
# Used with fullmatch: a `$` would also match before a final newline, and "acme\n" must not name a folder.
_CREDITOR_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


def is_creditor_id(text: str) -> bool:
    return _CREDITOR_ID.fullmatch(text) is not None


def is_bank_area(area: str) -> bool:
    """Does this area name belong to one of our bank areas rather than to a creditor? (Routing only:
    `is_bank_area_name` is the full check of a configured name.)"""
    return area.startswith(BANK_AREA_PREFIX)


def is_bank_area_name(text: str) -> bool:
    """`_` + a creditor-id-shaped name, 63 characters at most in all."""
    return (is_bank_area(text) and len(text) <= 63
            and is_creditor_id(text.removeprefix(BANK_AREA_PREFIX)))
