"""ISO 20022 camt.053 bank-to-customer statements into the canonical statement shape.

Why the choices below:

* Version: any ``camt.053.001.NN`` with NN >= 02 is read. The elements we need kept their names from
  v02 to v13; the few that moved (``Dbtr/Nm`` -> ``Dbtr/Pty/Nm`` in v08, ``BIC`` -> ``BICFI`` in v03,
  ``Sts`` -> ``Sts/Cd`` in v08) are read in both forms. So we bind the namespace read from the root
  instead of keeping one code path per version. Austrian banks (STUZZA) name the same body
  ``ISO:camt.053.001.02:APC:STUZZA:payments:003``; `version_of` is the one place that maps a namespace
  to its version, and the body is read in whatever namespace the root declares.
* A statement is all or nothing: a bad amount or date in one entry raises ``FileRejected`` naming the
  element by XPath and line. Importing the other entries would leave a statement whose balances no
  longer add up, which reconciliation must never see. Inconsistencies the bank itself produced
  (opening + entries != closing, a wrong ``TxsSummry``, an invalid OGM) are warnings: the data is
  what the bank booked.
* Only booked entries (``Sts`` BOOK, or no status) become movements; pending/information entries do
  not count in the balance and are reported as a warning. ``Sts`` is mandatory in the schema, yet a
  Lithuanian bank leaves it out of every entry, and its balances only add up with those entries counted:
  so an entry without status is a booking, silently (bank-statements.md §3 says "reconcile only BOOK";
  this is the one reading of a *missing* status that keeps the statement whole).
* An entry with neither ``BookgDt`` nor ``ValDt`` (the same Lithuanian bank) is dated with the
  statement's own date (closing booked balance, else ``CreDtTm``, else ``FrToDt/ToDtTm``) and a warning:
  a booking without any date could not be matched or reported by day.
* A 12-digit ``CdtrRefInf/Ref`` without issuer is read as a Belgian OGM only on a Belgian (``BE``)
  account: elsewhere twelve digits are just a creditor's reference (an Austrian one fails the OGM check
  digits), kept unchecked. An explicit ``Issr`` BBA is checked on any account.
* ``NOTPROVIDED`` / ``NOT PROVIDED`` in a reference field means "none" and is dropped, as the CODA
  parser does (`parsers.identifiers.NOT_PROVIDED`).
* One ``Ntry`` is one booking. A batch (``NtryDtls/Btch`` or several ``TxDtls``) also yields one
  detail movement per ``TxDtls`` (``parent_key`` = the booking), like a CODA globalisation; a single
  ``TxDtls`` just enriches its booking.
* Keys: ``statement_key`` = ``camt053-`` + 24 hex of SHA-256 over account, currency, ``Stmt/Id``,
  sequence numbers and the opening/closing balance dates, i.e. what identifies the statement, not the
  file (a re-sent copy with a new ``CreDtTm`` gets the same key). ``movement_key`` =
  ``{statement_key}:{entry index}:{detail number}``, stable across re-imports and distinct for two
  identical entries in one statement.
* Amounts are integer thousandths via ``Decimal``; a text with more than 3 decimals is refused rather
  than rounded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Callable
from zoneinfo import ZoneInfo

import polars as pl
from lxml import etree
from stdnum import iso11649
from stdnum.be import ogm_vcs

from creditflow.ogm_rf import strip_statement_separators
from creditflow.parsers.errors import (
    MALFORMED,
    NOT_THIS_FORMAT,
    UNSUPPORTED_VERSION,
    FileRejected,
    ParseWarning,
)
from creditflow.parsers.identifiers import NOT_PROVIDED, compact_iban
from creditflow.parsers.statements import (
    INFORMATION_SCHEMA,
    MOVEMENT_SCHEMA,
    STATEMENT_SCHEMA,
    StatementBatch,
)
from creditflow.parsers.xmlsafe import parse_xml

BRUSSELS = ZoneInfo("Europe/Brussels")  # parsers may not import config; same zone as config.settings

FORMAT = "camt053"
# The namespace spellings of a camt.053 Document, each giving the camt.053.001 version of its body.
# STUZZA (Austrian banks) writes the plain camt.053.001.02 body under its own URN.
_NAMESPACES = (
    re.compile(r"^urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.(\d{2})$"),
    re.compile(r"^ISO:camt\.053\.001\.(\d{2}):APC:STUZZA:payments:\d{3}$"),
)
# What every camt.053 namespace of those families starts with: enough to claim the file (identify) and
# to refuse an unknown version of it by name rather than as "not this format".
_NS_PREFIXES = ("urn:iso:std:iso:20022:tech:xsd:camt.053.", "ISO:camt.053.")
_NS_PREFIX_BYTES = tuple(prefix.encode() for prefix in _NS_PREFIXES)
# Stricter than reconciliation's OGM_IN_TEXT: a match becomes the movement's reference, so it must be framed.
_OGM_IN_TEXT = re.compile(r"(?:\+\+\+|\*\*\*)\s*(\d{3})\s*/\s*(\d{4})\s*/\s*(\d{5})\s*(?:\+\+\+|\*\*\*)")
_MILLI = Decimal(1000)

# Codes of typed problems (FileRejected / ParseWarning)
INVALID_AMOUNT = "invalid_amount"
INVALID_DATE = "invalid_date"
MISSING_ELEMENT = "missing_element"
BALANCE_MISMATCH = "balance_mismatch"
SUMMARY_MISMATCH = "summary_mismatch"
DETAIL_SUM_MISMATCH = "detail_sum_mismatch"
CURRENCY_MISMATCH = "currency_mismatch"
INVALID_REFERENCE = "invalid_reference"
NOT_BOOKED = "entry_not_booked"
MISSING_BALANCE = "missing_balance"
BALANCE_SIGN_MISSING = "balance_sign_missing"
ENTRY_DATE_MISSING = "entry_date_missing"


def version_of(namespace: str | None) -> int | None:
    """The NN of ``camt.053.001.NN`` (ISO or STUZZA spelling), or None when the namespace is not
    camt.053.001."""
    for pattern in _NAMESPACES:
        match = pattern.match(namespace or "")
        if match:
            return int(match.group(1))
    return None


@lru_cache(maxsize=512)
def _clark(ns: str, path: str) -> str:
    """'BookgDt/Dt' -> '{ns}BookgDt/{ns}Dt' (ElementPath wants Clark names)."""
    return "/".join(f"{{{ns}}}{step}" for step in path.split("/"))


class _Doc:
    """Path helpers bound to one document's namespace and source name."""

    def __init__(self, ns: str, source: str):
        self.ns = ns
        self.source = source

    def find(self, el, path: str):
        return None if el is None else el.find(_clark(self.ns, path))

    def findall(self, el, path: str):
        return [] if el is None else el.findall(_clark(self.ns, path))

    def text(self, el, path: str) -> str | None:
        """Stripped text of the first match, None when absent or blank."""
        if el is None:
            return None
        value = el.findtext(_clark(self.ns, path))
        if value is None:
            return None
        value = value.strip()
        return value or None

    def first_text(self, el, *paths: str) -> str | None:
        """First non-empty of several paths, in the order given (not document order)."""
        for path in paths:
            value = self.text(el, path)
            if value is not None:
                return value
        return None

    def first_reference(self, el, *paths: str) -> str | None:
        """Like `first_text`, skipping NOTPROVIDED placeholders (the next path may hold a real one)."""
        for path in paths:
            value = _provided(self.text(el, path))
            if value is not None:
                return value
        return None

    def reject(self, message: str, code: str, xpath: str, el=None, field: str | None = None):
        line = getattr(el, "sourceline", None)
        location = f"{xpath} (line {line})" if line else xpath
        return FileRejected(self.source, message, code=code, location=location, field=field)

    def milli(self, el, xpath: str, *, required: bool = True) -> int | None:
        """Amount text of `el` as positive integer thousandths."""
        raw = None if el is None else (el.text or "").strip()
        if not raw:
            if required:
                raise self.reject("amount missing", MISSING_ELEMENT, xpath, el, "Amt")
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise self.reject(f"amount {raw!r} is not a decimal number", INVALID_AMOUNT, xpath, el,
                              "Amt") from None
        if not value.is_finite() or value < 0:
            raise self.reject(f"amount {raw!r} must be a non-negative number (the sign is CdtDbtInd)",
                              INVALID_AMOUNT, xpath, el, "Amt")
        scaled = value * _MILLI
        if scaled != scaled.to_integral_value():
            raise self.reject(f"amount {raw!r} has more than 3 decimals", INVALID_AMOUNT, xpath, el,
                              "Amt")
        return int(scaled)

    def date_of(self, el, xpath: str) -> date | None:
        """`Dt` or `DtTm` child of a date choice (BookgDt, ValDt, Bal/Dt) as a Brussels date."""
        if el is None:
            return None
        raw = self.text(el, "Dt")
        if raw is not None:
            try:
                return date.fromisoformat(raw[:10]) if len(raw) >= 10 else date.fromisoformat(raw)
            except ValueError:
                raise self.reject(f"date {raw!r} is not YYYY-MM-DD", INVALID_DATE, f"{xpath}/Dt", el,
                                  "Dt") from None
        raw = self.text(el, "DtTm")
        if raw is not None:
            return self.datetime_date(raw, f"{xpath}/DtTm", el)
        return None

    def datetime_date(self, raw: str, xpath: str, el) -> date:
        """ISO date-time -> Brussels business date (a time without offset is taken as Brussels)."""
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise self.reject(f"date-time {raw!r} is not ISO 8601", INVALID_DATE, xpath, el,
                              xpath.rsplit("/", 1)[-1]) from None
        if moment.tzinfo is None:
            return moment.date()
        return moment.astimezone(BRUSSELS).date()


def _sign(indicator: str | None, doc: _Doc, xpath: str, el) -> int:
    """+1 for CRDT, -1 for DBIT; anything else rejects the file (an entry of unknown direction would
    book money the wrong way). Balances go through `_StatementReader._balance_sign` instead."""
    if indicator == "CRDT":
        return 1
    if indicator == "DBIT":
        return -1
    if indicator is None:
        raise doc.reject("CdtDbtInd is missing; expected CRDT or DBIT", MALFORMED, f"{xpath}/CdtDbtInd", el,
                         "CdtDbtInd")
    raise doc.reject(f"CdtDbtInd must be CRDT or DBIT, not {indicator!r}", MALFORMED,
                     f"{xpath}/CdtDbtInd", el, "CdtDbtInd")


def _provided(value: str | None) -> str | None:
    """`value`, or None when it is a placeholder for "no reference" (`NOT_PROVIDED`)."""
    if value is None or value.upper() in NOT_PROVIDED:
        return None
    return value


def _compact_account(iban: str | None, other: str | None) -> str | None:
    """The account compacted when it is a valid IBAN, else as written. Some banks put the IBAN in
    ``Othr/Id`` rather than ``IBAN``; it is the same account, so it gets the same compact form."""
    if iban:
        return compact_iban(iban) or iban
    if other:
        return compact_iban(other) or other
    return None


def _reference(ref: str, issuer: str | None, belgian: bool) -> tuple[str, str, bool | None]:
    """(communication_type, structured_reference, reference_valid) for a CdtrRefInf/Ref.

    Twelve digits without an issuer are a Belgian OGM only on a Belgian account (`belgian`); elsewhere
    they are some creditor's own reference (Austrian files have them) with no check digits we know."""
    issuer = (issuer or "").strip().upper()
    compact = strip_statement_separators(ref)
    if issuer == "BBA" or (not issuer and belgian and compact.isdigit() and len(compact) == 12):
        return "BBA", compact, compact.isdigit() and ogm_vcs.is_valid(compact)
    if issuer == "ISO" or compact.upper().startswith("RF"):
        rf = iso11649.compact(ref)
        return "ISO", rf, iso11649.is_valid(rf)
    return "SCOR", ref.strip(), None


@dataclass(frozen=True)
class _StatementContext:
    """What the entries of one statement need to know about it."""

    key: str
    account_iban: str | None
    currency: str | None
    belgian: bool  # a BE account: an issuer-less 12-digit reference is an OGM
    fallback_date: Callable[[], tuple[date | None, str]]  # (date, where from) for an undated entry


@dataclass
class _Party:
    name: str | None = None
    account: str | None = None
    bic: str | None = None


class Camt053Parser:
    """camt.053.001.02+ statements -> `StatementBatch` (statements, movements, information)."""

    name = FORMAT

    def identify(self, name: str, head: bytes) -> bool:
        return any(prefix in head for prefix in _NS_PREFIX_BYTES)

    def parse(self, data: bytes, *, source: str) -> StatementBatch:
        root = parse_xml(data, source=source)
        qname = etree.QName(root)
        version = version_of(qname.namespace)
        if version is None or qname.localname != "Document":
            if (qname.namespace or "").startswith(_NS_PREFIXES):
                raise FileRejected(source, f"unsupported camt.053 namespace {qname.namespace}",
                                   code=UNSUPPORTED_VERSION, location="/Document")
            raise FileRejected(source, f"root element {qname.text} is not a camt.053 Document",
                               code=NOT_THIS_FORMAT, location="/")
        if version < 2:
            raise FileRejected(source, f"camt.053.001.{version:02d} is not supported (02 or later)",
                               code=UNSUPPORTED_VERSION, location="/Document")
        return _StatementReader(_Doc(qname.namespace, source), root).read()


class _StatementReader:
    def __init__(self, doc: _Doc, root):
        self.doc = doc
        self.root = root
        self.statements: list[dict] = []
        self.movements: list[dict] = []
        self.information: list[dict] = []
        self.warnings: list[ParseWarning] = []

    def warn(self, location: str, code: str, message: str) -> None:
        self.warnings.append(ParseWarning(self.doc.source, location, code, message))

    def read(self) -> StatementBatch:
        doc = self.doc
        container = doc.find(self.root, "BkToCstmrStmt")
        if container is None:
            raise doc.reject("BkToCstmrStmt missing", MISSING_ELEMENT, "/Document/BkToCstmrStmt",
                             self.root)
        for index, stmt in enumerate(doc.findall(container, "Stmt"), start=1):
            self._statement(stmt, f"/Document/BkToCstmrStmt/Stmt[{index}]")
        if not self.statements:
            self.warn("/Document/BkToCstmrStmt", MISSING_ELEMENT, "the file holds no Stmt")
        return StatementBatch(
            statements=pl.DataFrame(self.statements, schema=STATEMENT_SCHEMA),
            movements=pl.DataFrame(self.movements, schema=MOVEMENT_SCHEMA),
            information=pl.DataFrame(self.information, schema=INFORMATION_SCHEMA),
            warnings=self.warnings,
            format=FORMAT,
        )

    # -- statement level -------------------------------------------------------------------------

    def _balance(self, stmt, xpath: str, codes: tuple[str, ...]):
        """(signed milli, date, currency, element) of the first balance with one of `codes`."""
        doc = self.doc
        by_code = {}
        for index, bal in enumerate(doc.findall(stmt, "Bal"), start=1):
            code = doc.first_text(bal, "Tp/CdOrPrtry/Cd", "Tp/CdOrPrtry/Prtry")
            by_code.setdefault(code, (index, bal))
        for code in codes:
            if code in by_code:
                index, bal = by_code[code]
                bal_path = f"{xpath}/Bal[{index}]"
                amt = doc.find(bal, "Amt")
                value = doc.milli(amt, f"{bal_path}/Amt")
                value *= self._balance_sign(bal, bal_path, code)
                return value, doc.date_of(doc.find(bal, "Dt"), f"{bal_path}/Dt"), amt.get("Ccy"), bal
        return None, None, None, None

    def _balance_sign(self, bal, bal_path: str, code: str) -> int:
        """Sign of a balance. Some banks (a Lithuanian one, for one) leave CdtDbtInd out of balances:
        that is read as credit with a warning rather than refusing the file, since the balance is
        only a control; if it was a debit, the balance check that follows says so. A present but
        wrong value still rejects, as for an entry."""
        indicator = self.doc.text(bal, "CdtDbtInd")
        if indicator is None:
            self.warn(f"{bal_path}/CdtDbtInd", BALANCE_SIGN_MISSING,
                      f"balance {code} has no CdtDbtInd; read as credit (positive)")
            return 1
        return _sign(indicator, self.doc, bal_path, bal)

    def _statement(self, stmt, xpath: str) -> None:
        doc = self.doc
        iban = doc.text(stmt, "Acct/Id/IBAN")
        other = doc.text(stmt, "Acct/Id/Othr/Id")
        account_iban = None
        if iban:
            account_iban = compact_iban(iban)
            if account_iban is None:
                self.warn(f"{xpath}/Acct/Id/IBAN", "invalid_iban", f"account IBAN {iban!r} is not valid")
        # The key keeps the account as it was before Othr/Id IBANs were recognised: same statement, same key.
        key_account = account_iban or iban or other
        if account_iban is None and other:
            account_iban = compact_iban(other)  # an IBAN in Othr/Id (Bank of Lithuania, some Dutch banks)
        currency = doc.text(stmt, "Acct/Ccy")
        opening, opening_date, opening_ccy, _ = self._balance(stmt, xpath, ("OPBD", "PRCD"))
        closing, closing_date, closing_ccy, _ = self._balance(stmt, xpath, ("CLBD",))
        if currency is None:
            currency = opening_ccy or closing_ccy
        for label, ccy in (("opening", opening_ccy), ("closing", closing_ccy)):
            if ccy and currency and ccy != currency:
                self.warn(f"{xpath}/Bal", CURRENCY_MISMATCH,
                          f"{label} balance is in {ccy}, the account in {currency}")
        statement_id = doc.text(stmt, "Id")
        electronic_seq = doc.text(stmt, "ElctrncSeqNb")
        legal_seq = doc.text(stmt, "LglSeqNb")
        created = doc.text(stmt, "CreDtTm")
        creation_date = doc.datetime_date(created, f"{xpath}/CreDtTm", stmt) if created else None
        key_material = "|".join(
            str(part or "") for part in (FORMAT, key_account, currency, statement_id,
                                         electronic_seq, legal_seq, opening_date, closing_date)
        )
        statement_key = "camt053-" + hashlib.sha256(key_material.encode()).hexdigest()[:24]
        context = _StatementContext(
            key=statement_key,
            account_iban=account_iban,
            currency=currency,
            belgian=(account_iban or iban or other or "").lstrip().upper().startswith("BE"),
            fallback_date=cache(lambda: self._statement_date(stmt, xpath, closing_date, creation_date)),
        )

        credit = debit = 0
        credit_count = debit_count = 0
        for index, entry in enumerate(doc.findall(stmt, "Ntry"), start=1):
            amount = self._entry(entry, f"{xpath}/Ntry[{index}]", index, context)
            if amount is None:
                continue
            if amount >= 0:
                credit += amount
                credit_count += 1
            else:
                debit -= amount
                debit_count += 1
        bookings = credit_count + debit_count

        if opening is None or closing is None:
            self.warn(f"{xpath}/Bal", MISSING_BALANCE,
                      "opening (OPBD/PRCD) or closing (CLBD) booked balance missing: not checked")
        elif opening + credit - debit != closing:
            self.warn(f"{xpath}/Bal", BALANCE_MISMATCH,
                      f"opening {_fmt(opening)} + entries {_fmt(credit - debit)} != closing "
                      f"{_fmt(closing)}")
        self._check_summary(stmt, xpath, statement_id, (credit_count, debit_count), credit, debit)
        for info in doc.findall(stmt, "AddtlStmtInf"):
            self._info(statement_key, None, 0, 0, "AddtlStmtInf", None, info)

        self.statements.append({
            "statement_key": statement_key,
            "format": FORMAT,
            "account_iban": account_iban,
            "account_number": iban or other,
            "currency": currency,
            "sequence_number": electronic_seq or legal_seq,
            "statement_id": statement_id,
            "creation_date": creation_date,
            "old_balance_date": opening_date,
            "old_balance_milli": opening,
            "new_balance_date": closing_date,
            "new_balance_milli": closing,
            "holder_name": doc.first_text(stmt, "Acct/Ownr/Nm", "Acct/Nm"),
            "movement_count": bookings,
            "credit_milli": credit,
            "debit_milli": debit,
            "duplicate_flag": doc.text(stmt, "CpyDplctInd") in ("DUPL", "CODU"),
            "source_line": stmt.sourceline,
        })

    def _statement_date(self, stmt, xpath: str, closing_date: date | None,
                        creation_date: date | None) -> tuple[date | None, str]:
        """The date an entry without BookgDt/ValDt is booked on, and where it comes from: the closing
        booked balance's date, else the statement's creation date (Brussels), else the end of its
        period. Read only when an entry needs it, so a bad ``ToDtTm`` never rejects a dated statement."""
        if closing_date is not None:
            return closing_date, "closing balance (CLBD) date"
        if creation_date is not None:
            return creation_date, "creation date (CreDtTm)"
        period_end = self.doc.text(stmt, "FrToDt/ToDtTm")
        if period_end is not None:
            return (self.doc.datetime_date(period_end, f"{xpath}/FrToDt/ToDtTm", stmt),
                    "period end (FrToDt/ToDtTm)")
        return None, "nothing"

    def _check_summary(self, stmt, xpath: str, statement_id: str | None, counts: tuple[int, int],
                       credit: int, debit: int) -> None:
        """Compare the TxsSummry control totals with the booked entries, like a CODA trailer.

        Every figure the bank gives is checked: entry counts and sums (all, credits, debits) and the
        net total (``TtlNetNtry/Amt`` + ``CdtDbtInd`` from v03, ``TtlNetNtryAmt`` + ``CdtDbtInd`` in
        v02). A difference is a warning naming the statement, the element and both figures; never a
        rejection, because the entries are what the bank booked."""
        doc = self.doc
        summary = doc.find(stmt, "TxsSummry")
        if summary is None:
            return
        where = f"{xpath}/TxsSummry"
        label = f"statement {statement_id}" if statement_id else f"statement {xpath}"
        # TtlNtries/Sum is the sum of all entries, credits and debits alike (ISO), but Wise writes the
        # absolute net there (credits 1000, debits 900, Sum 100) while its credit/debit subtotals and
        # balances hold: that reading is accepted too. The net itself is still checked, signed, by
        # TtlNetNtry when the bank gives it.
        checks = (
            ("TtlNtries/NbOfNtries", counts[0] + counts[1], False, ()),
            ("TtlNtries/Sum", credit + debit, True, (abs(credit - debit),)),
            ("TtlCdtNtries/NbOfNtries", counts[0], False, ()),
            ("TtlDbtNtries/NbOfNtries", counts[1], False, ()),
            ("TtlCdtNtries/Sum", credit, True, ()),
            ("TtlDbtNtries/Sum", debit, True, ()),
        )
        for path, ours, is_amount, also_accepted in checks:
            el = doc.find(summary, path)
            if el is None:
                continue
            raw = (el.text or "").strip()
            try:
                theirs = doc.milli(el, f"{where}/{path}") if is_amount else int(raw)
            except (ValueError, FileRejected):
                self.warn(f"{where}/{path}", SUMMARY_MISMATCH,
                          f"{label}: unreadable control value {raw!r} in TxsSummry/{path}")
                continue
            if theirs != ours and theirs not in also_accepted:
                shown = (_fmt(theirs), _fmt(ours)) if is_amount else (theirs, ours)
                self.warn(f"{where}/{path}", SUMMARY_MISMATCH,
                          f"{label}: TxsSummry/{path} says {shown[0]}, the booked entries give {shown[1]}")
        self._check_net_total(summary, where, label, credit - debit)

    def _check_net_total(self, summary, where: str, label: str, ours: int) -> None:
        """TtlNtries' signed net total (credits - debits) against the booked entries."""
        doc = self.doc
        for amount_path, indicator_path in (("TtlNtries/TtlNetNtry/Amt", "TtlNtries/TtlNetNtry/CdtDbtInd"),
                                            ("TtlNtries/TtlNetNtryAmt", "TtlNtries/CdtDbtInd")):
            el = doc.find(summary, amount_path)
            if el is None:
                continue
            raw = (el.text or "").strip()
            try:
                amount = doc.milli(el, f"{where}/{amount_path}")
            except FileRejected:
                self.warn(f"{where}/{amount_path}", SUMMARY_MISMATCH,
                          f"{label}: unreadable control value {raw!r} in TxsSummry/{amount_path}")
                return
            indicator = doc.text(summary, indicator_path)
            if indicator not in ("CRDT", "DBIT") and amount:
                self.warn(f"{where}/{indicator_path}", SUMMARY_MISMATCH,
                          f"{label}: TxsSummry/{indicator_path} is {indicator!r}, not CRDT or DBIT; "
                          f"net total {_fmt(amount)} not checked")
                return
            theirs = -amount if indicator == "DBIT" else amount
            if theirs != ours:
                self.warn(f"{where}/{amount_path}", SUMMARY_MISMATCH,
                          f"{label}: TxsSummry/{amount_path} with {indicator_path} says net "
                          f"{_fmt(theirs)}, the booked entries give {_fmt(ours)}")
            return

    # -- entry level -----------------------------------------------------------------------------

    def _entry(self, entry, xpath: str, index: int, context: _StatementContext) -> int | None:
        """Append the booking (and its details); return its signed amount, None if not booked."""
        doc = self.doc
        statement_key, account_iban, account_currency = context.key, context.account_iban, context.currency
        status = doc.first_text(entry, "Sts/Cd", "Sts")
        # No status at all is a booking (see the module docstring); only another status is not.
        if status is not None and status != "BOOK":
            self.warn(xpath, NOT_BOOKED, f"entry status {status}: not a booking, skipped")
            return None
        amt = doc.find(entry, "Amt")
        sign = _sign(doc.text(entry, "CdtDbtInd"), doc, xpath, entry)
        amount = sign * doc.milli(amt, f"{xpath}/Amt", required=True)
        currency = amt.get("Ccy") if amt is not None else None
        if currency and account_currency and currency != account_currency:
            self.warn(f"{xpath}/Amt", CURRENCY_MISMATCH,
                      f"entry in {currency}, the account in {account_currency}")
        is_reversal = (doc.text(entry, "RvslInd") or "").lower() in ("true", "1")
        booking_date = doc.date_of(doc.find(entry, "BookgDt"), f"{xpath}/BookgDt")
        value_date = doc.date_of(doc.find(entry, "ValDt"), f"{xpath}/ValDt")
        if booking_date is None and value_date is None:
            booking_date = self._undated(xpath, context)
        movement_key = f"{statement_key}:{index}:0"

        details = []
        batch = None
        for nd_index, entry_details in enumerate(doc.findall(entry, "NtryDtls"), start=1):
            batch = batch if batch is not None else doc.find(entry_details, "Btch")
            for tx_index, tx in enumerate(doc.findall(entry_details, "TxDtls"), start=1):
                details.append((tx, f"{xpath}/NtryDtls[{nd_index}]/TxDtls[{tx_index}]"))
        has_details = bool(details) and (batch is not None or len(details) > 1)

        booking = {
            "movement_key": movement_key,
            "statement_key": statement_key,
            "format": FORMAT,
            "account_iban": account_iban,
            "sequence": index,
            "detail_number": 0,
            "parent_key": None,
            "is_booking": True,
            "has_details": has_details,
            "booking_date": booking_date,
            "value_date": value_date,
            "amount_milli": amount,
            "currency": currency,
            "is_reversal": is_reversal,
            "transaction_code": self._tx_code(entry),
            "communication_type": None,
            "structured_reference": None,
            "reference_valid": None,
            "communication": None,
            "counterparty_name": None,
            "counterparty_account": None,
            "counterparty_bic": None,
            "end_to_end_id": None,
            "bank_reference": doc.text(entry, "AcctSvcrRef"),
            "customer_reference": doc.first_reference(batch, "PmtInfId", "MsgId"),
            "return_reason": None,
            "source_line": entry.sourceline,
        }
        if details and not has_details:
            self._enrich(booking, details[0][0], details[0][1], sign, is_reversal, context.belgian)
        self.movements.append(booking)
        for info in doc.findall(entry, "AddtlNtryInf"):
            self._info(statement_key, movement_key, index, 0, "AddtlNtryInf",
                       booking["transaction_code"], info)

        if has_details:
            detail_sum = 0
            for number, (tx, tx_path) in enumerate(details, start=1):
                detail = dict(booking)
                detail.update(
                    movement_key=f"{statement_key}:{index}:{number}",
                    detail_number=number,
                    parent_key=movement_key,
                    is_booking=False,
                    has_details=False,
                    amount_milli=None,
                    customer_reference=None,
                    source_line=tx.sourceline,
                )
                self._enrich(detail, tx, tx_path, sign, is_reversal, context.belgian)
                self.movements.append(detail)
                if detail["amount_milli"] is not None:
                    detail_sum += detail["amount_milli"]
                else:
                    self.warn(tx_path, MISSING_ELEMENT, "transaction detail without an amount")
            if detail_sum != amount and all(
                m["amount_milli"] is not None for m in self.movements[-len(details):]
            ):
                self.warn(xpath, DETAIL_SUM_MISMATCH,
                          f"details sum to {_fmt(detail_sum)}, the entry is {_fmt(amount)}")
        return amount

    def _undated(self, xpath: str, context: _StatementContext) -> date | None:
        """Booking date of an entry with neither BookgDt nor ValDt: the statement's, with a warning."""
        day, source = context.fallback_date()
        if day is None:
            self.warn(xpath, ENTRY_DATE_MISSING,
                      "entry has no BookgDt or ValDt and the statement gives no date either: left undated")
        else:
            self.warn(xpath, ENTRY_DATE_MISSING,
                      f"entry has no BookgDt or ValDt: booked on {day.isoformat()}, the statement's {source}")
        return day

    def _tx_code(self, el) -> str | None:
        doc = self.doc
        domain = doc.text(el, "BkTxCd/Domn/Cd")
        if domain:
            family = doc.text(el, "BkTxCd/Domn/Fmly/Cd") or ""
            sub = doc.text(el, "BkTxCd/Domn/Fmly/SubFmlyCd") or ""
            return "/".join((domain, family, sub))
        return doc.text(el, "BkTxCd/Prtry/Cd")

    def _enrich(self, row: dict, tx, xpath: str, entry_sign: int, is_reversal: bool, belgian: bool) -> None:
        """Fill `row` from one TxDtls (references, remittance, counterparty, return reason)."""
        doc = self.doc
        statement_key = row["statement_key"]
        if row["detail_number"]:
            amount_el, amount_path = None, None
            for path in ("AmtDtls/TxAmt/Amt", "Amt", "AmtDtls/InstdAmt/Amt"):
                amount_el = doc.find(tx, path)
                if amount_el is not None:
                    amount_path = f"{xpath}/{path}"
                    break
            if amount_el is not None:
                indicator = doc.text(tx, "CdtDbtInd")
                sign = _sign(indicator, doc, xpath, tx) if indicator else entry_sign
                row["amount_milli"] = sign * doc.milli(amount_el, amount_path)
                row["currency"] = amount_el.get("Ccy") or row["currency"]
            code = self._tx_code(tx)
            if code:
                row["transaction_code"] = code
            row["bank_reference"] = doc.text(tx, "Refs/AcctSvcrRef") or row["bank_reference"]

        end_to_end = _provided(doc.text(tx, "Refs/EndToEndId"))
        if end_to_end:
            row["end_to_end_id"] = end_to_end
        row["customer_reference"] = (
            doc.first_reference(tx, "Refs/InstrId", "Refs/MsgId", "Refs/PmtInfId")
            or row["customer_reference"]
        )

        texts = []
        for rmt in doc.findall(tx, "RmtInf"):
            texts.extend((u.text or "").strip() for u in doc.findall(rmt, "Ustrd"))
            if row["structured_reference"] is None:
                for cri_index, cri in enumerate(doc.findall(rmt, "Strd/CdtrRefInf"), start=1):
                    ref = doc.text(cri, "Ref")
                    if not ref:
                        continue
                    kind, compact, valid = _reference(ref, doc.text(cri, "Tp/Issr"), belgian)
                    row.update(communication_type=kind, structured_reference=compact,
                               reference_valid=valid)
                    if valid is False:
                        self.warn(f"{xpath}/RmtInf/Strd/CdtrRefInf/Ref", INVALID_REFERENCE,
                                  f"{kind} reference {ref!r} fails its check digits (kept, flagged)")
                    break
        communication = " ".join(t for t in texts if t) or None
        row["communication"] = communication
        if row["structured_reference"] is None and communication:
            match = _OGM_IN_TEXT.search(communication)
            if match:  # some banks put the OGM in Ustrd as +++ddd/dddd/ddddd+++
                compact = "".join(match.groups())
                row.update(communication_type="BBA", structured_reference=compact,
                           reference_valid=ogm_vcs.is_valid(compact))
                if not row["reference_valid"]:
                    self.warn(f"{xpath}/RmtInf/Ustrd", INVALID_REFERENCE,
                              f"OGM {match.group(0)!r} in the free text fails its check digits")

        # The counterparty is the debtor of a credit and the creditor of a debit; a reversal turns
        # the original direction around. If the bank only reported the other side, take that one.
        credit_side = (row["amount_milli"] or entry_sign) > 0
        payer_first = credit_side != is_reversal
        debtor = self._party(tx, "Dbtr", "DbtrAcct", "DbtrAgt")
        creditor = self._party(tx, "Cdtr", "CdtrAcct", "CdtrAgt")
        first, second = (debtor, creditor) if payer_first else (creditor, debtor)
        party = first if (first.name or first.account) else second
        row.update(counterparty_name=party.name, counterparty_account=party.account,
                   counterparty_bic=party.bic)

        reason = doc.first_text(tx, "RtrInf/Rsn/Cd", "RtrInf/Rsn/Prtry")
        if reason:
            row["return_reason"] = reason
        for info in doc.findall(tx, "AddtlTxInf"):
            self._info(statement_key, row["movement_key"], row["sequence"], row["detail_number"],
                       "AddtlTxInf", row["transaction_code"], info)

    def _party(self, tx, party: str, account: str, agent: str) -> _Party:
        doc = self.doc
        return _Party(
            name=doc.first_text(tx, f"RltdPties/{party}/Nm", f"RltdPties/{party}/Pty/Nm"),
            account=_compact_account(doc.text(tx, f"RltdPties/{account}/Id/IBAN"),
                                     doc.text(tx, f"RltdPties/{account}/Id/Othr/Id")),
            bic=doc.first_text(tx, f"RltdAgts/{agent}/FinInstnId/BIC",
                               f"RltdAgts/{agent}/FinInstnId/BICFI"),
        )

    def _info(self, statement_key, movement_key, sequence, detail_number, record, code, el) -> None:
        text = (el.text or "").strip()
        if not text:
            return
        self.information.append({
            "statement_key": statement_key,
            "movement_key": movement_key,
            "sequence": sequence,
            "detail_number": detail_number,
            "record": record,
            "transaction_code": code,
            "communication_type": None,
            "communication": text,
            "source_line": el.sourceline,
        })


def _fmt(milli: int) -> str:
    return str(Decimal(milli).scaleb(-3))
