"""Our own bank area: statement files for any creditor's account, routed by the account they cover.

Files are dropped in `<dropzone>/_bank/inbox` (and, once, in a bank area on a real sshd), taken by
the same scan and ingest calls as creditor files, claimed under the creditor whose IBAN the
statement is about, collected by `collect_statements` and reconciled by `run_reconciliation`.
"""

from __future__ import annotations

import csv
import io
import shutil
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from creditflow.config import ConfigError, Settings
from creditflow.ledger.models import Event, Invoice, SourceFile
from creditflow.pipeline import intake, reconcile
from creditflow.pipeline.runtime import open_runtime
from creditflow.pipeline.statements_intake import (
    NOT_A_STATEMENT, STATEMENTS, UNKNOWN_ACCOUNT, collect_statements, finish_night, pending_statements,
    statement_accounts,
)
from creditflow.stores.base import ARCHIVE, ERRORS, INBOX, StoreError
from creditflow.stores.local import LocalStore

from statement_builders import ACCOUNT, camt_file, coda_file, credit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_files" / "demo-utility" / "billing-2026-11.csv"
CREDITOR = "demo-utility"
BANK = "_bank"
OTHER_ACCOUNT = "BE68539007547034"  # valid IBAN, same length as ACCOUNT, no creditor's


@pytest.fixture
def settings(tmp_path, ledger_url) -> Settings:
    return Settings(home=tmp_path / "var", database_url=ledger_url,
                    profiles_dir=REPO / "sample_files" / "creditors",
                    link_secret="test-secret-of-32-bytes-or-so-----")


def with_invoices(settings: Settings):
    inbox = settings.resolved_dropzone_dir / CREDITOR / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLE, inbox / SAMPLE.name)
    rt = open_runtime(settings)
    (outcome,) = [intake.ingest_file(rt, c.creditor_id, c.name) for c in intake.pending_files(rt)]
    assert outcome.state == "processed" and outcome.accepted > 2
    return rt


def invoices(rt) -> list[Invoice]:
    with rt.sessions() as s:
        return list(s.scalars(select(Invoice).order_by(Invoice.id)))


def bank_dir(settings: Settings, folder: str) -> Path:
    return settings.resolved_dropzone_dir / BANK / folder


def drop(settings: Settings, name: str, data: bytes) -> None:
    bank_dir(settings, INBOX).mkdir(parents=True, exist_ok=True)
    (bank_dir(settings, INBOX) / name).write_bytes(data)


def take_all(rt, *, settle: bool = False):
    return [intake.ingest_file(rt, c.creditor_id, c.name) for c in intake.scan_inbox(rt, settle=settle).ready]


def statements_for(first: Invoice, second: Invoice) -> tuple[bytes, bytes]:
    coda = coda_file(1, [credit(1, first.amount_cents, ogm=first.structured_reference, name="PAYER A")])
    euros = f"{second.amount_cents // 100}.{second.amount_cents % 100:02d}"
    camt = camt_file([{"amount": euros, "ref": "CAMT-1", "ogm": second.structured_reference}],
                     seq=2, old="0.00", new=euros)
    return coda, camt


def report_rows(path: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(Path(path).read_bytes().decode("utf-8-sig")), delimiter=";"))


def claims(rt) -> list[SourceFile]:
    with rt.sessions() as s:
        return list(s.scalars(select(SourceFile).where(SourceFile.format.is_not(None)).order_by(SourceFile.id)))


def reconcile_parked(rt):
    taken = collect_statements(rt)
    summary = reconcile.run_reconciliation(rt, [(t.name, t.data) for t in taken], as_of=date(2026, 11, 23),
                                           deliver=False)
    moved = finish_night(rt, taken, summary.imported.file_errors)
    return taken, summary, moved


# ---------------------------------------------------------------- local bank area


def test_coda_and_camt_in_bank_area_are_routed_by_account_and_reconciled(settings):
    rt = with_invoices(settings)
    first, second = invoices(rt)[:2]
    coda, camt = statements_for(first, second)
    drop(settings, "day1.cod", coda)
    drop(settings, "day2.xml", camt)

    scan = intake.scan_inbox(rt, settle=False)
    assert sorted((c.creditor_id, c.name) for c in scan.ready) == [(BANK, "day1.cod"), (BANK, "day2.xml")]
    outcomes = {o.name: o for o in (intake.ingest_file(rt, c.creditor_id, c.name) for c in scan.ready)}
    assert {n: (o.state, o.creditor_id) for n, o in outcomes.items()} == {
        "day1.cod": ("statement", CREDITOR), "day2.xml": ("statement", CREDITOR)}
    assert take_all(rt) == []  # claimed once: nothing left in the inbox

    assert [(c.creditor_id, c.name, c.format, c.state) for c in claims(rt)] == [
        (CREDITOR, "day1.cod", "coda", "claimed"), (CREDITOR, "day2.xml", "camt053", "claimed")]
    pending = pending_statements(rt)
    assert [(p.creditor_id, p.area, p.format) for p in pending] == [(CREDITOR, BANK, "coda"),
                                                                    (CREDITOR, BANK, "camt053")]
    # parked in the bank area itself; the creditor's own area never sees the bank's files
    assert sorted(p.name for p in bank_dir(settings, STATEMENTS).iterdir()) == sorted(p.stored_name for p in pending)
    assert not (settings.resolved_dropzone_dir / CREDITOR / STATEMENTS).exists()

    taken, summary, moved = reconcile_parked(rt)
    assert sorted(t.data for t in taken) == sorted([coda, camt])
    assert summary.imported.file_errors == []
    assert {s.creditor_id for s in summary.imported.statements} == {CREDITOR}
    states = {i.id: (i.state, i.open_cents) for i in invoices(rt)}
    assert states[first.id] == ("paid", 0) and states[second.id] == ("paid", 0)

    assert len(moved) == 2 and all(f"/{BANK}/{ARCHIVE}/" in m for m in moved)
    assert sorted(p.read_bytes() for p in bank_dir(settings, ARCHIVE).iterdir()) == sorted([coda, camt])
    assert not any(bank_dir(settings, STATEMENTS).iterdir())
    assert pending_statements(rt) == [] and collect_statements(rt) == []
    assert {c.state for c in claims(rt)} == {"processed"}
    rt.close()


def test_unknown_account_goes_to_errors_with_a_report_naming_it(settings):
    rt = open_runtime(settings)
    data = coda_file(1, [credit(1, 1000, text="x")]).replace(ACCOUNT.encode(), OTHER_ACCOUNT.encode())
    assert statement_accounts("coda", data) == [OTHER_ACCOUNT]
    drop(settings, "foreign.cod", data)

    (outcome,) = take_all(rt)
    assert (outcome.state, outcome.creditor_id, outcome.file_id) == ("rejected", BANK, None)
    assert outcome.reason.startswith(UNKNOWN_ACCOUNT)
    (row,) = report_rows(outcome.error_report)
    assert row["code"] == UNKNOWN_ACCOUNT and OTHER_ACCOUNT in row["message"]
    kept = [p for p in bank_dir(settings, ERRORS).iterdir() if not p.name.endswith(".errors.csv")]
    assert [p.read_bytes() for p in kept] == [data]
    assert not any(bank_dir(settings, INBOX).iterdir())
    assert claims(rt) == [] and pending_statements(rt) == []
    with rt.sessions() as s:
        (event,) = s.scalars(select(Event).where(Event.kind == "file.refused"))
    assert event.creditor_id is None and event.detail["area"] == BANK and event.detail["code"] == UNKNOWN_ACCOUNT
    rt.close()


def test_billing_csv_in_bank_area_is_refused_not_billed(settings):
    rt = open_runtime(settings)
    drop(settings, SAMPLE.name, SAMPLE.read_bytes())
    (outcome,) = take_all(rt)
    assert outcome.state == "rejected" and outcome.reason.startswith(NOT_A_STATEMENT)
    (row,) = report_rows(outcome.error_report)
    assert row["code"] == NOT_A_STATEMENT and "CODA, CAMT.053" in row["message"]
    assert invoices(rt) == [] and claims(rt) == []
    assert [p.read_bytes() for p in bank_dir(settings, ERRORS).iterdir()
            if not p.name.endswith(".errors.csv")] == [SAMPLE.read_bytes()]
    rt.close()


def test_same_statement_twice_is_a_duplicate_wherever_dropped(settings):
    rt = open_runtime(settings)
    data = coda_file(1, [credit(1, 1234, text="x")])
    drop(settings, "a.cod", data)
    (first,) = take_all(rt)
    assert first.state == "statement"

    drop(settings, "a.cod", data)  # same name, same bytes, while the first is still parked
    drop(settings, "copy.cod", data)
    again = take_all(rt)
    assert sorted((o.name, o.state, o.file_id) for o in again) == [
        ("a.cod", "duplicate", first.file_id), ("copy.cod", "duplicate", first.file_id)]
    assert all(f"#{first.file_id}" in report_rows(o.error_report)[0]["message"] for o in again)

    creditor_inbox = settings.resolved_dropzone_dir / CREDITOR / INBOX
    (creditor_inbox / "fwd.cod").write_bytes(data)  # the creditor forwards the same file
    (fwd,) = take_all(rt)
    assert (fwd.state, fwd.file_id) == ("duplicate", first.file_id)

    assert len(claims(rt)) == 1 and len(pending_statements(rt)) == 1
    assert [p.name for p in bank_dir(settings, STATEMENTS).iterdir()] == [pending_statements(rt)[0].stored_name]
    rt.close()


def test_crash_between_claim_and_park_is_finished_by_the_next_run(settings, monkeypatch):
    rt = open_runtime(settings)
    data = coda_file(1, [credit(1, 500, text="x")])
    drop(settings, "night.cod", data)
    real_move = LocalStore.move

    def dying_move(self, folder, name, to_folder, to_name=None):
        if to_folder == STATEMENTS:
            raise StoreError("disk gone")
        return real_move(self, folder, name, to_folder, to_name)

    monkeypatch.setattr(LocalStore, "move", dying_move)
    with pytest.raises(StoreError):
        take_all(rt)
    monkeypatch.setattr(LocalStore, "move", real_move)
    (claim,) = claims(rt)
    assert claim.state == "claimed" and (bank_dir(settings, INBOX) / "night.cod").exists()

    # the reconciliation comes first: it finds the claimed statement and parks it itself
    (taken,) = collect_statements(rt)
    assert taken.data == data and taken.file_id == claim.id
    assert not (bank_dir(settings, INBOX) / "night.cod").exists()
    assert take_all(rt) == []  # nothing for intake to do any more, no duplicate
    assert finish_night(rt, [taken], []) and pending_statements(rt) == []

    # a second crash, now intake runs first: it completes the park, without a second event
    data2 = coda_file(2, [credit(1, 600, text="y")])
    drop(settings, "night2.cod", data2)
    monkeypatch.setattr(LocalStore, "move", dying_move)
    with pytest.raises(StoreError):
        take_all(rt)
    monkeypatch.setattr(LocalStore, "move", real_move)
    (resumed,) = take_all(rt)
    assert resumed.state == "statement"
    with rt.sessions() as s:
        parked = s.scalar(select(func.count(Event.id)).where(
            Event.kind == "statement.parked", Event.entity_id == str(resumed.file_id)))
    assert parked == 1
    assert [p.file_id for p in pending_statements(rt)] == [resumed.file_id]
    rt.close()


def test_second_worker_that_listed_the_file_steps_back(settings):
    rt = open_runtime(settings)
    other = open_runtime(settings)
    drop(settings, "s.xml", camt_file([{"amount": "1.00", "ref": "R", "text": "x"}], seq=1, old="0", new="1.00"))
    (candidate,) = intake.scan_inbox(rt, settle=False).ready
    assert intake.scan_inbox(other, settle=False).ready == [candidate]
    won = intake.ingest_file(rt, candidate.creditor_id, candidate.name)
    lost = intake.ingest_file(other, candidate.creditor_id, candidate.name)
    assert (won.state, lost.state) == ("statement", "skipped")
    assert len(claims(rt)) == 1 and len(pending_statements(rt)) == 1
    rt.close()
    other.close()


def test_settle_rule_and_upload_names_apply_in_the_bank_area(settings):
    rt = open_runtime(settings)
    data = coda_file(1, [credit(1, 700, text="x")])
    drop(settings, "up.cod.part", data)
    drop(settings, "fresh.cod", data)
    now = datetime.now(UTC)
    first = intake.scan_inbox(rt, settle=True, now=now)
    assert first.ready == [] and sorted(c.name for c in first.waiting) == ["fresh.cod", "up.cod.part"]
    second = intake.scan_inbox(rt, settle=True, now=now + timedelta(seconds=1))
    assert [(c.creditor_id, c.name) for c in second.ready] == [(BANK, "fresh.cod")]
    with rt.sessions() as s:
        seen = s.scalars(select(Event).where(Event.kind == intake.SEEN_EVENT)).all()
    assert [(e.entity_id, e.creditor_id) for e in seen] == [(f"{BANK}/fresh.cod", None)]
    rt.close()


# ---------------------------------------------------------------- configuration


def test_bank_area_settings(tmp_path, ledger_url, monkeypatch):
    base = Settings(home=tmp_path / "var")
    assert list(base.resolved_bank_areas) == [BANK]
    assert Path(base.resolved_bank_areas[BANK].root) == tmp_path / "var" / "dropzone" / BANK
    assert Settings(bank_areas={}).resolved_bank_areas == {}
    monkeypatch.setenv("CREDITFLOW_BANK_AREAS", '{"_kbc": {"kind": "s3", "bucket": "ours"}, "_ing": {}}')
    from_env = Settings(home=tmp_path / "var")
    assert from_env.resolved_bank_areas["_kbc"].prefix == "_kbc"
    assert Path(from_env.resolved_bank_areas["_ing"].root) == tmp_path / "var" / "dropzone" / "_ing"
    for bad in ({"bank": {}}, {"_": {}}, {"_x": {"kind": "local", "root": "/srv/{creditor_id}"}}):
        with pytest.raises(ValidationError, match="bank area"):
            Settings(bank_areas=bad)
    monkeypatch.delenv("CREDITFLOW_BANK_AREAS")

    profiles = REPO / "sample_files" / "creditors"
    clash = Settings(home=tmp_path / "var", database_url=ledger_url, profiles_dir=profiles,
                     bank_areas={BANK: {"kind": "local", "root": str(tmp_path / "var" / "dropzone" / CREDITOR)}})
    with pytest.raises(ConfigError, match=f"{CREDITOR} and {BANK} have the same drop zone"):
        open_runtime(clash)
    off = open_runtime(Settings(home=tmp_path / "var", database_url=ledger_url, profiles_dir=profiles,
                                bank_areas={}))
    assert off.bank_area_names() == [] and not (tmp_path / "var" / "dropzone" / BANK).exists()
    off.close()


# ---------------------------------------------------------------- a bank area on a real sshd


def test_bank_area_on_sftp_routes_reconciles_and_archives(settings, sshd, monkeypatch):
    monkeypatch.setenv("CF_TEST_BANK_SFTP_PASSWORD", sshd.password)
    root = f"run-{uuid.uuid4().hex[:8]}/bank"
    area = {"kind": "sftp", "host": sshd.host, "port": sshd.port, "username": sshd.username,
            "password_env": "CF_TEST_BANK_SFTP_PASSWORD", "known_host_key": sshd.host_public_key,
            "root": root, "timeout": 5, "retries": 1}
    settings = settings.model_copy(update={"bank_areas": Settings(bank_areas={BANK: area}).bank_areas})
    rt = with_invoices(settings)
    first, second = invoices(rt)[:2]
    coda, camt = statements_for(first, second)
    store = rt.bank_store(BANK)
    store.write(INBOX, "day1.cod", coda)
    store.write(INBOX, "day2.xml", camt)
    store.write(INBOX, "oops.csv", SAMPLE.read_bytes())

    outcomes = {o.name: (o.state, o.creditor_id) for o in take_all(rt)}
    assert outcomes == {"day1.cod": ("statement", CREDITOR), "day2.xml": ("statement", CREDITOR),
                        "oops.csv": ("rejected", BANK)}
    assert take_all(rt) == []
    taken, summary, moved = reconcile_parked(rt)
    assert len(taken) == 2 and summary.imported.file_errors == []
    states = {i.id: i.state for i in invoices(rt)}
    assert states[first.id] == states[second.id] == "paid"

    on_disk = sshd.home / root
    assert sorted(p.read_bytes() for p in (on_disk / ARCHIVE).iterdir()) == sorted([coda, camt])
    assert not any((on_disk / INBOX).iterdir()) and not any((on_disk / STATEMENTS).iterdir())
    assert sorted(p.name.endswith(".errors.csv") for p in (on_disk / ERRORS).iterdir()) == [False, True]
    assert not (settings.resolved_dropzone_dir / BANK).exists()  # the local default is replaced
    rt.close()
