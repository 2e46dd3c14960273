"""Write a large, valid, realistic CODA 2.x file for the parser benchmark.

Why a generator and not a real file: real statements are private and small. This one mixes what a
Belgian creditor's account really receives, so the benchmark exercises every costly path of the parser:
credits with a 101 OGM and counterparty records (2.2, 2.3, 3.1/3.2 type 001), free-text payments whose
communication continues into 2.2 and 2.3, bank globalisations (type 2) with type-6 details, SEPA direct
debits (127, decoded in Python), and plain bank costs. Statements hold at most 9,000 movements (the
sequence number wraps at 9999) and each has a correct trailer and balance, so the parser must produce no
warning on it. The encoding is cp1252, as banks send it, with some accented names.

    python benchmarks/gen_coda.py [movements=500000] [path=benchmarks/out/big.cod] [seed=7]
"""

from __future__ import annotations

import random
import sys
from datetime import date, timedelta
from pathlib import Path

NAMES = ["JANSSENS BV", "Société Générale SA", "PEETERS MARC", "Dupont & Fils SPRL", "MAES NV",
         "Café De Kroon", "WILLEMS ANN", "Crèmerie Lefèvre", "CLAES BVBA", "GOOSSENS TOM"]
STREETS = ["KERKSTRAAT 12", "Rue de la Loi 16", "STATIONSSTRAAT 101", "Chaussée de Wavre 250", "MEIR 1"]
PLACES = ["2000 ANTWERPEN", "1000 Bruxelles", "9000 GENT", "4000 Liège", "3000 LEUVEN"]
BICS = ["GEBABEBB", "KREDBEBB", "BBRUBEBB", "GKCCBEBB", "ARSPBE22"]
TEXTS = ["Factuur 2024-0042 en 2024-0043 betaling voor de maand maart met excuses voor de vertraging",
         "Paiement facture 88231 solde", "Invoice 7781 partial payment, rest follows next week as agreed",
         "Huur april", "Remboursement trop-perçu dossier 5512/AB"]


def _rec(text: str) -> str:
    if len(text) != 128:
        raise AssertionError(f"record of {len(text)} characters: {text!r}")
    return text


def _amount(milli: int) -> str:
    return ("1" if milli < 0 else "0") + f"{abs(milli):015d}"


def _d(day: date) -> str:
    return day.strftime("%d%m%y")


def _ogm(rng: random.Random) -> str:
    base = rng.randrange(10**9, 10**10)
    return f"{base:010d}{(base % 97) or 97:02d}"


def _iban(rng: random.Random) -> str:
    first = int(rng.choice(("001", "063", "068", "310", "363", "734", "737")) + f"{rng.randrange(10**7):07d}")
    bban = f"{first:010d}{(first % 97) or 97:02d}"  # a Belgian BBAN carries its own mod-97 check
    check = 98 - int(bban + "111400") % 97
    return f"BE{check:02d}{bban}"


class _Statement:
    def __init__(self, rng: random.Random, number: int, day: date, account: str, old_balance: int):
        self.rng, self.number, self.day, self.account = rng, number, day, account
        self.lines: list[str] = []
        self.debit = self.credit = 0
        self.old = old_balance
        self.seq = 0

    def _m21(self, seq, det, ref, milli, code, comm_flag, comm, glob="0", next_code="1", link="0"):
        return _rec(f"21{seq:04d}{det:04d}{ref:<21.21}{_amount(milli)}{_d(self.day)}{code}{comm_flag}"
                    f"{comm:<53.53}{_d(self.day)}{self.number % 1000:03d}{glob}{next_code} {link}")

    def _m22(self, seq, det, comm="", cref="", bic="", next_code="1", link="0"):
        return _rec(f"22{seq:04d}{det:04d}{comm:<53.53}{cref:<35.35}{bic:<11.11}{'':<16}{next_code} {link}")

    def _m23(self, seq, det, account, name, comm="", link="0"):
        return _rec(f"23{seq:04d}{det:04d}{account:<34.34}EUR{name:<35.35}{comm:<43.43}0 {link}")

    def _info_001(self, seq, det, ref, code, name, street, place):
        return [
            _rec(f"31{seq:04d}{det:04d}{ref:<21.21}{code}1001{name:<70.70}{'':<12}1 0"),
            _rec(f"32{seq:04d}{det:04d}{street:<35.35}{place:<35.35}{'':<35}{'':<10}0 0"),
        ]

    def _book(self, milli: int):
        if milli > 0:
            self.credit += milli
        else:
            self.debit -= milli

    def add(self, kind: str) -> int:
        """Append one movement (a globalisation counts its booking and details); returns 2.1 count."""
        rng = self.rng
        self.seq += 1
        seq = self.seq
        ref = f"BR{self.number:05d}{seq:06d}X"
        name, bic, iban = rng.choice(NAMES), rng.choice(BICS), _iban(rng)
        if kind == "ogm":
            milli = rng.randrange(1_000, 5_000_000)
            self._book(milli)
            self.lines += [
                self._m21(seq, 0, ref, milli, "00150000", "1", "101" + _ogm(rng), link="0"),
                self._m22(seq, 0, bic=bic),
                self._m23(seq, 0, iban, name, link="1"),
                *self._info_001(seq, 1, ref, "00150000", name, rng.choice(STREETS), rng.choice(PLACES)),
            ]
            return 1
        if kind == "free":
            milli = rng.randrange(-3_000_000, 3_000_000) or 1
            self._book(milli)
            text = rng.choice(TEXTS) + f" ref {rng.randrange(10**6)}"
            self.lines += [
                self._m21(seq, 0, ref, milli, "00150000" if milli > 0 else "00101000", "0", text[:53]),
                self._m22(seq, 0, text[53:106], cref=f"E2E{rng.randrange(10**9)}", bic=bic),
                self._m23(seq, 0, iban, name, text[106:149]),
            ]
            return 1
        if kind == "sdd":
            milli = -rng.randrange(1_000, 500_000)
            self._book(milli)
            content = (f"{_d(self.day)}110{'BE98ZZZ0123456789':<35}{'MANDATE' + str(rng.randrange(10**6)):<35}"
                       f"{'Abonnement ' + str(rng.randrange(10**5)):<62}" + " " * 5)
            zone = "127" + content
            self.lines += [
                self._m21(seq, 0, ref, milli, "00501000", "1", zone[:53]),
                self._m22(seq, 0, zone[53:106], cref=f"E2E{rng.randrange(10**9)}", bic=bic),
                self._m23(seq, 0, iban, name, zone[106:149]),
            ]
            return 1
        if kind == "glob":
            details = [rng.randrange(5_000, 400_000) for _ in range(rng.randrange(2, 6))]
            total = sum(details)
            self._book(total)
            self.lines.append(self._m21(seq, 0, ref, total, "20150000", "0", "GLOBALISATIE VAN BETALINGEN",
                                        glob="1", next_code="0"))
            for det, milli in enumerate(details, start=1):
                name, bic, iban = rng.choice(NAMES), rng.choice(BICS), _iban(rng)
                self.lines += [
                    self._m21(seq, det, ref, milli, "60150000", "1", "101" + _ogm(rng)),
                    self._m22(seq, det, bic=bic),
                    self._m23(seq, det, iban, name),
                ]
            return 1 + len(details)
        milli = -rng.randrange(100, 20_000)  # bank costs, a lone 2.1
        self._book(milli)
        self.lines.append(self._m21(seq, 0, ref, milli, "03537000", "0", "BEHEERSKOSTEN", next_code="0"))
        return 1

    def render(self) -> list[str]:
        acct = f"{self.account:<31}   EUR"
        new = self.old + self.credit - self.debit
        head = _rec(f"00000{_d(self.day)}72505        {'00012345':<10}{'CREDITFLOW TEST NV':<26}{'KREDBEBB':<11}"
                    f"{'00123456789':<11} 00000{'':<16}{'':<16}{'':<7}2")
        old = _rec(f"12{self.number % 1000:03d}{acct}{_amount(self.old)}{_d(self.day - timedelta(days=1))}"
                   f"{'CREDITFLOW TEST NV':<26}{'Zichtrekening':<35}{self.number % 1000:03d}")
        newr = _rec(f"8{self.number % 1000:03d}{acct}{_amount(new)}{_d(self.day)}{'':<64}0")
        count = 2 + len(self.lines)
        trailer = _rec(f"9{'':<15}{count:06d}{self.debit:015d}{self.credit:015d}{'':<75}2")
        return [head, old, *self.lines, newr, trailer]


def generate(movements: int, seed: int = 7, per_statement: int = 9_000) -> tuple[str, int, int]:
    """Text of a file with at least `movements` 2.1 records; returns (text, 2.1 records, statements)."""
    rng = random.Random(seed)
    kinds = ["ogm"] * 55 + ["free"] * 20 + ["glob"] * 8 + ["sdd"] * 7 + ["cost"] * 10
    out: list[str] = []
    done = statements = 0
    day = date(2024, 1, 2)
    while done < movements:
        statements += 1
        st = _Statement(rng, statements, day, _iban(rng), rng.randrange(0, 10**9))
        in_statement = 0
        while in_statement < per_statement and done + in_statement < movements:
            in_statement += st.add(rng.choice(kinds))
        done += in_statement
        out += st.render()
        day += timedelta(days=1)
    return "\n".join(out) + "\n", done, statements


def main() -> None:
    movements = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent / "out" / "big.cod"
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    text, count, statements = generate(movements, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("cp1252"))
    print(f"wrote {path}: {count} movement records (2.1), {statements} statements, "
          f"{text.count(chr(10))} records, {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
