"""The local outbox adapters (email, SMS, post) and the channel registry."""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reportlab.pdfgen import canvas

from creditflow.channels import registry
from creditflow.channels.base import Channel, PermanentSendError
from creditflow.channels.local_outbox import (
    LocalEmailOutbox,
    LocalPostOutbox,
    LocalSmsOutbox,
    count_pdf_pages,
)
from creditflow.channels.mime import message_id_for
from creditflow.channels.sms_text import GSM7_BASIC, GSM7_EXTENSION, count_sms_segments
from creditflow.channels.spool import SLUG_MAX_CHARS, safe_name
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Attachment, Message, PostalAddress

FIXED_NOW = datetime(2026, 3, 2, 9, 30, 15, tzinfo=UTC)
KEY = "demo-utility/INV-2026-001/initial/email"


def fixed_clock() -> datetime:
    return FIXED_NOW


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    """A small two-page invoice PDF made by reportlab, the library the renderers use."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1)
    pdf.drawString(72, 770, "Factuur INV-2026-001")
    pdf.showPage()
    pdf.drawString(72, 770, "Voorwaarden")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_message(key: str = KEY, channel: str = "email", **overrides) -> Message:
    fields = dict(
        idempotency_key=key,
        channel=channel,
        creditor_id="demo-utility",
        invoice_number="INV-2026-001",
        language="nl",
        sender_name="Demo Nutsbedrijf — Facturatie",
        sender_email="facturen@demo-utility.example",
        subject="Uw factuur INV-2026-001 van € 123,45",
        text="Beste klant,\n\nIn bijlage vindt u uw factuur.\nMet vriendelijke groeten\n",
        to_email="jan.peeters@example.be",
        to_name="Jan Peeters",
        to_phone="+32470123456",
        to_address=PostalAddress(
            name="Jan Peeters", street="Kerkstraat 1 bus 2", postcode="9000", city="Gent"
        ),
        amount_cents=12345,
        reference="123456789002",
    )
    fields.update(overrides)
    return Message(**fields)


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------------------------------
# E-mail
# --------------------------------------------------------------------------------------------------


def test_email_eml_parses_back_with_headers_body_and_identical_pdf(tmp_path, pdf_bytes):
    message = make_message(
        html="<p>Beste klant,</p><p>In bijlage vindt u uw factuur.</p>",
        attachments=(Attachment("INV-2026-001.pdf", "application/pdf", pdf_bytes),),
    )
    result = LocalEmailOutbox(tmp_path, clock=fixed_clock).send(message)

    [eml] = files_under(tmp_path)
    assert eml.parent == tmp_path / "email" and eml.suffix == ".eml"
    assert result.duplicate is False
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)

    [sender] = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (message.sender_name, message.sender_email)
    [recipient] = parsed["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == (message.to_name, message.to_email)
    assert parsed["Subject"] == message.subject
    sent_at = parsedate_to_datetime(parsed["Date"])
    assert sent_at.tzinfo is not None and sent_at == FIXED_NOW
    assert parsed["X-Creditflow-Key"] == KEY
    assert parsed["Message-ID"] == result.provider_id
    assert result.provider_id == message_id_for(KEY, "demo-utility.example")

    body = parsed.get_body(preferencelist=("plain",))
    assert body.get_content().replace("\r\n", "\n") == message.text
    html = parsed.get_body(preferencelist=("html",))
    assert html.get_content().strip() == message.html

    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "INV-2026-001.pdf"
    assert attachment.get_content() == pdf_bytes


def test_email_without_html_is_text_plus_attachment(tmp_path, pdf_bytes):
    message = make_message(attachments=(Attachment("f.pdf", "application/pdf", pdf_bytes),))
    LocalEmailOutbox(tmp_path).send(message)
    [eml] = files_under(tmp_path)
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    assert [part.get_content_type() for part in parsed.iter_parts()] == [
        "text/plain",
        "application/pdf",
    ]
    assert parsedate_to_datetime(parsed["Date"]).tzinfo is not None


def test_email_message_id_is_stable_per_key_and_differs_between_keys():
    assert message_id_for(KEY, "a.example") == message_id_for(KEY, "a.example")
    assert message_id_for(KEY, "a.example") != message_id_for(KEY + "x", "a.example")
    assert message_id_for(KEY, "a.example").endswith("@a.example>")


def test_email_sent_twice_is_written_once_and_reported_duplicate(tmp_path, pdf_bytes):
    message = make_message(attachments=(Attachment("f.pdf", "application/pdf", pdf_bytes),))
    outbox = LocalEmailOutbox(tmp_path, clock=fixed_clock)
    first = outbox.send(message)
    [eml] = files_under(tmp_path)
    written = eml.read_bytes()

    later = LocalEmailOutbox(tmp_path, clock=lambda: FIXED_NOW + timedelta(hours=1))
    for again in (outbox.send(message), later.send(message)):
        assert again.duplicate is True
        assert again.provider_id == first.provider_id
    assert files_under(tmp_path) == [eml]
    assert eml.read_bytes() == written  # not rewritten with the later Date


@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"to_email": None}, "no-recipient"),
        ({"to_email": ""}, "no-recipient"),
        ({"to_email": "not-an-address"}, "invalid-message"),
        ({"to_email": "jan peeters@example.be"}, "invalid-message"),
        ({"subject": "Factuur\r\nBcc: everyone@example.com"}, "invalid-message"),
    ],
)
def test_email_without_usable_address_or_header_is_permanent(tmp_path, overrides, code):
    with pytest.raises(PermanentSendError) as caught:
        LocalEmailOutbox(tmp_path).send(make_message(**overrides))
    assert caught.value.code == code
    assert files_under(tmp_path) == []


def test_email_refuses_a_naive_clock(tmp_path):
    outbox = LocalEmailOutbox(tmp_path, clock=lambda: datetime(2026, 3, 2, 9, 30))
    with pytest.raises(PermanentSendError):
        outbox.send(make_message())


def test_email_date_keeps_the_clock_offset(tmp_path):
    brussels_winter = timezone(timedelta(hours=1))
    moment = datetime(2026, 1, 5, 10, 0, tzinfo=brussels_winter)
    LocalEmailOutbox(tmp_path, clock=lambda: moment).send(make_message())
    [eml] = files_under(tmp_path)
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert parsedate_to_datetime(parsed["Date"]) == moment


# --------------------------------------------------------------------------------------------------
# Keys to file names
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "..", "a/../../b", "..\\..\\x"])
def test_hostile_keys_stay_inside_the_outbox_folder(tmp_path, pdf_bytes, key):
    root = tmp_path / "outbox"
    pdf = (Attachment("f.pdf", "application/pdf", pdf_bytes),)
    LocalEmailOutbox(root).send(make_message(key, attachments=pdf))
    LocalPostOutbox(root).send(make_message(key, "post", attachments=pdf))
    LocalSmsOutbox(root).send(make_message(key, "sms"))

    written = files_under(tmp_path)
    assert {path.parent for path in written} == {root / "email", root / "post", root}
    assert all(not path.name.startswith(".") for path in written)
    assert jsonl(root / "sms.jsonl")[0]["key"] == key
    assert not (tmp_path / "etc").exists()


def test_safe_names_are_readable_and_keep_similar_keys_apart():
    name = safe_name(KEY)
    assert name.startswith("demo-utility_INV-2026-001_initial_email-")
    look_alikes = ["INV/1", "INV_1", "INV 1", "inv/1", "INV\\1", "INV:1"]
    assert len({safe_name(key) for key in look_alikes}) == len(look_alikes)
    with pytest.raises(ValueError):
        safe_name("")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=400), st.text(min_size=1, max_size=400))
def test_safe_name_is_one_bounded_component_and_injective(key, other):
    name = safe_name(key)
    assert name == safe_name(key)
    assert os.sep not in name and "/" not in name and "\0" not in name
    assert not name.startswith(".") and name not in {".", ".."}
    assert name.isascii() and len(name) <= SLUG_MAX_CHARS + 17
    if key != other:
        assert safe_name(other) != name


# --------------------------------------------------------------------------------------------------
# SMS segments
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, encoding, units, segments",
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€", "GSM-7", 2, 1),
        ("a" * 158 + "€", "GSM-7", 160, 1),
        ("a" * 159 + "€", "GSM-7", 161, 2),
        ("Ç{}[]~|^\\ éèàÄÖÑÜ§¿", "GSM-7", 27, 1),
        ("ł" * 70, "UCS-2", 70, 1),
        ("ł" * 71, "UCS-2", 71, 2),
        ("a" * 69 + "ł", "UCS-2", 70, 1),
        ("a" * 70 + "ł", "UCS-2", 71, 2),
        ("😀" + "a" * 68, "UCS-2", 70, 1),
        ("😀" + "a" * 69, "UCS-2", 71, 2),
        ("", "GSM-7", 0, 1),
    ],
)
def test_segment_counting(text, encoding, units, segments):
    count = count_sms_segments(text)
    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)


def test_escape_and_surrogate_pairs_are_never_split_across_segments():
    # 306 septets would fit two 153-septet parts, but the € pair cannot straddle the boundary.
    gsm = "a" * 152 + "€" + "a" * 152
    assert count_sms_segments(gsm).units == 306
    assert count_sms_segments(gsm).segments == 3
    ucs = "ł" * 66 + "😀" + "ł" * 66
    assert count_sms_segments(ucs).units == 134
    assert count_sms_segments(ucs).segments == 3


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=sorted(GSM7_BASIC), max_size=700))
def test_plain_gsm_segments_follow_the_160_153_rule(text):
    count = count_sms_segments(text)
    expected = 1 if len(text) <= 160 else math.ceil(len(text) / 153)
    assert (count.encoding, count.units, count.segments) == ("GSM-7", len(text), expected)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_encoding_is_ucs2_exactly_when_a_character_is_outside_gsm7(text):
    count = count_sms_segments(text)
    outside = any(ch not in GSM7_BASIC and ch not in GSM7_EXTENSION for ch in text)
    assert count.encoding == ("UCS-2" if outside else "GSM-7")
    limit_single, limit_multi = (70, 67) if outside else (160, 153)
    if count.segments == 1:
        assert count.units <= limit_single
    else:
        assert count.units > limit_single
        assert count.segments >= math.ceil(count.units / limit_multi)


# --------------------------------------------------------------------------------------------------
# SMS outbox
# --------------------------------------------------------------------------------------------------


def test_sms_line_round_trips(tmp_path):
    message = make_message(
        "demo-utility/INV-2026-001/reminder-1/sms",
        "sms",
        text="Herinnering: factuur INV-2026-001, € 123,45. Betaal via de link.",
        to_phone="+32 470 12 34 56",
    )
    result = LocalSmsOutbox(tmp_path, clock=fixed_clock).send(message)

    [line] = jsonl(tmp_path / "sms.jsonl")
    assert result.duplicate is False and result.provider_id == message.idempotency_key
    assert line["key"] == message.idempotency_key
    assert line["to"] == "+32470123456"
    assert line["text"] == message.text
    assert line["segments"] == count_sms_segments(message.text).segments == 1
    assert line["encoding"] == "GSM-7"
    assert (line["creditor"], line["invoice"]) == ("demo-utility", "INV-2026-001")
    assert datetime.fromisoformat(line["created_at"]) == FIXED_NOW


def test_sms_sent_twice_is_one_line_even_from_a_new_instance(tmp_path):
    message = make_message(channel="sms")
    first, second = LocalSmsOutbox(tmp_path), LocalSmsOutbox(tmp_path)
    assert first.send(message).duplicate is False
    assert first.send(message).duplicate is True
    assert second.send(message).duplicate is True
    assert len(jsonl(tmp_path / "sms.jsonl")) == 1


def test_sms_sees_lines_another_instance_appended_after_its_first_scan(tmp_path):
    early, other = LocalSmsOutbox(tmp_path), LocalSmsOutbox(tmp_path)
    early.send(make_message("k/1", "sms"))  # `early` has read the file now
    other.send(make_message("k/2", "sms"))
    assert early.send(make_message("k/2", "sms")).duplicate is True
    assert [line["key"] for line in jsonl(tmp_path / "sms.jsonl")] == ["k/1", "k/2"]


def test_sms_cuts_a_line_torn_by_a_crash_and_keeps_going(tmp_path):
    outbox = LocalSmsOutbox(tmp_path)
    outbox.send(make_message("k/1", "sms"))
    with (tmp_path / "sms.jsonl").open("ab") as handle:
        handle.write(b'{"key":"k/2","to":"+3247')  # the process died mid-write
    assert LocalSmsOutbox(tmp_path).send(make_message("k/2", "sms")).duplicate is False
    assert [line["key"] for line in jsonl(tmp_path / "sms.jsonl")] == ["k/1", "k/2"]


def _send_sms_keys(root: str, keys: list[str], start, results) -> None:
    outbox = LocalSmsOutbox(root)
    start.wait()
    for key in keys:
        results.put((key, outbox.send(make_message(key, "sms")).duplicate))


def test_concurrent_processes_sending_the_same_keys_append_each_once(tmp_path):
    context = multiprocessing.get_context("fork")
    keys = [f"demo-utility/INV-{n:03d}/initial/sms" for n in range(25)]
    start, results = context.Event(), context.Queue()
    workers = []
    for seed in range(4):
        order = keys[:]
        random.Random(seed).shuffle(order)
        workers.append(
            context.Process(target=_send_sms_keys, args=(str(tmp_path), order, start, results))
        )
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=30) for _ in range(len(keys) * len(workers))]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    lines = jsonl(tmp_path / "sms.jsonl")
    assert sorted(line["key"] for line in lines) == sorted(keys)
    fresh = sorted(key for key, duplicate in outcomes if not duplicate)
    assert fresh == sorted(keys)  # exactly one process delivered each key


def test_threads_sharing_instances_append_each_key_once(tmp_path):
    keys = [f"k/{n}" for n in range(30)]
    shared = [LocalSmsOutbox(tmp_path), LocalSmsOutbox(tmp_path)]
    jobs = [(shared[n % 2], key) for n in range(4) for key in keys]
    random.Random(7).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(
            pool.map(lambda job: (job[1], job[0].send(make_message(job[1], "sms"))), jobs)
        )
    assert sorted(line["key"] for line in jsonl(tmp_path / "sms.jsonl")) == sorted(keys)
    assert sorted(key for key, result in outcomes if not result.duplicate) == sorted(keys)


@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"to_phone": None}, "no-recipient"),
        ({"to_phone": "0470 12 34 56"}, "invalid-phone"),  # national format: country unknown
        ({"to_phone": "+32 12"}, "invalid-phone"),
        ({"text": ""}, "empty-text"),
        ({"text": "a" * 307}, "too-long"),
        ({"text": "ł" * 135}, "too-long"),
    ],
)
def test_sms_that_cannot_be_delivered_is_permanent(tmp_path, overrides, code):
    with pytest.raises(PermanentSendError) as caught:
        LocalSmsOutbox(tmp_path).send(make_message(channel="sms", **overrides))
    assert caught.value.code == code
    assert not (tmp_path / "sms.jsonl").exists() or jsonl(tmp_path / "sms.jsonl") == []


def test_sms_max_segments_is_configurable(tmp_path):
    message = make_message(channel="sms", text="a" * 307)
    assert LocalSmsOutbox(tmp_path, max_segments=3).send(message).duplicate is False
    assert jsonl(tmp_path / "sms.jsonl")[0]["segments"] == 3


# --------------------------------------------------------------------------------------------------
# Post outbox
# --------------------------------------------------------------------------------------------------


def test_post_writes_pdf_and_manifest_once(tmp_path, pdf_bytes):
    message = make_message(
        "demo-utility/INV-2026-001/reminder-2/post",
        "post",
        attachments=(Attachment("INV-2026-001.pdf", "application/pdf", pdf_bytes),),
    )
    outbox = LocalPostOutbox(tmp_path, clock=fixed_clock)
    assert outbox.send(message).duplicate is False
    assert outbox.send(message).duplicate is True
    assert LocalPostOutbox(tmp_path).send(message).duplicate is True

    folder = tmp_path / "post"
    [pdf] = list(folder.glob("*.pdf"))
    assert pdf.name == safe_name(message.idempotency_key) + ".pdf"
    assert pdf.read_bytes() == pdf_bytes
    [line] = jsonl(folder / "manifest.jsonl")
    assert line["key"] == message.idempotency_key
    assert line["recipient"] == "Jan Peeters"
    assert line["address_lines"] == ["Kerkstraat 1 bus 2", "9000 Gent"]
    assert line["country"] == "BE"
    assert line["document"] == pdf.name
    assert line["pages"] == 2
    assert line["envelope"] == "C5-window"
    assert line["registered"] is False
    assert datetime.fromisoformat(line["created_at"]) == FIXED_NOW
    assert sorted(p.name for p in folder.iterdir()) == sorted([pdf.name, "manifest.jsonl"])


def test_post_retry_after_crash_before_manifest_completes_once(tmp_path, pdf_bytes):
    message = make_message(
        "k/post", "post", attachments=(Attachment("f.pdf", "application/pdf", pdf_bytes),)
    )
    folder = tmp_path / "post"
    folder.mkdir()
    (folder / (safe_name("k/post") + ".pdf")).write_bytes(b"%PDF-1.3 half written")
    assert LocalPostOutbox(tmp_path).send(message).duplicate is False
    assert (folder / (safe_name("k/post") + ".pdf")).read_bytes() == pdf_bytes
    assert len(jsonl(folder / "manifest.jsonl")) == 1


@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"to_address": None}, "no-recipient"),
        ({"to_address": PostalAddress(name="Jan", street="", postcode="9000", city="Gent")},
         "no-recipient"),
        ({"attachments": ()}, "no-document"),
        ({"attachments": (Attachment("f.txt", "text/plain", b"hello"),)}, "no-document"),
        ({"attachments": (Attachment("f.pdf", "application/pdf", b"not a pdf"),)}, "no-document"),
    ],
)
def test_post_without_address_or_pdf_is_permanent(tmp_path, pdf_bytes, overrides, code):
    fields = {"attachments": (Attachment("f.pdf", "application/pdf", pdf_bytes),), **overrides}
    with pytest.raises(PermanentSendError) as caught:
        LocalPostOutbox(tmp_path).send(make_message(channel="post", **fields))
    assert caught.value.code == code
    assert files_under(tmp_path) == []


def test_pdf_page_count_ignores_the_pages_tree_and_defaults_to_one(pdf_bytes):
    assert count_pdf_pages(pdf_bytes) == 2
    assert count_pdf_pages(b"%PDF-1.7 /Type /Pages /Type /Page>> /Type/Page\n") == 2
    assert count_pdf_pages(b"%PDF-1.7 compressed object streams only") == 1


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def test_build_channels_roots_local_outboxes_in_the_settings_folder(tmp_path):
    built = registry.build_channels(["email", "sms", "post", "email"], Settings(home=tmp_path))
    assert list(built) == ["email", "sms", "post"]
    assert all(isinstance(channel, Channel) for channel in built.values())
    assert {name: channel.name for name, channel in built.items()} == {
        "email": "email", "sms": "sms", "post": "post"
    }
    built["sms"].send(make_message(channel="sms"))
    assert (tmp_path / "outbox" / "sms.jsonl").is_file()

    elsewhere = Settings(home=tmp_path, outbox_dir=tmp_path / "elsewhere")
    registry.build_channels(["email"], elsewhere)["email"].send(make_message())
    assert len(list((tmp_path / "elsewhere" / "email").glob("*.eml"))) == 1


def test_unknown_channel_names_the_known_ones(tmp_path):
    with pytest.raises(registry.UnknownChannelError) as caught:
        registry.build_channels(["email", "pigeon"], Settings(home=tmp_path))
    text = str(caught.value)
    assert "'pigeon'" in text
    for name in ("email", "post", "sms"):
        assert name in text
    assert caught.value.known == registry.known_channels()


def test_register_adds_a_factory_and_refuses_a_second_one(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))

    @registry.register("fax")
    def _fax(settings):
        outbox = LocalSmsOutbox(settings.resolved_outbox_dir / "fax")
        outbox.name = "fax"
        return outbox

    assert "fax" in registry.known_channels()
    built = registry.build_channels(["fax"], Settings(home=tmp_path))
    assert built["fax"].name == "fax"
    with pytest.raises(ValueError, match="already registered"):
        registry.register("email")(lambda settings: None)
