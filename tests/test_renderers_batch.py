"""Batch rendering: one valid PDF per invoice, safe names, input order, worker pool."""

from dataclasses import replace
from datetime import date
from pathlib import Path

import pymupdf

from creditflow.config.profiles import load_profile
from creditflow.renderers.batch import render_batch
from creditflow.renderers.document import InvoiceDocument

PROFILE = load_profile(Path(__file__).parent / "fixtures" / "renderers" / "creditor.yaml")


def make_docs(count: int) -> list[InvoiceDocument]:
    base = InvoiceDocument.from_parts(PROFILE, dict(
        invoice_number="F2026-1", issue_date=date(2026, 3, 1), due_date=date(2026, 3, 31), amount_cents=1000,
        debtor_name="Jan Peeters", debtor_street="Kerkstraat 1", debtor_postcode="9000", debtor_city="Gent",
        structured_reference="090933755493", reference_kind="ogm", invoice_id="seed"), None)
    return [replace(base, invoice_number=f"../F/2026 {i}", document_id=f"id-{i}", amount_cents=1000 + i)
            for i in range(count)]


def _check(paths, docs, out):
    assert len(paths) == len(docs)
    for path, doc in zip(paths, docs):
        assert path.parent == out and path.exists()
        assert "/" not in path.name[len(str(out)):] and not path.name.startswith(".")
        assert path.name.endswith(f"-{doc.document_id}.pdf")
        pdf = pymupdf.open(path)
        assert pdf.page_count == 1
        assert doc.invoice_number in pdf[0].get_text()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_in_process_batch(tmp_path):
    docs = make_docs(5)
    paths = render_batch(docs, tmp_path, workers=1)
    _check(paths, docs, tmp_path)
    assert paths[0].name == "F_2026_0-id-0.pdf"


def test_two_workers_write_all_pdfs_in_input_order(tmp_path):
    docs = make_docs(24)
    paths = render_batch(docs, tmp_path / "out", workers=2)
    _check(paths, docs, tmp_path / "out")
    assert len(list((tmp_path / "out").glob("*.pdf"))) == 24


def test_rerun_overwrites_and_empty_batch(tmp_path):
    docs = make_docs(3)
    first = [p.read_bytes() for p in render_batch(docs, tmp_path, workers=1)]
    second = [p.read_bytes() for p in render_batch(docs, tmp_path, workers=1)]
    assert first == second and len(list(tmp_path.iterdir())) == 3
    assert render_batch([], tmp_path) == []
