"""How long storing a big billing file takes: `insert_invoices` + `assign_references`.

Baseline: the plain-library way, ORM objects (`session.add_all` + flush), which is what most code
would write first. Usage:

    python benchmarks/bench_ledger_insert.py [ROWS] [DATABASE_URL ...]

Without a URL it runs on a temporary SQLite file. Pass a PostgreSQL URL (an empty database) to
measure there too, e.g. postgresql://postgres@127.0.0.1:5433/bench.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl
from sqlalchemy import delete, text

from creditflow.ledger import db, files, invoices
from creditflow.ledger.models import Invoice, SourceFile, metadata, utcnow
from creditflow.parsers.schema import INVOICE_SCHEMA


def billing_frame(rows: int, prefix: str) -> pl.DataFrame:
    data = {
        "source_row": range(2, rows + 2),
        "invoice_number": [f"{prefix}{n:07d}" for n in range(rows)],
        "document_type": ["invoice"] * rows,
        "issue_date": [date(2026, 5, 1)] * rows,
        "due_date": [date(2026, 5, 31)] * rows,
        "amount_cents": [1_000 + n % 50_000 for n in range(rows)],
        "currency": ["EUR"] * rows,
        "debtor_name": [f"Debtor {n}" for n in range(rows)],
        "debtor_street": ["Kerkstraat 1"] * rows,
        "debtor_postcode": ["9000"] * rows,
        "debtor_city": ["Gent"] * rows,
        "debtor_country": ["BE"] * rows,
        "debtor_email": [f"debtor{n}@example.be" for n in range(rows)],
        "debtor_language": ["nl"] * rows,
        "customer_number": [f"C{n}" for n in range(rows)],
        "description": ["Electricity May 2026"] * rows,
    }
    for column in INVOICE_SCHEMA:
        data.setdefault(column, [None] * rows)
    return pl.DataFrame(data, schema=INVOICE_SCHEMA)


def prepare(url: str):
    engine = db.make_engine(url)
    metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    db.upgrade(engine)
    factory = db.session_factory(engine)
    with db.transaction(factory) as session:
        files.upsert_creditor(session, id="bench", legal_name="Bench NV", vat="BE0403170701",
                              iban="BE71096123456769", bic="GKCCBEBB", language="nl")
    return engine, factory


def claim(factory, tag: str) -> int:
    with db.transaction(factory) as session:
        return files.claim_file(session, creditor_id="bench", store="local", path=tag, name=tag,
                                size=1, sha256=f"{tag:0>64}"[:64]).id


def ours(factory, frame: pl.DataFrame) -> tuple[float, float]:
    """Two steps (insert, then assign_references) as the intake does it today."""
    file_id = claim(factory, "ours")
    started = time.perf_counter()
    with db.transaction(factory) as session:
        ids = invoices.insert_invoices(session, creditor_id="bench", source_file_id=file_id, invoices=frame)
        inserted = time.perf_counter()
        invoices.assign_references(session, ids, kind="ogm")
    done = time.perf_counter()
    assert len(ids) == frame.height
    return inserted - started, done - started


def ours_one_pass(factory, frame: pl.DataFrame) -> float:
    file_id = claim(factory, "once")
    started = time.perf_counter()
    with db.transaction(factory) as session:
        ids = invoices.insert_invoices(session, creditor_id="bench", source_file_id=file_id,
                                       invoices=frame, generate_references="ogm")
    assert len(ids) == frame.height
    return time.perf_counter() - started


def baseline(factory, frame: pl.DataFrame) -> float:
    file_id = claim(factory, "orm")
    started = time.perf_counter()
    with db.transaction(factory) as session:
        now = utcnow()
        objects = [
            Invoice(**row, creditor_id="bench", source_file_id=file_id, open_cents=row["amount_cents"],
                    state="open", reference_generated=False, created_at=now)
            for row in frame.to_dicts()
        ]
        session.add_all(objects)
        session.flush()
    return time.perf_counter() - started


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    urls = sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        if not urls:
            urls = [f"sqlite:///{Path(tmp) / 'bench.db'}"]
        print(f"{rows:,} invoices, 21 columns")
        for url in urls:
            engine, factory = prepare(url)
            cpu = time.process_time()
            insert_s, total_s = ours(factory, billing_frame(rows, "A"))
            once_s = ours_one_pass(factory, billing_frame(rows, "C"))
            cpu = time.process_time() - cpu
            orm_s = baseline(factory, billing_frame(rows, "B"))
            backend = engine.dialect.name
            print(f"{backend:10s} insert_invoices {insert_s:6.2f} s ({rows / insert_s:,.0f} rows/s)"
                  f" | + assign_references {total_s:6.2f} s"
                  f" | one pass (generate_references) {once_s:6.2f} s"
                  f" | our client CPU for all three {cpu:5.2f} s"
                  f" | baseline ORM add_all+flush, no references {orm_s:6.2f} s ({rows / orm_s:,.0f} rows/s)")
            with db.transaction(factory) as session:
                session.execute(delete(Invoice))
                session.execute(delete(SourceFile))
            engine.dispose()


if __name__ == "__main__":
    main()
