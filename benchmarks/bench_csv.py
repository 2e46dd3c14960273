"""CSV intake speed: a million billing rows parsed AND validated, beside two baselines.

Why it exists: the target is 1,000,000 rows in under 5 s on a 2-core box. The generated file has the
shape of sample_files/demo-utility/billing-2026-11.csv (Windows-1252, ';', decimal comma,
dd/mm/yyyy) and realistic uniqueness: every invoice has its own debtor, so e-mail addresses, phone
numbers, IBANs and OGMs are (nearly) all distinct and per-value library calls cannot hide behind a
cache. About 0.1 % of the rows carry one mistake each, as real files do.

Baselines: `pl.read_csv(path, infer_schema=False)` (reading only, no validation) and a naive
per-row Python validation (csv module, Decimal, strptime, python-stdnum, phonenumbers) timed on 50k
rows and extrapolated.

    python benchmarks/bench_csv.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import resource
import statistics
import tempfile
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import phonenumbers
import polars as pl
from stdnum import iban as stdnum_iban
from stdnum import vatin
from stdnum.be import ogm_vcs

from creditflow.config.profiles import load_profile
from creditflow.parsers.csv_invoices import CsvInvoiceParser

PROFILE = Path(__file__).resolve().parent.parent / "sample_files/creditors/demo-utility.yaml"

FIRST = ["Jan", "Marie", "Luc", "Françoise", "Sofie", "Olivier", "Eline", "Sarah", "Thomas", "Jürgen",
         "Nathalie", "Pieter", "Isabelle", "Koen", "Ahmed", "Anneleen", "Laurent", "Hannah", "Wim",
         "Delphine", "Bert", "James", "Chantal", "Femke", "Stefan", "Lotte", "Emma", "Julien"]
LAST = ["Peeters", "Dubois", "Janssens", "Lejeune", "Claes", "Lambert", "Vermeulen", "O'Connor",
        "Wouters", "Krings", "Renard", "De Smet", "Martin", "Mertens", "El Amrani", "Goossens",
        "Dupont", "Müller", "Van den Broeck", "Lemaire", "Maes", "Leroy", "Jacobs", "Heinen"]
STREETS = ["Kerkstraat", "Stationsstraat", "Rue de la Loi", "Chaussée de Gand", "Hauptstraße",
           "Markt", "Avenue Louise", "Steenweg op Brussel", "Rue Haute", "Dorpsstraat"]
PLACES = [("9000", "Gent"), ("2000", "Antwerpen"), ("1000", "Bruxelles"), ("4000", "Liège"),
          ("3000", "Leuven"), ("8000", "Brugge"), ("5000", "Namur"), ("4700", "Eupen"),
          ("6000", "Charleroi"), ("3500", "Hasselt")]
DOMAINS = ["telenet.be", "skynet.be", "gmail.com", "proximus.be", "hotmail.com", "voo.be"]
LANGUAGES = ["nl", "fr", "de", "en", ""]
DESCRIPTIONS = {"nl": "Voorschot energie november 2026", "fr": "Acompte énergie novembre 2026",
                "de": "Abschlag Energie November 2026", "en": "Energy advance November 2026",
                "": "Voorschot energie november 2026"}
HEADER = ["Factuurnummer", "Factuurdatum", "Vervaldatum", "Bedrag", "Munt", "Klantnummer", "Naam",
          "Straat", "Postcode", "Gemeente", "Land", "E-mail", "GSM", "Taal", "Btw-nummer", "IBAN",
          "Gestructureerde mededeling", "Omschrijving"]


def _digits(rng: np.random.Generator, count: int, width: int) -> pl.Series:
    return pl.Series(rng.integers(0, 10**width, count, dtype=np.int64)).cast(pl.String).str.pad_start(width, "0")


def generate(path: Path, rows: int, seed: int = 2026) -> None:
    """Write the benchmark file (vectorised: the generator should not dominate the run)."""
    rng = np.random.default_rng(seed)
    n = rows

    def pick(values: list[str], weights: list[float] | None = None) -> pl.Series:
        return pl.Series(np.asarray(values, dtype=object)[rng.choice(len(values), n, p=weights)], dtype=pl.String)

    def share(p: float) -> pl.Series:
        return pl.Series(rng.random(n) < p)

    index = pl.int_range(n, eager=True)
    issue_day = pl.Series(rng.integers(1, 28, n)).cast(pl.String).str.pad_start(2, "0")
    euros = pl.Series(rng.integers(5, 5000, n)).cast(pl.String)
    cents = pl.Series(rng.integers(0, 100, n)).cast(pl.String).str.pad_start(2, "0")
    first, last = pick(FIRST), pick(LAST)
    place = rng.choice(len(PLACES), n)
    language = pick(LANGUAGES, [0.55, 0.35, 0.03, 0.05, 0.02])
    bank, account = _digits(rng, n, 3), _digits(rng, n, 7)
    ogm_body = (pl.lit(1_000_000_000) + index).cast(pl.String)
    vat_body = pl.lit("0") + _digits(rng, n, 7)
    mobile = pl.lit("04") + pick(["70", "72", "75", "78", "84", "86", "89", "92", "95", "99"])
    mobile_rest = _digits(rng, n, 6)
    frame = pl.DataFrame({
        "i": index, "issue_day": issue_day, "euros": euros, "cents": cents, "first": first,
        "last": last, "language": language, "bank": bank, "account": account,
        "street_no": pl.Series(rng.integers(1, 250, n)).cast(pl.String), "street": pick(STREETS),
        "postcode": pl.Series([PLACES[k][0] for k in place]), "city": pl.Series([PLACES[k][1] for k in place]),
        "domain": pick(DOMAINS), "vat_body": _digits(rng, n, 7), "mobile_rest": mobile_rest,
        "has_email": share(0.55), "has_phone": share(0.45), "has_iban": share(0.30),
        "has_vat": share(0.04), "has_ogm": share(0.10), "intl_phone": share(0.3),
        "mistake": pl.Series(rng.integers(0, 1000, n)),
    }).with_columns(mobile.alias("mobile"), vat_body.alias("vat10"), ogm_body.alias("ogm_body"))
    bban10 = pl.col("bank") + pl.col("account")
    bban = bban10 + (pl.when(bban10.cast(pl.Int64) % 97 == 0).then(97).otherwise(bban10.cast(pl.Int64) % 97)
                     ).cast(pl.String).str.pad_start(2, "0")
    iban_check = (98 - (bban + pl.lit("111400")).cast(pl.UInt64) % 97).cast(pl.String).str.pad_start(2, "0")
    vat_check = (97 - pl.col("vat10").cast(pl.Int64) % 97).cast(pl.String).str.pad_start(2, "0")
    ogm_mod = pl.col("ogm_body").cast(pl.Int64) % 97
    ogm = pl.col("ogm_body") + pl.when(ogm_mod == 0).then(97).otherwise(ogm_mod).cast(pl.String).str.pad_start(2, "0")
    euros_grouped = pl.when(pl.col("euros").str.len_chars() > 3).then(
        pl.col("euros").str.slice(0, pl.col("euros").str.len_chars() - 3) + pl.lit(".")
        + pl.col("euros").str.slice(-3)).otherwise(pl.col("euros"))
    phone = pl.when(pl.col("intl_phone")).then(
        pl.lit("+32 ") + pl.col("mobile").str.slice(1) + pl.lit(" ") + pl.col("mobile_rest")
    ).otherwise(pl.col("mobile") + pl.lit(" ") + pl.col("mobile_rest").str.slice(0, 2) + pl.lit(" ")
                + pl.col("mobile_rest").str.slice(2, 2) + pl.lit(" ") + pl.col("mobile_rest").str.slice(4))
    email = (pl.col("first").str.to_lowercase().str.replace_all(r"[^a-z]", "") + pl.lit(".")
             + pl.col("last").str.to_lowercase().str.replace_all(r"[^a-z]", "")
             + pl.col("i").cast(pl.String) + pl.lit("@") + pl.col("domain"))
    mistake = pl.col("mistake")
    out = frame.select(
        (pl.lit("DN-2026-") + pl.col("i").cast(pl.String).str.pad_start(7, "0")).alias("Factuurnummer"),
        (pl.col("issue_day") + pl.lit("/11/2026")).alias("Factuurdatum"),
        pl.when(mistake == 1).then(pl.lit("01/10/2026")).otherwise(
            pl.col("issue_day") + pl.lit("/12/2026")).alias("Vervaldatum"),
        pl.when(mistake == 2).then(pl.lit("12.50")).otherwise(
            euros_grouped + pl.lit(",") + pl.col("cents")).alias("Bedrag"),
        pl.lit("EUR").alias("Munt"),
        (pl.lit("KL-") + pl.col("i").cast(pl.String).str.pad_start(8, "0")).alias("Klantnummer"),
        pl.when(mistake == 3).then(pl.lit("")).otherwise(
            pl.col("first") + pl.lit(" ") + pl.col("last")).alias("Naam"),
        (pl.col("street") + pl.lit(" ") + pl.col("street_no")).alias("Straat"),
        pl.col("postcode").alias("Postcode"), pl.col("city").alias("Gemeente"), pl.lit("BE").alias("Land"),
        pl.when(mistake == 4).then(pl.lit("nobody@nowhere")).when(pl.col("has_email")).then(email)
        .otherwise(pl.lit("")).alias("E-mail"),
        pl.when(pl.col("has_phone")).then(phone).otherwise(pl.lit("")).alias("GSM"),
        pl.col("language").alias("Taal"),
        pl.when(pl.col("has_vat")).then(pl.lit("BE") + pl.col("vat10") + vat_check).otherwise(pl.lit("")).alias("Btw-nummer"),
        pl.when(mistake == 5).then(pl.lit("BE00000000000000")).when(pl.col("has_iban")).then(
            pl.lit("BE") + iban_check + bban).otherwise(pl.lit("")).alias("IBAN"),
        pl.when(pl.col("has_ogm")).then(
            pl.lit("+++") + ogm.str.slice(0, 3) + pl.lit("/") + ogm.str.slice(3, 4) + pl.lit("/")
            + ogm.str.slice(7) + pl.lit("+++")).otherwise(pl.lit("")).alias("Gestructureerde mededeling"),
        pl.col("language").replace_strict(DESCRIPTIONS).alias("Omschrijving"),
    )
    text = out.write_csv(separator=";", line_terminator="\r\n", quote_style="necessary")
    path.write_bytes(text.encode("cp1252"))


# -- naive per-row baseline -------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def naive_validate(text: str, limit: int) -> tuple[int, int]:
    """The obvious per-row loop, for comparison: csv module + Decimal + strptime + libraries."""
    accepted = rejected = 0
    seen: set[str] = set()
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=";")
    for number, row in enumerate(reader):
        if number >= limit:
            break
        ok = True
        try:
            amount = Decimal(row["Bedrag"].replace(".", "").replace(",", "."))
            ok &= amount > 0 and amount == amount.quantize(Decimal("0.01"))
            issue = datetime.strptime(row["Factuurdatum"], "%d/%m/%Y")
            ok &= datetime.strptime(row["Vervaldatum"], "%d/%m/%Y") >= issue
        except (InvalidOperation, ValueError):
            ok = False
        ok &= bool(row["Naam"].strip()) and row["Factuurnummer"] not in seen
        seen.add(row["Factuurnummer"])
        if row["E-mail"]:
            ok &= bool(_EMAIL.match(row["E-mail"]))
        if row["IBAN"]:
            ok &= stdnum_iban.is_valid(row["IBAN"], check_country=False)
        if row["Btw-nummer"]:
            ok &= vatin.is_valid(row["Btw-nummer"])
        if row["Gestructureerde mededeling"]:
            ok &= ogm_vcs.is_valid(row["Gestructureerde mededeling"])
        if row["GSM"]:
            try:
                ok &= phonenumbers.is_valid_number(phonenumbers.parse(row["GSM"], "BE"))
            except phonenumbers.NumberParseException:
                ok = False
        accepted += ok
        rejected += not ok
    return accepted, rejected


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(function, repeat: int) -> tuple[float, float, object]:
    """Median wall seconds, median CPU seconds (all threads) and the last result. CPU time is
    printed too because a shared box's load inflates wall time."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), _cpu()
        result = function()
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu_start)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--rows", type=int, default=1_000_000)
    arguments.add_argument("--repeat", type=int, default=3)
    arguments.add_argument("--naive-rows", type=int, default=50_000)
    options = arguments.parse_args()

    parser = CsvInvoiceParser(load_profile(PROFILE).csv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "billing-bench.csv"
        start = time.perf_counter()
        generate(path, options.rows)
        size = path.stat().st_size
        print(f"generated {options.rows:,} rows, {size / 1e6:.0f} MB cp1252, "
              f"in {time.perf_counter() - start:.1f} s")

        read_s, read_cpu, table = _timed(
            lambda: pl.read_csv(path, separator=";", infer_schema=False, encoding="utf8-lossy"),
            options.repeat,
        )
        ours_s, ours_cpu, batch = _timed(
            lambda: parser.parse(path.read_bytes(), source=path.name), options.repeat
        )
        text = path.read_bytes().decode("cp1252")
        naive_s, naive_cpu, (naive_ok, naive_bad) = _timed(
            lambda: naive_validate(text, options.naive_rows), 1
        )
    scale = options.rows / options.naive_rows
    naive_s, naive_cpu = naive_s * scale, naive_cpu * scale

    rows = options.rows
    print(f"load average before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (wall time is only meaningful on an idle box)")
    print(f"{'':42}{'wall s':>9}{'cpu s':>9}{'rows/s (wall)':>15}")
    for label, wall, cpu in (
        ("polars read_csv only (baseline)", read_s, read_cpu),
        ("creditflow parse + validate (ours)", ours_s, ours_cpu),
        (f"naive per-row Python (x{scale:.0f} of {options.naive_rows:,})", naive_s, naive_cpu),
    ):
        print(f"{label:42}{wall:9.2f}{cpu:9.2f}{rows / wall:15,.0f}")
    print(f"ours: {batch.invoices.height:,} accepted, {len({e.row for e in batch.errors}):,} rejected "
          f"rows ({len(batch.errors):,} errors); baseline read {table.height:,} rows; naive: "
          f"{naive_ok:,} ok / {naive_bad:,} bad of {options.naive_rows:,}")
    per_million = ours_s * 1_000_000 / rows
    print(f"target 1,000,000 rows < 5 s wall: {'met' if per_million < 5 else 'NOT met'} "
          f"({per_million:.2f} s per million rows)")


if __name__ == "__main__":
    main()
