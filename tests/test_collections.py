"""First reminders: once after the grace period, never when paid or held, the open balance, the law's
wording in four languages. Driven without Prefect through pipeline.collections_day, on both ledgers;
the daily-collections flow is checked to run that same loop with its tasks handed in."""

from __future__ import annotations

import email
import json
from datetime import date, datetime, timedelta
from email import policy
from io import BytesIO
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from creditflow.config import Settings, load_profiles
from creditflow.config.settings import BRUSSELS
from creditflow.ledger.models import Delivery, Event, Invoice
from creditflow.pipeline import collections, collections_day, dispatch, intake, reconcile, render
from creditflow.pipeline.runtime import open_runtime
from creditflow.renderers import texts
from creditflow.renderers.document import InvoiceDocument
from creditflow.renderers.labels import format_amount, format_date
from creditflow.renderers.references import format_reference

from statement_builders import coda_file, credit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "sample_files" / "creditors"
CREDITOR = "demo-utility"
DUE = date(2026, 3, 2)
HEADER = "Factuurnummer;Factuurdatum;Vervaldatum;Bedrag;Naam;Straat;Postcode;Gemeente;E-mail;GSM;Taal"
#          number, amount, name, street, postcode, city, email, phone, language
ROWS = [
    ("R-A", "100,00", "Anna Peeters", "", "", "", "anna@example.be", "", "nl"),
    ("R-B", "50,00", "Bert Paid", "", "", "", "bert@example.be", "", "nl"),
    ("R-C", "200,00", "Chloé Partial", "", "", "", "chloe@example.be", "", "fr"),
    ("R-D", "75,00", "Dirk Dispute", "", "", "", "dirk@example.be", "", "nl"),
    ("R-E", "30,00", "Élise Sms", "", "", "", "", "+32470123456", "fr"),
    ("R-F", "60,00", "Franz Post", "Kirchstraße 3", "4700", "Eupen", "", "", "de"),
    ("R-G", "45,50", "Grace Mail", "", "", "", "grace@example.com", "", "en"),
]
FREE = {"nl": "kostelo",  # kosteloos / kosteloze
        "fr": "gratuit", "en": "free", "de": "kostenlos"}


@pytest.fixture
def rt(tmp_path, ledger_url):
    settings = Settings(home=tmp_path / "var", database_url=ledger_url, profiles_dir=PROFILES,
                        link_secret="test-secret-of-32-bytes-or-so-----")
    inbox = settings.resolved_dropzone_dir / CREDITOR / "inbox"
    inbox.mkdir(parents=True)
    lines = [HEADER] + [f"{n};15/02/2026;{DUE:%d/%m/%Y};{a};{rest}" for n, a, *r in ROWS
                        for rest in [";".join(r)]]
    (inbox / "billing.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    runtime = open_runtime(settings)
    (outcome,) = [intake.ingest_file(runtime, c.creditor_id, c.name) for c in intake.pending_files(runtime)]
    assert outcome.accepted == len(ROWS), outcome
    render.render_pending(runtime)
    dispatch.plan_initial(runtime, limit=100)
    sent = dispatch.dispatch_due(runtime, limit=100, now=at(DUE - timedelta(days=14)))
    assert sent.sent == len(ROWS)
    yield runtime
    runtime.close()


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=BRUSSELS)


def invoice(rt, number: str) -> Invoice:
    with rt.sessions() as s:
        return s.scalars(select(Invoice).where(Invoice.invoice_number == number)).one()


def pay(rt, payments: dict[str, int], day: date) -> None:
    """The nightly reconciliation, for real: a CODA statement with OGM payments, booked."""
    body = [credit(seq, cents, ogm=invoice(rt, number).structured_reference, day=day)
            for seq, (number, cents) in enumerate(payments.items(), start=1)]
    summary = reconcile.run_reconciliation(rt, [(f"{day}.cod", coda_file(1, body, day=day))], deliver=False)
    assert summary.imported.file_errors == []


def reminders(rt) -> dict[str, Delivery]:
    with rt.sessions() as s:
        rows = s.execute(select(Invoice.invoice_number, Delivery)
                         .join(Delivery, Delivery.invoice_id == Invoice.id)
                         .where(Delivery.purpose == collections.REMINDER_1)).all()
    return {number: delivery for number, delivery in rows}


def reminder_emails(rt) -> dict[str, email.message.EmailMessage]:
    found = {}
    for path in (rt.settings.resolved_outbox_dir / "email").glob("*.eml"):
        if "reminder-1" not in path.name:
            continue
        mail = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        number = next(n for n, *_ in ROWS if f"/{n}/" in mail["X-Creditflow-Key"])
        found[number] = mail
    return found


def test_first_reminder_once_after_grace_never_when_paid_or_held(rt):
    pay(rt, {"R-B": 5000, "R-C": 12000}, DUE + timedelta(days=2))  # B paid, C partly
    assert invoice(rt, "R-B").state == "paid"
    assert (invoice(rt, "R-C").state, invoice(rt, "R-C").open_cents) == ("partially_paid", 8000)
    invoice_d, changed = collections.set_hold(rt, "R-D", reason="disputed meter reading", by="ops")
    assert changed and invoice_d.invoice_number == "R-D"
    assert collections.set_hold(rt, "R-D", reason="again")[1] is False  # already held: no new event

    too_soon = DUE + timedelta(days=6)
    early = collections_day.run_collections(rt, today=too_soon, now=at(too_soon))
    assert (early.plan.planned, early.sent) == (0, 0) and reminders(rt) == {}

    day = DUE + timedelta(days=7)
    first = collections_day.run_collections(rt, today=day, now=at(day))
    assert first.plan.planned == 5 and first.sent == 5
    assert first.plan.held == [f"{CREDITOR}/R-D"]
    assert first.plan.by_channel == {"email": 3, "sms": 1, "post": 1}
    sent = reminders(rt)
    assert {n: d.channel for n, d in sent.items()} == {
        "R-A": "email", "R-C": "email", "R-E": "sms", "R-F": "post", "R-G": "email"}
    assert all(d.state == "sent" for d in sent.values())
    assert "1 on hold" in first.markdown() and "R-D" in first.markdown()

    # The same day again, and the next day: nothing new, nothing sent twice.
    for again_day in (day, day + timedelta(days=1)):
        again = collections_day.run_collections(rt, today=again_day, now=at(again_day, 15))
        assert (again.plan.planned, again.sent) == (0, 0)
    assert len(reminders(rt)) == 5
    assert len(reminder_emails(rt)) == 3

    # The partial payment: the reminder asks for the open balance, not the total.
    mail = reminder_emails(rt)["R-C"]
    body = mail.get_body(("plain",)).get_content()
    assert format_amount(8000, "EUR", "fr") in body and format_amount(8000, "EUR", "fr") in mail["Subject"]
    assert "Solde restant dû : " + format_amount(8000, "EUR", "fr") in body
    assert format_amount(12000, "EUR", "fr") in body  # what was paid already, said as such
    assert not [p for p in mail.iter_attachments()]  # the invoice's QR asks for the full amount
    deadline = format_date(day + timedelta(days=14), "fr")
    assert deadline in body and format_date(DUE, "fr") in body
    with rt.sessions() as s:
        attempt = s.scalars(select(Event).where(Event.kind == "delivery.attempt",
                                                Event.entity_id == str(reminders(rt)["R-C"].id))).one()
    assert attempt.detail["payment_deadline"] == (day + timedelta(days=14)).isoformat()
    assert attempt.detail["open_cents"] == 8000
    # A fully open invoice keeps its PDF attached.
    assert [p.get_filename() for p in reminder_emails(rt)["R-A"].iter_attachments()] == ["R-A.pdf"]

    # SMS (French) and letter (German) carry the same facts.
    sms = [json.loads(line) for line in (rt.settings.resolved_outbox_dir / "sms.jsonl").read_text().splitlines()]
    (sms_e,) = [m for m in sms if m["invoice"] == "R-E" and "gratuit" in m["text"]]
    ogm_e = format_reference(invoice(rt, "R-E").structured_reference, "ogm")
    assert ogm_e in sms_e["text"] and format_date(day + timedelta(days=14), "fr") in sms_e["text"]
    assert "30,00" in sms_e["text"] and sms_e["segments"] <= 2
    (letter,) = (rt.settings.resolved_outbox_dir / "post").glob("*reminder-1*.pdf")
    letter_text = "".join(page.extract_text() for page in PdfReader(BytesIO(letter.read_bytes())).pages)
    assert "kostenlos" in letter_text and "60,00" in letter_text and "Franz Post" in letter_text
    posted = collections.payment_deadline(day, "post")
    assert posted >= day + timedelta(days=17) and format_date(posted, "de") in letter_text

    # The hold is lifted: the next run reminds D, once.
    assert collections.set_hold(rt, "R-D", reason="meter checked", release=True)[1] is True
    after = day + timedelta(days=2)
    later = collections_day.run_collections(rt, today=after, now=at(after))
    assert later.plan.planned == 1 and later.sent == 1 and "R-D" in reminders(rt)
    with rt.sessions() as s:
        trail = [e.kind for e in s.scalars(select(Event).where(Event.entity == "invoice",
                                                               Event.entity_id == str(invoice_d.id)))]
    assert trail.index(collections.HOLD) < trail.index(collections.HOLD_RELEASED) < trail.index("reminder.planned")
    assert invoice(rt, "R-B").state == "paid" and "R-B" not in reminders(rt)


def test_payment_booked_after_planning_stops_the_reminder_at_send_time(rt):
    day = DUE + timedelta(days=10)
    plan = collections.plan_reminders(rt, today=day)
    assert plan.planned == len(ROWS)
    pay(rt, {"R-A": 10000}, day)  # reconciliation came late: the reminder must not go
    collections.set_hold(rt, "R-G", reason="promise to pay by Friday")
    sent = dispatch.dispatch_due(rt, limit=100, now=at(day))
    assert sent.skipped == 2 and sent.sent == len(ROWS) - 2
    planned = reminders(rt)
    assert planned["R-A"].state == planned["R-G"].state == "skipped"
    assert "paid" in planned["R-A"].error and "hold" in planned["R-G"].error
    assert "R-A" not in reminder_emails(rt) and "R-G" not in reminder_emails(rt)
    assert collections.plan_reminders(rt, today=day + timedelta(days=1)).planned == 0  # never again


def test_reminder_after_days_is_the_creditors_setting(tmp_path):
    base = (PROFILES / f"{CREDITOR}.yaml").read_text()
    (tmp_path / "p.yaml").write_text(base + "\nreminder_after_days: 21\n")
    assert load_profiles(tmp_path)[CREDITOR].reminder_after_days == 21
    (tmp_path / "p.yaml").write_text(base + "\nreminder_after_days: 0\n")
    with pytest.raises(Exception, match="reminder_after_days"):
        load_profiles(tmp_path)
    assert load_profiles(PROFILES)[CREDITOR].reminder_after_days == 7


@pytest.mark.parametrize("language", ["nl", "fr", "en", "de"])
def test_reminder_texts_in_every_language(language):
    profile = load_profiles(PROFILES)[CREDITOR]
    doc = InvoiceDocument.from_parts(profile, {
        "id": 41, "invoice_number": "INV-41", "debtor_name": "Debtor", "debtor_language": language,
        "issue_date": date(2026, 2, 1), "due_date": date(2026, 3, 1), "amount_cents": 123456,
        "structured_reference": "090933755493", "reference_kind": "ogm", "description": "Voorschot",
    }, "https://pay.example/p/abc")
    facts = texts.ReminderFacts(purpose="reminder-1", open_cents=23456, deadline=date(2026, 3, 24),
                                sent_on=date(2026, 3, 10))
    mail = texts.build_reminder(doc, facts, channel="email", idempotency_key="k", sender_email="x@y.be",
                                to_email="d@e.be", invoice_pdf=b"%PDF-1.4")
    sms = texts.build_reminder(doc, facts, channel="sms", idempotency_key="k", sender_email="x@y.be",
                               to_phone="+32470123456")
    open_amount = format_amount(23456, "EUR", language)
    ogm = "+++090/9337/55493+++"
    for text in (mail.subject, mail.text, mail.html, sms.text):
        assert open_amount in text.replace("&#39;", "'")
    for text in (mail.text, mail.html, sms.text):
        assert ogm in text and format_date(date(2026, 3, 24), language) in text
        assert FREE[language] in text.lower()
    for text in (mail.text, mail.html):
        assert format_date(date(2026, 3, 1), language) in text  # the original due date
        assert "0403.170.701" in text and profile.legal_name in text
        assert "https://pay.example/p/abc" in text
    assert mail.amount_cents == sms.amount_cents == 23456
    assert mail.attachments == ()  # partly paid: no PDF whose QR asks for the total
    assert texts.gsm7_length(sms.text) <= texts.SMS_REMINDER_UNITS
    assert mail.metadata["payment_deadline"] == "2026-03-24"


def test_payment_deadline_is_at_least_fourteen_days():
    for offset in range(14):
        sent_on = date(2026, 12, 20) + timedelta(days=offset)
        assert collections.payment_deadline(sent_on, "email") == sent_on + timedelta(days=14)
        posted = collections.payment_deadline(sent_on, "post")
        assert posted >= sent_on + timedelta(days=17)
    assert collections.payment_deadline(date(2026, 3, 6), "post") == date(2026, 3, 11) + timedelta(days=14)


def _outcomes(*sent_counts: int):
    """Dispatch chunks that sent these many messages each, then chunks that find nothing more."""
    chunks = iter(sent_counts)
    calls = []

    def send_chunk() -> dispatch.DispatchOutcome:
        calls.append(1)
        n = next(chunks, 0)
        return dispatch.DispatchOutcome(sent=n, by_channel={"email": n} if n else {})

    return send_chunk, calls


def test_collect_day_sends_until_a_chunk_makes_no_progress():
    planned_for = []

    def plan(day):
        planned_for.append(day)
        return collections.ReminderPlan(planned=3, held=["c/INV-9"], by_channel={"email": 3})

    send_chunk, calls = _outcomes(2, 1)
    summary = collections_day.collect_day(DUE, plan=plan, send_chunk=send_chunk, max_chunks=100)
    assert planned_for == [DUE]
    assert len(calls) == 3  # two that sent, one that found nothing left
    assert (summary.business_date, summary.plan.planned, summary.sent) == (DUE, 3, 3)
    assert summary.sent_by_channel == {"email": 3}

    send_chunk, calls = _outcomes(5, 5, 5, 5)
    capped = collections_day.collect_day(DUE, plan=plan, send_chunk=send_chunk, max_chunks=2)
    assert len(calls) == 2 and capped.sent == 10  # the rest waits for the next run


def test_daily_collections_flow_runs_the_same_loop_with_its_tasks(monkeypatch):
    from creditflow.flows import collections as flow_module

    planned_for = []

    def plan_task(day):
        planned_for.append(day)
        return collections.ReminderPlan(planned=2, by_channel={"email": 2})

    send_chunk, calls = _outcomes(2)
    artifacts = []
    monkeypatch.setattr(flow_module, "plan_task", plan_task)
    monkeypatch.setattr(flow_module, "send_task", send_chunk)
    monkeypatch.setattr(flow_module, "create_markdown_artifact",
                        lambda **kwargs: artifacts.append(kwargs))

    summary = flow_module.daily_collections.fn(business_date="2026-03-09", max_chunks=5)
    assert planned_for == [date(2026, 3, 9)]
    assert len(calls) == 2 and (summary.plan.planned, summary.sent) == (2, 2)
    (artifact,) = artifacts
    assert artifact["key"] == "daily-collections"
    assert "| email | 2 | 2 |" in artifact["markdown"]
