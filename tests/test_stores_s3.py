"""The S3 store against moto's S3 served over real HTTP (tests/servers.py), not in-process mocking."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from creditflow.stores.base import ARCHIVE, ERRORS, INBOX, FileStore, StoreError, UnsafeName
from creditflow.stores.factory import (
    AlreadyClaimed,
    StoreConfig,
    StoreUnavailable,
    store_from_config,
)
from creditflow.stores.s3 import S3Store

from servers import MotoS3Server, moto_s3_server  # noqa: E402


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3Server]:
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def client(moto: MotoS3Server):
    return moto.client()


@pytest.fixture
def bucket(client) -> str:
    name = f"cf-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(client, bucket: str) -> S3Store:
    return S3Store(bucket, "creditors/acme", client=client)


def count_calls(client, operation: str) -> list[str]:
    """Every request of `operation` this client sends from now on."""
    seen: list[str] = []
    client.meta.events.register(f"before-call.s3.{operation}", lambda **kw: seen.append(operation))
    return seen


def test_roundtrip_write_list_read_move_exists(store: S3Store, client, bucket: str):
    assert isinstance(store, FileStore) and store.kind == "s3"
    assert store.list(INBOX) == []
    assert store.write(INBOX, "bill.csv", b"a;b\n") == f"s3://{bucket}/creditors/acme/inbox/bill.csv"
    store.write(INBOX, "facture été 2024.csv", "é".encode())
    # neighbours that are not direct children of inbox/: a folder marker, a sub-folder, another area
    client.put_object(Bucket=bucket, Key="creditors/acme/inbox/", Body=b"")
    client.put_object(Bucket=bucket, Key="creditors/acme/inbox/sub/deep.csv", Body=b"x")
    client.put_object(Bucket=bucket, Key="creditors/acme/inboxes/other.csv", Body=b"x")
    client.put_object(Bucket=bucket, Key="creditors/beta/inbox/theirs.csv", Body=b"x")

    listed = store.list(INBOX)
    assert {f.name: f.size for f in listed} == {"bill.csv": 4, "facture été 2024.csv": 2}
    assert all(f.modified.utcoffset() == timedelta(0) for f in listed)
    assert store.read(INBOX, "facture été 2024.csv") == "é".encode()
    assert store.exists(INBOX, "bill.csv") and not store.exists(INBOX, "nope.csv")

    moved = store.move(INBOX, "bill.csv", ARCHIVE, "000001-bill.csv")
    assert moved == f"s3://{bucket}/creditors/acme/archive/000001-bill.csv"
    assert not store.exists(INBOX, "bill.csv")
    archived = client.get_object(Bucket=bucket, Key="creditors/acme/archive/000001-bill.csv")
    assert archived["Body"].read() == b"a;b\n"


def test_listing_follows_every_page(client, bucket: str):
    store = S3Store(bucket, "acme", client=client, page_size=10)
    names = {f"f{i:03d}.csv" for i in range(35)}
    for name in names:
        client.put_object(Bucket=bucket, Key=f"acme/inbox/{name}", Body=b"1")
    requests = count_calls(client, "ListObjectsV2")
    assert {f.name for f in store.list(INBOX)} == names
    assert len(requests) == 4  # 10 + 10 + 10 + 5


def test_move_keeps_content_type_and_metadata(store: S3Store, client, bucket: str):
    client.put_object(Bucket=bucket, Key="creditors/acme/inbox/a.xml", Body=b"<x/>",
                      ContentType="application/xml", Metadata={"uploader": "bank"})
    store.move(INBOX, "a.xml", ARCHIVE)
    head = client.head_object(Bucket=bucket, Key="creditors/acme/archive/a.xml")
    assert head["ContentType"] == "application/xml"
    assert head["Metadata"]["uploader"] == "bank"


def test_conditional_write_is_refused_on_an_existing_key(store: S3Store):
    store.write(INBOX, "claim.lock", b"worker-1", create_only=True)
    with pytest.raises(AlreadyClaimed):
        store.write(INBOX, "claim.lock", b"worker-2", create_only=True)
    assert store.read(INBOX, "claim.lock") == b"worker-1"
    store.write(INBOX, "claim.lock", b"plain write overwrites")  # without create_only: last wins
    assert store.read(INBOX, "claim.lock") == b"plain write overwrites"


def test_move_never_overwrites_an_unrelated_file(store: S3Store):
    store.claim_grace = 0.3
    store.write(ARCHIVE, "a.csv", b"earlier file")
    store.write(INBOX, "a.csv", b"later file")
    assert store.move(INBOX, "a.csv", ARCHIVE).endswith("/archive/a.2.csv")
    store.write(INBOX, "a.csv", b"later file")  # same bytes again, a new upload: still a new file
    assert store.move(INBOX, "a.csv", ARCHIVE).endswith("/archive/a.3.csv")
    assert [store.read(ARCHIVE, n) for n in ("a.csv", "a.2.csv", "a.3.csv")] == [
        b"earlier file", b"later file", b"later file"]
    assert store.list(INBOX) == []


def test_two_threads_moving_the_same_file_exactly_one_wins(moto: MotoS3Server, bucket: str):
    workers = [S3Store(bucket, "acme", client=moto.client()) for _ in range(2)]
    for round_ in range(4):
        name = f"bill-{round_}.csv"
        workers[0].write(INBOX, name, f"round {round_}".encode())
        barrier, results = threading.Barrier(2), []

        def claim(worker: S3Store) -> None:
            barrier.wait()
            try:
                results.append(("won", worker.move(INBOX, name, ARCHIVE)))
            except AlreadyClaimed as exc:
                results.append(("lost", str(exc)))

        threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(r[0] for r in results) == ["lost", "won"], results
        archived = [f.name for f in workers[0].list(ARCHIVE)]
        assert archived.count(name) == 1 and not any(n.startswith(f"bill-{round_}.") and n != name
                                                     for n in archived)
        assert not workers[0].exists(INBOX, name)


def test_moving_a_file_already_moved_is_already_claimed(store: S3Store):
    store.write(INBOX, "a.csv", b"x")
    store.move(INBOX, "a.csv", ERRORS)
    with pytest.raises(AlreadyClaimed):
        store.move(INBOX, "a.csv", ERRORS)
    assert store.read(ERRORS, "a.csv") == b"x"


@pytest.mark.parametrize("call", [
    lambda s: s.read(INBOX, "../../other/inbox/a.csv"),
    lambda s: s.write(INBOX, "..", b"x"),
    lambda s: s.write("inbox/../../beta/inbox", "a.csv", b"x"),
    lambda s: s.exists(INBOX, "a/b.csv"),
    lambda s: s.move(INBOX, "a.csv", ARCHIVE, "../../beta/a.csv"),
    lambda s: s.list("../beta/inbox"),
    lambda s: s.describe(INBOX, "x\x00.csv"),
])
def test_traversal_is_refused_before_any_request(store: S3Store, client, call):
    sent: list[str] = []
    client.meta.events.register("before-send.s3.*", lambda **kw: sent.append("request"))
    with pytest.raises(UnsafeName):
        call(store)
    assert sent == []


def test_unsafe_prefix_is_refused(client):
    with pytest.raises(UnsafeName):
        S3Store("bucket", "creditors/../beta", client=client)


def test_errors_are_mapped(store: S3Store, client):
    with pytest.raises(StoreError) as info:
        store.read(INBOX, "missing.csv")
    assert not isinstance(info.value, StoreUnavailable) and "NoSuchKey" in str(info.value)
    no_bucket = S3Store("cf-no-such-bucket", "acme", client=client)
    with pytest.raises(StoreError) as info:
        no_bucket.list(INBOX)
    assert not isinstance(info.value, StoreUnavailable) and "NoSuchBucket" in str(info.value)


def test_unreachable_endpoint_is_transient():
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3Store("bucket", "acme", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
                    access_key_id="AKIDTEST", secret_access_key="very-secret-key", max_attempts=1,
                    connect_timeout=1)
    with pytest.raises(StoreUnavailable) as info:
        store.list(INBOX)
    assert info.value.transient is True
    assert "very-secret-key" not in str(info.value)


def test_factory_builds_an_s3_store_with_secrets_from_the_environment(moto: MotoS3Server, client,
                                                                       bucket: str):
    cfg = StoreConfig.model_validate({
        "kind": "s3", "bucket": bucket, "prefix": "areas/{creditor_id}",
        "endpoint_url": moto.endpoint_url, "region": "us-east-1", "addressing_style": "path",
        "access_key_id_env": "CF_TEST_S3_KEY", "secret_access_key_env": "CF_TEST_S3_SECRET",
    })
    env = {"CF_TEST_S3_KEY": "testing", "CF_TEST_S3_SECRET": "testing-secret"}
    store = store_from_config(cfg, "acme", env=env)
    assert isinstance(store, S3Store)
    assert store.write(INBOX, "a.csv", b"1") == f"s3://{bucket}/areas/acme/inbox/a.csv"
    assert client.get_object(Bucket=bucket, Key="areas/acme/inbox/a.csv")["Body"].read() == b"1"
    assert "testing-secret" not in repr(cfg) + repr(store)
