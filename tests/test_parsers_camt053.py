"""camt.053 parser on our own statements (tests/fixtures/camt053) and variants built from them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from statement_builders import camt_file  # tests/ is on sys.path (conftest)

from creditflow.parsers.camt053 import Camt053Parser, version_of
from creditflow.parsers.errors import (
    MALFORMED,
    NOT_THIS_FORMAT,
    UNSUPPORTED_VERSION,
    FileRejected,
    ParseError,
)
from creditflow.parsers.statements import (
    INFORMATION_SCHEMA,
    MOVEMENT_SCHEMA,
    STATEMENT_SCHEMA,
    StatementBatch,
)
from creditflow.parsers.xmlsafe import FORBIDDEN_DTD

FIXTURE = Path(__file__).parent / "fixtures" / "camt053" / "statement-v08.xml"
V08 = FIXTURE.read_bytes()
PARSER = Camt053Parser()


def parse(data: bytes) -> StatementBatch:
    return PARSER.parse(data, source="stmt.xml")


def as_v02(data: bytes) -> bytes:
    """The same statement in v02 spelling (Nm without Pty, BIC, Sts as text, no TxDtls/Amt)."""
    text = data.decode()
    for old, new in (
        ("camt.053.001.08", "camt.053.001.02"),
        ("<Pty><Nm>", "<Nm>"), ("</Nm></Pty>", "</Nm>"),
        ("BICFI>", "BIC>"), ("<Sts><Cd>BOOK</Cd></Sts>", "<Sts>BOOK</Sts>"),
        ("<Sts><Cd>PDNG</Cd></Sts>", "<Sts>PDNG</Sts>"),
    ):
        text = text.replace(old, new)
    text = text.replace('<Amt Ccy="EUR">200.00</Amt>\n            <CdtDbtInd>CRDT</CdtDbtInd>',
                        '<AmtDtls><TxAmt><Amt Ccy="EUR">200.00</Amt></TxAmt></AmtDtls>')
    text = text.replace('<Amt Ccy="EUR">100.00</Amt>\n            <CdtDbtInd>CRDT</CdtDbtInd>',
                        '<AmtDtls><TxAmt><Amt Ccy="EUR">100.00</Amt></TxAmt></AmtDtls>')
    return text.encode()


def movement(batch: StatementBatch, sequence: int, detail: int = 0) -> dict:
    rows = batch.movements.filter(
        (batch.movements["sequence"] == sequence) & (batch.movements["detail_number"] == detail)
    ).to_dicts()
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("data", [V08, as_v02(V08)], ids=["v08", "v02"])
def test_statement_row_and_balances(data):
    batch = parse(data)
    assert batch.format == "camt053"
    assert dict(batch.statements.schema) == STATEMENT_SCHEMA
    assert dict(batch.movements.schema) == MOVEMENT_SCHEMA
    assert dict(batch.information.schema) == INFORMATION_SCHEMA
    [stmt] = batch.statements.to_dicts()
    assert stmt["account_iban"] == "BE71096123456769"
    assert stmt["account_number"] == "BE71 0961 2345 6769"
    assert stmt["currency"] == "EUR"
    assert stmt["statement_id"] == "CF-STMT-2026-061"
    assert stmt["sequence_number"] == "61"
    assert stmt["creation_date"] == date(2026, 3, 3)  # 23:30Z is already 3 March in Brussels
    assert (stmt["old_balance_milli"], stmt["new_balance_milli"]) == (1_000_005, 1_371_005)
    assert (stmt["old_balance_date"], stmt["new_balance_date"]) == (date(2026, 3, 1), date(2026, 3, 2))
    assert stmt["holder_name"] == "Demo Incasso BV"
    assert (stmt["movement_count"], stmt["credit_milli"], stmt["debit_milli"]) == (3, 421_000, 50_000)
    assert stmt["duplicate_flag"] is False
    # balances and TxsSummry hold: the only warning is the pending entry
    assert [w.code for w in batch.warnings] == ["entry_not_booked"]
    assert batch.warnings[0].location == "/Document/BkToCstmrStmt/Stmt[1]/Ntry[4]"


@pytest.mark.parametrize("data", [V08, as_v02(V08)], ids=["v08", "v02"])
def test_single_txdtls_enriches_the_booking(data):
    booking = movement(parse(data), 1)
    assert booking["is_booking"] and not booking["has_details"]
    assert booking["amount_milli"] == 121_000
    assert booking["booking_date"] == date(2026, 3, 2)  # DtTm 23:30Z -> Brussels date
    assert booking["value_date"] == date(2026, 3, 2)
    assert booking["transaction_code"] == "PMNT/RCDT/ESCT"
    assert (booking["communication_type"], booking["structured_reference"],
            booking["reference_valid"]) == ("BBA", "090933755493", True)
    assert booking["end_to_end_id"] is None  # NOTPROVIDED is no reference
    assert booking["customer_reference"] == "INSTR-1"
    assert booking["bank_reference"] == "BANKREF-0001"
    # a credit: the counterparty is the debtor
    assert (booking["counterparty_name"], booking["counterparty_account"],
            booking["counterparty_bic"]) == ("Bakkerij Peeters", "BE68539007547034", "KREDBEBB")


@pytest.mark.parametrize("data", [V08, as_v02(V08)], ids=["v08", "v02"])
def test_batch_gives_one_detail_per_txdtls(data):
    batch = parse(data)
    booking = movement(batch, 2)
    assert booking["has_details"] and booking["amount_milli"] == 300_000
    assert booking["customer_reference"] == "PMTINF-9"
    first, second = movement(batch, 2, 1), movement(batch, 2, 2)
    for detail in (first, second):
        assert detail["parent_key"] == booking["movement_key"]
        assert not detail["is_booking"]
        assert detail["booking_date"] == booking["booking_date"]
    assert first["amount_milli"] + second["amount_milli"] == booking["amount_milli"]
    assert (first["communication_type"], first["structured_reference"],
            first["reference_valid"]) == ("ISO", "RF18539007547034", True)
    assert first["counterparty_account"] == "123-4567890-12"  # Othr/Id kept as written
    # an OGM typed into the free text is still found
    assert second["communication"] == "factuur 17 +++123/4567/89002+++"
    assert (second["structured_reference"], second["reference_valid"]) == ("123456789002", True)
    keys = batch.movements["movement_key"].to_list()
    assert len(keys) == len(set(keys)) == 5


def test_reversal_sign_counterparty_and_return_reason():
    batch = parse(V08)
    reversal = movement(batch, 3)
    assert reversal["amount_milli"] == -50_000 and reversal["is_reversal"]
    assert reversal["return_reason"] == "MD06"
    # a reversed debit: the counterparty is the original payer, not us
    assert reversal["counterparty_name"] == "Slapende Klant"
    assert reversal["counterparty_account"] == "BE54000000000097"
    [info] = batch.information.to_dicts()
    assert info["movement_key"] == reversal["movement_key"]
    assert info["communication"] == "Terugboeking domiciliëring"


def test_debit_takes_the_creditor_as_counterparty():
    data = V08.replace(b"<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts><Cd>BOOK</Cd></Sts>\n        "
                       b"<BookgDt><DtTm>", b"<CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts><Cd>BOOK"
                       b"</Cd></Sts>\n        <BookgDt><DtTm>", 1)
    data = data.replace(b"<CdtDbtInd>CRDT</CdtDbtInd>\n            <RltdPties>\n              "
                        b"<Dbtr><Pty><Nm>Bakkerij", b"<RltdPties>\n              <Dbtr><Pty><Nm>"
                        b"Bakkerij", 1)
    booking = movement(parse(data), 1)
    assert booking["amount_milli"] == -121_000
    assert (booking["counterparty_name"], booking["counterparty_account"]) == (
        "Demo Incasso BV", "BE71096123456769")


def test_invalid_bba_reference_is_kept_flagged_and_warned():
    batch = parse(V08.replace(b"<Ref>090933755493</Ref>", b"<Ref>090933755494</Ref>"))
    booking = movement(batch, 1)
    assert (booking["structured_reference"], booking["reference_valid"]) == ("090933755494", False)
    warning = next(w for w in batch.warnings if w.code == "invalid_reference")
    assert warning.location.endswith("/Ntry[1]/NtryDtls[1]/TxDtls[1]/RmtInf/Strd/CdtrRefInf/Ref")


def test_balance_and_summary_mismatches_are_warnings():
    data = V08.replace(b"1371.005", b"1371.015").replace(b"<Sum>421.00</Sum>", b"<Sum>420.00</Sum>")
    batch = parse(data)
    codes = {w.code for w in batch.warnings}
    assert {"balance_mismatch", "summary_mismatch"} <= codes
    assert batch.movements.height == 5  # nothing dropped


SUMMARY = b"<TtlNtries><NbOfNtries>3</NbOfNtries></TtlNtries>"


def with_summary(total: bytes) -> bytes:
    """V08 whose TxsSummry/TtlNtries is `total` (its credit and debit parts, 421.00 and 50.00, hold)."""
    assert SUMMARY in V08
    return V08.replace(SUMMARY, b"<TtlNtries>" + total + b"</TtlNtries>")


def summary_warnings(batch: StatementBatch) -> dict[str, str]:
    return {w.location: w.message for w in batch.warnings if w.code == "summary_mismatch"}


@pytest.mark.parametrize("net", [
    b"<TtlNetNtry><Amt>371.00</Amt><CdtDbtInd>CRDT</CdtDbtInd></TtlNetNtry>",  # v03 and later
    b"<TtlNetNtryAmt>371.00</TtlNetNtryAmt><CdtDbtInd>CRDT</CdtDbtInd>",  # v02 spelling
], ids=["TtlNetNtry", "TtlNetNtryAmt"])
def test_summary_totals_that_hold_give_no_warning(net):
    batch = parse(with_summary(b"<NbOfNtries>3</NbOfNtries><Sum>471.00</Sum>" + net))
    assert [w.code for w in batch.warnings] == ["entry_not_booked"]


def test_summary_sum_and_net_total_that_differ_are_warnings_naming_statement_xpath_and_figures():
    batch = parse(with_summary(b"<NbOfNtries>4</NbOfNtries><Sum>470.00</Sum>"
                               b"<TtlNetNtry><Amt>371.00</Amt><CdtDbtInd>DBIT</CdtDbtInd></TtlNetNtry>"))
    where = "/Document/BkToCstmrStmt/Stmt[1]/TxsSummry/TtlNtries"
    found = summary_warnings(batch)
    assert set(found) == {f"{where}/NbOfNtries", f"{where}/Sum", f"{where}/TtlNetNtry/Amt"}
    assert all(m.startswith("statement CF-STMT-2026-061: ") for m in found.values())
    assert "says 4, the booked entries give 3" in found[f"{where}/NbOfNtries"]
    assert "says 470.000, the booked entries give 471.000" in found[f"{where}/Sum"]
    assert "says net -371.000, the booked entries give 371.000" in found[f"{where}/TtlNetNtry/Amt"]
    assert batch.movements.height == 5  # nothing dropped


def test_v02_net_total_that_differs_is_a_warning():
    batch = parse(as_v02(with_summary(b"<TtlNetNtryAmt>370.00</TtlNetNtryAmt><CdtDbtInd>CRDT</CdtDbtInd>")))
    found = summary_warnings(batch)
    assert list(found) == ["/Document/BkToCstmrStmt/Stmt[1]/TxsSummry/TtlNtries/TtlNetNtryAmt"]
    assert "says net 370.000, the booked entries give 371.000" in next(iter(found.values()))


def test_credit_and_debit_summary_counts_and_sums_are_checked():
    data = (V08.replace(b"<TtlCdtNtries><NbOfNtries>2</NbOfNtries><Sum>421.00</Sum>",
                        b"<TtlCdtNtries><NbOfNtries>1</NbOfNtries><Sum>421.00</Sum>")
            .replace(b"<TtlDbtNtries><NbOfNtries>1</NbOfNtries><Sum>50.00</Sum>",
                     b"<TtlDbtNtries><NbOfNtries>1</NbOfNtries><Sum>5O.00</Sum>"))
    found = summary_warnings(parse(data))
    where = "/Document/BkToCstmrStmt/Stmt[1]/TxsSummry"
    assert set(found) == {f"{where}/TtlCdtNtries/NbOfNtries", f"{where}/TtlDbtNtries/Sum"}
    assert "says 1, the booked entries give 2" in found[f"{where}/TtlCdtNtries/NbOfNtries"]
    assert "unreadable control value '5O.00'" in found[f"{where}/TtlDbtNtries/Sum"]


OPENING_SIGN = b'<Amt Ccy="EUR">1000.005</Amt>\n        <CdtDbtInd>CRDT</CdtDbtInd>\n'
CLOSING_SIGN = b'<Amt Ccy="EUR">1371.005</Amt>\n        <CdtDbtInd>CRDT</CdtDbtInd>\n'


def test_balance_without_cdtdbtind_is_read_as_credit_with_a_warning():
    batch = parse(V08.replace(OPENING_SIGN, b'<Amt Ccy="EUR">1000.005</Amt>\n'))
    [stmt] = batch.statements.to_dicts()
    assert stmt["old_balance_milli"] == 1_000_005
    [warning] = [w for w in batch.warnings if w.code == "balance_sign_missing"]
    assert warning.location == "/Document/BkToCstmrStmt/Stmt[1]/Bal[1]/CdtDbtInd"
    assert "OPBD" in warning.message and "credit" in warning.message
    assert "balance_mismatch" not in {w.code for w in batch.warnings}  # a credit after all: it adds up


def test_balance_without_cdtdbtind_that_was_a_debit_shows_as_a_balance_mismatch():
    data = (V08.replace(OPENING_SIGN, OPENING_SIGN.replace(b"CRDT", b"DBIT"))
            .replace(CLOSING_SIGN, b'<Amt Ccy="EUR">629.005</Amt>\n'))  # -1000.005 + 371 = -629.005
    batch = parse(data)
    [stmt] = batch.statements.to_dicts()
    assert (stmt["old_balance_milli"], stmt["new_balance_milli"]) == (-1_000_005, 629_005)
    located = {(w.code, w.location) for w in batch.warnings}
    assert ("balance_sign_missing", "/Document/BkToCstmrStmt/Stmt[1]/Bal[2]/CdtDbtInd") in located
    assert ("balance_mismatch", "/Document/BkToCstmrStmt/Stmt[1]/Bal") in located


def test_entry_without_cdtdbtind_is_rejected_saying_missing():
    with pytest.raises(FileRejected) as caught:
        parse(V08.replace(b"<CdtDbtInd>DBIT</CdtDbtInd>\n        <RvslInd>", b"<RvslInd>"))
    assert caught.value.code == MALFORMED and caught.value.field == "CdtDbtInd"
    assert caught.value.message == "CdtDbtInd is missing; expected CRDT or DBIT"
    assert caught.value.location.startswith("/Document/BkToCstmrStmt/Stmt[1]/Ntry[3]/CdtDbtInd (line ")


def test_balance_with_a_wrong_cdtdbtind_is_still_rejected():
    with pytest.raises(FileRejected) as caught:
        parse(V08.replace(OPENING_SIGN, OPENING_SIGN.replace(b"CRDT", b"CREDIT")))
    assert caught.value.message == "CdtDbtInd must be CRDT or DBIT, not 'CREDIT'"
    assert caught.value.location.startswith("/Document/BkToCstmrStmt/Stmt[1]/Bal[1]/CdtDbtInd")


def test_detail_sum_mismatch_is_a_warning():
    batch = parse(V08.replace(b'<Amt Ccy="EUR">100.00</Amt>', b'<Amt Ccy="EUR">90.00</Amt>'))
    assert any(w.code == "detail_sum_mismatch" and w.location.endswith("/Ntry[2]")
               for w in batch.warnings)


def test_statement_key_is_stable_and_ignores_creation_time():
    again = parse(V08.replace(b"<CreDtTm>2026-03-02T23:30:00Z", b"<CreDtTm>2026-03-05T10:00:00Z"))
    first = parse(V08)
    assert first.statements["statement_key"][0] == again.statements["statement_key"][0]
    assert first.movements["movement_key"].to_list() == again.movements["movement_key"].to_list()
    other = parse(V08.replace(b"<ElctrncSeqNb>61", b"<ElctrncSeqNb>62"))
    assert other.statements["statement_key"][0] != first.statements["statement_key"][0]


def test_bad_amount_names_xpath_and_line():
    with pytest.raises(FileRejected) as caught:
        parse(V08.replace(b'<Amt Ccy="EUR">300.00</Amt>', b'<Amt Ccy="EUR">3OO.00</Amt>'))
    assert caught.value.code == "invalid_amount"
    assert caught.value.location.startswith("/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]/Amt (line ")
    with pytest.raises(FileRejected) as caught:
        parse(V08.replace(b'<Amt Ccy="EUR">121.00</Amt>\n        <CdtDbtInd>',
                          b'<Amt Ccy="EUR">121.0001</Amt>\n        <CdtDbtInd>'))
    assert "more than 3 decimals" in caught.value.message


def test_bad_indicator_and_date_are_rejected():
    with pytest.raises(FileRejected) as caught:
        parse(V08.replace(b"<CdtDbtInd>DBIT</CdtDbtInd>\n        <RvslInd>",
                          b"<CdtDbtInd>DEBIT</CdtDbtInd>\n        <RvslInd>"))
    assert caught.value.location.startswith("/Document/BkToCstmrStmt/Stmt[1]/Ntry[3]/CdtDbtInd")
    assert caught.value.message == "CdtDbtInd must be CRDT or DBIT, not 'DEBIT'"
    with pytest.raises(FileRejected) as caught:
        parse(V08.replace(b"<BookgDt><Dt>2026-03-02</Dt>", b"<BookgDt><Dt>02/03/2026</Dt>", 1))
    assert caught.value.code == "invalid_date"


def test_versions():
    assert version_of("urn:iso:std:iso:20022:tech:xsd:camt.053.001.13") == 13
    assert version_of("urn:iso:std:iso:20022:tech:xsd:camt.052.001.08") is None
    assert parse(V08.replace(b"camt.053.001.08", b"camt.053.001.04")).movements.height == 5
    with pytest.raises(FileRejected) as caught:
        parse(V08.replace(b"camt.053.001.08", b"camt.053.001.01"))
    assert caught.value.code == UNSUPPORTED_VERSION
    with pytest.raises(FileRejected) as caught:
        parse(V08.replace(b"camt.053.001.08", b"camt.053.002.08"))
    assert caught.value.code == UNSUPPORTED_VERSION
    with pytest.raises(FileRejected) as caught:
        parse(b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>')
    assert caught.value.code == NOT_THIS_FORMAT


STUZZA = "ISO:camt.053.001.02:APC:STUZZA:payments:003"  # Austrian banks' name for camt.053.001.02


def test_stuzza_namespace_is_read_as_version_02_with_its_own_namespace_for_the_body():
    assert version_of(STUZZA) == 2
    v02 = as_v02(V08)
    stuzza = v02.replace(b"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02", STUZZA.encode())
    assert PARSER.identify("x.xml", stuzza[:400])
    ours, theirs = parse(v02), parse(stuzza)
    assert theirs.movements.height == 5  # the body was found, not just the root
    for name in ("statements", "movements", "information"):
        assert_frame_equal(getattr(theirs, name), getattr(ours, name))
    assert theirs.warnings == ours.warnings
    for other in (b"ISO:camt.053.001.01:APC:STUZZA:payments:003", b"ISO:camt.053.002.02:APC:STUZZA:payments:003"):
        with pytest.raises(FileRejected) as caught:
            parse(stuzza.replace(STUZZA.encode(), other))
        assert caught.value.code == UNSUPPORTED_VERSION


AUSTRIAN = "AT611904300234573201"
NOT_AN_OGM = "201912341234"  # twelve digits whose OGM check digits fail (an Austrian creditor reference)


@pytest.mark.parametrize("account, namespace", [(AUSTRIAN, STUZZA), ("LT121000011101001000", None)])
def test_issuerless_twelve_digits_off_a_belgian_account_are_an_unchecked_reference(account, namespace):
    extra = {"namespace": namespace} if namespace else {}
    batch = parse(camt_file([{"amount": "50.00", "ref": "R1", "reference": NOT_AN_OGM}],
                            seq=1, old="0", new="50.00", account=account, **extra))
    booking = movement(batch, 1)
    assert (booking["communication_type"], booking["structured_reference"],
            booking["reference_valid"]) == ("SCOR", NOT_AN_OGM, None)
    assert batch.warnings == []


def test_issuerless_twelve_digits_on_a_belgian_account_and_issuer_bba_anywhere_are_checked_as_ogm():
    belgian = parse(camt_file([{"amount": "50.00", "ref": "R1", "reference": NOT_AN_OGM}],
                              seq=1, old="0", new="50.00"))
    austrian = parse(camt_file([{"amount": "50.00", "ref": "R1", "ogm": NOT_AN_OGM}],
                               seq=1, old="0", new="50.00", account=AUSTRIAN))
    for batch in (belgian, austrian):
        booking = movement(batch, 1)
        assert (booking["communication_type"], booking["structured_reference"],
                booking["reference_valid"]) == ("BBA", NOT_AN_OGM, False)
        assert [w.code for w in batch.warnings] == ["invalid_reference"]
    good = parse(camt_file([{"amount": "50.00", "ref": "R1", "reference": "090933755493"}],
                           seq=1, old="0", new="50.00"))
    assert movement(good, 1)["reference_valid"] is True


def test_an_iban_in_othr_id_fills_account_iban_and_the_counterparty_account_is_compacted():
    batch = parse(camt_file([{"amount": "50.00", "ref": "R1", "text": "x", "payer_othr": "NL91 ABNA 0417 1643 00"}],
                            seq=1, old="0", new="50.00", account="LT12 1000 0111 0100 1000", account_in="Othr"))
    [stmt] = batch.statements.to_dicts()
    assert (stmt["account_iban"], stmt["account_number"]) == ("LT121000011101001000", "LT12 1000 0111 0100 1000")
    booking = movement(batch, 1)
    assert booking["account_iban"] == "LT121000011101001000"
    assert booking["counterparty_account"] == "NL91ABNA0417164300"
    assert batch.warnings == []
    # an Othr/Id that is no IBAN stays an account number only, without a warning
    other = parse(camt_file([{"amount": "50.00", "ref": "R1", "text": "x", "payer_othr": "123-4567890-12"}],
                            seq=1, old="0", new="50.00", account="0012345678", account_in="Othr"))
    [stmt] = other.statements.to_dicts()
    assert (stmt["account_iban"], stmt["account_number"]) == (None, "0012345678")
    assert movement(other, 1)["counterparty_account"] == "123-4567890-12"
    assert other.warnings == []


def test_entry_without_dates_or_status_is_booked_on_the_closing_balance_date_with_a_warning():
    batch = parse(camt_file([{"amount": "50.00", "ref": "R1", "text": "x", "dated": False, "status": None},
                             {"amount": "25.00", "ref": "R2", "text": "y", "status": None}],
                            seq=1, old="0", new="75.00", day="2024-03-07"))
    [stmt] = batch.statements.to_dicts()
    assert (stmt["movement_count"], stmt["credit_milli"]) == (2, 75_000)  # no Sts: booked
    undated = movement(batch, 1)
    assert (undated["booking_date"], undated["value_date"]) == (date(2024, 3, 7), None)
    [warning] = batch.warnings
    assert (warning.code, warning.location) == ("entry_date_missing", "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]")
    assert "2024-03-07" in warning.message and "closing balance" in warning.message


UNDATED = V08.replace(b"<BookgDt><Dt>2026-03-02</Dt></BookgDt>\n        <AcctSvcrRef>BANKREF-0002",
                      b"<AcctSvcrRef>BANKREF-0002")
CLOSING = V08[V08.index(b"      <Bal>\n        <Tp><CdOrPrtry><Cd>CLBD"):V08.index(b"      <TxsSummry>")]


@pytest.mark.parametrize("change, day, source", [
    (lambda d: d, date(2026, 3, 2), "closing balance"),
    (lambda d: d.replace(CLOSING, b""), date(2026, 3, 3), "CreDtTm"),  # 23:30Z is 3 March in Brussels
    (lambda d: d.replace(CLOSING, b"").replace(
        b"<CreDtTm>2026-03-02T23:30:00Z</CreDtTm>",
        b"<FrToDt><FrDtTm>2026-02-01T00:00:00+01:00</FrDtTm><ToDtTm>2026-02-28T23:59:59+01:00</ToDtTm></FrToDt>"),
     date(2026, 2, 28), "FrToDt/ToDtTm"),
], ids=["CLBD", "CreDtTm", "ToDtTm"])
def test_undated_entry_falls_back_to_the_statement_date_in_order(change, day, source):
    assert UNDATED != V08 and CLOSING
    batch = parse(change(UNDATED))
    booking = movement(batch, 2)
    assert booking["booking_date"] == day
    assert all(movement(batch, 2, n)["booking_date"] == day for n in (1, 2))  # its details too
    [warning] = [w for w in batch.warnings if w.code == "entry_date_missing"]
    assert warning.location == "/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]"
    assert source in warning.message


def test_summary_sum_equal_to_the_absolute_net_is_accepted_as_wise_writes_it():
    # credits 421.00, debits 50.00: the ISO Sum is 471.00, Wise writes the net 371.00
    batch = parse(with_summary(b"<NbOfNtries>3</NbOfNtries><Sum>371.00</Sum>"))
    assert [w.code for w in batch.warnings] == ["entry_not_booked"]
    found = summary_warnings(parse(with_summary(b"<NbOfNtries>3</NbOfNtries><Sum>372.00</Sum>")))
    assert "says 372.000, the booked entries give 471.000" in found[
        "/Document/BkToCstmrStmt/Stmt[1]/TxsSummry/TtlNtries/Sum"]


@pytest.mark.parametrize("placeholder", [b"NOTPROVIDED", b"NOT PROVIDED", b"Not Provided"])
def test_not_provided_in_any_spelling_is_no_reference(placeholder):
    data = V08.replace(b"<Refs><EndToEndId>NOTPROVIDED</EndToEndId><InstrId>INSTR-1</InstrId></Refs>",
                       b"<Refs><EndToEndId>" + placeholder + b"</EndToEndId><InstrId>" + placeholder
                       + b"</InstrId><PmtInfId>PMT-1</PmtInfId></Refs>")
    assert data != V08
    booking = movement(parse(data), 1)
    assert booking["end_to_end_id"] is None
    assert booking["customer_reference"] == "PMT-1"  # the placeholder is skipped, the next one taken
    batch = parse(V08.replace(b"<PmtInfId>PMTINF-9</PmtInfId>", b"<PmtInfId>" + placeholder + b"</PmtInfId>"))
    assert movement(batch, 2)["customer_reference"] == "BATCH-9"  # Btch: PmtInfId, else MsgId


def test_identify():
    assert PARSER.identify("x.xml", V08[:400])
    assert not PARSER.identify("x.xml", b"<?xml version='1.0'?><Invoice/>")


def test_malformed_and_forbidden_dtd():
    with pytest.raises(FileRejected) as caught:
        parse(V08[:600])
    assert caught.value.code == MALFORMED and caught.value.location.startswith("line ")
    with pytest.raises(FileRejected) as caught:
        parse(b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
              + V08[V08.index(b"<Document"):].replace(b"<MsgId>CF-TEST-1", b"<MsgId>&x;"))
    assert caught.value.code == FORBIDDEN_DTD


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_statements_give_a_batch_or_a_parse_error(data):
    raw = bytearray(V08)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        batch = parse(bytes(raw))
    except ParseError:
        return
    assert isinstance(batch, StatementBatch)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_give_a_parse_error_or_a_batch(raw):
    try:
        parse(raw)
    except ParseError:
        pass
