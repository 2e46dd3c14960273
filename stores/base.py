"""The file-store contract and the creditor-area convention.

Each creditor has one area with four folders:

    inbox/    the creditor drops billing files here (uploads in progress end in .part/.tmp
              or start with a dot, and are left alone until renamed)
    archive/  every file we took, byte for byte as received, once processed
    errors/   files rejected as a whole, and the error reports for rejected rows
    reports/  what we send back (reconciliation reports, payment feeds)

A store never sees a path built from a remote name: `safe_name` refuses anything that is not a plain
file name, so `../../etc/passwd` from a listing cannot escape the area.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

INBOX, ARCHIVE, ERRORS, REPORTS = "inbox", "archive", "errors", "reports"
AREA_FOLDERS = (INBOX, ARCHIVE, ERRORS, REPORTS)
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload")


class StoreError(Exception):
    """A store operation failed (I/O, permissions, connection)."""


class StoreUnavailable(StoreError):
    """The server could not be reached or dropped the connection, even after retries: try again later."""

    transient = True


class AlreadyClaimed(StoreError):
    """Someone else got there first: the target name is taken, or the source was moved away.

    Raised by a conditional create (`write(..., create_only=True)`) and by `move` on stores where
    two workers can race for the same file (S3, SFTP). The loser should skip the file, not retry.
    """

    transient = False


class UnsafeName(StoreError, ValueError):
    """A file name from a listing or a request is not a plain, safe file name."""


def safe_name(name: str) -> str:
    """Return `name` if it is a plain file name, else raise UnsafeName.

    Refused: empty, `.`/`..`, any slash or backslash, NUL and other control characters, and names
    longer than 255 bytes.
    """
    if not name or name in {".", ".."}:
        raise UnsafeName(f"file name {name!r} is not allowed")
    if "/" in name or "\\" in name or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise UnsafeName(f"file name {name!r} contains a path separator or control character")
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise UnsafeName(f"file name {name[:40]!r}… is longer than 255 bytes")
    return name


def numbered_names(name: str) -> Iterator[str]:
    """`name`, then `stem.2.ext`, `stem.3.ext`, ... (`name.2` when there is no extension): the names
    a move tries in turn so it never overwrites an existing file."""
    stem, dot, suffix = name.rpartition(".")
    if not stem:  # no dot, or a leading dot only: number at the end
        stem, dot, suffix = name, "", ""
    yield name
    n = 2
    while True:
        yield f"{stem}.{n}{dot}{suffix}" if dot else f"{stem}.{n}"
        n += 1


def is_upload_in_progress(name: str) -> bool:
    return name.startswith(".") or name.startswith("~") or name.lower().endswith(IN_PROGRESS_SUFFIXES)


@dataclass(frozen=True, slots=True)
class StoredFile:
    name: str
    size: int
    modified: datetime  # timezone-aware


@runtime_checkable
class FileStore(Protocol):
    """One creditor area; folders are the AREA_FOLDERS names (optionally with sub-folders we choose)."""

    kind: str  # "local" | "sftp" | "s3"
    claim_grace: float
    """Seconds a racing worker's `move` may leave the source behind after its copy exists: 0 where a
    move is one rename (local, SFTP); on S3 a move is a conditional copy and then a delete."""

    def describe(self, folder: str, name: str) -> str: ...

    def list(self, folder: str) -> list[StoredFile]: ...

    def read(self, folder: str, name: str) -> bytes: ...

    def write(self, folder: str, name: str, data: bytes) -> str: ...

    def move(self, folder: str, name: str, to_folder: str, to_name: str | None = None) -> str: ...

    def exists(self, folder: str, name: str) -> bool: ...
