"""The SFTP store against a real OpenSSH sshd (tests/servers.py), not a mock.

Without sshd these tests are skipped on a developer machine but fail in CI (env var CI set): CI
must exercise the real server.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr

from creditflow.stores.base import (
    ARCHIVE,
    INBOX,
    REPORTS,
    FileStore,
    StoreError,
    UnsafeName,
    is_upload_in_progress,
)
from creditflow.stores.factory import (
    AlreadyClaimed,
    StoreConfig,
    StoreUnavailable,
    store_from_config,
)
from creditflow.stores.sftp import AuthenticationFailed, HostKeyRejected, SftpStore

from servers import SshdServer  # noqa: E402


@pytest.fixture
def area(sshd: SshdServer, request) -> str:
    """A fresh area (folder in the user's login folder) per test."""
    return f"area-{request.node.name[:40].replace('[', '-').replace(']', '')}-{time.monotonic_ns()}"


def make_store(sshd: SshdServer, root: str, **kwargs) -> SftpStore:
    options = dict(password=SecretStr(sshd.password), known_host_key=sshd.host_public_key,
                   timeout=5.0, retries=4, backoff=0.1, max_backoff=1.0)
    options.update(kwargs)
    return SftpStore(sshd.host, sshd.port, sshd.username, root=root, **options)


@pytest.fixture
def store(sshd: SshdServer, area: str) -> Iterator[SftpStore]:
    with make_store(sshd, area) as s:
        yield s


def test_roundtrip_write_list_read_move_exists(store: SftpStore, sshd: SshdServer, area: str):
    assert isinstance(store, FileStore) and store.kind == "sftp"
    assert store.list(INBOX) == []  # the folder does not exist yet: nothing delivered
    written = store.write(INBOX, "bill.csv", b"a;b\n1;2\n")
    assert written == f"sftp://{sshd.username}@127.0.0.1:{sshd.port}/{area}/inbox/bill.csv"
    store.write(INBOX, "facture été.csv", "é".encode())
    store.write(INBOX, "empty.csv", b"")
    (sshd.home / area / INBOX / "a-folder").mkdir()  # folders are not deliveries

    listed = store.list(INBOX)
    assert {f.name: f.size for f in listed} == {"bill.csv": 8, "facture été.csv": 2, "empty.csv": 0}
    assert all(f.modified.utcoffset() == timedelta(0) for f in listed)
    on_disk = (sshd.home / area / INBOX / "bill.csv").stat().st_mtime
    assert abs(next(f for f in listed if f.name == "bill.csv").modified.timestamp() - on_disk) < 1

    assert store.read(INBOX, "facture été.csv") == "é".encode()
    assert store.read(INBOX, "empty.csv") == b""
    assert store.exists(INBOX, "bill.csv") and not store.exists(INBOX, "nope.csv")

    moved = store.move(INBOX, "bill.csv", ARCHIVE, "000001-bill.csv")
    assert moved.endswith(f"/{area}/archive/000001-bill.csv")
    assert not store.exists(INBOX, "bill.csv")
    assert (sshd.home / area / ARCHIVE / "000001-bill.csv").read_bytes() == b"a;b\n1;2\n"


def test_write_replaces_and_leaves_no_part_file(store: SftpStore, sshd: SshdServer, area: str):
    store.write(INBOX, "a.csv", b"old")
    store.write(INBOX, "a.csv", b"new content")
    assert store.read(INBOX, "a.csv") == b"new content"
    assert sorted(os.listdir(sshd.home / area / INBOX)) == ["a.csv"]


def test_an_upload_in_progress_is_listed_as_such(store: SftpStore, sshd: SshdServer):
    """A creditor uploading `bill.csv.part` over SFTP: the poller must see it as in progress."""
    store.write(INBOX, "ready.csv", b"done")
    transport = paramiko.Transport((sshd.host, sshd.port))
    try:
        transport.connect(username=sshd.username, password=sshd.password)
        client = paramiko.SFTPClient.from_transport(transport)
        with client.open(f"{store.root}/inbox/bill.csv.part", "wb") as half:
            half.write(b"first half of the rows")
            half.flush()
            listed = {f.name for f in store.list(INBOX)}  # read while the upload is still open
        assert listed == {"ready.csv", "bill.csv.part"}
        assert [n for n in listed if not is_upload_in_progress(n)] == ["ready.csv"]
        client.posix_rename(f"{store.root}/inbox/bill.csv.part", f"{store.root}/inbox/bill.csv")
    finally:
        transport.close()
    ready = sorted(f.name for f in store.list(INBOX) if not is_upload_in_progress(f.name))
    assert ready == ["bill.csv", "ready.csv"]


def test_our_own_upload_is_invisible_until_complete(store: SftpStore, sshd: SshdServer, area: str,
                                                    monkeypatch):
    seen: list[list[str]] = []
    real_putfo = paramiko.SFTPClient.putfo

    def putfo_and_look(self, fl, remotepath, *args, **kwargs):
        result = real_putfo(self, fl, remotepath, *args, **kwargs)
        seen.append(sorted(os.listdir(sshd.home / area / INBOX)))
        return result

    monkeypatch.setattr(paramiko.SFTPClient, "putfo", putfo_and_look)
    store.write(INBOX, "report.csv", b"x" * 100_000)
    assert len(seen) == 1 and len(seen[0]) == 1 and is_upload_in_progress(seen[0][0])
    assert os.listdir(sshd.home / area / INBOX) == ["report.csv"]


def test_unsafe_names_from_a_listing_are_skipped(store: SftpStore, sshd: SshdServer, area: str):
    store.write(INBOX, "good.csv", b"1")
    (sshd.home / area / INBOX / "bad\x01name.csv").write_bytes(b"2")
    assert [f.name for f in store.list(INBOX)] == ["good.csv"]


def test_move_never_overwrites(store: SftpStore):
    store.write(ARCHIVE, "a.csv", b"earlier")
    store.write(INBOX, "a.csv", b"later")
    assert store.move(INBOX, "a.csv", ARCHIVE).endswith("/archive/a.2.csv")
    store.write(INBOX, "a.csv", b"latest")
    assert store.move(INBOX, "a.csv", ARCHIVE).endswith("/archive/a.3.csv")
    archived = [store.read(ARCHIVE, n) for n in ("a.csv", "a.2.csv", "a.3.csv")]
    assert archived == [b"earlier", b"later", b"latest"]
    store.write(INBOX, "README", b"no suffix")
    store.write(ARCHIVE, "README", b"old")
    assert store.move(INBOX, "README", ARCHIVE).endswith("/archive/README.2")


def test_two_workers_moving_the_same_file_one_wins(sshd: SshdServer, area: str):
    workers = [make_store(sshd, area) for _ in range(2)]
    try:
        for round_ in range(3):
            name = f"claim-{round_}.csv"
            workers[0].write(INBOX, name, b"x")
            for w in workers:
                w.exists(INBOX, name)  # connect first, so both really race on the rename
            barrier, results = threading.Barrier(2), []

            def move(worker: SftpStore) -> None:
                barrier.wait()
                try:
                    results.append(("won", worker.move(INBOX, name, ARCHIVE)))
                except AlreadyClaimed as exc:
                    results.append(("lost", str(exc)))

            threads = [threading.Thread(target=move, args=(w,)) for w in workers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(r[0] for r in results) == ["lost", "won"], results
            assert workers[0].list(ARCHIVE)[-1].name == name
            assert not workers[0].exists(ARCHIVE, name.replace(".csv", ".2.csv"))
    finally:
        for w in workers:
            w.close()


def test_create_only_write_refuses_an_existing_name(store: SftpStore, sshd: SshdServer, area: str):
    store.write(INBOX, "lock.csv", b"first", create_only=True)
    with pytest.raises(AlreadyClaimed):
        store.write(INBOX, "lock.csv", b"second", create_only=True)
    assert store.read(INBOX, "lock.csv") == b"first"
    assert os.listdir(sshd.home / area / INBOX) == ["lock.csv"]  # the .part was cleaned up


def test_key_authentication(sshd: SshdServer, area: str):
    with SftpStore(sshd.host, sshd.port, sshd.username, root=str(sshd.home / area),
                   key_path=sshd.client_key_path, known_host_key=sshd.host_public_key) as store:
        store.write(REPORTS, "r.csv", b"1")
        assert [f.name for f in store.list(REPORTS)] == ["r.csv"]


def test_changed_host_key_is_refused(sshd: SshdServer, area: str):
    impostor = Ed25519PrivateKey.generate().public_key()
    impostor_line = impostor.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    assert impostor_line.split()[0] == sshd.host_public_key.split()[0]  # same type, other key
    store = make_store(sshd, area, known_host_key=impostor_line, retries=3, backoff=5)
    started = time.monotonic()
    with pytest.raises(HostKeyRejected, match="differs from the pinned"):
        store.list(INBOX)
    assert time.monotonic() - started < 4  # refused at once, not retried
    assert store.connects == 0


def test_unknown_host_is_refused(sshd: SshdServer, area: str, tmp_path: Path):
    """A known_hosts file that knows the key but for another host name: never learned, refused."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[other.example]:{sshd.port} {sshd.host_public_key}\n")
    store = make_store(sshd, area, known_host_key=known_hosts)
    with pytest.raises(HostKeyRejected, match="unknown host key"):
        store.list(INBOX)
    # and the same file with the right name is accepted
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {sshd.host_public_key}\n")
    with make_store(sshd, area, known_host_key=known_hosts) as good:
        assert good.list(INBOX) == []


def test_wrong_password_is_not_retried_and_not_revealed(sshd: SshdServer, area: str, caplog):
    secret = "Wr0ng-pa55word-do-not-log"
    store = make_store(sshd, area, password=SecretStr(secret), retries=3, backoff=5)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationFailed) as info:
        store.write(INBOX, "a.csv", b"x")
    exc = info.value
    assert isinstance(exc, StoreError)
    texts = [str(exc), repr(exc), repr(store), caplog.text, str(exc.__cause__), str(exc.__context__)]
    assert not any(secret in text for text in texts)
    assert sshd.username in str(exc)
    # sshd saw exactly one failed login: an authentication failure is not retried
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and f"Failed password for {sshd.username}" not in sshd.log():
        time.sleep(0.05)
    assert sshd.log().count(f"Failed password for {sshd.username}") == 1


def test_traversal_is_refused_before_any_network_call():
    """Pointed at a listener that records connections: an unsafe name never causes one."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        store = SftpStore("127.0.0.1", listener.getsockname()[1], "nobody", root="area",
                          password="irrelevant", known_host_key=paramiko.ECDSAKey.generate())
        for call in (lambda: store.read(INBOX, "../../etc/passwd"),
                     lambda: store.write(INBOX, "..", b"x"),
                     lambda: store.move(INBOX, "a.csv", ARCHIVE, "../a.csv"),
                     lambda: store.exists("inbox/../..", "a.csv"),
                     lambda: store.list("../other-creditor/inbox")):
            with pytest.raises(UnsafeName):
                call()
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert store.connects == 0


def test_server_restarted_between_two_operations(store: SftpStore, sshd: SshdServer):
    store.write(INBOX, "a.csv", b"before the restart")
    assert store.connects == 1
    sshd.restart()
    assert store.read(INBOX, "a.csv") == b"before the restart"
    assert store.connects == 2


def test_server_down_for_a_moment_is_waited_for(store: SftpStore, sshd: SshdServer):
    store.write(INBOX, "a.csv", b"x")
    sshd.stop()
    timer = threading.Timer(0.4, sshd.start)
    timer.start()
    try:
        started = time.monotonic()
        store.write(INBOX, "b.csv", b"written after the restart")
        assert time.monotonic() - started >= 0.3  # it did wait for the server
    finally:
        timer.join()
        sshd.start()  # no-op when the timer already did
    assert store.read(INBOX, "b.csv") == b"written after the restart"


def test_server_gone_for_good_gives_store_unavailable(store: SftpStore, sshd: SshdServer):
    store.write(INBOX, "a.csv", b"x")
    store.retries, store.backoff = 2, 0.05
    sshd.stop()
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.read(INBOX, "a.csv")
        assert info.value.transient is True
        assert sshd.password not in str(info.value)
    finally:
        sshd.start()
    assert store.read(INBOX, "a.csv") == b"x"


def test_missing_file_is_a_permanent_error(store: SftpStore):
    with pytest.raises(StoreError) as info:
        store.read(INBOX, "missing.csv")
    assert not isinstance(info.value, StoreUnavailable)
    assert "missing.csv" in str(info.value)
    with pytest.raises(AlreadyClaimed):
        store.move(INBOX, "missing.csv", ARCHIVE)


def test_factory_builds_an_sftp_store(sshd: SshdServer, area: str):
    cfg = StoreConfig.model_validate({
        "kind": "sftp", "host": sshd.host, "port": sshd.port, "username": sshd.username,
        "root": area + "/{creditor_id}", "password_env": "CF_TEST_SFTP_PASSWORD",
        "known_host_key": sshd.host_public_key, "retries": 1,
    })
    store = store_from_config(cfg, "acme", env={"CF_TEST_SFTP_PASSWORD": sshd.password})
    assert isinstance(store, SftpStore)
    try:
        assert store.write(INBOX, "a.csv", b"1").endswith(f"/{area}/acme/inbox/a.csv")
        assert (sshd.home / area / "acme" / INBOX / "a.csv").read_bytes() == b"1"
    finally:
        store.close()
    assert sshd.password not in repr(cfg) + repr(store)


def test_connection_dropped_in_the_middle_of_an_upload(store: SftpStore, sshd: SshdServer, area: str,
                                                      monkeypatch, caplog):
    """The server goes down while bytes are flowing: reconnect, upload again, no half file left."""
    data = os.urandom(300_000)
    store.exists(INBOX, "warm-up")  # connected before the upload starts
    real_write, dropped = paramiko.SFTPFile.write, []

    def write_then_drop(self, chunk):
        result = real_write(self, chunk)
        if not dropped:
            dropped.append(True)
            sshd.restart()  # kills this session mid-upload, then accepts new ones
        return result

    monkeypatch.setattr(paramiko.SFTPFile, "write", write_then_drop)
    caplog.set_level(logging.WARNING, logger="creditflow.stores.sftp")
    store.write(INBOX, "big.bin", data)
    assert dropped and store.connects == 2
    assert "reconnecting" in caplog.text and sshd.password not in caplog.text
    assert (sshd.home / area / INBOX / "big.bin").read_bytes() == data
    leftovers = [n for n in os.listdir(sshd.home / area / INBOX) if n != "big.bin"]
    assert leftovers == []  # the retry reused the same .part name, then renamed it
