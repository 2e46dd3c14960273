"""Bank reconciliation: match statement credits to open invoices and turn matches into allocations.

Pure polars on the canonical frames (`parsers.statements.MOVEMENT_SCHEMA`, open invoices in cents);
no ledger, no flow. `match_movements` runs the cascade, `allocate_matches` books the automatic matches
against open balances, `invoice_states` derives the new invoice states; the ledger writes them.
The functions are not named after their modules, so `import creditflow.reconciliation.match` still
yields the module.
"""

from creditflow.reconciliation.allocate import ALLOCATION_SCHEMA, STATE_SCHEMA, allocate_matches, invoice_states
from creditflow.reconciliation.match import (
    MATCH_SCHEMA,
    STAGE_NAMES,
    UNDO_SCHEMA,
    UNMATCHED_SCHEMA,
    MatchResult,
    match_movements,
    reversals,
)

__all__ = [
    "ALLOCATION_SCHEMA",
    "MATCH_SCHEMA",
    "STAGE_NAMES",
    "STATE_SCHEMA",
    "UNDO_SCHEMA",
    "UNMATCHED_SCHEMA",
    "MatchResult",
    "allocate_matches",
    "invoice_states",
    "match_movements",
    "reversals",
]
