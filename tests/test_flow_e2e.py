"""The README's main job through real (ephemeral) Prefect: sample file in, PDFs and messages out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pymupdf
import pytest
import zxingcpp
from stdnum.be import ogm_vcs

from creditflow.flows import intake as intake_flow

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_files" / "demo-utility" / "billing-2026-11.csv"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "var"
    monkeypatch.setenv("CREDITFLOW_HOME", str(home))
    monkeypatch.setenv("CREDITFLOW_PROFILES_DIR", str(REPO / "sample_files" / "creditors"))
    monkeypatch.delenv("CREDITFLOW_DATABASE_URL", raising=False)
    intake_flow.reset_runtime()
    yield home
    intake_flow.reset_runtime()


def decode_qr(pdf_path: Path) -> bytes:
    with pymupdf.open(pdf_path) as pdf:
        pix = pdf[0].get_pixmap(dpi=150, colorspace=pymupdf.csGRAY)
    import numpy as np

    image = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width)
    (result,) = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return bytes(result.bytes)


def test_flow_run_twice_on_sample_file(prefect_harness, env):
    inbox = env / "dropzone" / "demo-utility" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copyfile(SAMPLE, inbox / SAMPLE.name)

    first = intake_flow.billing_intake()
    (file_outcome,) = first.files
    assert file_outcome.state == "processed"
    pdfs = sorted((env / "documents" / "demo-utility").glob("*.pdf"))
    assert len(pdfs) == file_outcome.accepted == first.rendered == first.sent
    assert first.rejected == file_outcome.rejected >= 5

    for pdf in pdfs:  # every QR is a valid EPC payload whose reference passes the OGM check
        lines = decode_qr(pdf).decode("utf-8").split("\n")
        assert lines[:4] == ["BCD", "002", "1", "SCT"]
        reference = lines[9] or lines[10].strip("+").replace("/", "")
        assert ogm_vcs.is_valid(reference), (pdf.name, lines)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["billing-intake-summary"]))
            )

    import asyncio

    found = asyncio.run(artifacts())
    assert found and "Billing intake" in found[0].data

    shutil.copyfile(SAMPLE, inbox / SAMPLE.name)  # the creditor sends the same file again
    second = intake_flow.billing_intake()
    assert [f.state for f in second.files] == ["duplicate"]
    assert second.accepted == second.rendered == second.sent == 0
    assert sorted((env / "documents" / "demo-utility").glob("*.pdf")) == pdfs


def test_statement_dropped_in_inbox_is_reconciled_by_the_nightly_flow(prefect_harness, env):
    """Issue 4 + 6 through Prefect: intake parks the CODA file, the nightly flow pays the invoices."""
    import sys

    from sqlalchemy import select

    from creditflow.flows.reconcile import nightly_reconciliation
    from creditflow.ledger.models import Invoice, SourceFile

    from statement_builders import coda_file, credit

    inbox = env / "dropzone" / "demo-utility" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copyfile(SAMPLE, inbox / SAMPLE.name)
    intake_flow.billing_intake()
    rt = intake_flow.runtime()
    with rt.sessions() as s:
        first, second = s.scalars(select(Invoice).order_by(Invoice.id).limit(2)).all()
    statement = coda_file(1, [credit(1, first.amount_cents, ogm=first.structured_reference),
                              credit(2, second.amount_cents - 1000, ogm=second.structured_reference)])
    (inbox / "kbc-2026-11-20.cod").write_bytes(statement)

    parked = intake_flow.billing_intake()
    assert [f.state for f in parked.files] == ["statement"]

    night = nightly_reconciliation()
    assert night.booked.allocations_booked >= 2
    with rt.sessions() as s:
        paid, partial = (s.get(Invoice, first.id), s.get(Invoice, second.id))
        assert (paid.state, paid.open_cents) == ("paid", 0)
        assert (partial.state, partial.open_cents) == ("partially_paid", 1000)
        statement_file = s.scalars(select(SourceFile).where(SourceFile.format == "coda")).one()
        assert statement_file.state == "processed"
    area = env / "dropzone" / "demo-utility"
    assert any((area / "archive").glob("*kbc-2026-11-20.cod"))
    assert any((area / "reports").iterdir())

    again = nightly_reconciliation()  # nothing new parked: the night changes nothing
    assert again.booked.allocations_booked == 0


def test_a_failing_file_fails_the_run_naming_it_after_the_others_are_done(prefect_harness, env, monkeypatch):
    """Issue 4: a failed run's state message says which file and why; the rest of the batch goes on."""
    from creditflow.pipeline import intake as steps
    from creditflow.stores.base import StoreError

    inbox = env / "dropzone" / "demo-utility" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copyfile(SAMPLE, inbox / SAMPLE.name)
    (inbox / "broken-upload.csv").write_bytes(b"whatever")
    real = steps.ingest_file

    def flaky(rt, creditor_id, name):
        if name == "broken-upload.csv":
            raise StoreError("connection reset while reading broken-upload.csv")
        return real(rt, creditor_id, name)

    monkeypatch.setattr(steps, "ingest_file", flaky)
    monkeypatch.setattr(intake_flow, "ingest_file", intake_flow.ingest_file.with_options(retries=0))
    state = intake_flow.billing_intake(return_state=True)
    assert state.is_failed()
    assert "demo-utility/broken-upload.csv" in state.message and "connection reset" in state.message
    assert (inbox / "broken-upload.csv").exists()  # left for the next run
    assert len(list((env / "documents" / "demo-utility").glob("*.pdf"))) == 44  # the good file went through
