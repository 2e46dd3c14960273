"""Delivery feedback: what the providers later say about a message, applied to its delivery row.

"Sent" only means a provider took the message. SendGrid's Event Webhook and the SMS gateway's
delivery reports say what became of it: delivered, bounced (the address does not exist: never try
it again for this debtor, and plan the next channel now), or failed. Both carry our key back:
SendGrid as the `delivery_key` custom arg (sendgrid_email.py puts it there), CM.com as the message
`reference` (the key, or its stable hash: sms_gateway.gateway_reference).

Reports can arrive twice, out of order, and for a row still "sending" (the dispatcher died after
the provider call): a report for such a row is exactly what settles it without a second message.
A report never moves a row backwards (a late "delivered" does not undo a bounce).

Input: a file (JSON array, or JSON Lines) or the small HTTP endpoint `serve_feedback`. SendGrid's
signed webhook is checked with its ECDSA public key before anything in the body is believed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from creditflow.ledger import events, outbox
from creditflow.ledger.models import Delivery, DeliveryState
from creditflow.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SIGNATURE_AGE_SECONDS = 600

# SendGrid event -> our outcome. Opens and clicks are not delivery outcomes: ignored.
_SENDGRID = {"delivered": "delivered", "bounce": "bounced", "dropped": "bounced",
             "deferred": "deferred", "processed": "accepted", "blocked": "bounced"}
# CM.com status codes: 0 accepted by the operator, 1 rejected, 2 delivered, 3 failed.
_CM = {"0": "accepted", "1": "failed", "2": "delivered", "3": "failed"}
_RECEIVABLE = {DeliveryState.SENT.value, DeliveryState.SENDING.value}


class FeedbackError(ValueError):
    """A feedback payload that cannot be read (not JSON, not a provider's shape)."""


class FeedbackSignatureError(FeedbackError):
    """A webhook body whose signature does not verify: believe nothing in it."""


@dataclass(frozen=True)
class FeedbackEvent:
    source: str  # "sendgrid" | "sms"
    outcome: str  # delivered | bounced | failed | deferred | accepted | ignored
    delivery_key: str | None = None
    reference: str | None = None
    reason: str = ""
    provider_event: str = ""


@dataclass
class FeedbackOutcome:
    delivered: int = 0
    bounced: int = 0
    failed: int = 0
    noted: int = 0  # deferred / accepted: recorded as events, state unchanged
    ignored: int = 0  # opens, clicks, or a report for a row already final
    unknown: list[str] = field(default_factory=list)  # keys/references we do not know
    next_channels: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def load_payload(data: bytes) -> list[dict[str, Any]]:
    """A JSON array, one JSON object, or JSON Lines -> a list of objects."""
    text = data.decode("utf-8-sig").strip()
    if not text:
        return []
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise FeedbackError(f"neither JSON nor JSON Lines: {exc}") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(item, dict) for item in items):
        raise FeedbackError("every event must be a JSON object")
    return items


def parse_events(items: Iterable[dict[str, Any]]) -> list[FeedbackEvent]:
    """Provider events of either shape; each object is recognised by its own fields."""
    parsed: list[FeedbackEvent] = []
    for item in items:
        if "event" in item:
            parsed.append(_sendgrid_event(item))
        elif "messages" in item:
            parsed.extend(_cm_nested(item))
        elif "statuscode" in {k.lower() for k in item} or "reference" in {k.lower() for k in item}:
            parsed.append(_cm_flat(item))
        else:
            raise FeedbackError(f"not a SendGrid event nor an SMS report: keys {sorted(item)[:8]}")
    return parsed


def _sendgrid_event(item: dict[str, Any]) -> FeedbackEvent:
    kind = str(item.get("event", ""))
    reason = " ".join(str(item.get(k, "")) for k in ("status", "reason", "response") if item.get(k))
    key = item.get("delivery_key")
    return FeedbackEvent("sendgrid", _SENDGRID.get(kind, "ignored"),
                         delivery_key=key if isinstance(key, str) else None,
                         reason=reason.strip(), provider_event=kind)


def _cm_flat(item: dict[str, Any]) -> FeedbackEvent:
    lower = {k.lower(): v for k, v in item.items()}
    status = lower.get("statuscode")
    if isinstance(lower.get("status"), dict):
        status = lower["status"].get("code")
        lower.setdefault("errordescription", lower["status"].get("errorDescription"))
        lower.setdefault("errorcode", lower["status"].get("errorCode"))
    reference = lower.get("reference")
    reason = " ".join(str(lower.get(k)) for k in ("errorcode", "errordescription") if lower.get(k))
    return FeedbackEvent("sms", _CM.get(str(status), "ignored"),
                         reference=reference if isinstance(reference, str) else None,
                         reason=reason, provider_event=f"status {status}")


def _cm_nested(item: dict[str, Any]) -> list[FeedbackEvent]:
    msgs = (item.get("messages") or {}).get("msg")
    msgs = msgs if isinstance(msgs, list) else [msgs]
    return [_cm_flat(m) for m in msgs if isinstance(m, dict)]


def verify_sendgrid_signature(public_key: str, body: bytes, signature: str, timestamp: str, *,
                              now: datetime | None = None) -> None:
    """SendGrid's signed Event Webhook: ECDSA P-256/SHA-256 over timestamp + body, checked with
    the sendgrid library's verifier; a stale timestamp is refused too (replayed captures)."""
    from sendgrid.helpers.eventwebhook import EventWebhook

    if not signature or not timestamp:
        raise FeedbackSignatureError("the webhook request is not signed")
    try:
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
        verifier = EventWebhook(public_key)
        valid = verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise FeedbackSignatureError("unreadable signature, timestamp or key") from None
    if not valid:
        raise FeedbackSignatureError("the signature does not match the body")
    age = ((now or datetime.now(UTC)) - sent_at).total_seconds()
    if abs(age) > MAX_SIGNATURE_AGE_SECONDS:
        raise FeedbackSignatureError(f"the signature is {int(age)} s old")


# --------------------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------------------


def _find(session, event: FeedbackEvent) -> Delivery | None:
    if event.delivery_key:
        return session.scalars(
            select(Delivery).where(Delivery.idempotency_key == event.delivery_key)).one_or_none()
    if not event.reference:
        return None
    found = session.scalars(select(Delivery).where(
        Delivery.channel == "sms", Delivery.provider_id == event.reference)).first()
    if found is not None:
        return found
    # A row left "sending" by a crash has no provider id yet: match the reference it was sent with.
    from creditflow.channels.sms_gateway import gateway_reference

    for candidate in session.scalars(select(Delivery).where(
            Delivery.channel == "sms", Delivery.state == DeliveryState.SENDING.value)):
        if event.reference in (candidate.idempotency_key, gateway_reference(candidate.idempotency_key)):
            return candidate
    return None


def apply_feedback(rt: Runtime, feedback: Iterable[FeedbackEvent]) -> FeedbackOutcome:
    """Apply each event in its own transaction (one bad row does not undo the others)."""
    from creditflow.pipeline.dispatch import fall_back_after_bounce

    result = FeedbackOutcome()
    for event in feedback:
        if event.outcome == "ignored":
            result.ignored += 1
            continue
        with rt.sessions.begin() as session:
            delivery = _find(session, event)
            if delivery is None:
                result.unknown.append(event.delivery_key or event.reference or "(no key)")
                continue
            before = delivery.state
            events.record_event(session, kind=f"delivery.feedback.{event.outcome}",
                                entity="delivery", entity_id=delivery.id,
                                creditor_id=delivery.creditor_id, channel=delivery.channel,
                                source=event.source, provider_event=event.provider_event,
                                reason=event.reason, state_before=before)
            if event.outcome in ("deferred", "accepted") or before not in _RECEIVABLE:
                result.noted += event.outcome in ("deferred", "accepted")
                result.ignored += event.outcome not in ("deferred", "accepted")
                continue
            if event.outcome == "delivered":
                outbox.mark_receipt(session, delivery, "delivered")
                result.delivered += 1
                continue
            if event.outcome == "bounced":
                code = "invalid-address" if delivery.channel == "email" else "invalid-phone"
                outbox.mark_receipt(session, delivery, "bounced", error=f"[{code}] {event.reason}")
                result.bounced += 1
            else:
                outbox.mark_failed(session, delivery, f"[delivery-failed] {event.reason}",
                                   transient=False)
                result.failed += 1
            following = fall_back_after_bounce(rt, session, delivery)
            if following:
                result.next_channels.append(following)
    return result


def apply_feedback_file(rt: Runtime, path: Path | str) -> FeedbackOutcome:
    return apply_feedback(rt, parse_events(load_payload(Path(path).read_bytes())))


# --------------------------------------------------------------------------------------------------
# HTTP endpoint
# --------------------------------------------------------------------------------------------------


def serve_feedback(rt: Runtime, host: str, port: int, *, sendgrid_public_key: str | None = None,
                   sms_token: str | None = None, allow_unsigned: bool = False) -> ThreadingHTTPServer:
    """A started HTTP server (in a daemon thread) taking POST /sendgrid and POST /sms.

    /sendgrid must carry SendGrid's signature unless `allow_unsigned` (a test setup behind a
    firewall); /sms must carry `?token=<sms_token>` when one is set, because CM.com does not sign
    its reports. Call `.shutdown()` to stop it.
    """
    if sendgrid_public_key is None and not allow_unsigned:
        raise ValueError("give SendGrid's verification key, or allow_unsigned=True explicitly")
    lock = threading.Lock()  # one batch applied at a time: reports of one message stay in order

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return self._reply(413, {"error": "body too large"})
            body = self.rfile.read(length)
            try:
                if url.path == "/sendgrid":
                    if sendgrid_public_key is not None:
                        verify_sendgrid_signature(sendgrid_public_key, body,
                                                  self.headers.get(SIGNATURE_HEADER, ""),
                                                  self.headers.get(TIMESTAMP_HEADER, ""))
                elif url.path == "/sms":
                    given = parse_qs(url.query).get("token", [""])[0]
                    if sms_token is not None and given != sms_token:
                        raise FeedbackSignatureError("wrong or missing token")
                else:
                    return self._reply(404, {"error": "unknown path"})
                parsed = parse_events(load_payload(body))
            except FeedbackSignatureError as exc:
                return self._reply(403, {"error": str(exc)})
            except FeedbackError as exc:
                return self._reply(400, {"error": str(exc)})
            with lock:
                outcome = apply_feedback(rt, parsed)
            self._reply(200, {"delivered": outcome.delivered, "bounced": outcome.bounced,
                              "failed": outcome.failed, "unknown": len(outcome.unknown)})

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            log.info("feedback %s", format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def add_cli(subparsers) -> None:
    """`creditflow feedback FILE...` (apply provider events from files) for cli.build_parser."""
    parser = subparsers.add_parser("feedback", help="apply provider delivery events (SendGrid "
                                   "webhook JSON, SMS delivery reports) from files")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.set_defaults(func=_cmd_feedback)


def _cmd_feedback(args, settings) -> int:
    from creditflow.pipeline.runtime import open_runtime

    rt = open_runtime(settings)
    status = 0
    try:
        for name in args.files:
            try:
                outcome = apply_feedback_file(rt, name)
            except (OSError, FeedbackError) as exc:
                print(f"{name}: {exc}")
                status = 1
                continue
            print(f"{name}: {outcome.delivered} delivered, {outcome.bounced} bounced, "
                  f"{outcome.failed} failed, {outcome.noted} noted, {outcome.ignored} ignored, "
                  f"{len(outcome.unknown)} unknown"
                  + (f"; next channel planned: {len(outcome.next_channels)}"
                     if outcome.next_channels else ""))
    finally:
        rt.close()
    return status
