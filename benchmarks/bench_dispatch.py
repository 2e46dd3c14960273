"""Dispatch throughput: e-mails through the SendGrid adapter and SMS through the SMS gateway adapter.

Both go to the local fake providers (tests/fakes), run in a separate process so the server's work does
not compete with ours for the GIL. For each adapter we measure the total time and the time spent
inside the HTTP round trip (the library's transport call), so "our overhead" is what the adapter adds:
building and checking the request, encoding, error mapping. The plain-library baseline sends a
pre-built minimal request with the same client library and no adapter.

    python benchmarks/bench_dispatch.py [--count 10000]

Target: our overhead < 2 ms per message.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path
import time
from contextlib import contextmanager
from dataclasses import dataclass

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fake providers live there

SENDGRID_KEY = "SG.bench-key"
SMS_TOKEN = "00000000-0000-0000-0000-000000000000"


# --------------------------------------------------------------------------------------------------
# The fake providers, in their own process
# --------------------------------------------------------------------------------------------------


def serve() -> None:
    from fakes.sendgrid import FakeSendGrid
    from fakes.sms_gateway import FakeCmGateway

    sendgrid, gateway = FakeSendGrid(api_key=SENDGRID_KEY), FakeCmGateway(product_token=SMS_TOKEN)
    for fake in (sendgrid, gateway):
        fake.record_requests = False  # flat memory over 10,000s of requests
        fake.start()
    print(sendgrid.url, gateway.url + gateway.path, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    counts = (len(sendgrid.rejections), len(gateway.rejections))
    print(f"rejections {counts[0]} {counts[1]}", flush=True)


@contextmanager
def fake_providers():
    process = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        sendgrid_url, sms_url = process.stdout.readline().split()
        yield sendgrid_url, sms_url, process
    finally:
        if process.stdin and not process.stdin.closed:
            process.stdin.close()
        process.wait(timeout=30)


# --------------------------------------------------------------------------------------------------
# Timing the transport call
# --------------------------------------------------------------------------------------------------


class RoundTripClock:
    """Wraps a method so the time spent inside it is summed (the HTTP round trip)."""

    def __init__(self, owner: type, method: str):
        self.owner, self.method = owner, method
        self.original = getattr(owner, method)
        self.seconds = 0.0

    def __enter__(self) -> RoundTripClock:
        original, clock = self.original, self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - start

        setattr(self.owner, self.method, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.method, self.original)


@dataclass
class Run:
    label: str
    count: int
    total: float
    round_trip: float

    def line(self) -> str:
        own = self.total - self.round_trip
        return (f"{self.label:<34} {self.count / self.total:9.0f} msg/s   "
                f"round trip {self.round_trip / self.count * 1e3:6.3f} ms   "
                f"outside it {own / self.count * 1e3:6.3f} ms/msg "
                f"({own / self.total:5.1%} of the time)")


def timed_run(label: str, count: int, owner: type, method: str, send) -> Run:
    with RoundTripClock(owner, method) as clock:
        start = time.perf_counter()
        for index in range(count):
            send(index)
        total = time.perf_counter() - start
    return Run(label, count, total, clock.seconds)


# --------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------


def invoice_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1, pageCompression=0)
    for line in range(60):
        pdf.drawString(50, 800 - line * 12, f"Lijn {line:02d}  Verbruik elektriciteit  12,34 kWh  € 3,21")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def bench_sendgrid(url: str, count: int) -> tuple[Run, Run, int]:
    from python_http_client.client import Client
    from sendgrid import SendGridAPIClient

    from creditflow.channels.sendgrid_email import SendGridEmail
    from creditflow.renderers.messages import Attachment, Message

    pdf = invoice_pdf()
    messages = [
        Message(
            idempotency_key=f"demo-utility/INV-{n:06d}/initial/email", channel="email",
            creditor_id="demo-utility", invoice_number=f"INV-{n:06d}", language="nl",
            sender_name="Demo Nutsbedrijf", sender_email="facturen@demo-utility.example",
            subject=f"Factuur INV-{n:06d}", text="Beste klant,\n\nIn bijlage uw factuur.\n" * 5,
            html="<p>Beste klant,</p><p>In bijlage uw factuur.</p>" * 5,
            to_email=f"klant{n}@example.com", to_name=f"Klant {n}",
            attachments=(Attachment(f"factuur-INV-{n:06d}.pdf", "application/pdf", pdf),),
        )
        for n in range(count)
    ]
    adapter = SendGridEmail(SENDGRID_KEY, host=url)
    ours = timed_run("SendGrid adapter", count, Client, "_make_request",
                     lambda i: adapter.send(messages[i]))

    import base64

    body = {  # pre-built once: the plain library alone
        "personalizations": [{"to": [{"email": "klant@example.com"}]}],
        "from": {"email": "facturen@demo-utility.example"}, "subject": "Factuur",
        "content": [{"type": "text/plain", "value": "Beste klant"}],
        "attachments": [{"content": base64.b64encode(pdf).decode(), "filename": "f.pdf",
                         "type": "application/pdf"}],
    }
    plain = SendGridAPIClient(api_key=SENDGRID_KEY, host=url)
    baseline = timed_run("baseline: sendgrid lib, fixed body", count, Client, "_make_request",
                         lambda i: plain.send(body))
    return ours, baseline, len(pdf)


def bench_sms(url: str, count: int) -> tuple[Run, Run]:
    import httpx

    from creditflow.channels.sms_gateway import SmsGateway
    from creditflow.renderers.messages import Message

    messages = [
        Message(
            idempotency_key=f"demo-utility/INV-{n:06d}/reminder-1/sms", channel="sms",
            creditor_id="demo-utility", invoice_number=f"INV-{n:06d}", language="nl",
            sender_name="Demo", sender_email="x@demo-utility.example",
            text=f"Demo Nutsbedrijf: factuur INV-{n:06d} (€ 123,45) is vervallen. "
                 "Betaal via https://pay.example/p/abc",
            to_phone=f"+3247{n % 10_000_000:07d}",
        )
        for n in range(count)
    ]
    adapter = SmsGateway(SMS_TOKEN, url=url, sender="DemoNuts")
    ours = timed_run("SMS gateway adapter", count, httpx.Client, "send",
                     lambda i: adapter.send(messages[i]))
    adapter.close()

    body = {"messages": {"msg": [{"from": "DemoNuts", "to": [{"number": "0032470000000"}],
                                  "body": {"type": "auto", "content": "Factuur vervallen"},
                                  "reference": "bench-1"}]}}
    with httpx.Client(headers={"X-CM-PRODUCTTOKEN": SMS_TOKEN}) as client:
        baseline = timed_run("baseline: httpx, fixed body", count, httpx.Client, "send",
                             lambda i: client.post(url, json=body).raise_for_status())
    return ours, baseline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    with fake_providers() as (sendgrid_url, sms_url, process):
        email, email_base, pdf_size = bench_sendgrid(sendgrid_url, args.count)
        sms, sms_base = bench_sms(sms_url, args.count)
        process.stdin.close()
        rejections = process.stdout.readline().strip()
    print(f"{args.count} messages each; e-mail with a {pdf_size:,}-byte PDF; fake providers in a "
          "separate process")
    for run in (email, email_base, sms, sms_base):
        print(run.line())
    print(f"fake providers' {rejections} (must be 0 0)")
    for run in (email, sms):
        own_ms = (run.total - run.round_trip) / run.count * 1e3
        print(f"{run.label}: our overhead {own_ms:.3f} ms/msg -> "
              f"{'OK' if own_ms < 2 else 'OVER'} the 2 ms target")


if __name__ == "__main__":
    main()
