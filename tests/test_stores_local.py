"""The local store (the embedded default), the name rules every store shares, and the store factory."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from creditflow.stores.base import (
    AREA_FOLDERS,
    ARCHIVE,
    INBOX,
    FileStore,
    StoreError,
    UnsafeName,
    is_upload_in_progress,
    safe_name,
)
from creditflow.stores.factory import StoreConfig, StoreConfigError, store_for_area, store_from_config
from creditflow.stores.local import LocalStore

TRAVERSALS = ["../x.csv", "..", ".", "", "a/b.csv", "..\\x.csv", "/etc/passwd", "x\x00.csv",
              "bad\nname.csv", "x" * 256]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "acme")


def test_area_folders_are_created(store: LocalStore):
    assert sorted(p.name for p in store.root.iterdir()) == sorted(AREA_FOLDERS)
    assert isinstance(store, FileStore)


@pytest.mark.parametrize("name", TRAVERSALS)
def test_unsafe_names_are_refused_everywhere(store: LocalStore, tmp_path: Path, name: str):
    outside = tmp_path / "x.csv"
    for call in (
        lambda: store.write(INBOX, name, b"evil"),
        lambda: store.read(INBOX, name),
        lambda: store.exists(INBOX, name),
        lambda: store.move(INBOX, name, ARCHIVE),
        lambda: store.describe(INBOX, name),
    ):
        with pytest.raises(UnsafeName):
            call()
    assert not outside.exists()


@pytest.mark.parametrize("folder", ["../..", "inbox/../../x", "/etc", "inbox//x"])
def test_unsafe_folders_are_refused(store: LocalStore, folder: str):
    with pytest.raises(UnsafeName):
        store.list(folder)
    with pytest.raises(UnsafeName):
        store.write(folder, "a.csv", b"x")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=0, max_size=300))
def test_an_accepted_name_stays_inside_its_folder(store: LocalStore, name: str):
    """Whatever a listing returns, a name safe_name accepts maps to a direct child of the folder."""
    try:
        accepted = safe_name(name)
    except UnsafeName:
        assert (not name or name in {".", ".."} or "/" in name or "\\" in name
                or any(ord(c) < 32 or ord(c) == 127 for c in name)
                or len(name.encode("utf-8", "surrogatepass")) > 255)
        return
    path = Path(store.describe(INBOX, accepted))
    assert path.parent == store.root / INBOX
    assert path.name == name


def test_roundtrip_list_read_exists(store: LocalStore):
    assert store.list(INBOX) == []
    store.write(INBOX, "b.csv", b"second")
    store.write(INBOX, "facture été.csv", "é".encode())
    (store.root / INBOX / "sub").mkdir()  # folders are not deliveries
    listed = store.list(INBOX)
    assert {f.name: f.size for f in listed} == {"b.csv": 6, "facture été.csv": 2}
    assert all(f.modified.utcoffset() == timedelta(0) for f in listed)
    assert store.read(INBOX, "facture été.csv") == "é".encode()
    assert store.exists(INBOX, "b.csv") and not store.exists(INBOX, "c.csv")
    with pytest.raises(StoreError):
        store.read(INBOX, "c.csv")


def test_write_is_atomic_and_hides_its_temporary_file(store: LocalStore, monkeypatch):
    """While the bytes are being written the folder shows the old file or an in-progress name only."""
    store.write(INBOX, "a.csv", b"old")
    seen: list[list[str]] = []
    real_fsync = os.fsync

    def fsync_and_look(fd: int) -> None:
        real_fsync(fd)
        seen.append(sorted(os.listdir(store.root / INBOX)))

    monkeypatch.setattr(os, "fsync", fsync_and_look)
    store.write(INBOX, "a.csv", b"new")
    assert seen and len(seen[0]) == 2
    partial = [name for name in seen[0] if name != "a.csv"]
    assert len(partial) == 1 and is_upload_in_progress(partial[0])
    assert store.read(INBOX, "a.csv") == b"new"
    assert os.listdir(store.root / INBOX) == ["a.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_debris(store: LocalStore, monkeypatch):
    store.write(INBOX, "a.csv", b"old")

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.write(INBOX, "a.csv", b"new, half written")
    assert store.read(INBOX, "a.csv") == b"old"
    assert os.listdir(store.root / INBOX) == ["a.csv"]


def test_move_never_overwrites(store: LocalStore):
    store.write(ARCHIVE, "a.csv", b"archived earlier")
    store.write(ARCHIVE, "a.2.csv", b"also earlier")
    store.write(INBOX, "a.csv", b"new")
    moved = store.move(INBOX, "a.csv", ARCHIVE)
    assert Path(moved).name == "a.3.csv"
    assert store.read(ARCHIVE, "a.csv") == b"archived earlier"
    assert store.read(ARCHIVE, "a.2.csv") == b"also earlier"
    assert store.read(ARCHIVE, "a.3.csv") == b"new"
    assert not store.exists(INBOX, "a.csv")


def test_move_to_a_new_name(store: LocalStore):
    store.write(INBOX, "a.csv", b"x")
    moved = store.move(INBOX, "a.csv", "errors", "000001-a.csv")
    assert Path(moved) == store.root / "errors" / "000001-a.csv"
    with pytest.raises(UnsafeName):
        store.move("errors", "000001-a.csv", ARCHIVE, "../escape.csv")
    assert store.exists("errors", "000001-a.csv")


@pytest.mark.parametrize(("name", "in_progress"), [
    ("bill.csv.part", True), ("bill.csv.PART", True), ("bill.tmp", True), (".bill.csv", True),
    ("~bill.csv", True), ("bill.csv.filepart", True), ("bill.csv.crdownload", True),
    ("bill.partial", True), ("bill.csv", False), ("partner.csv", False), ("bill.part.csv", False),
])
def test_upload_in_progress_names(name: str, in_progress: bool):
    assert is_upload_in_progress(name) is in_progress


# -- factory ---------------------------------------------------------------------------------------


def test_factory_builds_a_local_store(tmp_path: Path):
    cfg = StoreConfig.model_validate({"kind": "local", "root": str(tmp_path / "areas" / "{creditor_id}")})
    store = store_from_config(cfg, "acme")
    assert isinstance(store, LocalStore) and store.kind == "local"
    assert store.root == tmp_path / "areas" / "acme"
    assert (store.root / INBOX).is_dir()


def test_factory_default_local_area_is_the_dropzone(tmp_path: Path):
    from creditflow.config.settings import Settings

    store = store_from_config(StoreConfig(), "acme", settings=Settings(home=tmp_path))
    assert store.root == tmp_path / "dropzone" / "acme"


@pytest.mark.parametrize("creditor_id", ["../acme", "ACME", "a", "acme/x", "", "acme\n", "_bank"])
def test_factory_refuses_unsafe_creditor_ids(tmp_path: Path, creditor_id: str):
    with pytest.raises(StoreConfigError):
        store_from_config(StoreConfig(root=str(tmp_path / "{creditor_id}")), creditor_id)


def test_a_bank_area_is_built_under_its_own_name(tmp_path: Path):
    from creditflow.config.settings import Settings

    concrete = store_for_area(StoreConfig(root=str(tmp_path / "statements")), "_bank")
    assert concrete.root == tmp_path / "statements"
    default = store_for_area(StoreConfig(), "_bank", settings=Settings(home=tmp_path))
    assert default.root == tmp_path / "dropzone" / "_bank"  # where Settings.resolved_bank_areas puts it


@pytest.mark.parametrize("area", ["bank", "acme", "_", "_../x", "_Bank", "__bank", "_bank\n", "_" + "a" * 63])
def test_factory_refuses_unsafe_bank_area_names(tmp_path: Path, area: str):
    with pytest.raises(StoreConfigError, match="bank area name"):
        store_for_area(StoreConfig(root=str(tmp_path / "statements")), area)


@pytest.mark.parametrize("cfg", [
    StoreConfig(root="/srv/{creditor_id}/bank"),
    StoreConfig(kind="s3", bucket="b", prefix="{creditor_id}/bank"),
])
def test_a_bank_area_has_no_creditor_id_to_fill_in(cfg: StoreConfig):
    with pytest.raises(StoreConfigError, match="creditor_id"):
        store_for_area(cfg, "_bank")


@pytest.mark.parametrize(("data", "message"), [
    ({"kind": "sftp", "host": "h", "username": "u", "password": "hunter2",
      "known_host_key": "ssh-ed25519 AAAA"}, "password_env"),
    ({"kind": "s3", "bucket": "b", "secret_access_key": "abc"}, "secret_access_key_env"),
    ({"kind": "sftp", "host": "h", "username": "u", "password_env": "PW"}, "host key"),
    ({"kind": "sftp", "host": "h", "known_host_key": "k", "password_env": "PW"}, "username"),
    ({"kind": "sftp", "host": "h", "username": "u", "known_host_key": "k"}, "password_env or key_path"),
    ({"kind": "s3"}, "bucket"),
    ({"kind": "s3", "bucket": "b", "access_key_id_env": "K"}, "secret_access_key_env"),
    ({"kind": "local", "bucket": "b"}, "not used by a local store"),
    ({"kind": "ftp"}, "kind"),
])
def test_store_config_is_checked(data: dict, message: str):
    with pytest.raises(ValidationError) as info:
        StoreConfig.model_validate(data)
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)


def test_secret_in_yaml_is_not_echoed_in_the_error():
    with pytest.raises(ValidationError) as info:
        StoreConfig.model_validate({"kind": "sftp", "host": "h", "username": "u",
                                    "password": "hunter2-secret", "known_host_key": "k"})
    assert "hunter2-secret" not in str(info.value)


def test_missing_secret_environment_variable_is_named(tmp_path: Path):
    cfg = StoreConfig(kind="s3", bucket="bkt", access_key_id_env="CF_TEST_KEY",
                      secret_access_key_env="CF_TEST_SECRET")
    with pytest.raises(StoreConfigError, match="CF_TEST_KEY"):
        store_from_config(cfg, "acme", env={})
