"""The embedded-default channels: "deliver" into a local folder so a person sees what would be sent.

Each adapter writes what the real provider would receive (an RFC 5322 .eml, an SMS line, the PDF
plus a print-shop manifest line) under one outbox root. The folder is also the adapter's memory of
what it already delivered: the outbox ledger may lose the "sent" mark when a process dies between
send() and the ledger update, so a resend with the same idempotency key must be recognised here and
reported as a duplicate instead of being delivered twice, by this process or by another one working
the same folder. The file discipline that makes this hold (names from keys, atomic writes, the
append-once journal) lives in `channels.spool`, shared with the print shop.

Files are created 0600: they hold debtors' addresses, phone numbers and amounts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

from creditflow.channels.base import PermanentSendError, SendResult, TransientSendError
from creditflow.channels.mime import build_email
from creditflow.channels.sms_text import count_sms_segments, e164
from creditflow.channels.spool import IdempotencyJournal, safe_name, write_atomically
from creditflow.renderers.messages import Attachment, Message, PostalAddress

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _inside(folder: Path, name: str) -> Path:
    """folder/name, refusing anything that lands elsewhere (defence in depth behind safe_name)."""
    path = folder / name
    if path.parent != folder or os.sep in name or name in {".", ".."}:
        raise PermanentSendError(f"file name {name!r} would leave {folder}", code="unsafe-key")
    return path


def _io_error(exc: OSError, what: str) -> TransientSendError:
    """A full disk or a permission problem is fixed by an operator, not by another channel."""
    return TransientSendError(f"local outbox cannot {what}: {exc.strerror or exc}", code="local-io")


# --------------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------------


class LocalEmailOutbox:
    """E-mail as `<root>/email/<safe key>.eml`: exactly the bytes an SMTP server would receive."""

    name = "email"

    def __init__(self, root: Path | str, *, clock: Clock = _utc_now):
        self.folder = Path(root) / "email"
        self._clock = clock

    def send(self, message: Message) -> SendResult:
        if not message.to_email:
            raise PermanentSendError(
                f"{message.idempotency_key}: no e-mail address for this debtor", code="no-recipient"
            )
        path = _inside(self.folder, safe_name(message.idempotency_key) + ".eml")
        try:
            if path.exists():
                return SendResult(_existing_message_id(path), detail=str(path), duplicate=True)
            data, message_id = self._build(message)
            self.folder.mkdir(parents=True, exist_ok=True)
            created = write_atomically(path, data, overwrite=False)
        except OSError as exc:
            raise _io_error(exc, f"write {path.name}") from None
        if not created:
            return SendResult(_existing_message_id(path), detail=str(path), duplicate=True)
        log.debug("outbox e-mail %s written", message.idempotency_key)
        return SendResult(message_id, detail=str(path))

    def _build(self, message: Message) -> tuple[bytes, str]:
        """The same bytes the SMTP adapter sends (channels.mime), so the .eml is what would arrive."""
        built = build_email(message, now=_aware(self._clock()))
        return built.data, built.message_id

    def close(self) -> None:
        """Nothing held open between sends."""


def _existing_message_id(path: Path) -> str:
    with path.open("rb") as handle:
        headers = BytesHeaderParser(policy=policy.default).parse(handle)
    return str(headers.get("Message-ID", "")).strip()


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PermanentSendError("the outbox clock must return timezone-aware datetimes",
                                 code="configuration")
    return moment


class LocalSmsOutbox:
    """SMS as one JSON object per line in `<root>/sms.jsonl`."""

    name = "sms"

    def __init__(self, root: Path | str, *, max_segments: int = 2, clock: Clock = _utc_now):
        if max_segments < 1:
            raise ValueError("max_segments must be at least 1")
        self.path = Path(root) / "sms.jsonl"
        self.max_segments = max_segments
        self._clock = clock
        self._journal = IdempotencyJournal(self.path)

    def send(self, message: Message) -> SendResult:
        key = message.idempotency_key
        to = e164(message.to_phone, key)
        if not message.text:
            raise PermanentSendError(f"{key}: the SMS text is empty", code="empty-text")
        count = count_sms_segments(message.text)
        if count.segments > self.max_segments:
            raise PermanentSendError(
                f"{key}: SMS text needs {count.segments} {count.encoding} segments "
                f"({count.units} units), more than the {self.max_segments} allowed",
                code="too-long",
            )

        def record() -> dict:
            return {
                "to": to,
                "text": message.text,
                "segments": count.segments,
                "encoding": count.encoding,
                "creditor": message.creditor_id,
                "invoice": message.invoice_number,
                "created_at": _aware(self._clock()).astimezone(UTC).isoformat(),
            }

        try:
            appended = self._journal.append_once(key, record)
        except OSError as exc:
            raise _io_error(exc, f"append to {self.path.name}") from None
        except ValueError as exc:  # text that cannot be written as UTF-8 (a lone surrogate)
            raise PermanentSendError(
                f"{key}: cannot record the SMS: {exc}", code="invalid-message"
            ) from None
        return SendResult(key, detail=str(self.path), duplicate=not appended)

    def close(self) -> None:
        """Nothing held open between sends."""


_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![^\s/<>\[\]()%{}])")


def count_pdf_pages(pdf: bytes) -> int:
    """Pages of a PDF, by its `/Type /Page` objects; 1 when they hide in compressed object streams.

    Only the print shop's manifest uses it (postage, sheets), so a rough count is enough.
    """
    return max(1, len(_PAGE_OBJECT.findall(pdf)))


class LocalPostOutbox:
    """Letters as `<root>/post/<safe key>.pdf` plus a line in `<root>/post/manifest.jsonl`.

    The manifest, not the PDF, says what was "handed to the print shop": the PDF is (re)written
    first, so a crash before the manifest line leaves a retry free to finish the job once.
    """

    name = "post"
    envelope = "C5-window"

    def __init__(self, root: Path | str, *, clock: Clock = _utc_now):
        self.folder = Path(root) / "post"
        self._clock = clock
        self._journal = IdempotencyJournal(self.folder / "manifest.jsonl")

    def send(self, message: Message) -> SendResult:
        key = message.idempotency_key
        address, pdf = letter_parts(message)
        path = _inside(self.folder, safe_name(key) + ".pdf")

        def record() -> dict:
            # Runs under the manifest lock, only for a new key: write the document, then log it.
            write_atomically(path, pdf.data, overwrite=True)
            return {
                "creditor": message.creditor_id,
                "invoice": message.invoice_number,
                "recipient": address.name,
                "address_lines": [address.street, f"{address.postcode} {address.city}"],
                "country": address.country,
                "document": path.name,
                "sha256": hashlib.sha256(pdf.data).hexdigest(),
                "pages": count_pdf_pages(pdf.data),
                "envelope": self.envelope,
                "registered": False,
                "created_at": _aware(self._clock()).astimezone(UTC).isoformat(),
            }

        try:
            appended = self._journal.append_once(key, record)
        except OSError as exc:
            raise _io_error(exc, f"write {path.name}") from None
        except ValueError as exc:  # a name or address that cannot be written as UTF-8
            raise PermanentSendError(
                f"{key}: cannot record the letter: {exc}", code="invalid-message"
            ) from None
        return SendResult(key, detail=str(path), duplicate=not appended)

    def close(self) -> None:
        """Nothing held open between sends."""


def letter_parts(message: Message) -> tuple[PostalAddress, Attachment]:
    """The full postal address and the PDF a letter needs, or PermanentSendError (no letter can go)."""
    key, address = message.idempotency_key, message.to_address
    if address is None or not all(
        part.strip() for part in (address.name, address.street, address.postcode, address.city)
    ):
        raise PermanentSendError(f"{key}: no complete postal address", code="no-recipient")
    pdf = _first_pdf(message)
    if pdf is None:
        raise PermanentSendError(f"{key}: no PDF to print", code="no-document")
    return address, pdf


def _first_pdf(message: Message) -> Attachment | None:
    for attachment in message.attachments:
        is_pdf = attachment.content_type.split(";")[0].strip().lower() == "application/pdf"
        if is_pdf and attachment.data.startswith(b"%PDF-"):
            return attachment
    return None
