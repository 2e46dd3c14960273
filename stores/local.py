"""A creditor area in a local folder: the embedded default."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from creditflow.stores.base import AREA_FOLDERS, StoredFile, StoreError, safe_name


class LocalStore:
    kind = "local"
    claim_grace = 0.0  # a move is one rename

    def __init__(self, root: Path | str):
        self.root = Path(root)
        for folder in AREA_FOLDERS:
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    def _path(self, folder: str, name: str | None = None) -> Path:
        parts = [safe_name(p) for p in folder.split("/")]
        base = self.root.joinpath(*parts)
        return base if name is None else base / safe_name(name)

    def describe(self, folder: str, name: str) -> str:
        return str(self._path(folder, name))

    def list(self, folder: str) -> list[StoredFile]:
        entries = []
        try:
            with os.scandir(self._path(folder)) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        entries.append(
                            StoredFile(entry.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
                        )
        except FileNotFoundError:
            return []
        return sorted(entries, key=lambda f: (f.modified, f.name))

    def read(self, folder: str, name: str) -> bytes:
        try:
            return self._path(folder, name).read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {folder}/{name}: {exc}") from exc

    def exists(self, folder: str, name: str) -> bool:
        return self._path(folder, name).exists()

    def write(self, folder: str, name: str, data: bytes) -> str:
        """Write atomically (temp file + rename) so a reader never sees half a file."""
        target = self._path(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(target)

    def move(self, folder: str, name: str, to_folder: str, to_name: str | None = None) -> str:
        """Rename within the area; refuses to overwrite (a name clash gets a numbered suffix)."""
        source = self._path(folder, name)
        target = self._path(to_folder, to_name or name)
        target.parent.mkdir(parents=True, exist_ok=True)
        stem, suffix, n = target.stem, target.suffix, 1
        while True:
            try:
                os.link(source, target)  # fails if target exists: no silent overwrite
                break
            except FileExistsError:
                n += 1
                target = target.with_name(f"{stem}.{n}{suffix}")
            except OSError as exc:
                raise StoreError(f"cannot move {folder}/{name} to {to_folder}: {exc}") from exc
        source.unlink()
        return str(target)
