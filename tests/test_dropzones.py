"""Drop zones on real servers: OpenSSH sshd (SFTP) and moto's S3 over HTTP, through pipeline.intake.

Three creditors share one ledger: `sftp-co` (area on sshd), `s3-co` (prefix in a bucket) and
`local-co` (the default local folder). Each test drops files the way a creditor does and checks
where everything ends up, and that nothing lands in another creditor's area.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from creditflow.config import ConfigError, Settings
from creditflow.ledger.models import Event, Invoice, SourceFile
from creditflow.pipeline import intake
from creditflow.pipeline.runtime import open_runtime
from creditflow.pipeline.statements_intake import (
    STATEMENTS, finish_statement, pending_statements, take_statement,
)
from creditflow.stores.base import ARCHIVE, ERRORS, INBOX

from servers import moto_s3_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PROFILE = REPO / "sample_files" / "creditors" / "demo-utility.yaml"
CAMT = REPO / "tests" / "fixtures" / "camt053" / "statement-v08.xml"
HEADER = "Factuurnummer;Factuurdatum;Vervaldatum;Bedrag;Naam;Omschrijving"


def billing_csv(prefix: str, rows: int = 3, bad: bool = True) -> bytes:
    lines = [HEADER]
    lines += [f"{prefix}-{i:04d};03/11/2026;03/12/2026;{10 + i},50;Klant {i};Voorschot" for i in range(rows)]
    if bad:
        lines.append(f"{prefix}-BAD;31/02/2026;03/12/2026;abc;Klant X;kapot")
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


@pytest.fixture(scope="module")
def moto():
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def world(tmp_path, ledger_url, sshd, moto, monkeypatch):
    """Profiles for the three creditors, a fresh bucket and SFTP login folder, and settings."""
    bucket = f"cf-dz-{uuid.uuid4().hex[:10]}"
    moto.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("CF_TEST_SFTP_PASSWORD", sshd.password)
    monkeypatch.setenv("CF_TEST_S3_KEY", "testing")
    monkeypatch.setenv("CF_TEST_S3_SECRET", "testing")
    sftp_root = f"run-{uuid.uuid4().hex[:8]}/{{creditor_id}}"
    stores = {
        "sftp-co": {"kind": "sftp", "host": sshd.host, "port": sshd.port, "username": sshd.username,
                    "password_env": "CF_TEST_SFTP_PASSWORD", "known_host_key": sshd.host_public_key,
                    "root": sftp_root, "timeout": 5, "retries": 1},
        "s3-co": {"kind": "s3", "bucket": bucket, "prefix": "areas/{creditor_id}",
                  "endpoint_url": moto.endpoint_url, "region": "us-east-1", "addressing_style": "path",
                  "access_key_id_env": "CF_TEST_S3_KEY", "secret_access_key_env": "CF_TEST_S3_SECRET",
                  "retries": 1},
        "local-co": None,
    }
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    base = yaml.safe_load(SAMPLE_PROFILE.read_text())
    for creditor_id, store in stores.items():
        profile = {**base, "id": creditor_id, "invoice_number_pattern": None}
        if store:
            profile["store"] = store
        (profiles / f"{creditor_id}.yaml").write_text(yaml.safe_dump(profile))
    settings = Settings(home=tmp_path / "var", database_url=ledger_url, profiles_dir=profiles,
                        link_secret="test-secret-of-32-bytes-or-so-----")
    sftp_home = sshd.home / sftp_root.split("/")[0]
    return {"settings": settings, "bucket": bucket, "s3": moto.client(), "sftp_home": sftp_home,
            "sshd": sshd}


def s3_keys(world) -> list[str]:
    pages = world["s3"].get_paginator("list_objects_v2").paginate(Bucket=world["bucket"])
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def take_all(rt, *, settle=False):
    return [intake.ingest_file(rt, c.creditor_id, c.name) for c in intake.scan_inbox(rt, settle=settle).ready]


def invoice_count(rt, creditor_id: str) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count(Invoice.id)).where(Invoice.creditor_id == creditor_id))


def test_sftp_and_s3_creditors_end_to_end_reports_stay_in_their_area(world):
    rt = open_runtime(world["settings"])
    sftp_csv, s3_csv = billing_csv("SF"), billing_csv("S3", rows=4)
    rt.store_for("sftp-co").write(INBOX, "nov.csv", sftp_csv)
    world["s3"].put_object(Bucket=world["bucket"], Key="areas/s3-co/inbox/nov.csv", Body=s3_csv)

    outcomes = {o.creditor_id: o for o in take_all(rt)}
    assert {c: (o.state, o.accepted, o.rejected) for c, o in outcomes.items()} == {
        "sftp-co": ("processed", 3, 1), "s3-co": ("processed", 4, 1)}
    assert invoice_count(rt, "sftp-co") == 3 and invoice_count(rt, "s3-co") == 4

    # SFTP: archive holds the original byte for byte, the report is in sftp-co/errors, inbox empty
    area = world["sftp_home"] / "sftp-co"
    assert [p.read_bytes() for p in (area / ARCHIVE).iterdir()] == [sftp_csv]
    assert [p.name for p in (area / ERRORS).iterdir()] == [f"{outcomes['sftp-co'].file_id:06d}-nov.csv.errors.csv"]
    assert "BAD" in (area / ERRORS).joinpath(f"{outcomes['sftp-co'].file_id:06d}-nov.csv.errors.csv").read_text("utf-8-sig")
    assert not any((area / INBOX).iterdir())
    assert sorted(p.name for p in world["sftp_home"].iterdir()) == ["sftp-co"]  # nothing beside it

    # S3: every key is under the creditor's prefix; one archive copy, one report
    keys = s3_keys(world)
    assert all(k.startswith("areas/s3-co/") for k in keys)
    s3_file = outcomes["s3-co"].file_id
    assert keys == [f"areas/s3-co/archive/{s3_file:06d}-nov.csv", f"areas/s3-co/errors/{s3_file:06d}-nov.csv.errors.csv"]
    body = world["s3"].get_object(Bucket=world["bucket"], Key=keys[0])["Body"].read()
    assert body == s3_csv
    assert outcomes["s3-co"].error_report == f"s3://{world['bucket']}/{keys[1]}"

    # the local creditor's area received nothing
    local = world["settings"].resolved_dropzone_dir / "local-co"
    assert all(not any((local / folder).iterdir()) for folder in (INBOX, ARCHIVE, ERRORS))
    rt.close()


def test_upload_in_progress_and_growing_file_are_left_alone_until_stable(world):
    rt = open_runtime(world["settings"])
    store = rt.store_for("sftp-co")
    store.write(INBOX, "dec.csv.part", billing_csv("PA"))
    store.write(INBOX, "dec.csv", billing_csv("GR", rows=1, bad=False))  # first part of the upload

    first = intake.scan_inbox(rt)
    assert first.ready == [] and {c.name for c in first.waiting} == {"dec.csv.part", "dec.csv"}

    store.write(INBOX, "dec.csv", billing_csv("GR", rows=5, bad=False))  # it grew: still not stable
    assert intake.scan_inbox(rt).ready == []
    (ready,) = intake.scan_inbox(rt).ready  # unchanged over two polls: taken
    assert ready.name == "dec.csv"
    outcome = intake.ingest_file(rt, "sftp-co", "dec.csv")
    assert (outcome.state, outcome.accepted) == ("processed", 5)
    assert store.exists(INBOX, "dec.csv.part")  # the .part upload is still untouched
    with rt.sessions() as s:  # one observation per change, not one per poll
        seen = s.scalars(select(Event.detail).where(Event.kind == intake.SEEN_EVENT)).all()
    assert [d["name"] for d in seen] == ["dec.csv", "dec.csv"] and seen[0]["size"] < seen[1]["size"]

    # a file older than settle_seconds is taken on the first poll
    store.write(INBOX, "old.csv", billing_csv("OL", rows=1, bad=False))
    later = datetime.now(UTC) + timedelta(seconds=31)
    assert [c.name for c in intake.scan_inbox(rt, now=later).ready] == ["old.csv"]
    rt.close()


@pytest.mark.parametrize("creditor_id", ["s3-co", "sftp-co"])
def test_two_pollers_racing_one_winner_invoices_stored_once(world, creditor_id):
    data = billing_csv("RC", rows=6)
    runtimes = [open_runtime(world["settings"]) for _ in range(2)]
    runtimes[0].store_for(creditor_id).write(INBOX, "race.csv", data)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def poll(rt):
        try:
            barrier.wait(10)
            results.extend(intake.ingest_file(rt, creditor_id, c.name)
                           for c in intake.pending_files(rt) if c.creditor_id == creditor_id)
        except Exception as exc:  # a loser must not fail
            errors.append(exc)

    threads = [threading.Thread(target=poll, args=(rt,)) for rt in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    states = sorted(o.state for o in results)
    assert states.count("processed") == 1 and set(states) <= {"processed", "skipped"}
    rt = runtimes[0]
    assert invoice_count(rt, creditor_id) == 6
    with rt.sessions() as s:
        assert s.scalar(select(func.count(SourceFile.id))) == 1
    store = rt.store_for(creditor_id)
    assert [f.name for f in store.list(INBOX)] == []
    (archived,) = store.list(ARCHIVE)
    assert store.read(ARCHIVE, archived.name) == data
    assert len(store.list(ERRORS)) == 1  # one report, by the winner
    for r in runtimes:
        r.close()


def test_sftp_server_restarted_mid_run_loses_nothing_doubles_nothing(world):
    rt = open_runtime(world["settings"])
    store = rt.store_for("sftp-co")
    first, second = billing_csv("R1", rows=2, bad=False), billing_csv("R2", rows=3, bad=False)
    store.write(INBOX, "a.csv", first)
    store.write(INBOX, "b.csv", second)
    sshd = world["sshd"]
    real_move = store.move

    def server_dies_before_archiving(*args, **kwargs):
        sshd.stop()  # ledger committed, file not archived yet: the worst moment
        return real_move(*args, **kwargs)

    store.move = server_dies_before_archiving
    try:
        from creditflow.stores.base import StoreUnavailable

        with pytest.raises(StoreUnavailable):
            take_all(rt)
    finally:
        store.move = real_move
        sshd.start()

    outcomes = take_all(rt)  # the next run, after the restart
    assert sorted((o.name, o.state) for o in outcomes) == [("a.csv", "completed"), ("b.csv", "processed")]
    assert invoice_count(rt, "sftp-co") == 5
    assert sorted(store.read(ARCHIVE, f.name) for f in store.list(ARCHIVE)) == sorted([first, second])
    assert store.list(INBOX) == []
    assert take_all(rt) == []
    rt.close()


def test_traversal_names_are_refused_and_reported_not_crashing_the_run(world):
    rt = open_runtime(world["settings"])
    s3, bucket = world["s3"], world["bucket"]
    evil_keys = ["areas/s3-co/inbox/..\\..\\sftp-co\\inbox\\evil.csv", "areas/s3-co/inbox/../../local-co/inbox/x.csv"]
    for key in evil_keys:
        s3.put_object(Bucket=bucket, Key=key, Body=billing_csv("EV"))
    s3.put_object(Bucket=bucket, Key="areas/s3-co/inbox/good.csv", Body=billing_csv("GD", bad=False))
    local_inbox = world["settings"].resolved_dropzone_dir / "local-co" / INBOX
    (local_inbox / "..\\..\\s3-co\\evil.csv").write_bytes(billing_csv("LE"))

    scan = intake.scan_inbox(rt, settle=False)
    assert [(r.creditor_id, r.name) for r in scan.refused] == [("local-co", "..\\..\\s3-co\\evil.csv")]
    outcomes = [intake.ingest_file(rt, c.creditor_id, c.name) for c in scan.ready]
    assert [(o.creditor_id, o.name, o.state) for o in outcomes] == [("s3-co", "good.csv", "processed")]
    intake.scan_inbox(rt, settle=False)  # a second poll reports the name again, records it once
    with rt.sessions() as s:
        assert s.scalar(select(func.count(Event.id)).where(Event.kind == "file.refused")) == 1
    keys = s3_keys(world)
    assert all(k in keys for k in evil_keys)  # left where they were, nothing written for them
    assert all(k.startswith("areas/s3-co/") for k in keys)
    # nothing but the local creditor's area and our default bank area was created beside them
    assert sorted(p.name for p in world["settings"].resolved_dropzone_dir.iterdir()) == ["_bank", "local-co"]
    assert (local_inbox / "..\\..\\s3-co\\evil.csv").exists()  # refused, not moved or deleted
    rt.close()


def test_bank_statement_in_inbox_is_parked_for_reconciliation_not_billed(world):
    rt = open_runtime(world["settings"])
    data = CAMT.read_bytes()
    world["s3"].put_object(Bucket=world["bucket"], Key="areas/s3-co/inbox/stmt.xml", Body=data)
    (outcome,) = take_all(rt)
    assert outcome.state == "statement" and outcome.accepted == 0
    assert invoice_count(rt, "s3-co") == 0
    (pending,) = pending_statements(rt)
    assert (pending.creditor_id, pending.format, pending.file_id) == ("s3-co", "camt053", outcome.file_id)
    assert f"areas/s3-co/{STATEMENTS}/{pending.stored_name}" in s3_keys(world)
    taken = take_statement(rt, pending)
    assert taken.data == data and hashlib.sha256(taken.data).hexdigest() == hashlib.sha256(data).hexdigest()

    world["s3"].put_object(Bucket=world["bucket"], Key="areas/s3-co/inbox/stmt-again.xml", Body=data)
    (again,) = take_all(rt)
    assert again.state == "duplicate"

    where = finish_statement(rt, taken.file_id, ok=True)
    assert where.endswith(f"areas/s3-co/{ARCHIVE}/{pending.stored_name}")
    assert pending_statements(rt) == []
    assert finish_statement(rt, taken.file_id, ok=True) is None  # finished once only
    rt.close()


def test_two_creditors_sharing_one_area_refuse_to_start(tmp_path, ledger_url):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    base = yaml.safe_load(SAMPLE_PROFILE.read_text())
    for creditor_id in ("aa-co", "bb-co"):
        store = {"kind": "local", "root": str(tmp_path / "shared")}
        (profiles / f"{creditor_id}.yaml").write_text(yaml.safe_dump({**base, "id": creditor_id, "store": store}))
    with pytest.raises(ConfigError, match="aa-co and bb-co have the same drop zone"):
        open_runtime(Settings(home=tmp_path / "var", database_url=ledger_url, profiles_dir=profiles))


def test_serve_builds_scheduled_deployments(tmp_path):
    import argparse

    from creditflow.flows import serve

    settings = Settings(home=tmp_path, profiles_dir=REPO / "sample_files" / "creditors")
    deployments = serve.build_deployments(settings, intake_interval=45, reconcile_at="03:15",
                                          collect_at="08:30")
    intake_dep = deployments[0]
    assert (intake_dep.flow_name, intake_dep.name) == ("billing-intake", serve.INTAKE_DEPLOYMENT)
    (schedule,) = intake_dep.schedules
    assert schedule.schedule.interval == timedelta(seconds=45)
    assert schedule.schedule.timezone == "Europe/Brussels"
    assert intake_dep.parameters == {"settle": True}
    assert "creditor:demo-utility" in intake_dep.tags and intake_dep.concurrency_limit == 1
    nightly_dep = deployments[1]
    assert (nightly_dep.flow_name, nightly_dep.name) == ("nightly-reconciliation", serve.RECONCILE_DEPLOYMENT)
    (nightly,) = nightly_dep.schedules
    assert (nightly.schedule.cron, nightly.schedule.timezone) == ("15 3 * * *", "Europe/Brussels")
    collections_dep = deployments[2]
    assert (collections_dep.flow_name, collections_dep.name) == ("daily-collections",
                                                                 serve.COLLECTIONS_DEPLOYMENT)
    (daily,) = collections_dep.schedules
    assert (daily.schedule.cron, daily.schedule.timezone) == ("30 8 * * *", "Europe/Brussels")
    assert "creditor:demo-utility" in collections_dep.tags and collections_dep.concurrency_limit == 1
    assert len(deployments) == 3
    default_collect = serve.build_deployments(settings)[2].schedules[0].schedule
    assert default_collect.cron == "0 9 * * *"
    with pytest.raises(ValueError, match="after the nightly reconciliation"):
        serve.build_deployments(settings, reconcile_at="10:00", collect_at="09:00")
    assert serve.cron_at("02:30") == "30 2 * * *"
    with pytest.raises(ValueError):
        serve.cron_at("24:00")

    parser = argparse.ArgumentParser()
    serve.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--intake-interval", "30", "--reconcile-at", "01:45",
                              "--collect-at", "07:30"])
    assert (args.intake_interval, args.reconcile_at, args.collect_at, args.func) == (
        30.0, "01:45", "07:30", serve._cmd_serve)
    assert parser.parse_args(["serve"]).collect_at == "09:00"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--reconcile-at", "7pm"])
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--collect-at", "9h"])
