"""The intake steps without Prefect: file in, invoices + PDFs + messages out, nothing twice."""

from __future__ import annotations

import csv
import email
import io
import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from creditflow.channels.registry import build_channels
from creditflow.channels.base import PermanentSendError, SendResult, TransientSendError
from creditflow.config import Settings
from creditflow.ledger import outbox as ledger_outbox
from creditflow.ledger.models import Delivery, Event, Invoice, SourceFile
from creditflow.pipeline import dispatch, intake, render
from creditflow.pipeline.runtime import open_runtime

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_files" / "demo-utility" / "billing-2026-11.csv"
CREDITOR = "demo-utility"


@pytest.fixture
def settings(tmp_path, ledger_url) -> Settings:
    return Settings(home=tmp_path / "var", database_url=ledger_url,
                    profiles_dir=REPO / "sample_files" / "creditors", link_secret="test-secret-of-32-bytes-or-so-----")


def drop(settings: Settings, source: Path | bytes, name: str = "billing.csv") -> Path:
    inbox = settings.resolved_dropzone_dir / CREDITOR / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / name
    if isinstance(source, bytes):
        target.write_bytes(source)
    else:
        shutil.copyfile(source, target)
    return target


def run_all(rt):
    outcomes = [intake.ingest_file(rt, c.creditor_id, c.name) for c in intake.pending_files(rt)]
    render.render_pending(rt)
    dispatch.plan_initial(rt, limit=1000)
    sent = dispatch.dispatch_due(rt, limit=1000)
    return outcomes, sent


def outbox_messages(settings: Settings) -> list[str]:
    root = settings.resolved_outbox_dir
    keys = [p.stem for p in (root / "email").glob("*.eml")]
    sms = root / "sms.jsonl"
    if sms.exists():
        keys += [json.loads(line)["key"] for line in sms.read_text().splitlines()]
    keys += [p.stem for p in (root / "post").glob("*.pdf")]
    return keys


def report_rows(path: str) -> list[dict]:
    text = Path(path).read_bytes().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text), delimiter=";"))


def test_sample_file_becomes_invoices_pdfs_and_messages(settings):
    drop(settings, SAMPLE)
    rt = open_runtime(settings)
    (outcome,), sent = run_all(rt)

    assert outcome.state == "processed"
    assert outcome.accepted > 40 and outcome.rejected >= 5
    assert outcome.accepted + outcome.rejected == outcome.rows_total
    with rt.sessions() as s:
        stored = s.scalars(select(Invoice)).all()
    assert len(stored) == outcome.accepted
    assert all(inv.pdf_path and Path(inv.pdf_path).read_bytes().startswith(b"%PDF") for inv in stored)
    assert len({inv.structured_reference for inv in stored}) == len(stored)
    assert sent.sent == outcome.accepted
    assert len(outbox_messages(settings)) == outcome.accepted

    rows = report_rows(outcome.error_report)
    assert len({r["row"] for r in rows}) == outcome.rejected
    assert all(r["field"] and r["code"] and r["message"] for r in rows)
    archived = Path(outcome.archived_to)
    assert archived.read_bytes() == SAMPLE.read_bytes()
    assert not any((settings.resolved_dropzone_dir / CREDITOR / "inbox").iterdir())
    rt.close()


def test_same_file_dropped_again_stores_and_sends_nothing(settings):
    drop(settings, SAMPLE)
    rt = open_runtime(settings)
    run_all(rt)
    with rt.sessions() as s:
        before = s.scalar(select(func.count(Invoice.id)))
    messages_before = sorted(outbox_messages(settings))

    drop(settings, SAMPLE, name="billing-again.csv")
    (outcome,), sent = run_all(rt)
    assert outcome.state == "duplicate"
    assert "identical to file" in outcome.reason
    assert Path(outcome.archived_to).read_bytes() == SAMPLE.read_bytes()  # kept, in errors/
    with rt.sessions() as s:
        assert s.scalar(select(func.count(Invoice.id))) == before
        assert s.scalar(select(func.count(SourceFile.id))) == 1
    assert sent.sent == 0
    assert sorted(outbox_messages(settings)) == messages_before
    rt.close()


def _archived_then_dropped_again(settings) -> tuple:
    """A processed billing.csv whose bytes are back in the inbox under the same name: what a racing
    poller sees on S3 between the winner's copy to archive/ and its delete from the inbox."""
    drop(settings, SAMPLE)
    rt = open_runtime(settings)
    (first,) = [intake.ingest_file(rt, c.creditor_id, c.name) for c in intake.pending_files(rt)]
    assert first.state == "processed"
    return rt, drop(settings, SAMPLE)


def test_a_racer_moving_the_file_is_not_a_duplicate_drop(settings, monkeypatch):
    rt, leftover = _archived_then_dropped_again(settings)
    monkeypatch.setattr(rt.store_for(CREDITOR), "claim_grace", 5.0)
    errors_before = sorted(p.name for p in leftover.parent.parent.joinpath("errors").iterdir())
    racer = threading.Timer(0.2, leftover.unlink)  # the winner's delete, a moment after its copy
    racer.start()
    outcome = intake.ingest_file(rt, CREDITOR, "billing.csv")
    racer.join()
    assert (outcome.state, outcome.reason) == ("skipped", intake.TAKEN_ELSEWHERE)
    assert sorted(p.name for p in leftover.parent.parent.joinpath("errors").iterdir()) == errors_before
    rt.close()


def test_the_same_file_dropped_again_under_its_name_is_a_duplicate(settings, monkeypatch):
    rt, leftover = _archived_then_dropped_again(settings)
    monkeypatch.setattr(rt.store_for(CREDITOR), "claim_grace", 0.05)
    outcome = intake.ingest_file(rt, CREDITOR, "billing.csv")
    assert outcome.state == "duplicate" and "identical to file" in outcome.reason
    assert not leftover.exists() and Path(outcome.archived_to).read_bytes() == SAMPLE.read_bytes()
    rt.close()


def test_crash_between_ledger_and_archive_is_finished_by_next_run(settings, monkeypatch):
    drop(settings, SAMPLE)
    rt = open_runtime(settings)
    from creditflow.stores.local import LocalStore

    real_move = LocalStore.move

    def crash(self, *args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(LocalStore, "move", crash)
    with pytest.raises(OSError):
        intake.ingest_file(rt, CREDITOR, "billing.csv")
    monkeypatch.setattr(LocalStore, "move", real_move)

    (outcome,), _ = run_all(rt)
    assert outcome.state == "completed"
    with rt.sessions() as s:
        assert s.scalar(select(func.count(SourceFile.id))) == 1
        accepted = s.scalar(select(SourceFile.rows_accepted))
        assert s.scalar(select(func.count(Invoice.id))) == accepted
    assert Path(outcome.archived_to).read_bytes() == SAMPLE.read_bytes()
    rt.close()


def test_crash_after_send_before_status_sends_nothing_twice(settings, monkeypatch):
    drop(settings, SAMPLE)
    rt = open_runtime(settings)
    intake.ingest_file(rt, CREDITOR, "billing.csv")
    render.render_pending(rt)
    dispatch.plan_initial(rt, limit=1000)

    calls = {"n": 0}
    real_mark_sent = ledger_outbox.mark_sent

    def crash_on_fifth(session, delivery, provider_id):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("killed after the provider call")
        return real_mark_sent(session, delivery, provider_id)

    monkeypatch.setattr(ledger_outbox, "mark_sent", crash_on_fifth)
    with pytest.raises(RuntimeError):
        dispatch.dispatch_due(rt, limit=1000)
    monkeypatch.setattr(ledger_outbox, "mark_sent", real_mark_sent)

    result = dispatch.dispatch_due(rt, limit=1000)
    assert result.duplicates == 1  # the message of the interrupted attempt was recognised, not resent
    with rt.sessions() as s:
        invoices = s.scalar(select(func.count(Invoice.id)))
        states = s.scalars(select(Delivery.state)).all()
    assert states.count("sent") == invoices
    keys = outbox_messages(settings)
    assert len(keys) == len(set(keys)) == invoices
    rt.close()


def test_whole_file_problem_rejects_file_and_keeps_it(settings):
    drop(settings, b"", name="empty.csv")
    rt = open_runtime(settings)
    (outcome,), _ = run_all(rt)
    assert outcome.state == "rejected"
    assert outcome.reason.startswith("empty_file")
    assert Path(outcome.archived_to).exists()
    (row,) = report_rows(outcome.error_report)
    assert row["code"] == "empty_file"
    with rt.sessions() as s:
        assert s.scalar(select(SourceFile.state)) == "rejected"
        assert s.scalar(select(func.count(Invoice.id))) == 0
    rt.close()


def test_invoice_already_in_ledger_is_a_row_error(settings):
    drop(settings, SAMPLE)
    rt = open_runtime(settings)
    run_all(rt)
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    drop(settings, lines[0] + lines[1], name="resend-one.csv")  # header + first invoice again
    (outcome,), sent = run_all(rt)
    assert outcome.state == "processed" and outcome.accepted == 0 and outcome.rejected == 1
    (row,) = report_rows(outcome.error_report)
    assert row["code"] == "duplicate_in_ledger" and row["row"] == "2"
    assert sent.sent == 0
    rt.close()


def test_upload_in_progress_is_left_alone(settings):
    drop(settings, SAMPLE, name="billing.csv.part")
    drop(settings, SAMPLE, name=".hidden.csv")
    rt = open_runtime(settings)
    assert intake.pending_files(rt) == []
    rt.close()


class _Refusing:
    """A channel that never delivers: every send is a permanent failure."""

    name = "email"

    def __init__(self, error):
        self.error, self.calls = error, 0

    def send(self, message):
        self.calls += 1
        raise self.error

    def close(self):
        pass


def test_permanent_failure_moves_on_to_the_next_channel(settings):
    drop(settings, SAMPLE)
    rt = open_runtime(settings)
    channels = dict(rt.channels())
    refusing = _Refusing(PermanentSendError("550 mailbox unavailable"))
    channels["email"] = refusing
    rt._channels = channels
    run_all(rt)
    dispatch.dispatch_due(rt, limit=1000)  # the fallback deliveries planned by the failures
    assert refusing.calls > 0
    with rt.sessions() as s:
        failed = s.scalars(select(Delivery).where(Delivery.channel == "email")).all()
        assert failed and all(d.state == "failed_permanent" for d in failed)
        for d in failed:
            others = [x for x in ledger_outbox.deliveries_for_invoice(s, d.invoice_id) if x.id != d.id]
            assert others, "a failed e-mail must be followed by another channel or a no-channel marker"
            assert all(x.state in {"sent", "failed_permanent"} for x in others)
        kinds = s.scalars(select(Event.kind)).all()
    assert "delivery.failed" in kinds
    rt.close()


def test_transient_failure_is_retried_later_not_dropped(settings):
    drop(settings, SAMPLE)
    rt = open_runtime(settings)
    channels = dict(rt.channels())
    flaky = _Refusing(TransientSendError("429 too many requests", retry_after=120))
    channels["email"] = flaky
    rt._channels = channels
    run_all(rt)
    with rt.sessions() as s:
        emails = s.scalars(select(Delivery).where(Delivery.channel == "email")).all()
        assert emails and all(d.state == "failed_transient" and d.next_attempt_at for d in emails)
    # Before the retry time nothing is due; after it, the real channel delivers.
    channels["email"] = build_channels(["email"], settings)["email"]
    later = datetime.now(UTC) + timedelta(minutes=5)
    result = dispatch.dispatch_due(rt, limit=1000, now=later)
    assert result.sent == len(emails)
    rt.close()


def test_foreign_currency_ubl_invoice_is_parsed_but_not_collected(settings):
    ubl = (REPO / "tests" / "fixtures" / "ubl" / "invoice-be-ogm.xml").read_bytes()
    sek = ubl.replace(b">EUR<", b">SEK<").replace(b'currencyID="EUR"', b'currencyID="SEK"')
    assert sek != ubl
    drop(settings, sek, name="invoice-sek.xml")
    rt = open_runtime(settings)
    (outcome,), sent = run_all(rt)
    assert outcome.state == "processed" and outcome.accepted == 0 and outcome.rejected == 1
    (row,) = report_rows(outcome.error_report)
    assert row["code"] == "unsupported_currency" and row["field"] == "currency"
    assert sent.sent == 0
    rt.close()


UBL_WITH_PDF = REPO / "tests" / "fixtures" / "ubl" / "invoice-be-ogm.xml"  # embeds a small "%PDF-1.4" file


@pytest.mark.parametrize("send_own_pdf", [True, False])
def test_the_creditors_own_pdf_is_sent_when_its_profile_says_so(tmp_path, ledger_url, send_own_pdf):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    profile = (REPO / "sample_files" / "creditors" / f"{CREDITOR}.yaml").read_text(encoding="utf-8")
    (profiles / f"{CREDITOR}.yaml").write_text(profile + f"\nsend_own_pdf: {str(send_own_pdf).lower()}\n",
                                              encoding="utf-8")
    settings = Settings(home=tmp_path / "var", database_url=ledger_url, profiles_dir=profiles,
                        link_secret="test-secret-of-32-bytes-or-so-----")
    drop(settings, UBL_WITH_PDF, name="invoice.xml")
    rt = open_runtime(settings)
    (outcome,), sent = run_all(rt)
    assert outcome.state == "processed" and outcome.accepted == 1 and sent.sent >= 1
    with rt.sessions() as s:
        invoice = s.scalars(select(Invoice)).one()
    pdf = Path(invoice.pdf_path).read_bytes()
    own = rt.creditor_pdf_path(CREDITOR, invoice.id)
    if send_own_pdf:
        assert Path(invoice.pdf_path) == own and pdf.startswith(b"%PDF-1.4 creditflow test")
        emails = list((settings.resolved_outbox_dir / "email").glob("*.eml"))
        assert emails and all(b"creditflow test" in attachments_of(e) for e in emails)
    else:
        assert not own.exists() and b"creditflow test" not in pdf and pdf.startswith(b"%PDF")
    rt.close()


def attachments_of(eml: Path) -> bytes:
    """The decoded attachments of a stored e-mail, concatenated."""
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    return b"".join(part.get_content() for part in message.iter_attachments())
