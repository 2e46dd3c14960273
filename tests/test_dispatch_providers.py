"""Dispatch through every provider adapter against local servers: fakes that check requests as the
providers document them, a real aiosmtpd, a real sshd for the print shop. Routing, retries with
`now` advanced (no sleeping), fall-back, crash recovery, rate limits, delivery feedback."""

from __future__ import annotations

import base64
import email
import io
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import policy
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from pypdf import PdfReader
from sqlalchemy import select

from creditflow.channels import registry
from creditflow.channels.bancontact import BancontactPayments
from creditflow.channels.local_outbox import LocalSmsOutbox
from creditflow.channels.printshop import PrintShopPost
from creditflow.channels.sendgrid_email import SendGridEmail
from creditflow.channels.sms_gateway import SmsGateway, gateway_reference
from creditflow.channels.smtp_email import SmtpEmail
from creditflow.config import Settings
from creditflow.ledger import outbox as ledger_outbox
from creditflow.ledger.invoices import generated_reference
from creditflow.ledger.models import Delivery, Event, Invoice
from creditflow.pipeline import dispatch, feedback, render
from creditflow.pipeline.runtime import open_runtime
from creditflow.stores.local import LocalStore
from fakes.bancontact import FakeBancontact
from fakes.sendgrid import FakeSendGrid, rate_limited, server_error
from fakes.sms_gateway import FakeCmGateway


REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "sample_files" / "creditors" / "demo-utility.yaml"
CREDITOR = "demo-utility"
SG_KEY = "SG.test-key"
CM_TOKEN = "00000000-0000-0000-0000-000000000000"
BC_KEY = "bc-test-key"
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def make_runtime(tmp_path: Path, channels: str = "email, sms, post", url: str | None = None):
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    text = PROFILE.read_text().replace("channels: [email, sms, post]", f"channels: [{channels}]")
    (profiles / "demo-utility.yaml").write_text(text)
    settings = Settings(home=tmp_path / "var", profiles_dir=profiles,
                        database_url=url or f"sqlite:///{tmp_path / 'ledger.db'}",
                        link_secret="test-secret-of-32-bytes-or-so-----")
    return open_runtime(settings)


def add_invoices(rt, count: int, *, start: int = 0, **debtor) -> list[int]:
    with rt.sessions.begin() as session:
        rows = []
        for i in range(start, start + count):
            fields = dict(
                debtor_name=f"Klant {i}", debtor_street="Kouter 14", debtor_postcode="9000",
                debtor_city="Gent", debtor_country="BE", debtor_email=f"klant{i}@example.be",
                debtor_phone=f"+3247012{i:04d}", debtor_language="nl")
            fields.update(debtor)
            row = Invoice(creditor_id=CREDITOR, invoice_number=f"DN-2026-{900000 + i}",
                          amount_cents=8745 + i, open_cents=8745 + i, currency="EUR",
                          issue_date=date(2026, 11, 3), due_date=date(2026, 12, 3),
                          structured_reference=generated_reference(900000 + i, "ogm"),
                          reference_kind="ogm", **fields)
            session.add(row)
            rows.append(row)
        session.flush()
        ids = [row.id for row in rows]
    render.render_pending(rt)
    return ids


def deliveries(rt) -> list[Delivery]:
    with rt.sessions() as session:
        found = list(session.scalars(select(Delivery).order_by(Delivery.id)))
        session.expunge_all()
    return found


def event_kinds(rt) -> list[str]:
    with rt.sessions() as session:
        return list(session.scalars(select(Event.kind).order_by(Event.id)))


def run(rt, now=None, **kwargs):
    dispatch.plan_initial(rt, limit=1000)
    return dispatch.dispatch_due(rt, limit=1000, now=now or NOW, **kwargs)


def now() -> datetime:
    """The real time: rows left "sending" by a crash are due from their real update time on."""
    return datetime.now(UTC)


@pytest.fixture
def sendgrid():
    with FakeSendGrid(api_key=SG_KEY) as fake:
        yield fake


@pytest.fixture
def cm():
    with FakeCmGateway(product_token=CM_TOKEN) as fake:
        yield fake


def sendgrid_channel(fake) -> SendGridEmail:
    return SendGridEmail(SG_KEY, host=fake.url, timeout_seconds=5)


def sms_channel(fake) -> SmsGateway:
    return SmsGateway(CM_TOKEN, url=fake.url + fake.path, timeout_seconds=5)


@dataclass
class Sink:
    messages: list[email.message.EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_sink():
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield sink, controller.port
    controller.stop()


# --------------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------------


def test_routing_settings_pick_the_provider_per_logical_channel(tmp_path, sendgrid, cm, monkeypatch):
    monkeypatch.setenv("CREDITFLOW_EMAIL_PROVIDER", "sendgrid")
    monkeypatch.setenv("CREDITFLOW_SENDGRID_API_KEY", SG_KEY)
    monkeypatch.setenv("CREDITFLOW_SENDGRID_HOST", sendgrid.url)
    monkeypatch.setenv("CREDITFLOW_SMS_PROVIDER", "sms-http")
    monkeypatch.setenv("CREDITFLOW_SMS_TOKEN", CM_TOKEN)
    monkeypatch.setenv("CREDITFLOW_SMS_URL", cm.url + cm.path)
    built = registry.build_channels(["email", "sms", "post", "payment_request"],
                                    Settings(home=tmp_path))
    assert list(built) == ["email", "sms", "post"]  # payment requests default to "none": left out
    assert [c.name for c in built.values()] == ["sendgrid", "sms-http", "post"]

    routing = registry.ChannelRouting(email_provider="local", payment_request_provider="bancontact")
    monkeypatch.setenv("CREDITFLOW_BANCONTACT_API_KEY", BC_KEY)
    monkeypatch.setenv("CREDITFLOW_BANCONTACT_CALLBACK_URL", "https://creditflow.example/cb")
    built = registry.build_channels(["email", "payment_request"], Settings(home=tmp_path),
                                    routing=routing)
    assert {k: c.name for k, c in built.items()} == {"email": "email",
                                                     "payment_request": "bancontact"}
    with pytest.raises(ValueError):
        registry.ChannelRouting(email_provider="pigeon")


def test_payment_request_switched_off_falls_to_the_next_channel(tmp_path):
    rt = make_runtime(tmp_path, channels="payment_request, sms")
    add_invoices(rt, 2)
    result = run(rt)
    assert result.sent == 2 and result.by_channel == {"sms": 2}
    assert {d.channel for d in deliveries(rt)} == {"sms"}
    rt.close()


# --------------------------------------------------------------------------------------------------
# Each adapter through dispatch
# --------------------------------------------------------------------------------------------------


def test_sendgrid_delivers_the_invoice_pdf_with_our_key(tmp_path, sendgrid):
    rt = make_runtime(tmp_path)
    rt._channels = {"email": sendgrid_channel(sendgrid)}
    add_invoices(rt, 3)
    result = run(rt)
    assert result.sent == 3 and not sendgrid.rejections
    rows = deliveries(rt)
    assert all(d.state == "sent" and d.provider_id.startswith("fake") for d in rows)
    with rt.sessions() as session:
        pdfs = {i.invoice_number: Path(i.pdf_path).read_bytes()
                for i in session.scalars(select(Invoice))}
    for body in sendgrid.accepted:
        args = body["personalizations"][0]["custom_args"]
        assert args["delivery_key"] in {d.idempotency_key for d in rows}
        (attachment,) = body["attachments"]
        assert base64.b64decode(attachment["content"]) == pdfs[args["invoice"]]
        assert args["invoice"] in body["subject"]
    kinds = event_kinds(rt)
    assert kinds.count("delivery.attempt") == 3 and kinds.count("delivery.sent") == 3
    rt.close()


@pytest.mark.parametrize("outage,wait", [(rate_limited("2"), timedelta(seconds=3)),
                                         (server_error(), timedelta(minutes=2))])
def test_provider_outage_is_retried_and_then_succeeds(tmp_path, sendgrid, outage, wait):
    rt = make_runtime(tmp_path)
    rt._channels = {"email": sendgrid_channel(sendgrid)}
    add_invoices(rt, 1)
    sendgrid.queue_reply(outage)
    first = run(rt)
    assert first.retry_later == 1 and first.sent == 0
    (row,) = deliveries(rt)
    assert row.state == "failed_transient" and NOW < row.next_attempt_at <= NOW + wait
    assert dispatch.dispatch_due(rt, limit=10, now=NOW + timedelta(seconds=1)).sent in (0,)
    again = dispatch.dispatch_due(rt, limit=10, now=NOW + wait)
    assert again.sent == 1 and len(sendgrid.accepted) == 1
    (row,) = deliveries(rt)
    assert row.state == "sent" and row.attempt == 2
    with rt.sessions() as session:
        failed = session.scalars(select(Event).where(Event.kind == "delivery.failed")).one()
        assert failed.detail["transient"] is True and failed.detail["code"] in (
            "rate-limited", "provider-unavailable")
    rt.close()


def test_smtp_delivers_a_real_message_with_the_pdf(tmp_path, smtp_sink):
    sink, port = smtp_sink
    rt = make_runtime(tmp_path)
    rt._channels = {"email": SmtpEmail("127.0.0.1", port, security="plain")}
    add_invoices(rt, 2)
    assert run(rt).sent == 2
    assert len(sink.messages) == 2
    with rt.sessions() as session:
        by_number = {i.invoice_number: i for i in session.scalars(select(Invoice))}
    for message in sink.messages:
        (attachment,) = list(message.iter_attachments())
        number = next(n for n in by_number if n in message["Subject"])
        assert attachment.get_content() == Path(by_number[number].pdf_path).read_bytes()
        assert message["To"].addresses[0].addr_spec == by_number[number].debtor_email
    assert {d.provider_id for d in deliveries(rt)} == {m["Message-ID"].strip() for m in sink.messages}
    rt.close()


def test_sms_carries_the_payment_link_and_our_reference(tmp_path, cm):
    rt = make_runtime(tmp_path, channels="sms")
    rt._channels = {"sms": sms_channel(cm)}
    add_invoices(rt, 2)
    assert run(rt).sent == 2 and not cm.rejections
    rows = deliveries(rt)
    with rt.sessions() as session:
        links = {i.debtor_phone: i.payment_link for i in session.scalars(select(Invoice))}
    for msg in cm.accepted:
        number = "+" + msg["to"][0]["number"][2:]
        assert links[number] in msg["body"]["content"]
    assert sorted(m["reference"] for m in cm.accepted) == sorted(
        gateway_reference(d.idempotency_key) for d in rows)
    assert all(d.provider_id == gateway_reference(d.idempotency_key) for d in rows)
    rt.close()


def test_bancontact_payment_request_keeps_deeplink_and_qr(tmp_path):
    rt = make_runtime(tmp_path, channels="payment_request, email")
    with FakeBancontact(api_key=BC_KEY) as fake:
        rt._channels = {"payment_request": BancontactPayments(
            BC_KEY, callback_url="https://creditflow.example/callbacks/bancontact", base_url=fake.url)}
        (invoice_id,) = add_invoices(rt, 1)
        assert run(rt).sent == 1 and not fake.rejections
        (payment,) = fake.payments.values()
    (row,) = deliveries(rt)
    assert row.channel == "payment_request" and row.provider_id == payment["paymentId"]
    with rt.sessions() as session:
        invoice = session.get(Invoice, invoice_id)
        assert payment["amount"] == invoice.open_cents
        assert payment["reference"] == invoice.structured_reference
        created = session.scalars(select(Event).where(
            Event.kind == "payment_request.created", Event.entity == "invoice",
            Event.entity_id == str(invoice_id))).one()
    assert created.detail["deeplink"] == payment["_links"]["deeplink"]["href"]
    assert created.detail["qrcode"] == payment["_links"]["qrcode"]["href"]
    rt.close()


def test_print_shop_gets_one_print_file_and_manifest_per_day_over_sftp(tmp_path, sshd):
    from creditflow.stores.sftp import SftpStore

    area = f"printshop-{time.monotonic_ns()}"

    def store():
        return SftpStore(sshd.host, sshd.port, sshd.username, root=area,
                         password=SecretStr(sshd.password), known_host_key=sshd.host_public_key,
                         timeout=5.0, retries=2, backoff=0.1)

    rt = make_runtime(tmp_path, channels="post")
    printshop = PrintShopPost(tmp_path / "spool", store, clock=lambda: NOW)
    rt._channels = {"post": printshop}
    add_invoices(rt, 3, debtor_email=None, debtor_phone=None)
    assert run(rt).sent == 3
    day = NOW.date()
    (batch,) = dispatch.flush_post(rt, day)
    assert batch.letters == 3 and len(batch.uploaded) == 2
    with store() as remote:
        names = sorted(f.name for f in remote.list(CREDITOR))
        assert names == [f"{CREDITOR}-{day}-letters.pdf", f"{CREDITOR}-{day}-manifest.json"]
        merged = remote.read(CREDITOR, f"{CREDITOR}-{day}-letters.pdf")
        manifest = json.loads(remote.read(CREDITOR, f"{CREDITOR}-{day}-manifest.json"))
    pages = len(PdfReader(io.BytesIO(merged)).pages)
    assert manifest["letters"] == 3 and manifest["pages"] == pages == batch.pages
    assert [item["first_page"] for item in manifest["items"]] == [
        1, 1 + manifest["items"][0]["pages"], 1 + sum(i["pages"] for i in manifest["items"][:2])]
    assert {item["recipient"] for item in manifest["items"]} == {"Klant 0", "Klant 1", "Klant 2"}
    assert all(item["address_lines"] == ["Kouter 14", "9000 Gent"] and item["registered"] is False
               and item["envelope"] == "C5-window" for item in manifest["items"])
    assert {item["delivery_key"] for item in manifest["items"]} == {
        d.idempotency_key for d in deliveries(rt)}

    # A second flush (a retried flow run) uploads nothing: same names, same sha256.
    (again,) = dispatch.flush_post(rt, day)
    assert again.uploaded == [] and sorted(again.already_there) == names
    # A letter staged after the seal joins the next day's batch, not the uploaded one.
    add_invoices(rt, 1, start=10, debtor_email=None, debtor_phone=None)
    run(rt)
    assert dispatch.flush_post(rt, day)[0].letters == 3
    (next_day,) = dispatch.flush_post(rt, day + timedelta(days=1))
    assert next_day.letters == 1
    assert event_kinds(rt).count("print.batch.uploaded") == 2  # only flushes that uploaded something
    rt.close()


# --------------------------------------------------------------------------------------------------
# Fall-back and debtor history
# --------------------------------------------------------------------------------------------------


def test_invalid_address_falls_through_and_is_not_tried_again(tmp_path, sendgrid, cm):
    rt = make_runtime(tmp_path)
    rt._channels = {"email": sendgrid_channel(sendgrid), "sms": sms_channel(cm)}
    add_invoices(rt, 1, debtor_email="klant-at-example.be", debtor_phone="+32470999999")
    first = run(rt)
    assert first.fell_back == 1
    assert dispatch.dispatch_due(rt, limit=10, now=NOW).sent == 1
    states = {d.channel: (d.state, d.error) for d in deliveries(rt)}
    assert states["email"][0] == "failed_permanent" and states["email"][1].startswith("[invalid-address]")
    assert states["sms"][0] == "sent" and len(cm.accepted) == 1

    # The next invoice of that debtor goes to SMS at once: the address is known not to work.
    add_invoices(rt, 1, start=5, debtor_email="Klant-at-example.be ", debtor_phone="+32470999999")
    later = run(rt)
    assert later.sent == 1 and later.by_channel == {"sms": 1} and later.fell_back == 0
    assert sendgrid.requests == [] and len(cm.accepted) == 2
    rt.close()


def test_no_channel_left_is_an_operator_visible_failure(tmp_path, cm):
    cm.refuse_numbers.add("0032470999999")
    rt = make_runtime(tmp_path, channels="sms")
    rt._channels = {"sms": sms_channel(cm)}
    add_invoices(rt, 1, debtor_phone="+32470999999")
    result = run(rt)
    assert len(result.no_channel) == 1
    rows = {d.channel: d for d in deliveries(rt)}
    assert rows["sms"].error.startswith("[invalid-phone]")
    assert rows["none"].state == "failed_permanent" and "tried: sms" in rows["none"].error
    assert "delivery.no_channel" in event_kinds(rt)
    rt.close()


# --------------------------------------------------------------------------------------------------
# Crash between the provider call and the status write
# --------------------------------------------------------------------------------------------------


def crash_on_call(monkeypatch, number: int):
    calls = {"n": 0}
    real = ledger_outbox.mark_sent

    def mark_sent(session, delivery, provider_id):
        calls["n"] += 1
        if calls["n"] == number:
            raise RuntimeError("killed after the provider call")
        return real(session, delivery, provider_id)

    monkeypatch.setattr(ledger_outbox, "mark_sent", mark_sent)
    return lambda: monkeypatch.setattr(ledger_outbox, "mark_sent", real)


def test_crash_with_sms_is_settled_by_the_delivery_report_exactly_once(tmp_path, cm):
    rt = make_runtime(tmp_path, channels="sms")
    rt._channels = {"sms": sms_channel(cm)}
    add_invoices(rt, 6)
    restore = crash_on_call(monkeypatch := pytest.MonkeyPatch(), 3)
    try:
        with pytest.raises(RuntimeError):
            run(rt)
    finally:
        restore()
        monkeypatch.undo()
    (orphan,) = [d for d in deliveries(rt) if d.state == "sending"]
    # Restarted at once: the orphan waits for its report instead of being sent again.
    restarted = dispatch.dispatch_due(rt, limit=100, now=now())
    assert restarted.awaiting_report == 1
    reference = gateway_reference(orphan.idempotency_key)
    assert reference in {m["reference"] for m in cm.accepted}
    report = {"sent": "2026-11-04T09:00:01", "received": "2026-11-04T09:00:03",
              "to": "0032470120000", "reference": reference, "statuscode": "2"}
    path = tmp_path / "dlr.jsonl"
    path.write_text(json.dumps(report) + "\n")
    assert feedback.apply_feedback_file(rt, path).delivered == 1
    later = dispatch.dispatch_due(rt, limit=100, now=now() + timedelta(hours=1))
    assert later.sent == 0 and later.awaiting_report == 0
    references = [m["reference"] for m in cm.accepted]
    assert len(references) == len(set(references)) == 6  # exactly once each
    assert {d.state for d in deliveries(rt)} <= {"sent", "delivered"}
    rt.close()


def test_crash_with_sms_and_no_report_is_resent_with_the_same_reference(tmp_path, cm, monkeypatch):
    rt = make_runtime(tmp_path, channels="sms")
    rt._channels = {"sms": sms_channel(cm)}
    add_invoices(rt, 4)
    restore = crash_on_call(monkeypatch, 2)
    with pytest.raises(RuntimeError):
        run(rt)
    restore()
    after_grace = now() + timedelta(seconds=dispatch.DispatchLimits().report_grace_seconds + 60)
    assert dispatch.dispatch_due(rt, limit=100, now=after_grace).sent >= 1
    references = [m["reference"] for m in cm.accepted]
    # CM.com does not de-duplicate on reference: at least once, and the repeat is recognisable.
    assert len(set(references)) == 4 and len(references) == 5
    assert {d.state for d in deliveries(rt)} == {"sent"}
    rt.close()


def test_crash_with_smtp_resends_under_the_same_message_id(tmp_path, smtp_sink, monkeypatch):
    sink, port = smtp_sink
    rt = make_runtime(tmp_path)
    rt._channels = {"email": SmtpEmail("127.0.0.1", port, security="plain")}
    add_invoices(rt, 4)
    restore = crash_on_call(monkeypatch, 2)
    with pytest.raises(RuntimeError):
        run(rt)
    restore()
    assert dispatch.dispatch_due(rt, limit=100, now=now()).sent >= 1
    ids = [m["Message-ID"].strip() for m in sink.messages]
    # SMTP has no idempotency: the crashed message arrives twice, with one Message-ID.
    assert len(set(ids)) == 4 and len(ids) == 5
    rt.close()


def test_crash_with_print_shop_stages_every_letter_exactly_once(tmp_path, monkeypatch):
    rt = make_runtime(tmp_path, channels="post")
    remote = tmp_path / "shop"
    rt._channels = {"post": PrintShopPost(tmp_path / "spool", lambda: LocalStore(remote),
                                          clock=lambda: NOW)}
    add_invoices(rt, 4)
    restore = crash_on_call(monkeypatch, 2)
    with pytest.raises(RuntimeError):
        run(rt)
    restore()
    again = dispatch.dispatch_due(rt, limit=100, now=now())
    assert again.duplicates == 1
    (batch,) = dispatch.flush_post(rt, NOW.date())
    manifest = json.loads((remote / CREDITOR / batch.manifest_file).read_bytes())
    keys = [item["delivery_key"] for item in manifest["items"]]
    assert len(keys) == len(set(keys)) == 4
    rt.close()


# --------------------------------------------------------------------------------------------------
# Concurrency and rate limits
# --------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


class Recording(LocalSmsOutbox):
    """The local SMS outbox, noting when (fake clock) and how many at once it sends."""

    def __init__(self, root, clock=None, pause=0.0):
        super().__init__(root)
        self.fake_clock, self.pause = clock, pause
        self.times: list[float] = []
        self.in_flight = self.most_in_flight = 0
        self._count_lock = threading.Lock()

    def send(self, message):
        with self._count_lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.fake_clock:
                self.times.append(self.fake_clock())
        time.sleep(self.pause)
        try:
            return super().send(message)
        finally:
            with self._count_lock:
                self.in_flight -= 1


def test_rate_limit_is_honoured(tmp_path):
    clock = FakeClock()
    rt = make_runtime(tmp_path, channels="sms")
    channel = Recording(tmp_path / "out", clock)
    rt._channels = {"sms": channel}
    add_invoices(rt, 8)
    limits = dispatch.DispatchLimits(concurrency={"sms": 1}, rate_per_second={"sms": 4})
    bucket = dispatch.TokenBucket(4, burst=1, clock=clock, sleep=clock.sleep)
    assert run(rt, limits=limits, buckets={"sms": bucket}).sent == 8
    assert len(channel.times) == 8
    for k, when in enumerate(channel.times):
        assert when >= k / 4 - 1e-9  # never faster than 4 a second
    assert clock.now == pytest.approx(7 / 4)  # and no slower either
    rt.close()


def test_each_channel_sends_with_its_own_bounded_pool(tmp_path):
    rt = make_runtime(tmp_path, channels="sms")
    channel = Recording(tmp_path / "out", pause=0.05)
    rt._channels = {"sms": channel}
    add_invoices(rt, 9)
    limits = dispatch.DispatchLimits(concurrency={"sms": 3})
    assert run(rt, limits=limits).sent == 9
    assert channel.most_in_flight == 3
    rt.close()


# --------------------------------------------------------------------------------------------------
# Delivery feedback
# --------------------------------------------------------------------------------------------------


def sendgrid_event(key: str, event: str, **extra) -> dict:
    return {"email": "x@example.be", "timestamp": 1793782800, "event": event,
            "sg_event_id": f"ev-{event}-{key[-6:]}", "sg_message_id": "fake.1",
            "delivery_key": key, "creditor": CREDITOR, **extra}


def test_feedback_file_marks_delivered_and_a_bounce_plans_the_next_channel(tmp_path, sendgrid, cm):
    rt = make_runtime(tmp_path)
    rt._channels = {"email": sendgrid_channel(sendgrid), "sms": sms_channel(cm)}
    add_invoices(rt, 3)
    run(rt)
    first, second, third = deliveries(rt)
    payload = [sendgrid_event(first.idempotency_key, "processed"),
               sendgrid_event(first.idempotency_key, "delivered"),
               sendgrid_event(second.idempotency_key, "bounce", status="5.1.1",
                              reason="550 5.1.1 user unknown", type="bounce"),
               sendgrid_event(third.idempotency_key, "open"),
               sendgrid_event("demo-utility/unknown/initial/email", "delivered")]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(payload))
    outcome = feedback.apply_feedback_file(rt, path)
    assert (outcome.delivered, outcome.bounced, outcome.ignored) == (1, 1, 1)
    assert outcome.next_channels == ["sms"] and len(outcome.unknown) == 1
    # Applying the same file again changes nothing (providers resend events).
    assert feedback.apply_feedback_file(rt, path).delivered == 0
    assert dispatch.dispatch_due(rt, limit=10, now=NOW).by_channel == {"sms": 1}
    states = {(d.invoice_id, d.channel): d.state for d in deliveries(rt)}
    assert states[(first.invoice_id, "email")] == "delivered"
    assert states[(second.invoice_id, "email")] == "bounced"
    assert states[(second.invoice_id, "sms")] == "sent"
    assert "delivery.feedback.bounced" in event_kinds(rt)
    rt.close()


def test_signed_webhook_endpoint_applies_only_verified_events(tmp_path, sendgrid):
    rt = make_runtime(tmp_path)
    rt._channels = {"email": sendgrid_channel(sendgrid)}
    add_invoices(rt, 1)
    run(rt)
    (row,) = deliveries(rt)
    private = ec.generate_private_key(ec.SECP256R1())
    public_b64 = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    server = feedback.serve_feedback(rt, "127.0.0.1", 0, sendgrid_public_key=public_b64)
    url = f"http://127.0.0.1:{server.server_address[1]}/sendgrid"
    body = json.dumps([sendgrid_event(row.idempotency_key, "delivered")]).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256())))
    try:
        forged = httpx.post(url, content=body.replace(b"delivered", b"bounce"), headers={
            feedback.SIGNATURE_HEADER: signature.decode(), feedback.TIMESTAMP_HEADER: stamp})
        assert forged.status_code == 403
        assert deliveries(rt)[0].state == "sent"
        ok = httpx.post(url, content=body, headers={
            feedback.SIGNATURE_HEADER: signature.decode(), feedback.TIMESTAMP_HEADER: stamp})
        assert ok.status_code == 200 and ok.json()["delivered"] == 1
        assert httpx.post(url, content=b"[1]", headers={
            feedback.SIGNATURE_HEADER: "", feedback.TIMESTAMP_HEADER: ""}).status_code == 403
    finally:
        server.shutdown()
        server.server_close()
    assert deliveries(rt)[0].state == "delivered"
    rt.close()
