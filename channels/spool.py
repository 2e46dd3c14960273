"""The file discipline of channels that keep their own record of what they did (outbox, print shop).

The outbox ledger may lose a "sent" mark: a process can die after the adapter did its work and
before the ledger update commits, and the retry then sends the same idempotency key again. An
adapter whose effect is a file it writes itself can recognise that resend, but only if its files
survive the crash and tell it which keys are done. That takes three things, shared here so every
such adapter gets them the same way:

- `safe_name`: one file name per idempotency key, readable, and distinct for distinct keys;
- `write_atomically`: a file is there whole or not at all (temp file, fsync, rename or hard link);
- `IdempotencyJournal`: an append-only JSON Lines record, one line per key, appended at most once
  even by several processes, so a line in it means "done" across crashes and restarts.

Nothing here knows about messages or providers: mapping an OSError to a transient send error is the
adapter's business.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# File names from idempotency keys
# --------------------------------------------------------------------------------------------------

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SLUG_MAX_CHARS = 80
_HASH_CHARS = 16  # 64 bits of sha256: no collision among the keys one outbox folder will ever hold


def safe_name(key: str) -> str:
    """A single, bounded, filesystem-safe path component that still tells a person which key it is.

    The readable slug alone is lossy ("INV/1" and "INV_1" look alike, long keys are cut), so a hash
    of the exact key is appended: distinct keys get distinct names, even on case-insensitive disks.
    The slug has no separator and never starts with a dot, so no key can name a parent folder.
    """
    if not key:
        raise ValueError("an idempotency key must not be empty")
    slug = _SLUG_UNSAFE.sub("_", key).strip("._-")[:SLUG_MAX_CHARS].rstrip("._-") or "key"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{slug}-{digest}"


# --------------------------------------------------------------------------------------------------
# Whole files
# --------------------------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    """Make a rename/link durable: the directory entry lives in the folder, not in the file."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, overwrite: bool) -> bool:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, then rename).

    With overwrite=False the final step is a hard link, which fails if the name exists: of two
    processes racing on the same key exactly one creates the file and neither clobbers the other.
    Returns False if the file already existed (and was left alone).
    """
    folder = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                return False
            except OSError:
                # Filesystems without hard links: fall back to check-then-rename (racy only between
                # processes sending the same key at the same instant).
                if path.exists():
                    return False
                os.replace(tmp_name, path)
        _fsync_dir(folder)
        return True
    finally:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------------------------------
# The journal
# --------------------------------------------------------------------------------------------------

_READ_CHUNK = 1 << 20


class IdempotencyJournal:
    """An append-only JSON Lines file, one record per idempotency key, safe across processes.

    The file is read once per instance and then only the tail other processes appended since: the
    check and the append happen under an exclusive flock on the file, so two processes sending the
    same key cannot both append, and each line is fsynced before `append_once` returns.

    What is assumed of the file: every writer goes through this class (whole lines, under the flock)
    and nobody edits a line in place. A line, once there, therefore never changes, and what an
    instance remembers of it stays true; a file that is replaced or truncated (a different inode, or
    shorter than what was read) is noticed and read whole again.

    `remember(record)` chooses what the instance keeps in memory for each key (by default nothing,
    only the key): an adapter that must answer questions about earlier keys keeps that much, not
    every record, so memory grows with the keys and not with the records' size.
    """

    def __init__(self, path: Path, *, remember: Callable[[dict], object] | None = None):
        self.path = path
        self._remember_of = remember or (lambda record: None)
        self._known: dict[str, object] = {}
        self._inode: tuple[int, int] | None = None
        self._offset = 0
        self._thread_lock = threading.Lock()

    def append_once(self, key: str, build_record: Callable[[], dict]) -> bool:
        """Append build_record() unless `key` is already in the file; True if appended.

        build_record runs under the lock and only for a new key, so work that must happen once per
        key (writing the document the line points to) can be done there.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._catch_up(fd)
                if key in self._known:
                    return False
                record = {"key": key, **build_record()}
                text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
                line = (text + "\n").encode()
                _write_all(fd, line)
                os.fsync(fd)
                self._known[key] = self._remember_of(record)
                self._offset += len(line)
                return True
            finally:
                os.close(fd)  # also releases the flock

    def remembered(self, key: str, default: object = None) -> object:
        """What `remember` kept of `key`'s record, as of this instance's last look at the file.

        Right after `append_once(key, ...)` returned False that look included the key's line, so
        the answer needs no read of the file.
        """
        with self._thread_lock:
            return self._known.get(key, default)

    def records(self) -> list[dict]:
        """Every readable record in the file, in file order; [] when there is no file yet.

        Reads the whole file (under the lock, after cutting off a torn last line): meant for a
        rare pass over everything, such as sealing a day's batch, not for each send.
        """
        with self._thread_lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                return []
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._catch_up(fd)
                return [record for _end, record in self._read_records(fd, 0, self._offset)
                        if record is not None]
            finally:
                os.close(fd)

    def _catch_up(self, fd: int) -> None:
        stat = os.fstat(fd)
        inode = (stat.st_dev, stat.st_ino)
        if inode != self._inode or stat.st_size < self._offset:
            # First look, or the file was replaced or truncated by someone: read it whole again.
            self._known.clear()
            self._inode, self._offset = inode, 0
        if stat.st_size == self._offset:
            return
        for end, record in self._read_records(fd, self._offset, stat.st_size):
            if record is not None:
                self._known[record["key"]] = self._remember_of(record)
            self._offset = end
        if self._offset < stat.st_size:
            # A line without its newline: a writer died mid-write, so that delivery never finished.
            # Cut it off (we hold the lock) so the next line does not glue onto it.
            os.ftruncate(fd, self._offset)
            log.warning("cut an unfinished line off %s (%d bytes)", self.path,
                        stat.st_size - self._offset)

    def _read_records(self, fd: int, start: int, stop: int) -> Iterator[tuple[int, dict | None]]:
        """(offset after the line, its record or None) for each complete line in [start, stop)."""
        carry = b""
        position = offset = start
        while position < stop:
            chunk = os.pread(fd, min(_READ_CHUNK, stop - position), position)
            if not chunk:
                break
            position += len(chunk)
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            for raw in lines:
                offset += len(raw) + 1
                yield offset, self._parse(raw)

    def _parse(self, raw: bytes) -> dict | None:
        if not raw.strip():
            return None
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("key"), str):
            log.warning("skipping an unreadable line in %s", self.path)
            return None
        return record


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
