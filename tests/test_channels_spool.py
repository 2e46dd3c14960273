"""channels.spool's journal, and the print shop staging on it: read once, then only what others append."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from creditflow.channels import spool
from creditflow.channels.printshop import PrintShopPost
from creditflow.channels.spool import IdempotencyJournal, write_atomically
from creditflow.renderers.messages import Attachment, Message, PostalAddress
from creditflow.stores.local import LocalStore
from sample_pdf import one_page_pdf

NOON = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # a Monday, 12:00 in Brussels


@pytest.fixture
def bytes_read(monkeypatch) -> list[int]:
    """Bytes the journal reads from its file, call by call (os.pread is its only read)."""
    reads: list[int] = []
    real = os.pread

    def pread(fd, size, offset):
        data = real(fd, size, offset)
        reads.append(len(data))
        return data

    monkeypatch.setattr(spool.os, "pread", pread)
    return reads


@pytest.fixture
def opened_jsonl(monkeypatch) -> list[str]:
    """Names of .jsonl files opened through io.open (Path.open, Path.read_text): a reread elsewhere.
    The journal itself reads with os.pread (see `bytes_read`)."""
    names: list[str] = []
    real = io.open

    def tracking_open(file, *args, **kwargs):
        if str(file).endswith(".jsonl"):
            names.append(os.path.basename(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", tracking_open)
    return names


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------------------------------
# IdempotencyJournal
# --------------------------------------------------------------------------------------------------


def test_a_key_is_appended_once_and_remembered_as_its_projection(tmp_path):
    journal = IdempotencyJournal(tmp_path / "j.jsonl", remember=lambda record: record["day"])
    assert journal.append_once("k/1", lambda: {"day": "2026-03-02"}) is True
    assert journal.append_once("k/1", lambda: pytest.fail("built for a known key")) is False
    assert journal.remembered("k/1") == "2026-03-02"
    assert journal.remembered("k/2", "?") == "?"
    assert lines(tmp_path / "j.jsonl") == [{"key": "k/1", "day": "2026-03-02"}]
    assert (tmp_path / "j.jsonl").stat().st_mode & 0o777 == 0o600


def test_the_file_is_read_once_then_only_the_tail_others_appended(tmp_path, bytes_read):
    path = tmp_path / "j.jsonl"
    writer = IdempotencyJournal(path)
    for n in range(200):
        writer.append_once(f"k/{n}", lambda: {"padding": "x" * 100})
    size = path.stat().st_size

    reader = IdempotencyJournal(path, remember=lambda record: len(record["padding"]))
    bytes_read.clear()
    assert reader.append_once("k/7", dict) is False
    assert sum(bytes_read) == size  # the first look reads the file whole
    bytes_read.clear()
    for n in range(50):
        assert reader.append_once(f"k/{n}", dict) is False
    assert sum(bytes_read) == 0  # duplicates answered from memory

    writer.append_once("k/late", lambda: {"padding": "yz"})  # "another process" appends
    bytes_read.clear()
    assert reader.append_once("k/late", dict) is False
    assert sum(bytes_read) == path.stat().st_size - size  # only the new line was read
    assert reader.remembered("k/late") == 2


def test_records_lists_every_readable_line_and_cuts_a_torn_one(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    journal = IdempotencyJournal(path)
    assert journal.records() == []
    assert not path.exists()  # looking does not create the file
    journal.append_once("k/1", lambda: {"n": 1})
    with path.open("ab") as handle:
        handle.write(b"not json\n[1, 2]\n\n")
        handle.write(b'{"key":"k/2","n":2}\n{"key":"k/3","n"')  # the last writer died mid-line
    assert IdempotencyJournal(path).records() == [{"key": "k/1", "n": 1}, {"key": "k/2", "n": 2}]
    assert path.read_bytes().endswith(b'{"key":"k/2","n":2}\n')
    assert "unreadable line" in caplog.text and "unfinished line" in caplog.text
    assert journal.append_once("k/3", lambda: {"n": 3}) is True
    assert [record["key"] for record in journal.records()] == ["k/1", "k/2", "k/3"]


def test_a_replaced_file_is_read_whole_again(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = IdempotencyJournal(path, remember=lambda record: record["v"])
    journal.append_once("k/1", lambda: {"v": "old"})
    write_atomically(path, b'{"key":"k/2","v":"new"}\n', overwrite=True)
    assert journal.append_once("k/1", lambda: {"v": "again"}) is True
    assert journal.remembered("k/2") == "new" and journal.remembered("k/1") == "again"


def test_write_atomically_keeps_an_existing_file_unless_told_to_overwrite(tmp_path):
    path = tmp_path / "a.pdf"
    assert write_atomically(path, b"first", overwrite=False) is True
    assert write_atomically(path, b"second", overwrite=False) is False
    assert path.read_bytes() == b"first"
    assert write_atomically(path, b"third", overwrite=True) is True
    assert path.read_bytes() == b"third"
    assert [p.name for p in tmp_path.iterdir()] == ["a.pdf"]  # no temp file left behind


# --------------------------------------------------------------------------------------------------
# The print shop's staging
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    return one_page_pdf("Factuur")


def letter(key: str, pdf: bytes) -> Message:
    return Message(
        idempotency_key=key, channel="post", creditor_id="demo-utility", invoice_number=key,
        language="nl", sender_name="Demo", sender_email="f@demo.example", subject="Factuur",
        text="", to_name="Jan Peeters",
        to_address=PostalAddress(name="Jan Peeters", street="Kerkstraat 1", postcode="9000",
                                 city="Gent"),
        attachments=(Attachment("f.pdf", "application/pdf", pdf),),
    )


def batch_of(result) -> str:
    return json.loads(result.detail)["batch"]


def test_print_shop_resends_report_their_batch_from_memory(tmp_path, pdf_bytes, bytes_read,
                                                           opened_jsonl):
    remote = tmp_path / "shop"
    ours = PrintShopPost(tmp_path / "spool", lambda: LocalStore(remote), clock=lambda: NOON)
    theirs = PrintShopPost(tmp_path / "spool", lambda: LocalStore(remote),
                           clock=lambda: NOON)  # another process on the same spool
    monday, tuesday = NOON.date(), NOON.date() + timedelta(days=1)
    first = ours.send(letter("k/1", pdf_bytes))
    assert (first.duplicate, batch_of(first)) == (False, monday.isoformat())
    (sealed,) = ours.flush_print_batch(monday)
    assert sealed.letters == 1

    later = theirs.send(letter("k/2", pdf_bytes))  # Monday is sealed: joins Tuesday's batch
    assert batch_of(later) == tuesday.isoformat()
    bytes_read.clear()
    again = ours.send(letter("k/2", pdf_bytes))
    assert (again.duplicate, batch_of(again), again.provider_id) == (
        True, tuesday.isoformat(), later.provider_id)
    read_once = sum(bytes_read)
    assert 0 < read_once < (tmp_path / "spool" / "demo-utility" / "letters.jsonl").stat().st_size
    for _ in range(3):
        assert batch_of(ours.send(letter("k/1", pdf_bytes))) == monday.isoformat()
    assert sum(bytes_read) == read_once  # later resends read nothing
    assert opened_jsonl == []  # not even around the journal

    (next_day,) = ours.flush_print_batch(tuesday)  # the letter another process staged
    manifest = json.loads((tmp_path / "spool" / "demo-utility" / "batches" / tuesday.isoformat()
                           / next_day.manifest_file).read_bytes())
    assert [item["delivery_key"] for item in manifest["items"]] == ["k/2"]
    assert ours.flush_print_batch(tuesday + timedelta(days=1)) == []
