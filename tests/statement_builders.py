"""Tiny writers of CODA and CAMT.053 statements for tests (our own fixtures, built in code)."""

from __future__ import annotations

from datetime import date

ACCOUNT = "BE71096123456769"  # the demo creditor's own account


def put(*fields: tuple[int, str]) -> str:
    chars = [" "] * 128
    for start, text in fields:
        chars[start - 1:start - 1 + len(text)] = list(text)
    return "".join(chars[:128])


def amt(milli: int) -> str:
    return ("1" if milli < 0 else "0") + f"{abs(milli):015d}"


def d6(day: date) -> str:
    return day.strftime("%d%m%y")


def credit(seq: int, cents: int, *, ogm: str | None = None, text: str = "", name: str = "", iban: str = "",
           day: date = date(2026, 11, 20), code: str = "00150000", reversal: bool = False) -> list[str]:
    milli = cents * 10
    flag, zone = ("1", "101" + ogm) if ogm else ("0", text)
    r_type = "1" if reversal else " "
    return [
        put((1, "21"), (3, f"{seq:04d}"), (7, "0000"), (11, f"REF{seq}"), (32, amt(milli)), (48, d6(day)),
            (54, code), (62, flag), (63, zone[:53]), (116, d6(day)), (122, "001"), (125, "0")),
        put((1, "22"), (3, f"{seq:04d}"), (7, "0000"), (113, r_type)),
        put((1, "23"), (3, f"{seq:04d}"), (7, "0000"), (11, iban), (48, name)),
    ]


def coda_file(seq: int, body: list[list[str]], *, old: int = 0, day: date = date(2026, 11, 20),
              new: int | None = None, version: str = "2") -> bytes:
    records = [r for rows in body for r in rows]
    bookings = [r for r in records if r[:2] == "21"]
    moved = sum((-1 if r[31] == "1" else 1) * int(r[32:47]) for r in bookings)
    prev = day.replace(day=day.day - 1)
    recs = [put((1, "1"), (2, "2"), (3, f"{seq:03d}"), (6, f"{ACCOUNT:<34}EUR"), (43, amt(old)), (59, d6(prev)),
                (65, "DEMO NUTSBEDRIJF NV"), (126, f"{seq:03d}")),
            *records,
            put((1, "8"), (2, f"{seq:03d}"), (5, f"{ACCOUNT:<34}EUR"), (42, amt(old + moved if new is None else new)),
                (58, d6(day)))]
    debit = sum(int(r[32:47]) for r in bookings if r[31] == "1")
    cred = sum(int(r[32:47]) for r in bookings if r[31] == "0")
    header = put((1, "00000"), (6, d6(day)), (12, "725"), (15, "05"), (35, "DEMO NUTSBEDRIJF NV"),
                 (61, "GKCCBEBB"), (72, "00403170701"), (84, "00000"), (128, version))
    trailer = put((1, "9"), (17, f"{sum(1 for r in recs if r[0] in '1238'):06d}"), (23, f"{debit:015d}"),
                  (38, f"{cred:015d}"), (128, "2"))
    return ("\n".join([header, *recs, trailer]) + "\n").encode("cp1252")


CAMT_V08 = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def camt_file(entries: list[dict], *, seq: int, old: str, new: str, day: str = "2026-11-22",
              namespace: str = CAMT_V08, account: str = ACCOUNT, account_in: str = "IBAN") -> bytes:
    """A camt.053 statement of credit entries on `account` (in ``Acct/Id/IBAN``, or ``Othr/Id`` when
    `account_in` is "Othr").

    Entry keys: amount, ref (AcctSvcrRef and EndToEndId), "ogm" (a BBA
    reference) or "reference" with "issuer" (or none), else "text"; "name"; "payer_othr" (the debtor
    account in DbtrAcct/Id/Othr/Id); "dated": False drops BookgDt and ValDt; "status": None drops Sts."""
    def account_id(number: str, where: str) -> str:
        return f"<IBAN>{number}</IBAN>" if where == "IBAN" else f"<Othr><Id>{number}</Id></Othr>"

    def entry(e):
        ref, issuer = (e["ogm"], "BBA") if e.get("ogm") else (e.get("reference"), e.get("issuer"))
        tp = f"<Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry><Issr>{issuer}</Issr></Tp>" if issuer else ""
        rmt = (f"<Strd><CdtrRefInf>{tp}<Ref>{ref}</Ref></CdtrRefInf></Strd>" if ref
               else f"<Ustrd>{e.get('text', '')}</Ustrd>")
        status = e.get("status", "BOOK")
        sts = f"<Sts><Cd>{status}</Cd></Sts>" if status else ""
        dates = (f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
                 if e.get("dated", True) else "")
        payer_account = (f"<DbtrAcct><Id>{account_id(e['payer_othr'], 'Othr')}</Id></DbtrAcct>"
                         if e.get("payer_othr") else "")
        return f"""<Ntry><Amt Ccy="EUR">{e['amount']}</Amt><CdtDbtInd>CRDT</CdtDbtInd>{sts}
{dates}<AcctSvcrRef>{e['ref']}</AcctSvcrRef>
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
<NtryDtls><TxDtls><Refs><EndToEndId>{e['ref']}</EndToEndId></Refs><Amt Ccy="EUR">{e['amount']}</Amt>
<CdtDbtInd>CRDT</CdtDbtInd><RltdPties><Dbtr><Pty><Nm>{e.get('name', 'X')}</Nm></Pty></Dbtr>{payer_account}</RltdPties>
<RmtInf>{rmt}</RmtInf></TxDtls></NtryDtls></Ntry>"""

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{namespace}"><BkToCstmrStmt>
<GrpHdr><MsgId>T-{seq}</MsgId><CreDtTm>{day}T06:00:00+01:00</CreDtTm></GrpHdr>
<Stmt><Id>STMT-{seq}</Id><ElctrncSeqNb>{seq}</ElctrncSeqNb><CreDtTm>{day}T05:00:00Z</CreDtTm>
<Acct><Id>{account_id(account, account_in)}</Id><Ccy>EUR</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{old}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{new}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>
{''.join(entry(e) for e in entries)}
</Stmt></BkToCstmrStmt></Document>""".encode()
