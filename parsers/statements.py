"""The canonical bank-statement shapes: CODA and CAMT.053 parsers both produce these, so
reconciliation reads one shape whatever the bank sent.

Amounts are signed integer thousandths (`*_milli`, credit positive, debit negative): CODA carries three
decimals and sub-cent balances do occur (23154.685), so cents would lose information. Never float.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from creditflow.parsers.errors import ParseWarning

STATEMENT_SCHEMA: dict[str, pl.DataType] = {
    "statement_key": pl.String,  # stable: same statement file imported twice -> same key
    "format": pl.String,  # "coda" | "camt053"
    "account_iban": pl.String,  # compact IBAN, or null when the account is a BBAN/foreign number
    "account_number": pl.String,  # the account as written in the file
    "currency": pl.String,
    "sequence_number": pl.String,  # CODA record 1 pos 126-128 / CAMT ElctrncSeqNb or LglSeqNb
    "statement_id": pl.String,  # CAMT Stmt/Id; CODA: account + sequence + date
    "creation_date": pl.Date,
    "old_balance_date": pl.Date,
    "old_balance_milli": pl.Int64,
    "new_balance_date": pl.Date,
    "new_balance_milli": pl.Int64,
    "holder_name": pl.String,
    "movement_count": pl.Int64,  # bookings (not details)
    "credit_milli": pl.Int64,  # sum of booking credits
    "debit_milli": pl.Int64,  # sum of booking debits (positive number)
    "duplicate_flag": pl.Boolean,  # CODA record 0 pos 17 = 'D'
    "source_line": pl.Int64,
}

MOVEMENT_SCHEMA: dict[str, pl.DataType] = {
    "movement_key": pl.String,  # stable per movement, for idempotent import (tolerates identical rows)
    "statement_key": pl.String,
    "format": pl.String,
    "account_iban": pl.String,
    "sequence": pl.Int64,  # CODA continuous sequence number / CAMT entry index (1-based)
    "detail_number": pl.Int64,  # 0 for a booking; >0 for a globalisation detail or CAMT TxDtls
    "parent_key": pl.String,  # movement_key of the booking a detail belongs to, else null
    "is_booking": pl.Boolean,  # counts in the balance (CODA detail 0000 / CAMT Ntry)
    "has_details": pl.Boolean,  # a booking whose details carry the individual payments
    "booking_date": pl.Date,
    "value_date": pl.Date,  # null when the bank wrote 000000
    "amount_milli": pl.Int64,  # signed: credit > 0, debit < 0
    "currency": pl.String,
    "is_reversal": pl.Boolean,
    "transaction_code": pl.String,  # CODA type+family+operation+category / CAMT Domn/Fmly/SubFmly or Prtry
    "communication_type": pl.String,  # CODA "101", "102", "127"...; CAMT "SCOR", "BBA", "ISO"; null = free text
    "structured_reference": pl.String,  # compact OGM (12 digits) or RF, when the movement carries one
    "reference_valid": pl.Boolean,  # check digits of structured_reference hold (null when none)
    "communication": pl.String,  # free text, continuation records joined
    "counterparty_name": pl.String,
    "counterparty_account": pl.String,  # IBAN compact when it is one, else as written
    "counterparty_bic": pl.String,
    "end_to_end_id": pl.String,
    "bank_reference": pl.String,  # CODA bank reference / CAMT AcctSvcrRef
    "customer_reference": pl.String,  # CODA 2.2 customer reference / CAMT InstrId or MsgId
    "return_reason": pl.String,  # CAMT RtrInf/Rsn/Cd, CODA return family codes
    "source_line": pl.Int64,  # line number (CODA) or entry element line (CAMT)
}

INFORMATION_SCHEMA: dict[str, pl.DataType] = {
    "statement_key": pl.String,
    "movement_key": pl.String,  # the movement the information belongs to, or null (record 4)
    "sequence": pl.Int64,
    "detail_number": pl.Int64,
    "record": pl.String,  # "3" (information) | "4" (free communication)
    "transaction_code": pl.String,
    "communication_type": pl.String,
    "communication": pl.String,
    "source_line": pl.Int64,
}


@dataclass
class StatementBatch:
    """What a bank-statement parser returns for one file (which may hold several statements)."""

    statements: pl.DataFrame
    movements: pl.DataFrame
    information: pl.DataFrame
    warnings: list[ParseWarning] = field(default_factory=list)
    format: str = ""

    @classmethod
    def empty(cls, fmt: str) -> "StatementBatch":
        return cls(
            statements=pl.DataFrame(schema=STATEMENT_SCHEMA),
            movements=pl.DataFrame(schema=MOVEMENT_SCHEMA),
            information=pl.DataFrame(schema=INFORMATION_SCHEMA),
            format=fmt,
        )
