"""The ledger on SQLite and PostgreSQL: schema, file claims, invoices, references, outbox, events."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import unquote

import polars as pl
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from stdnum.be import ogm_vcs
from stdnum.iso7064 import mod_97_10

from creditflow.ledger import db, events, files, invoices, outbox
from creditflow.ledger.models import (
    Creditor,
    DeliveryState,
    Event,
    FileState,
    Invoice,
    InvalidTransition,
    InvoiceState,
    SourceFile,
    UtcDateTime,
    metadata,
)
from creditflow.parsers.schema import INVOICE_SCHEMA

CREDITOR = "demo-utility"


def make_invoices(count: int, *, start: int = 1, prefix: str = "INV-", **overrides) -> pl.DataFrame:
    rows = {
        "source_row": list(range(2, count + 2)),
        "invoice_number": [f"{prefix}{n}" for n in range(start, start + count)],
        "document_type": ["invoice"] * count,
        "issue_date": [date(2026, 5, 1)] * count,
        "due_date": [date(2026, 5, 31)] * count,
        "amount_cents": [12_345 + n for n in range(count)],
        "currency": ["EUR"] * count,
        "debtor_name": [f"Debtor {n} Zoë" for n in range(count)],
        "debtor_country": ["BE"] * count,
        "debtor_email": [f"d{n}@example.be" for n in range(count)],
        "debtor_language": ["nl"] * count,
    }
    rows.update({k: v if isinstance(v, list) else [v] * count for k, v in overrides.items()})
    for column in INVOICE_SCHEMA:
        rows.setdefault(column, [None] * count)
    return pl.DataFrame(rows, schema=INVOICE_SCHEMA)


def add_creditor(session, creditor_id: str = CREDITOR) -> None:
    files.upsert_creditor(session, id=creditor_id, legal_name="Demo Utility NV", vat="BE0403170701",
                          iban="BE71096123456769", bic="GKCCBEBB", language="nl")


def claim(session, sha: str = "a" * 64, creditor_id: str = CREDITOR, name: str = "jan.csv"):
    return files.claim_file(session, creditor_id=creditor_id, store="local", path=f"inbox/{name}",
                            name=name, size=123, sha256=sha, format="csv")


@pytest.fixture
def stocked(ledger):
    """A ledger with one creditor and one claimed file; yields (factory, file_id)."""
    _engine, factory = ledger
    with db.transaction(factory) as session:
        add_creditor(session)
        file_id = claim(session).id
    return factory, file_id


# -------------------------------------------------------------------------------------- schema


def test_migration_matches_models(ledger_url):
    engine = db.make_engine(ledger_url)
    assert db.current_revision(engine) is None
    db.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    assert db.current_revision(engine) == "0002_reconciliation"
    db.upgrade(engine)  # a second start changes nothing
    assert db.current_revision(engine) == "0002_reconciliation"
    tables = set(inspect(engine).get_table_names())
    assert {"creditors", "source_files", "invoices", "deliveries", "events"} <= tables
    assert {"bank_statements", "movements", "allocations"} <= tables
    engine.dispose()


def test_check_constraint_refuses_unknown_state(stocked):
    factory, file_id = stocked
    with pytest.raises(IntegrityError), db.transaction(factory) as session:
        session.execute(text("UPDATE source_files SET state = 'duplicate' WHERE id = :id"), {"id": file_id})


def test_foreign_keys_are_enforced(ledger):
    _, factory = ledger
    with pytest.raises(IntegrityError), db.transaction(factory) as session:
        claim(session, creditor_id="nobody")


def test_naive_datetime_refused_and_aware_ones_come_back_utc(stocked):
    factory, file_id = stocked
    brussels = timezone(timedelta(hours=2))
    with db.transaction(factory) as session:
        row = session.get(SourceFile, file_id)
        row.processed_at = datetime(2026, 5, 21, 12, 0, tzinfo=brussels)
    with factory() as session:
        stored = session.get(SourceFile, file_id).processed_at
    assert stored == datetime(2026, 5, 21, 10, 0, tzinfo=UTC)
    assert stored.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().process_bind_param(datetime(2026, 5, 21, 12, 0), None)


def test_make_engine_rewrites_plain_postgresql_url_to_psycopg():
    engine = db.make_engine("postgresql://app@127.0.0.1:1/ledger")
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


def test_make_engine_creates_sqlite_folder_and_enables_wal(tmp_path):
    path = tmp_path / "deep" / "folder" / "ledger.db"
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert path.exists()
    engine.dispose()


# -------------------------------------------------------------------------------------- files


def test_upsert_creditor_updates_profile_fields(ledger):
    _, factory = ledger
    with db.transaction(factory) as session:
        add_creditor(session)
    with db.transaction(factory) as session:
        files.upsert_creditor(session, id=CREDITOR, legal_name="Demo Utility BV", vat="BE0403170701",
                              iban="BE71096123456769", bic="GKCCBEBB", language="fr")
    with factory() as session:
        creditor = session.get(Creditor, CREDITOR)
        assert (creditor.legal_name, creditor.language) == ("Demo Utility BV", "fr")
        assert creditor.updated_at >= creditor.created_at
        assert session.scalar(text("SELECT count(*) FROM creditors")) == 1


def test_claim_file_once_then_none(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        assert claim(session, name="jan-again.csv") is None
        found = files.find_file(session, CREDITOR, "a" * 64)
        assert found.id == file_id and found.name == "jan.csv"
        assert found.state == FileState.CLAIMED
        assert found.received_at.tzinfo is not None
        other = claim(session, sha="b" * 64)
        assert other is not None and other.id != file_id
    with factory() as session:
        assert [f.id for f in files.unfinished_files(session, CREDITOR)] == [file_id, other.id]


def race(factory, attempt, workers: int = 2) -> list[object]:
    """Run `attempt(session)` in `workers` threads, each in its own transaction, started together."""
    barrier = threading.Barrier(workers)
    results: list[object] = []
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            with factory() as session, session.begin():
                session.execute(select(1))  # every session is open before any of them writes
                barrier.wait(timeout=10)
                results.append(attempt(session))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert len(results) == workers
    return results


def test_two_threads_claiming_the_same_file_one_wins(ledger):
    _, factory = ledger
    with db.transaction(factory) as session:
        add_creditor(session)
    results = race(factory, lambda session: getattr(claim(session, sha="c" * 64), "id", None))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and results.count(None) == 1
    with factory() as session:
        assert session.scalar(text("SELECT count(*) FROM source_files")) == 1
        assert files.find_file(session, CREDITOR, "c" * 64).id == winners[0]


def test_finish_file_records_outcome_and_refuses_a_second_ending(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        done = files.finish_file(session, file_id, state="processed", rows_total=10, rows_accepted=8,
                                 rows_rejected=2, archive_path="archive/000001-jan.csv",
                                 error_report_path="errors/000001-jan.csv.errors.csv")
        assert done.processed_at is not None
    with factory() as session:
        row = files.find_file(session, CREDITOR, "a" * 64)
        assert (row.state, row.rows_total, row.rows_accepted, row.rows_rejected) == ("processed", 10, 8, 2)
        assert files.unfinished_files(session) == []
    with pytest.raises(InvalidTransition), db.transaction(factory) as session:
        files.finish_file(session, file_id, state="rejected", reason="late")
    with pytest.raises(InvalidTransition), db.transaction(factory) as session:
        files.finish_file(session, file_id, state="claimed")


@pytest.mark.parametrize("state, lockable", [("claimed", True), ("failed", True),
                                             ("processed", False), ("rejected", False)])
def test_lock_unfinished_claim_only_while_the_file_can_still_be_finished(stocked, state, lockable):
    factory, file_id = stocked
    if state != "claimed":
        with db.transaction(factory) as session:
            files.finish_file(session, file_id, state=state)
    with db.transaction(factory) as session:
        assert files.lock_unfinished_claim(session, file_id) is lockable
        assert files.lock_unfinished_claim(session, file_id + 1000) is False  # no such file
    with factory() as session:
        assert files.find_file(session, CREDITOR, "a" * 64).state == state  # the lock changes nothing


def test_two_workers_holding_one_claim_only_one_finishes_it(stocked):
    factory, file_id = stocked

    def finish_if_mine(session) -> bool:
        if not files.lock_unfinished_claim(session, file_id):
            return False
        files.finish_file(session, file_id, state="processed", rows_total=1, rows_accepted=1)
        return True

    assert sorted(race(factory, finish_if_mine)) == [False, True]
    with factory() as session:
        assert files.find_file(session, CREDITOR, "a" * 64).state == "processed"


# -------------------------------------------------------------------------------------- invoices


def test_insert_invoices_round_trip(stocked):
    factory, file_id = stocked
    frame = make_invoices(3, structured_reference=[None, "090933755493", "RF18539007547034"])
    frame = frame.with_columns(
        pl.Series("amount_cents", [1, -2_500, 9_007_199_254_740_993], dtype=pl.Int64),
        pl.Series("document_type", ["invoice", "credit_note", "invoice"]),
    )
    before = datetime.now(UTC)
    with db.transaction(factory) as session:
        ids = invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                       invoices=frame)
    assert len(ids) == 3 and ids == sorted(ids)
    with factory() as session:
        stored = [session.get(Invoice, i) for i in ids]
    assert [s.invoice_number for s in stored] == ["INV-1", "INV-2", "INV-3"]
    assert [s.amount_cents for s in stored] == [1, -2_500, 9_007_199_254_740_993]
    assert [s.open_cents for s in stored] == [1, -2_500, 9_007_199_254_740_993]
    assert all(isinstance(s.amount_cents, int) for s in stored)
    assert stored[1].document_type == "credit_note"
    assert stored[0].issue_date == date(2026, 5, 1) and stored[0].due_date == date(2026, 5, 31)
    assert type(stored[0].due_date) is date
    assert stored[0].debtor_name == "Debtor 0 Zoë"
    assert {s.state for s in stored} == {InvoiceState.OPEN}
    assert [s.reference_kind for s in stored] == [None, "ogm", "rf"]
    assert not any(s.reference_generated for s in stored)
    assert stored[0].source_file_id == file_id and stored[2].source_row == 4
    assert stored[0].created_at.tzinfo is not None
    assert stored[0].created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stored[0].created_at <= datetime.now(UTC) + timedelta(seconds=1)
    with factory() as session:
        assert invoices.get_invoice(session, CREDITOR, "INV-2").id == ids[1]
        assert invoices.get_invoice(session, CREDITOR, "INV-404") is None
        assert invoices.invoice_counts(session, CREDITOR)["open"] == 3
        assert invoices.invoice_counts(session)["paid"] == 0


def test_insert_invoices_empty_and_incomplete_frames(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        assert invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                        invoices=pl.DataFrame(schema=INVOICE_SCHEMA)) == []
        with pytest.raises(ValueError, match="debtor_name"):
            invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                     invoices=make_invoices(1).drop("debtor_name"))


def test_duplicate_invoice_number_is_refused(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                 invoices=make_invoices(2))
    with pytest.raises(IntegrityError), db.transaction(factory) as session:
        invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                 invoices=make_invoices(1, start=2))
    with factory() as session:
        assert invoices.existing_invoice_numbers(session, CREDITOR, ["INV-2", "INV-3"]) == {"INV-2"}
        assert invoices.existing_invoice_numbers(session, "other", ["INV-2"]) == set()
        assert invoices.invoice_counts(session, CREDITOR)["open"] == 2  # the failed batch left nothing


def test_existing_lookups_chunk_large_lists(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                 invoices=make_invoices(2_500))
        numbers = [f"INV-{n}" for n in range(1, 5_001)]
        assert invoices.existing_invoice_numbers(session, CREDITOR, numbers) == set(numbers[:2_500])
        ids = invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                       invoices=make_invoices(1, prefix="X-"))
        refs = invoices.assign_references(session, ids)
        assert invoices.existing_references(session, [*refs.values(), "000000000097"]) == set(refs.values())


def test_assign_references_gives_valid_unique_ogms_and_skips_taken_ones(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        first = invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                         invoices=make_invoices(1))[0]
    # A creditor-supplied reference equal to what the next invoice would be given.
    next_id = first + 2
    squatted = invoices.generated_reference(next_id, "ogm")
    with db.transaction(factory) as session:
        ids = invoices.insert_invoices(
            session, creditor_id=CREDITOR, source_file_id=file_id,
            invoices=make_invoices(4, start=2, structured_reference=[squatted, None, None, None]),
        )
        ids.append(first)
        assigned = invoices.assign_references(session, ids, kind="ogm")
    assert ids[1] == next_id
    assert set(assigned) == set(ids) - {ids[0]}  # the invoice with its own reference keeps it
    assert assigned[next_id] != squatted
    values = list(assigned.values())
    assert len(set(values)) == len(values)
    assert squatted not in values
    assert all(len(v) == 12 and v.isdigit() and ogm_vcs.is_valid(v) for v in values)
    assert assigned[first] == invoices.generated_reference(first, "ogm")
    with factory() as session:
        rows = session.scalars(select(Invoice).where(Invoice.id.in_(ids))).all()
        by_id = {r.id: r for r in rows}
        assert by_id[next_id].structured_reference == assigned[next_id]
        assert by_id[next_id].reference_generated and by_id[next_id].reference_kind == "ogm"
        assert by_id[ids[0]].structured_reference == squatted and not by_id[ids[0]].reference_generated
        # Nothing left to do: a second call assigns nothing and changes nothing.
        assert invoices.assign_references(session, ids) == {}


@pytest.mark.parametrize("first_row_supplies_its_own", [False, True])
def test_insert_with_generated_references_in_one_pass(stocked, first_row_supplies_its_own):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        first = invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                         invoices=make_invoices(1, prefix="OLD-"))[0]
        # SQUAT-1 (id first + 1) takes what the 2nd row of the next batch (id first + 3) would get.
        in_ledger = invoices.generated_reference(first + 3, "ogm")
        invoices.insert_invoices(
            session, creditor_id="demo-utility", source_file_id=file_id,
            invoices=make_invoices(1, prefix="SQUAT-", structured_reference=in_ledger),
        )
    # The batch gets ids first + 2 .. first + 5; its last row supplies what its 3rd row would get.
    own = "RF18539007547034" if first_row_supplies_its_own else None
    supplied = [own, None, None, invoices.generated_reference(first + 4, "ogm")]
    with db.transaction(factory) as session:
        ids = invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                       invoices=make_invoices(4, structured_reference=supplied),
                                       generate_references="ogm")
    assert ids == [first + 2, first + 3, first + 4, first + 5]
    with factory() as session:
        rows = [session.get(Invoice, i) for i in ids]
    references = [r.structured_reference for r in rows]
    assert len(set(references)) == 4
    assert in_ledger not in references and references[3] == supplied[3]
    for row, supplied_ref in zip(rows, supplied):
        assert row.reference_generated is (supplied_ref is None)
        if supplied_ref is None:
            assert ogm_vcs.is_valid(row.structured_reference) and row.reference_kind == "ogm"
    assert references[0] == (own or invoices.generated_reference(first + 2, "ogm"))
    assert references[1] == invoices.generated_reference(first + 3, "ogm", attempt=1)
    assert references[2] == invoices.generated_reference(first + 4, "ogm", attempt=1)
    assert rows[3].reference_kind == "ogm" and not rows[3].reference_generated


def test_assign_rf_references(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        ids = invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                       invoices=make_invoices(3))
        assigned = invoices.assign_references(session, ids, kind="rf")
    assert len(set(assigned.values())) == 3
    for invoice_id, reference in assigned.items():
        assert reference.startswith("RF") and reference.endswith(str(invoice_id))
        assert mod_97_10.is_valid(reference[4:] + reference[:4])
    with pytest.raises(ValueError):
        invoices.generated_reference(1, "iban")


def test_generated_references_come_from_the_id_alone():
    assert invoices.generated_reference(909337554, "ogm") == "090933755493"
    assert invoices.generated_reference(10**10 + 909337554, "ogm") == "090933755493"  # the last ten digits
    assert invoices.generated_reference(10**10, "ogm") == "000000000101"  # base 0 is stepped over to 1
    alternative = f"{7 + 10**9:010d}"
    check = ogm_vcs.calc_check_digits(alternative)
    assert invoices.generated_reference(7, "ogm", attempt=1) == alternative + check
    assert invoices.generated_reference(539007547034, "rf") == "RF18539007547034"


def test_render_queue_and_mark_rendered(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        ids = invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                       invoices=make_invoices(5))
    with factory() as session:
        assert [i.id for i in invoices.invoices_to_render(session, limit=3)] == ids[:3]
        assert [i.id for i in invoices.invoices_to_render(session, after_id=ids[3])] == ids[4:]
        assert invoices.invoices_to_render(session, creditor_id="other") == []
    with db.transaction(factory) as session:
        count = invoices.mark_rendered(session, [(ids[0], "/docs/INV-1.pdf", "https://pay/1"),
                                                 (ids[2], "/docs/INV-3.pdf", None)])
        assert count == 2
    with factory() as session:
        assert [i.id for i in invoices.invoices_to_render(session)] == [ids[1], ids[3], ids[4]]
        rendered = session.get(Invoice, ids[0])
        assert (rendered.pdf_path, rendered.payment_link) == ("/docs/INV-1.pdf", "https://pay/1")
        assert rendered.rendered_at.tzinfo is not None


# -------------------------------------------------------------------------------------- outbox


def test_delivery_key_is_readable_unambiguous_and_filename_safe():
    key = outbox.delivery_key("demo-utility", "INV-1", "initial", "email")
    assert key == "demo-utility/INV-1/initial/email"
    slashed = outbox.delivery_key("demo-utility", "2026/001", "initial", "email")
    assert slashed.count("/") == 3
    assert slashed != outbox.delivery_key("demo-utility", "2026", "001/initial", "email")
    for k in (key, slashed, outbox.delivery_key("c", "../../etc/passwd", "x", "y")):
        name = outbox.key_filename(k)
        assert "/" not in name and name not in (".", "..")
        assert outbox.key_filename(k) == name  # stable
    long_name = outbox.key_filename(outbox.delivery_key("c", "N" * 500, "initial", "email"))
    assert len(long_name) <= 200 and "/" not in long_name


_key_part = st.text(min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(first=st.tuples(_key_part, _key_part, _key_part, _key_part),
       second=st.tuples(_key_part, _key_part, _key_part, _key_part))
def test_delivery_keys_never_collide_and_filenames_stay_safe(first, second):
    key = outbox.delivery_key(*first)
    assert tuple(unquote(part) for part in key.split("/")) == first
    if first != second:
        assert key != outbox.delivery_key(*second)
        assert outbox.key_filename(key) != outbox.key_filename(outbox.delivery_key(*second))
    name = outbox.key_filename(key)
    assert "/" not in name and "\\" not in name and "\x00" not in name and name not in (".", "..")
    assert len(name.encode()) <= 255


def _invoice_for_outbox(factory, file_id) -> int:
    with db.transaction(factory) as session:
        return invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                        invoices=make_invoices(1))[0]


def _ensure(session, invoice_id, channel="email", purpose="initial"):
    return outbox.ensure_delivery(session, invoice_id=invoice_id, creditor_id=CREDITOR,
                                  invoice_number="INV-1", channel=channel, purpose=purpose)


def test_ensure_delivery_twice_gives_the_same_row(stocked):
    factory, file_id = stocked
    invoice_id = _invoice_for_outbox(factory, file_id)
    with db.transaction(factory) as session:
        first = _ensure(session, invoice_id)
    with db.transaction(factory) as session:
        second = _ensure(session, invoice_id)
        sms = _ensure(session, invoice_id, channel="sms")
    assert first.id == second.id != sms.id
    assert first.idempotency_key == "demo-utility/INV-1/initial/email"
    assert first.state == DeliveryState.PENDING and first.attempt == 0
    with factory() as session:
        assert [d.id for d in outbox.deliveries_for_invoice(session, invoice_id)] == [first.id, sms.id]


def test_concurrent_ensure_delivery_creates_one_row(stocked):
    factory, file_id = stocked
    invoice_id = _invoice_for_outbox(factory, file_id)
    results = race(factory, lambda session: _ensure(session, invoice_id).id, workers=3)
    assert len(set(results)) == 1
    with factory() as session:
        assert [d.id for d in outbox.deliveries_for_invoice(session, invoice_id)] == results[:1]


def test_delivery_states(stocked):
    factory, file_id = stocked
    invoice_id = _invoice_for_outbox(factory, file_id)
    with db.transaction(factory) as session:
        email = _ensure(session, invoice_id)
        sms = _ensure(session, invoice_id, channel="sms")
        post = _ensure(session, invoice_id, channel="post")
        for delivery in (email, sms, post):
            outbox.begin_attempt(session, delivery)
    with factory() as session:
        stored = {d.channel: d for d in outbox.deliveries_for_invoice(session, invoice_id)}
        assert {d.state for d in stored.values()} == {"sending"}
        assert {d.attempt for d in stored.values()} == {1}
    with db.transaction(factory) as session:
        email, sms, post = (session.merge(d) for d in (email, sms, post))
        outbox.mark_sent(session, email, "sg-123")
        later = datetime(2030, 1, 1, tzinfo=UTC)
        outbox.mark_failed(session, sms, "gateway timeout", transient=True, next_attempt_at=later)
        outbox.mark_failed(session, post, "no postal address", transient=False)
    with factory() as session:
        stored = {d.channel: d for d in outbox.deliveries_for_invoice(session, invoice_id)}
    assert (stored["email"].state, stored["email"].provider_id) == ("sent", "sg-123")
    assert stored["email"].sent_at is not None and stored["email"].sent_at.tzinfo is not None
    assert (stored["sms"].state, stored["sms"].error) == ("failed_transient", "gateway timeout")
    assert stored["sms"].next_attempt_at == later
    assert (stored["post"].state, stored["post"].next_attempt_at) == ("failed_permanent", None)
    with pytest.raises(InvalidTransition), db.transaction(factory) as session:
        outbox.begin_attempt(session, session.merge(stored["email"]))  # never sent twice
    with db.transaction(factory) as session:
        again = outbox.begin_attempt(session, session.merge(stored["sms"]))
        assert (again.state, again.attempt) == ("sending", 2)
        outbox.mark_failed(session, again, "503", transient=True)
        assert again.next_attempt_at - again.updated_at == outbox.retry_delay(2)
    with db.transaction(factory) as session:
        delivered = outbox.mark_receipt(session, session.merge(stored["email"]), "delivered")
        assert delivered.state == DeliveryState.DELIVERED


def test_deliveries_due_picks_pending_crashed_sending_and_due_transient(stocked):
    factory, file_id = stocked
    invoice_id = _invoice_for_outbox(factory, file_id)
    now = datetime.now(UTC)
    with db.transaction(factory) as session:
        pending = _ensure(session, invoice_id, channel="email")
        crashed = outbox.begin_attempt(session, _ensure(session, invoice_id, channel="sms"))
        due = outbox.mark_failed(session, outbox.begin_attempt(session, _ensure(session, invoice_id, channel="post")),
                                 "timeout", transient=True, next_attempt_at=now - timedelta(minutes=1))
        not_yet = outbox.mark_failed(
            session, outbox.begin_attempt(session, _ensure(session, invoice_id, channel="payment_request")),
            "429", transient=True, next_attempt_at=now + timedelta(hours=1))
        sent = outbox.mark_sent(session, outbox.begin_attempt(
            session, _ensure(session, invoice_id, purpose="reminder-1")), "id-1")
        permanent = outbox.mark_failed(session, outbox.begin_attempt(
            session, _ensure(session, invoice_id, channel="sms", purpose="reminder-1")), "bad", transient=False)
    later = datetime.now(UTC)
    with db.transaction(factory) as session:
        picked = {d.id for d in outbox.deliveries_due(session, now=later, limit=100)}
        assert picked == {pending.id, crashed.id, due.id}
        assert not picked & {not_yet.id, sent.id, permanent.id}
        assert len(outbox.deliveries_due(session, now=later, limit=2)) == 2
        only_sms = outbox.deliveries_due(session, now=later, limit=100, channel="sms")
        assert [d.id for d in only_sms] == [crashed.id]
    with db.transaction(factory) as session:
        # With parallel dispatchers a fresh "sending" row may be in a live worker's hands: not due.
        careful = outbox.deliveries_due(session, now=later, limit=100, sending_timeout=timedelta(minutes=15))
        assert {d.id for d in careful} == {pending.id, due.id}
        much_later = outbox.deliveries_due(session, now=later + timedelta(minutes=16), limit=100,
                                           sending_timeout=timedelta(minutes=15))
        assert {d.id for d in much_later} == {pending.id, crashed.id, due.id}


def test_invoices_without_delivery_and_find_invoices(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        ids = invoices.insert_invoices(session, creditor_id=CREDITOR, source_file_id=file_id,
                                       invoices=make_invoices(4))
        invoices.mark_rendered(session, [(i, f"/docs/{i}.pdf", None) for i in ids[:3]])
        session.execute(text("UPDATE invoices SET state = 'cancelled' WHERE id = :id"), {"id": ids[2]})
        outbox.ensure_delivery(session, invoice_id=ids[0], creditor_id=CREDITOR, invoice_number="INV-1",
                               channel="email", purpose="initial")
    with factory() as session:
        assert [i.id for i in outbox.invoices_without_delivery(session, purpose="initial")] == [ids[1]]
        reminders = outbox.invoices_without_delivery(session, purpose="reminder-1", limit=10)
        assert [i.id for i in reminders] == [ids[0], ids[1]]
        assert [i.id for i in invoices.find_invoices(session, "INV-2")] == [ids[1]]
        assert invoices.find_invoices(session, "INV-2", creditor_id="other") == []


# -------------------------------------------------------------------------------------- events


def test_events_recorded_with_json_detail(stocked):
    factory, file_id = stocked
    with db.transaction(factory) as session:
        events.record_event(session, kind="file.claimed", entity="file", entity_id=file_id,
                            creditor_id=CREDITOR, name="jan.csv", size=123, due=date(2026, 5, 31),
                            rows=[1, 2], nested={"ok": True, "note": "Zoë €"})
        events.record_event(session, kind="file.processed", entity="file", entity_id=file_id,
                            creditor_id=CREDITOR, accepted=8)
    with factory() as session:
        trail = events.events_for(session, "file", file_id)
        assert [e.kind for e in trail] == ["file.claimed", "file.processed"]
        assert trail[0].entity_id == str(file_id) and trail[0].creditor_id == CREDITOR
        assert trail[0].detail == {"name": "jan.csv", "size": 123, "due": "2026-05-31", "rows": [1, 2],
                                   "nested": {"ok": True, "note": "Zoë €"}}
        assert trail[1].detail == {"accepted": 8}
        assert trail[0].occurred_at.tzinfo is not None
        assert session.scalar(select(Event.detail).where(Event.kind == "file.processed")) == {"accepted": 8}
