"""Letters through a print shop: one print file and one manifest per creditor per day, over SFTP.

Print shops price and schedule by batch, not by letter: they want one PDF a day (every letter
one after the other) plus a manifest saying where each letter starts, how many pages it has, which
envelope and whether it goes registered. So `send()` does not talk to the print shop at all: it
stages the letter in a local spool (idempotent by the outbox key, across processes: see
`channels.spool`) and `flush_print_batch(day)` seals that day's batch and uploads it once.

Sealing writes the merged PDF and the manifest into the spool before anything is uploaded, so a
retried flush uploads the very same bytes: the upload names are deterministic, and a remote file
with the same sha256 is left alone instead of being uploaded (and printed) twice. A remote file
with the same name and other bytes is never overwritten (the shop may have printed it already): it
is an operator's problem, raised as PrintBatchConflict. A letter staged after its day was sealed
joins the next day's batch. The upload itself is atomic (SftpStore writes `.part`, then renames).

The PDFs are merged with pypdf; the page counts in the manifest are pypdf's, not an estimate.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditflow.channels.base import Channel, PermanentSendError, SendResult, TransientSendError
from creditflow.channels.local_outbox import Clock, _utc_now, letter_parts
from creditflow.channels.registry import register
from creditflow.channels.spool import IdempotencyJournal, safe_name, write_atomically
from creditflow.config.ids import is_creditor_id
from creditflow.config.settings import BRUSSELS, Settings
from creditflow.renderers.messages import Message

SMALL_ENVELOPE_MAX_PAGES = 5  # a C5 window envelope takes about five folded sheets
_TRUE = {"1", "true", "yes", "y"}


class PrintBatchConflict(Exception):
    """The print shop already holds a different file under this batch's name: not overwritten."""


class PrintShopSettings(BaseSettings):
    """`CREDITFLOW_PRINTSHOP_*`: the print shop's SFTP drop folder and our local spool."""

    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_PRINTSHOP_", extra="ignore")

    host: str
    port: int = Field(22, ge=1, le=65535)
    username: str
    password: SecretStr | None = None
    key_path: Path | None = None
    known_host_key: str | None = Field(None, description="'ssh-ed25519 AAAA...' of the shop's server.")
    known_hosts_path: Path | None = None
    root: str = Field("upload", description="Folder on the server the shop polls.")
    spool_dir: Path | None = Field(None, description="Local spool; default: <home>/printshop.")
    timeout_seconds: float = Field(15.0, gt=0)


@dataclass(frozen=True)
class PrintBatch:
    creditor_id: str
    day: date
    letters: int
    pages: int
    print_file: str
    manifest_file: str
    uploaded: list[str] = field(default_factory=list)  # names uploaded by this call
    already_there: list[str] = field(default_factory=list)  # same sha256 found remotely


def _creditor_folder(creditor_id: str) -> str:
    """The creditor id as a folder name: profiles guarantee the shape, checked again here because
    it names folders locally and on the print shop's server."""
    if not is_creditor_id(creditor_id):
        raise PermanentSendError(f"creditor id {creditor_id!r} cannot name a folder", code="invalid-message")
    return creditor_id


def _pdf_pages(data: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(data)).pages)


def merge_pdfs(documents: list[bytes]) -> bytes:
    """One PDF of every document in order (pypdf; reportlab only writes, it cannot merge)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for data in documents:
        writer.append(io.BytesIO(data))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


class PrintShopPost:
    name = "printshop"

    def __init__(self, spool_dir: Path | str, store_factory: Callable[[], object], *,
                 clock: Clock = _utc_now):
        self.spool = Path(spool_dir)
        self._store_factory = store_factory
        self._store = None
        self._clock = clock
        self._journals: dict[str, IdempotencyJournal] = {}

    @classmethod
    def from_settings(cls, config: PrintShopSettings, settings: Settings) -> PrintShopPost:
        from creditflow.stores.sftp import SftpStore

        known = config.known_host_key or config.known_hosts_path
        if known is None:
            raise ValueError("CREDITFLOW_PRINTSHOP_KNOWN_HOST_KEY or _KNOWN_HOSTS_PATH is required: "
                             "an unknown host key is never accepted")

        def store() -> SftpStore:
            return SftpStore(config.host, config.port, config.username, root=config.root,
                             known_host_key=known, password=config.password,
                             key_path=config.key_path, timeout=config.timeout_seconds)

        return cls(config.spool_dir or settings.home / "printshop", store)

    def __repr__(self) -> str:
        return f"PrintShopPost(spool={str(self.spool)!r})"

    # -- staging -----------------------------------------------------------------------------------

    def send(self, message: Message) -> SendResult:
        key = message.idempotency_key
        address, pdf = letter_parts(message)
        try:
            pages = _pdf_pages(pdf.data)
        except Exception as exc:  # pypdf raises many types for a damaged file
            raise PermanentSendError(f"{key}: the PDF cannot be read: {exc}", code="no-document") from None
        creditor = _creditor_folder(message.creditor_id)
        folder = self.spool / creditor
        document = folder / "letters" / (safe_name(key) + ".pdf")
        staged: dict[str, str] = {}

        def record() -> dict:
            # Under both locks, only for a new key: the day is chosen here so a concurrent seal
            # cannot close the day between choosing it and writing the line.
            document.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(document, pdf.data, overwrite=True)
            day = self._open_day(creditor)
            staged["day"] = day.isoformat()
            registered = message.metadata.get("registered", "").strip().lower() in _TRUE
            envelope = message.metadata.get("envelope") or (
                "C5-window" if pages <= SMALL_ENVELOPE_MAX_PAGES else "C4-window")
            return {
                "batch": day.isoformat(),
                "invoice": message.invoice_number,
                "recipient": address.name,
                "address_lines": [address.street, f"{address.postcode} {address.city}"],
                "country": address.country,
                "document": document.name,
                "sha256": hashlib.sha256(pdf.data).hexdigest(),
                "pages": pages,
                "envelope": envelope,
                "registered": registered,
                "staged_at": self._clock().astimezone(UTC).isoformat(),
            }

        try:
            with self._creditor_lock(creditor):
                journal = self._journal(creditor)
                appended = journal.append_once(key, record)
                if not appended:
                    # A resend: append_once has just read every line up to the key's, so the
                    # journal's memory answers which batch took the letter, without a reread.
                    staged["day"] = journal.remembered(key, "?")
        except OSError as exc:
            raise TransientSendError(f"{key}: print spool cannot stage the letter: {exc}",
                                     code="local-io") from None
        return SendResult(f"print/{staged['day']}/{safe_name(key)}",
                          detail=json.dumps({"batch": staged["day"], "pages": pages}),
                          duplicate=not appended)

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None and hasattr(store, "close"):
            store.close()

    # -- the daily batch ---------------------------------------------------------------------------

    def flush_print_batch(self, day: date, *, creditor_id: str | None = None) -> list[PrintBatch]:
        """Seal `day`'s letters of each creditor (or one) and upload print file + manifest once."""
        if creditor_id:
            creditors = [_creditor_folder(creditor_id)]
        elif self.spool.is_dir():
            creditors = sorted(p.name for p in self.spool.iterdir() if p.is_dir())
        else:
            creditors = []
        batches = []
        for creditor in creditors:
            sealed = self._seal(creditor, day)
            if sealed is not None:
                batches.append(self._upload(creditor, day, sealed))
        return batches

    def _seal(self, creditor: str, day: date) -> dict | None:
        folder = self.spool / creditor / "batches" / day.isoformat()
        seal = folder / "sealed.json"
        with self._creditor_lock(creditor):
            if seal.exists():
                return json.loads(seal.read_text())
            # Read whole, once per batch: a seal is rare, and the letters' details are not kept.
            letters = [r for r in self._journal(creditor).records()
                       if r["batch"] == day.isoformat()]
            if not letters:
                return None
            letters.sort(key=lambda r: (r["invoice"], r["key"]))
            documents = [(self.spool / creditor / "letters" / r["document"]).read_bytes()
                         for r in letters]
            merged = merge_pdfs(documents)
            stem = f"{creditor}-{day.isoformat()}"
            print_file, manifest_file = f"{stem}-letters.pdf", f"{stem}-manifest.json"
            items, first_page = [], 1
            for number, r in enumerate(letters, start=1):
                items.append({
                    "sequence": number, "first_page": first_page, "pages": r["pages"],
                    "invoice": r["invoice"], "delivery_key": r["key"],
                    "recipient": r["recipient"], "address_lines": r["address_lines"],
                    "country": r["country"], "envelope": r["envelope"],
                    "registered": r["registered"],
                })
                first_page += r["pages"]
            manifest = {
                "creditor": creditor, "batch_date": day.isoformat(), "print_file": print_file,
                "print_file_sha256": hashlib.sha256(merged).hexdigest(),
                "letters": len(items), "pages": first_page - 1, "items": items,
            }
            manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / print_file, merged, overwrite=True)
            write_atomically(folder / manifest_file, manifest_bytes, overwrite=True)
            sealed = {"print_file": print_file, "manifest_file": manifest_file,
                      "letters": len(items), "pages": first_page - 1}
            write_atomically(seal, json.dumps(sealed).encode(), overwrite=True)  # the seal, last
            return sealed

    def _upload(self, creditor: str, day: date, sealed: dict) -> PrintBatch:
        folder = self.spool / creditor / "batches" / day.isoformat()
        store = self._remote()
        uploaded, already = [], []
        # The print file first: a shop that polls for manifests never finds one without its PDF.
        for name in (sealed["print_file"], sealed["manifest_file"]):
            data = (folder / name).read_bytes()
            if store.exists(creditor, name):
                remote = store.read(creditor, name)
                if remote != data:
                    raise PrintBatchConflict(
                        f"{store.describe(creditor, name)} exists with other content; not overwritten")
                already.append(name)
                continue
            store.write(creditor, name, data)
            uploaded.append(name)
        return PrintBatch(creditor, day, sealed["letters"], sealed["pages"], sealed["print_file"],
                          sealed["manifest_file"], uploaded, already)

    # -- helpers -----------------------------------------------------------------------------------

    def _remote(self):
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _journal(self, creditor: str) -> IdempotencyJournal:
        """One journal per creditor for this instance's life, so its lines are read once.

        Other processes staging for the same creditor append to the same file under its flock; the
        journal catches up on their lines at each append (see IdempotencyJournal for what it
        assumes of the file). Each letter's batch day is all it keeps: a resend must report it.
        """
        if creditor not in self._journals:
            self._journals[creditor] = IdempotencyJournal(
                self.spool / creditor / "letters.jsonl", remember=_batch_of)
        return self._journals[creditor]

    def _open_day(self, creditor: str) -> date:
        """Today (Brussels), or the first later day whose batch is not sealed yet."""
        day = self._clock().astimezone(BRUSSELS).date()
        while (self.spool / creditor / "batches" / day.isoformat() / "sealed.json").exists():
            day += timedelta(days=1)
        return day

    @contextmanager
    def _creditor_lock(self, creditor: str) -> Iterator[None]:
        """Staging and sealing exclude each other, across processes (flock on a lock file)."""
        folder = self.spool / creditor
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _batch_of(record: dict) -> str:
    """The batch day a staged letter joined (interned: a few distinct days for many letters)."""
    return sys.intern(str(record.get("batch", "?")))


@register("printshop")
def _printshop_channel(settings: Settings) -> Channel:
    return PrintShopPost.from_settings(PrintShopSettings(), settings)
