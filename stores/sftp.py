"""A creditor area on an SFTP server (paramiko), as creditors and banks usually offer it.

Three things matter more here than on a local disk:
- Trust: the server's host key is pinned in the config. An unknown or changed key is refused, never
  learned, so a spoofed server cannot collect the password or the billing files.
- Flaky links: servers restart and NAT boxes drop idle connections. A dropped connection is reopened
  and the operation retried with exponential backoff and jitter; a refused login is not retried
  (it will not get better, and retrying can lock the account).
- Half files: an upload is written under a `.part` name and renamed once complete, so a poller on
  the other side never takes half a file; `move` never overwrites, so a name clash cannot destroy an
  archived original.
The password is a SecretStr and never appears in an exception, a log line or `describe()`.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import posixpath
import random
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import paramiko
from paramiko.pkey import UnknownKeyType
from pydantic import SecretStr

from creditflow.stores.base import (
    AlreadyClaimed,
    StoredFile,
    StoreError,
    StoreUnavailable,
    numbered_names,
    safe_name,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class HostKeyRejected(StoreError):
    """The server's host key is unknown or differs from the pinned one: possibly not our server."""

    transient = False


class AuthenticationFailed(StoreError):
    """The server refused our credentials. Not retried."""

    transient = False


class _ConnectionLost(Exception):
    """Internal: the operation failed because the connection is gone; reconnect and retry."""


_KEY_TYPES = {kind for cls in paramiko.key_classes for kind in cls.identifiers()}


def _parse_public_key(line: str) -> paramiko.PKey:
    """An OpenSSH public key line: "ssh-ed25519 AAAA... [comment]"."""
    parts = line.split()
    if len(parts) < 2:
        raise StoreError("known_host_key must look like 'ssh-ed25519 AAAA...'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except (binascii.Error, ValueError, paramiko.SSHException, UnknownKeyType) as exc:
        raise StoreError(f"known_host_key is not a valid {parts[0]} public key: {exc}") from None


def _load_pinned_keys(
    known_host_key: paramiko.PKey | str | os.PathLike[str],
) -> tuple[list[paramiko.PKey], paramiko.HostKeys | None]:
    """(pinned keys for this host, or a known_hosts table): a key, a key line, or a file of either."""
    if isinstance(known_host_key, paramiko.PKey):
        return [known_host_key], None
    if isinstance(known_host_key, str):
        return [_parse_public_key(known_host_key)], None
    path = Path(known_host_key)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StoreError(f"cannot read host key file {path}: {exc.strerror}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if lines and all(" " in ln and ln.split()[0] in _KEY_TYPES for ln in lines):
        return [_parse_public_key(ln) for ln in lines], None  # a .pub file: keys without host names
    table = paramiko.HostKeys()
    try:
        table.load(str(path))
    except (paramiko.SSHException, ValueError, binascii.Error, UnknownKeyType) as exc:
        raise StoreError(f"{path} is not a known_hosts file: {type(exc).__name__}") from None
    return [], table


class SftpStore:
    """One creditor area below `root` on an SFTP server. Connects lazily, on the first operation."""

    kind = "sftp"
    claim_grace = 0.0  # a move is one rename on the server

    def __init__(
        self,
        host: str,
        port: int = 22,
        username: str = "",
        *,
        root: str,
        known_host_key: paramiko.PKey | str | os.PathLike[str],
        password: SecretStr | str | None = None,
        key_path: os.PathLike[str] | str | None = None,
        pkey: paramiko.PKey | None = None,
        key_passphrase: SecretStr | str | None = None,
        timeout: float = 15.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ):
        if not host or not username:
            raise StoreError("an SFTP store needs a host and a username")
        if password is None and key_path is None and pkey is None:
            raise StoreError("an SFTP store needs a password, key_path or pkey")
        if "\x00" in root:
            raise StoreError("the SFTP root contains a NUL character")
        self.host, self.port, self.username = host, int(port), username
        self.root = root.rstrip("/") or "/"
        self._password = SecretStr(password) if isinstance(password, str) else password
        self._key_path = Path(key_path) if key_path is not None else None
        self._pkey = pkey
        self._key_passphrase = (
            SecretStr(key_passphrase) if isinstance(key_passphrase, str) else key_passphrase
        )
        self._pinned, self._known_hosts = _load_pinned_keys(known_host_key)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep: Callable[[float], None] = time.sleep
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self.connects = 0  # how many times a connection was opened (reconnects show up here)

    def __repr__(self) -> str:
        return f"SftpStore({self._url()!r})"

    def _url(self) -> str:
        root = self.root.lstrip("/")
        return f"sftp://{self.username}@{self.host}:{self.port}/{root}"

    # -- paths ---------------------------------------------------------------------------------

    def _folder_path(self, folder: str) -> str:
        return posixpath.join(self.root, *(safe_name(part) for part in folder.split("/")))

    def _path(self, folder: str, name: str) -> str:
        return posixpath.join(self._folder_path(folder), safe_name(name))

    def describe(self, folder: str, name: str) -> str:
        parts = [safe_name(part) for part in folder.split("/")]
        return "/".join([self._url(), *parts, safe_name(name)])

    # -- connection ----------------------------------------------------------------------------

    def _host_key_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _load_pkey(self) -> paramiko.PKey | None:
        if self._pkey is not None:
            return self._pkey
        if self._key_path is None:
            return None
        passphrase = self._key_passphrase.get_secret_value() if self._key_passphrase else None
        try:
            self._pkey = paramiko.PKey.from_path(self._key_path, passphrase)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise StoreError(f"cannot load the SSH key {self._key_path}: {type(exc).__name__}") from None
        return self._pkey

    def _connect(self) -> paramiko.SFTPClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        keys = client.get_host_keys()
        if self._known_hosts is not None:
            for hostname, by_type in self._known_hosts.items():
                for key in by_type.values():
                    keys.add(hostname, key.get_name(), key)
        for key in self._pinned:
            keys.add(self._host_key_name(), key.get_name(), key)
        password = self._password.get_secret_value() if self._password is not None else None
        try:
            client.connect(
                self.host, self.port, self.username,
                password=password, pkey=self._load_pkey(),
                look_for_keys=False, allow_agent=False,
                timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout,
                channel_timeout=self.timeout,
            )
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyRejected(
                f"{self._url()}: the server's {exc.key.get_name()} host key "
                f"{exc.key.fingerprint} differs from the pinned one; refusing to connect"
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            method = "password" if password is not None else "key"
            raise AuthenticationFailed(
                f"{self._url()}: authentication failed ({method}): {type(exc).__name__}"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyRejected(
                    f"{self._url()}: the server's host key is not the pinned one (unknown host key); "
                    "refusing to connect"
                ) from None
            raise _ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        except (OSError, EOFError) as exc:
            client.close()
            raise _ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        self._client, self._sftp = client, sftp
        self.connects += 1
        return sftp

    def _connected(self) -> paramiko.SFTPClient:
        transport = self._client.get_transport() if self._client is not None else None
        if self._sftp is None or transport is None or not transport.is_active():
            self._drop()
            return self._connect()
        return self._sftp

    def _drop(self) -> None:
        client, self._client, self._sftp = self._client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead connection may fail in many ways; it is gone anyway
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> SftpStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _link_lost(self, exc: BaseException) -> bool:
        """Did `exc` come from a dead connection (retry) rather than from the server (report)?"""
        if isinstance(exc, (socket.timeout, ConnectionError, EOFError)):
            return True
        if isinstance(exc, paramiko.SSHException) and not isinstance(exc, paramiko.AuthenticationException):
            return True
        return self._link_lost_now()

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so workers spread out."""
        cap = min(self.max_backoff, self.backoff * (2**attempt))
        return cap / 2 + random.uniform(0, cap / 2)

    def _call(self, what: str, operation: Callable[[paramiko.SFTPClient], T]) -> T:
        with self._lock:
            for attempt in range(self.retries + 1):
                try:
                    return operation(self._connected())
                except StoreError:
                    raise
                except _ConnectionLost as exc:
                    reason = str(exc)
                except (OSError, EOFError, paramiko.SSHException) as exc:
                    if not self._link_lost(exc):
                        raise StoreError(f"{what} failed on {self._url()}: {_describe_error(exc)}") from None
                    reason = f"{type(exc).__name__}: {exc}"
                self._drop()
                if attempt == self.retries:
                    break
                delay = self._delay(attempt)
                log.warning("sftp %s: %s lost the connection (%s); reconnecting in %.2fs (attempt %d of %d)",
                            self._url(), what, reason, delay, attempt + 2, self.retries + 1)
                self._sleep(delay)
            raise StoreUnavailable(
                f"{what} failed on {self._url()}: connection lost {self.retries + 1} times ({reason})"
            )

    # -- FileStore -----------------------------------------------------------------------------

    def list(self, folder: str) -> list[StoredFile]:
        directory = self._folder_path(folder)

        def listing(sftp: paramiko.SFTPClient) -> list[StoredFile]:
            try:
                return sftp.listdir_attr(directory)
            except FileNotFoundError:
                return []

        entries = []
        for attr in self._call(f"list {folder}", listing):
            if attr.st_mode is None or not stat.S_ISREG(attr.st_mode):
                continue  # folders, links, devices: only plain files are deliveries
            try:
                name = safe_name(attr.filename)
            except StoreError:
                log.warning("sftp %s: skipped an unsafe name %r in %s", self._url(), attr.filename, folder)
                continue
            modified = datetime.fromtimestamp(attr.st_mtime or 0, UTC)
            entries.append(StoredFile(name, attr.st_size or 0, modified))
        return sorted(entries, key=lambda f: (f.modified, f.name))

    def read(self, folder: str, name: str) -> bytes:
        path = self._path(folder, name)

        def download(sftp: paramiko.SFTPClient) -> bytes:
            buffer = io.BytesIO()
            sftp.getfo(path, buffer)
            return buffer.getvalue()

        return self._call(f"read {folder}/{name}", download)

    def exists(self, folder: str, name: str) -> bool:
        path = self._path(folder, name)

        def probe(sftp: paramiko.SFTPClient) -> bool:
            try:
                sftp.stat(path)
                return True
            except FileNotFoundError:
                return False

        return self._call(f"exists {folder}/{name}", probe)

    def _makedirs(self, sftp: paramiko.SFTPClient, directory: str) -> None:
        try:
            if stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
                return
        except FileNotFoundError:
            pass
        parent = posixpath.dirname(directory)
        if parent and parent != directory:
            self._makedirs(sftp, parent)
        try:
            sftp.mkdir(directory)
        except OSError:
            if not stat.S_ISDIR(sftp.stat(directory).st_mode or 0):  # made by someone else: fine
                raise

    def write(self, folder: str, name: str, data: bytes, *, create_only: bool = False) -> str:
        """Upload under a `.part` name, then rename: readers see the whole file or nothing.

        With `create_only`, an existing `name` is left alone and AlreadyClaimed is raised.
        """
        directory, target = self._folder_path(folder), self._path(folder, name)
        token = secrets.token_hex(4)
        part_name = f"{name}.{token}.part" if len(name.encode()) <= 240 else f".{token}.part"
        part = posixpath.join(directory, part_name)

        def upload(sftp: paramiko.SFTPClient) -> str:
            self._makedirs(sftp, directory)
            try:
                sftp.putfo(io.BytesIO(data), part, file_size=len(data), confirm=True)
                if create_only:
                    try:
                        sftp.rename(part, target)  # SFTP v3 rename refuses an existing target
                    except OSError:
                        if self._link_lost_now():
                            raise
                        if _exists(sftp, target):
                            raise AlreadyClaimed(f"{self.describe(folder, name)} already exists") from None
                        raise
                else:
                    sftp.posix_rename(part, target)
            except BaseException:
                if not self._link_lost_now():
                    try:
                        sftp.remove(part)
                    except OSError:
                        pass
                raise
            return self.describe(folder, name)

        return self._call(f"write {folder}/{name}", upload)

    def _link_lost_now(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is None or not transport.is_active()

    def move(self, folder: str, name: str, to_folder: str, to_name: str | None = None) -> str:
        """Rename within the area; never overwrites (a name clash gets a numbered name).

        Uses the plain SFTP rename, which refuses an existing target (OpenSSH does it with link()
        + unlink(), atomically); posix-rename would silently replace it. When the connection drops
        after the server renamed but before we heard back, the retry finds the file at its new
        name and reports that instead of failing.
        """
        source = self._path(folder, name)
        target_dir = self._folder_path(to_folder)
        wanted = safe_name(to_name or name)
        attempted: list[str] = []

        def rename(sftp: paramiko.SFTPClient) -> str:
            self._makedirs(sftp, target_dir)
            for candidate in numbered_names(wanted):
                target = posixpath.join(target_dir, safe_name(candidate))
                if _exists(sftp, target):
                    if target in attempted and not _exists(sftp, source):
                        return self.describe(to_folder, candidate)  # our earlier attempt did it
                    continue
                attempted.append(target)
                try:
                    sftp.rename(source, target)
                    return self.describe(to_folder, candidate)
                except OSError:
                    if self._link_lost_now():
                        raise
                    if _exists(sftp, target):
                        continue  # taken between our check and our rename: next number
                    if not _exists(sftp, source):
                        raise AlreadyClaimed(
                            f"{self.describe(folder, name)} is gone: moved by someone else"
                        ) from None
                    raise
            raise AssertionError("unreachable")

        return self._call(f"move {folder}/{name} to {to_folder}", rename)


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.lstat(path)
        return True
    except FileNotFoundError:
        return False


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
