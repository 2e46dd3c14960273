"""CODA (Febelfin coded bank statements, version 2.x and 1) -> canonical statement frames.

Why it is built this way:

* Banks send hundreds of thousands of fixed-width lines; a Python loop per line tops out near
  270 k lines/s here (performance.md 3b), and polars `str.slice` measured ~240 ns per field and row
  on this box. So records become rows of a numpy byte matrix (`coda_grid`): a field is a column range,
  numbers and dates are array arithmetic, text goes to Arrow in one call per column. Python runs only per
  *statement*, per warning, and per rare structured communication (once per unique value).
* The usual file (every line 128 characters, one line ending) is that matrix already: a reshaped view
  of the bytes, no line index and no copy. Each record kind is gathered once; whole-file scans go by
  cache-sized blocks. The information records and the movements' communications are read on their
  own threads (numpy and polars release the GIL), with warnings replayed in sequential order. This
  took the 500 k-movement benchmark from under 4x to over 10x pycoda; `tests/test_parsers_coda.py` holds
  the output to a snapshot and to the plain single-threaded path.
* Slicing is on decoded characters: every file is first brought to one byte per character (cp1252, or
  a per-file table for UTF-8 files with characters cp1252 lacks), so a UTF-8 file with an accented name
  still has 128 characters per record, where slicing UTF-8 bytes would shift every later column.
* Nothing in a readable file aborts the parse. Wrong trailers, broken balances, bad OGM check digits,
  odd line lengths, orphan records: each becomes a `ParseWarning` naming the line, and the movement is
  kept (flagged) so finance can review it. Only a file that is not CODA at all, empty, undecodable, of an
  unknown version or without a usable header raises `FileRejected`.
* Keys are stable across re-imports. `statement_key` = ``coda:<account>:<CODA sequence>:<new balance
  date>`` (+ ``#n`` when one file repeats a statement); `movement_key` = ``<statement_key>:<sequence>:
  <detail>:<occurrence>`` where occurrence counts identical (sequence, detail) pairs inside the statement,
  because sequence numbers wrap after 9999 and test files repeat them. Same bytes in, same keys out.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from datetime import date
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa

from creditflow.parsers import coda_grid as grid

from creditflow.parsers.coda_records import (
    HEADER,
    NEW_BALANCE,
    OLD_BALANCE,
    RECORD_LENGTH,
    TRAILER,
    ZONE_2,
    decode_information,
    decode_movement,
)
from creditflow.parsers.errors import (
    EMPTY_FILE,
    MALFORMED,
    NOT_THIS_FORMAT,
    UNDECODABLE,
    UNSUPPORTED_VERSION,
    FileRejected,
    ParseWarning,
)
from creditflow.parsers.identifiers import NOT_PROVIDED
from creditflow.parsers.statements import (
    INFORMATION_SCHEMA,
    MOVEMENT_SCHEMA,
    STATEMENT_SCHEMA,
    StatementBatch,
)

FORMAT = "coda"
BOM = b"\xef\xbb\xbf"
SUPPORTED_VERSIONS = ("1", "2")
PARALLEL = True
"""Read information records and communications on threads (tests switch it off to compare outputs)."""
PARALLEL_MIN_RECORDS = 1_000
"""Below this many 3.1 records a thread costs more than it saves."""
WARNINGS_PER_CODE = 50
"""A garbage file must not produce a million warning objects; past this, one summary line per code."""

# Warning codes (stable: tests and the review screen key on them).
W_DECODING = "decoding"
W_LINE_LENGTH = "line_length"
W_TRUNCATED = "truncated_last_line"
W_BLANK_LINE = "blank_line"
W_UNKNOWN_RECORD = "unknown_record"
W_OUTSIDE = "record_outside_statement"
W_ORDER = "record_order"
W_ORPHAN = "orphan_record"
W_CONTINUATION = "continuation_mismatch"
W_DUPLICATE_RECORD = "duplicate_record"
W_BAD_AMOUNT = "bad_amount"
W_BAD_DATE = "bad_date"
W_BAD_NUMBER = "bad_number"
W_CHECK_DIGITS = "bad_check_digits"
W_DETAIL_ORPHAN = "detail_without_booking"
W_FIELD_SHIFT = "field_grid_shift"
W_APPLICATION_CODE = "application_code"
W_ACCOUNT_STRUCTURE = "account_structure"
W_IBAN = "bad_iban"
W_ACCOUNT_MISMATCH = "account_mismatch"
W_MISSING_OLD = "missing_old_balance"
W_MISSING_NEW = "missing_new_balance"
W_MISSING_TRAILER = "missing_trailer"
W_TRAILER_COUNT = "trailer_count"
W_TRAILER_DEBIT = "trailer_debit"
W_TRAILER_CREDIT = "trailer_credit"
W_BALANCE = "balance_continuity"
W_DUPLICATE_STATEMENT = "duplicate_statement"
W_TOO_MANY = "too_many_warnings"

# Record kinds as small integers (the matrix path classifies 1.8 M records with a few comparisons).
K0, K1, K21, K22, K23, K31, K32, K33, K4, K8, K9, K_UNKNOWN = range(12)
KIND_NAMES = {K0: "0", K1: "1", K21: "2.1", K22: "2.2", K23: "2.3", K31: "3.1", K32: "3.2", K33: "3.3",
              K4: "4", K8: "8", K9: "9", K_UNKNOWN: "?"}
TRAILER_KINDS = (K1, K21, K22, K23, K31, K32, K33, K8)
"""Records the trailer count covers (0, 4 and 9 are excluded by the spec)."""


def _kind_table() -> np.ndarray:
    """Record kind for every (byte 1, byte 2) pair, indexed by byte1 * 256 + byte2."""
    table = np.full(1 << 16, K_UNKNOWN, dtype=np.int8)
    for char, code in (("0", K0), ("1", K1), ("4", K4), ("8", K8), ("9", K9)):
        table[ord(char) << 8 : (ord(char) + 1) << 8] = code
    for char, base in (("2", K21), ("3", K31)):
        for offset in range(3):
            table[(ord(char) << 8) | ord(str(offset + 1))] = base + offset
    return table


_KIND_BY_IDENT = _kind_table()
_SEGMENT = object()
"""Marks, in a list of recorded warning calls, the calls of a step that ran on another thread."""
_ANYTHING = re.compile(rb"[^ \t\r\n\x00\x1a]")
_SHIFTED_STREET = re.compile(r"^(.*?\S)\s{2,}(\S{1,6})$")
_CODA_HEADER_LAYOUT = re.compile(r"0{5}\d{6}\d{3}(?:05|00)[ D] {7}")
"""Record 0 columns 1-24: `0`, zeros, creation date, bank id, application code, duplicate, blanks."""
_TRAILER_DATA_END = TRAILER["credit"][1]
"""Last column of the trailer's data (count, debit and credit totals); blanks follow up to column 127."""






def _s(text: str, layout: dict[str, tuple[int, int]], name: str) -> str:
    start, end = layout[name]
    return text[start - 1 : end]








def _py_date(ddmmyy: str) -> date | None:
    if len(ddmmyy) != 6 or not ddmmyy.isdigit():
        return None
    day, month, year = int(ddmmyy[0:2]), int(ddmmyy[2:4]), int(ddmmyy[4:6])
    try:
        return date(2000 + year if year < 70 else 1900 + year, month, day)
    except ValueError:
        return None


def _py_amount(sign: str, digits: str) -> int | None:
    if sign not in ("0", "1") or len(digits) != 15 or not digits.isdigit():
        return None
    return -int(digits) if sign == "1" else int(digits)


def _compact_account(raw: str) -> str:
    return "".join(raw.split()).upper()


def _looks_like_iban(compact: str) -> bool:
    return (
        5 <= len(compact) <= 34
        and compact[:2].isalpha()
        and compact[2:4].isdigit()
        and compact.isalnum()
        and compact.isascii()
    )


class _Warnings:
    """Collects warnings with a cap per code, so a hostile file cannot exhaust memory."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[ParseWarning] = []
        self.dropped: dict[str, int] = defaultdict(int)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, line: int | None, code: str, message: str) -> None:
        self.counts[code] += 1
        if self.counts[code] > WARNINGS_PER_CODE:
            self.dropped[code] += 1
            return
        location = f"line {line}" if line is not None else "file"
        self.items.append(ParseWarning(self.source, location, code, message))

    def finish(self) -> list[ParseWarning]:
        for code, n in sorted(self.dropped.items()):
            self.items.append(
                ParseWarning(self.source, "file", W_TOO_MANY, f"{n} more '{code}' warnings not listed")
            )
        return self.items


class _HeaderProblem(NamedTuple):
    """Why a record is not a usable CODA header: the FileRejected code, a sentence, the field."""

    code: str
    reason: str
    field: str | None = None

    def reject(self, source: str, line: int) -> FileRejected:
        return FileRejected(source, self.reason, code=self.code, location=f"line {line}", field=self.field)


def _header_problem(line: str) -> _HeaderProblem | None:
    """Why `line` is not a usable CODA header, or None when it is one."""
    if len(line) < 16 or line[0] != "0" or not line[:16].isdigit() or not line[:16].isascii():
        return _HeaderProblem(NOT_THIS_FORMAT, "first record is not a CODA header (record 0 with 15 digits after it)")
    if len(line) < RECORD_LENGTH:
        return _HeaderProblem(MALFORMED, f"header record is {len(line)} characters, expected {RECORD_LENGTH}")
    version = line[RECORD_LENGTH - 1]
    if version not in SUPPORTED_VERSIONS:
        shown = version if version.isalnum() else repr(version)
        return _HeaderProblem(
            UNSUPPORTED_VERSION,
            f"CODA version {shown} is not supported; versions 1 and 2 are (header column 128)",
            "version code",
        )
    return None


def _is_coda_header_layout(line: str) -> bool:
    """A 128-character record 0 whose fixed fields sit where the spec puts them (zeros, date, bank id,
    application code 05 (00 in one real file), blank or D, seven blanks): CODA whatever its version says.

    Lets `identify` claim a CODA file of a version we cannot read, so that `parse` says why instead of
    the operator seeing "no parser recognises this file"."""
    return len(line) == RECORD_LENGTH and _CODA_HEADER_LAYOUT.match(line) is not None


class CodaParser:
    """Reads CODA 2.x (and version 1) statement files into a `StatementBatch`."""

    name = FORMAT

    def identify(self, name: str, head: bytes) -> bool:
        """Yes when the first record is a 128-character CODA header: version 1 or 2, or another version
        in an unmistakable header layout (`parse` then rejects it naming the version)."""
        if head.startswith(BOM):
            head = head[len(BOM) :]
        first = head.split(b"\n", 1)[0]
        if first.endswith(b"\r"):
            first = first[:-1]
        try:
            line = first.decode("utf-8")
        except UnicodeDecodeError:
            line = first.decode("cp1252", errors="replace")
        if len(line) != RECORD_LENGTH:
            return False
        problem = _header_problem(line)
        return problem is None or (problem.code == UNSUPPORTED_VERSION and _is_coda_header_layout(line))

    # ------------------------------------------------------------------ entry point

    def parse(self, data: bytes, *, source: str) -> StatementBatch:
        try:
            return _Run(data, source).run()
        except FileRejected:
            raise
        except (pl.exceptions.PolarsError, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
            # A defect of ours on hostile input must still reach the caller as a typed, per-file error.
            raise FileRejected(source, f"could not read the CODA file ({type(exc).__name__}: {exc})",
                               code=MALFORMED) from exc


class _Run:
    """One parse of one file: the byte matrix and the per-record arrays shared by the steps."""

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.source = source
        self.w = _Warnings(source)
        self._phase = threading.local()

    def run(self) -> StatementBatch:
        self._read()
        self._structure()
        movements, info = self._movements_and_information()
        movements = self._fill_counterparty_from_info(movements, info)
        statements, keys = self._statements(movements)
        movements = self._finish_movements(movements, keys)
        info = self._finish_information(info, keys)
        return StatementBatch(
            statements=statements,
            movements=movements,
            information=info,
            warnings=self.w.finish(),
            format=FORMAT,
        )

    def _movements_and_information(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Both steps only read the matrix, and numpy and polars release the GIL on large arrays, so the
        information records (and, inside `_movements`, the communications) are read on other threads.

        Warnings stay deterministic: threads record their `_warn_rows` calls, which are replayed in
        the sequential order (movements with their communications, then information), so caps and
        order are exactly those of a run on one thread.
        """
        if not PARALLEL or np.count_nonzero(self.kind == K31) < PARALLEL_MIN_RECORDS:
            return self._movements(), self._information()
        self._phase.calls = calls = []
        try:
            information = self._start(self._information, replay_at_join=True)
            movements = self._movements()
            info = information()
        finally:
            self._phase.calls = None
        self._replay(calls)
        return movements, info

    def _start(self, step, *, replay_at_join: bool = False):
        """Run `step()` on a thread when the caller records warnings (see above); returns a function
        that waits for the result. Its warnings replay where it was started, or where it is joined."""
        caller_calls = getattr(self._phase, "calls", None)
        if caller_calls is None:
            result = step()
            return lambda: result
        own_calls: list = []
        outcome: dict[str, object] = {}

        def work() -> None:
            self._phase.calls = own_calls
            try:
                outcome["result"] = step()
            except BaseException as exc:  # re-raised on the joining thread
                outcome["error"] = exc

        worker = threading.Thread(target=work, name=f"coda-{getattr(step, '__name__', 'step')}")
        if not replay_at_join:
            caller_calls.append((_SEGMENT, own_calls))
        worker.start()

        def join():
            worker.join()
            if replay_at_join:
                caller_calls.append((_SEGMENT, own_calls))
            if "error" in outcome:
                raise outcome["error"]  # type: ignore[misc]
            return outcome["result"]

        return join

    def _replay(self, calls: list) -> None:
        for call in calls:
            if call[0] is _SEGMENT:
                self._replay(call[1])
            else:
                self._warn_rows(*call)

    # ------------------------------------------------------------------ helpers on the matrix

    def _text(self, block: np.ndarray, *, strip: bool = True) -> pl.Series:
        return grid.text(block, self.decode, self.utf8_len, strip=strip)

    def _record_text(self, row: int) -> str:
        return self.decode(self.mat[row].tobytes())

    def _warn_rows(self, rows: np.ndarray, code: str, message) -> None:
        """One warning per matrix row in `rows` (capped); `message(row)` words it."""
        if len(rows) == 0:
            return
        calls = getattr(self._phase, "calls", None)
        if calls is not None:  # a step running on a thread: replayed in order afterwards
            calls.append((np.array(rows), code, message))
            return
        room = max(WARNINGS_PER_CODE - self.w.counts[code], 0)
        for row in rows[:room]:
            self.w.add(int(self.line[row]), code, message(int(row)))
        extra = len(rows) - min(room, len(rows))
        if extra:
            self.w.counts[code] += extra
            self.w.dropped[code] += extra

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self.mat, self.line, self.kind, self.length = (
            self.mat[keep], self.line[keep], self.kind[keep], self.length[keep]
        )
        if hasattr(self, "stmt"):
            self.stmt = self.stmt[keep]

    # ------------------------------------------------------------------ bytes -> records

    def _read(self) -> None:
        data = self.data
        if data.startswith(BOM):
            data = data[len(BOM) :]
        if _ANYTHING.search(data) is None:
            raise FileRejected(self.source, "the file is empty", code=EMPTY_FILE)
        try:
            single, self.decode, _encoding, undefined = grid.to_single_byte(data)
        except grid.Undecodable as exc:
            raise FileRejected(self.source, str(exc), code=UNDECODABLE) from None
        self.utf8_len = grid.utf8_lengths(self.decode)
        if undefined:
            self.w.add(None, W_DECODING, f"{undefined} bytes undefined in cp1252 replaced by U+FFFD")
        regular = grid.regular_records(single)
        if regular is not None:
            self.mat, count = regular
            self.line = np.arange(1, count + 1, dtype=np.int64)
            self.length = np.full(count, RECORD_LENGTH, dtype=np.int64)
            problem = _header_problem(self.decode(self.mat[0].tobytes()))
            if problem is not None:
                raise problem.reject(self.source, 1)
        else:
            self._read_lines(single)
        self._classify()

    def _read_lines(self, single: bytes) -> None:
        """Irregular files: index every line, warn on blank and odd-length ones, pad or cut to 128."""
        lines = grid.Lines(single)
        blank = lines.blank()
        content = np.flatnonzero(~blank)
        if len(content) == 0:
            raise FileRejected(self.source, "the file has no records", code=EMPTY_FILE)
        first = content[0]
        start, length = int(lines.starts[first]), int(lines.lengths[first])
        problem = _header_problem(self.decode(single[start : start + length]))
        if problem is not None:
            raise problem.reject(self.source, int(first + 1))
        last = content[-1]
        inner_blank = np.flatnonzero(blank[:last])
        for i in inner_blank[:WARNINGS_PER_CODE]:
            self.w.add(int(i + 1), W_BLANK_LINE, "blank line between records ignored")
        if len(inner_blank) > WARNINGS_PER_CODE:
            self.w.counts[W_BLANK_LINE] += len(inner_blank) - WARNINGS_PER_CODE
            self.w.dropped[W_BLANK_LINE] += len(inner_blank) - WARNINGS_PER_CODE

        self.mat = lines.matrix(content)
        self.line = lines.numbers[content]
        self.length = lines.lengths[content]
        odd = np.flatnonzero(self.length != RECORD_LENGTH)
        is_last = self.line[odd] == self.line[-1]
        short_last = odd[is_last & (self.length[odd] < RECORD_LENGTH)]
        # A last trailer that keeps its count and totals and ends on a non-blank only lost its trailing
        # blanks (some banks strip them): padded and read like any record, its totals checked as usual.
        # One cut inside its data, or ending in blanks (cut mid-record), still looks truncated.
        ends = self.mat[short_last, np.maximum(self.length[short_last] - 1, 0)]
        stripped = short_last[(self.mat[short_last, 0] == ord("9")) & (self.length[short_last] >= _TRAILER_DATA_END)
                              & (ends != grid.SPACE)]
        truncated = np.setdiff1d(short_last, stripped)
        odd = np.setdiff1d(odd, stripped)
        self._warn_rows(
            truncated,
            W_TRUNCATED,
            lambda r: f"last line is {self.length[r]} characters, expected {RECORD_LENGTH}: the file looks "
            f"truncated; padded with blanks",
        )
        self._warn_rows(
            np.setdiff1d(odd, truncated),
            W_LINE_LENGTH,
            lambda r: f"record is {self.length[r]} characters, expected {RECORD_LENGTH}; "
            + ("padded with blanks" if self.length[r] < RECORD_LENGTH else "cut at 128"),
        )

    def _classify(self) -> None:
        # One table lookup on the first two bytes: each pass over a column of the file costs a full
        # sweep of memory, so eleven comparisons were a third of a second on a 230 MB file.
        kind = _KIND_BY_IDENT[grid.first_two(self.mat)]
        self.kind = kind
        unknown = np.flatnonzero(kind == K_UNKNOWN)
        self._warn_rows(
            unknown,
            W_UNKNOWN_RECORD,
            lambda r: f"unknown record identification {self.decode(self.mat[r, :2].tobytes())!r}; record ignored",
        )
        self._keep(kind != K_UNKNOWN)

    def _structure(self) -> None:
        """Number the 0..9 blocks, drop what sits outside them, check the record order."""
        kind = self.kind
        is0 = kind == K0
        stmt = np.cumsum(is0)
        headers = np.flatnonzero(is0)
        is9 = kind == K9
        nines_before = np.cumsum(is9) - is9
        outside = ((nines_before - nines_before[headers][stmt - 1]) > 0) & ~is0
        self.stmt = stmt
        self._warn_rows(
            np.flatnonzero(outside),
            W_OUTSIDE,
            lambda r: f"record {KIND_NAMES[self.kind[r]]} after the trailer (record 9) and before a new header; ignored",
        )
        self._keep(~outside)
        kind, stmt = self.kind, self.stmt
        headers = np.flatnonzero(kind == K0)
        for row in headers:
            problem = _header_problem(self._record_text(row))
            if problem is not None:
                raise problem.reject(self.source, int(self.line[row]))
        self.headers = headers
        self.v1 = (self.mat[headers, RECORD_LENGTH - 1] == ord("1"))[stmt - 1]
        is8 = kind == K8
        eights = np.cumsum(is8)
        seen8 = (eights - eights[headers][stmt - 1]) > 0
        late = seen8 & np.isin(kind, (K1, K21, K22, K23, K31, K32, K33))
        self._warn_rows(np.flatnonzero(late), W_ORDER,
                        lambda r: f"record {KIND_NAMES[self.kind[r]]} after the new balance (record 8)")
        self._warn_rows(np.flatnonzero(~seen8 & (kind == K4)), W_ORDER,
                        lambda r: "free communication (record 4) before the new balance")
        position = np.arange(len(kind)) - headers[stmt - 1]
        self._warn_rows(np.flatnonzero((kind == K1) & (position != 1)), W_ORDER,
                        lambda r: "old balance (record 1) is not the second record")

    def _children(self, child_kind: int, parent_flags: np.ndarray, label: str, parent_label: str):
        """Row of the first `child_kind` record under each parent (-1 when none), warning on the rest."""
        kind, stmt = self.kind, self.stmt
        last_parent = grid.last_index(parent_flags)
        ordinal = np.cumsum(parent_flags) - 1
        rows = np.flatnonzero(kind == child_kind)
        parent = last_parent[rows]
        ok = (parent >= 0) & (stmt[np.maximum(parent, 0)] == stmt[rows])
        self._warn_rows(rows[~ok], W_ORPHAN,
                        lambda r: f"record {label} without a {parent_label} record before it; ignored")
        rows = rows[ok]
        owner = ordinal[rows]
        result = np.full(int(parent_flags.sum()), -1, dtype=np.int64)
        if len(rows):
            first = np.ones(len(rows), dtype=bool)  # owners are non-decreasing: rows are in file order
            first[1:] = owner[1:] != owner[:-1]
            result[owner[first]] = rows[first]
            self._warn_rows(rows[~first], W_DUPLICATE_RECORD,
                            lambda r: f"second {label} record for one {parent_label} record; ignored")
        return result

    # ------------------------------------------------------------------ movements

    def _movements(self) -> pl.DataFrame:
        mat, kind = self.mat, self.kind
        is21 = kind == K21
        R = np.flatnonzero(is21)
        n = len(R)
        r22 = self._children(K22, is21, "2.2", "movement (2.1)")
        r23 = self._children(K23, is21, "2.3", "movement (2.1)")
        v1 = self.v1[R]
        stmt = self.stmt[R]
        # Gather each record kind once; every field below is a view on these.
        m21 = grid.take(mat, R, 1, RECORD_LENGTH)
        m22 = grid.take(mat, r22, 1, RECORD_LENGTH)
        m23 = grid.take(mat, r23, 1, RECORD_LENGTH)

        ident = m21[:, 2:10]
        for rows, block, label in ((r22, m22, "2.2"), (r23, m23, "2.3")):
            differs = np.flatnonzero((rows >= 0) & ~_same(block[:, 2:10], ident))
            self._warn_rows(
                R[differs],
                W_CONTINUATION,
                lambda r, label=label: f"record {label} after movement {self.decode(self.mat[r, 2:10].tobytes())!r} "
                f"carries another sequence/detail number; joined by position",
            )
        seq_block, det_block = np.ascontiguousarray(m21[:, 2:6]), np.ascontiguousarray(m21[:, 6:10])
        seq, seq_ok = grid.digits(seq_block)
        det, det_ok = grid.digits(det_block)
        sign = m21[:, 31]
        amount, amount_ok = grid.digits(m21[:, 32:47])
        amount_ok &= (sign == ord("0")) | (sign == ord("1"))
        amount = np.where(sign == ord("1"), -amount, amount)
        value_block = np.ascontiguousarray(m21[:, 47:53])
        booking_block = np.ascontiguousarray(m21[:, 115:121])
        value_date = grid.dates(value_block)
        booking_date = grid.dates(booking_block)

        self._warn_rows(R[~amount_ok], W_BAD_AMOUNT, lambda r: f"amount field "
                        f"{self.decode(self.mat[r, 31:47].tobytes())!r} is not a sign 0/1 and 15 digits; amount left empty")
        value_zero = _eq(value_block, b"000000")
        self._warn_rows(R[value_date.is_null().to_numpy() & ~value_zero], W_BAD_DATE,
                        lambda r: f"value date {self.decode(self.mat[r, 47:53].tobytes())!r} is not a DDMMYY date")
        self._warn_rows(R[booking_date.is_null().to_numpy()], W_BAD_DATE,
                        lambda r: f"entry date {self.decode(self.mat[r, 115:121].tobytes())!r} is not a DDMMYY date")
        self._warn_rows(R[~(seq_ok & det_ok)], W_BAD_NUMBER,
                        lambda r: f"sequence/detail number {self.decode(self.mat[r, 2:10].tobytes())!r} is not numeric")

        def zone(rows: np.ndarray) -> np.ndarray:
            """The 149-character communication zone, 2.1 (53) + 2.2 (53) + 2.3 (43), of some movements.

            Built only for the rows that read it whole (free text, rare types): type and OGM digits
            sit in the 2.1 part and are read from `m21` directly.
            """
            joined = np.concatenate((m21[rows, 62:115], m22[rows, 10:63], m23[rows, 82:125]), axis=1)
            joined[v1[rows], ZONE_2[0] + ZONE_2[1] :] = grid.SPACE  # version 1: an address, not text
            return joined

        communications = self._start(lambda: self._communications(R, m21, zone))

        account_zone = m23[:, 10:47].copy()
        account_zone[v1, 12:] = grid.SPACE
        name_block = m23[:, 47:82].copy()
        name_block[v1, 26:] = grid.SPACE
        r_type = m22[:, 112:113][:, 0]
        family, operation = np.ascontiguousarray(m21[:, 54:56]), np.ascontiguousarray(m21[:, 56:58])
        is_reversal = (
            np.isin(r_type, np.frombuffer(b"12345", dtype=np.uint8))
            | _eq(operation, b"49") | _eq(operation, b"99")
            | (_eq(family, b"05") & _eq(operation, b"58"))
        )

        # Bank globalisation: detail 0000 books; later details of the same sequence hang under it.
        is_booking = ~det_ok | (det == 0)
        candidate = grid.last_index(is_booking)
        safe = np.maximum(candidate, 0)
        parent = np.where(
            ~is_booking & (candidate >= 0) & (stmt[safe] == stmt) & _same(seq_block[safe], seq_block),
            candidate,
            -1,
        )
        self._warn_rows(R[~is_booking & (parent < 0)], W_DETAIL_ORPHAN,
                        lambda r: f"detail {self.decode(self.mat[r, 2:10].tobytes())!r} has no booking (detail "
                        f"0000) with the same sequence before it; kept unlinked")
        has_details = is_booking & (np.bincount(parent[parent >= 0], minlength=n) > 0)

        communication, ctype, reference, valid = communications()
        frame = pl.DataFrame(
            {
                "line": self.line[R],
                "stmt": stmt,
                "mov": np.arange(n, dtype=np.int64),
                "seq_raw": self._text(seq_block, strip=False),
                "det_raw": self._text(det_block, strip=False),
                "seq_ok": seq_ok & det_ok,
                "sequence": _masked(seq, seq_ok),
                "detail_number": _masked(det, det_ok),
                "bank_reference": self._text(m21[:, 10:31]),
                "amount_milli": _masked(amount, amount_ok),
                "value_date": value_date,
                "booking_date": booking_date,
                "transaction_code": self._text(m21[:, 53:61], strip=False),
                "communication_type": ctype,
                "structured_reference": reference,
                "reference_valid": valid,
                "communication": communication,
                "counterparty_name": self._text(name_block),
                "counterparty_account": self._counterparty_account(account_zone),
                "counterparty_bic": self._text(m22[:, 98:109]),
                "customer_reference": self._customer_reference(m22[:, 63:98]),
                "return_reason": self._text(m22[:, 113:117]),
                "is_reversal": is_reversal,
                "is_booking": is_booking,
                "has_details": has_details,
                "parent": _masked(parent, parent >= 0),
            }
        )
        return frame

    def _customer_reference(self, block: np.ndarray) -> pl.Series:
        """The 2.2 customer reference, null where it is a `NOT_PROVIDED` placeholder (any case), as the
        camt.053 parser does with its references.

        Only the references as long as a placeholder are upper-cased and compared: doing it on every
        row cost ~11 ms per 500 k movements, the length test ~1 ms."""
        refs = self._text(block)
        lengths = sorted({len(placeholder) for placeholder in NOT_PROVIDED})
        rows = np.flatnonzero(refs.str.len_bytes().is_in(lengths).fill_null(False).to_numpy())
        if len(rows):
            placeholder = refs.gather(rows).str.to_uppercase().is_in(NOT_PROVIDED).fill_null(False)
            hits = rows[placeholder.to_numpy()]
            if len(hits):
                refs = refs.scatter(hits, None)
        return refs

    def _counterparty_account(self, zone: np.ndarray) -> pl.Series:
        """BBAN when column 23 is blank and 11-22 are digits, else IBAN/other in 11-44 (SPEC §7.5 note).

        `account_rule` (all zeros -> null, IBAN-like -> compact upper case) runs only on the rows it
        can change: two regexes over 500 k accounts cost more than the rest of the column, and an
        account that starts with neither '0' nor a blank and has no blank or lower-case letter inside
        comes out of the rule as written.
        """
        _, bban_ok = grid.digits(zone[:, :12])
        is_bban = bban_ok & (zone[:, 12] == grid.SPACE)
        block = zone[:, :34].copy()
        block[is_bban, 12:] = grid.SPACE
        raw = self._text(block)
        maybe_zero = (block[:, 0] == ord("0")) | (block[:, 0] == grid.SPACE)
        maybe_compact = pl.select(
            (raw.str.contains(" ", literal=True) | (raw != raw.str.to_uppercase())).fill_null(False)
        ).to_series().to_numpy()
        changed = np.flatnonzero(maybe_zero | maybe_compact)
        if len(changed) == len(raw):
            return account_rule(raw)
        if len(changed):
            raw = raw.scatter(changed, account_rule(raw.gather(changed)))
        return raw

    def _communications(self, R: np.ndarray, m21: np.ndarray, zone):
        """(communication, type, structured reference, reference valid) per movement.

        Free text is the joined zone; 101/102 are checked with the OGM rule (mod 97, 0 written 97)
        vectorised here for speed: the same rule as `stdnum.be.ogm_vcs`, which the tests hold it to and
        which checks every other type's embedded OGM. Other types are decoded once per unique value.
        """
        n = len(R)
        structured = m21[:, 61] == ord("1")
        head = np.ascontiguousarray(m21[:, 62:77])  # the zone's first 15 characters: type and OGM digits
        type_block = head[:, :3]
        is_ogm = structured & (_eq(type_block, b"101") | _eq(type_block, b"102"))
        base, base_ok = grid.digits(head[:, 3:13])
        check, check_ok = grid.digits(head[:, 13:15])
        twelve = base_ok & check_ok
        remainder = base % 97
        valid = twelve & (np.where(remainder == 0, 97, remainder) == check)

        communication = _nulls(n, "communication")
        free = np.flatnonzero(~structured)
        if len(free):
            communication = communication.scatter(free, self._text(zone(free)))
        ogm = np.flatnonzero(is_ogm & twelve)
        if len(ogm):
            display = np.empty((len(ogm), 20), dtype=np.uint8)
            display[:, 0:3] = display[:, 17:20] = ord("+")
            display[:, 6] = display[:, 11] = ord("/")
            display[:, 3:6], display[:, 7:11], display[:, 12:17] = head[ogm, 3:6], head[ogm, 6:10], head[ogm, 10:15]
            communication = communication.scatter(ogm, self._text(display, strip=False))
        reference = grid.text(head[:, 3:15], self.decode, self.utf8_len, valid=is_ogm)
        valid_series = _masked(valid, is_ogm)
        ctype = grid.text(type_block, self.decode, self.utf8_len, strip=False, valid=structured)

        sdd = np.flatnonzero(structured & _eq(type_block, b"127"))
        if len(sdd):
            communication = communication.scatter(sdd, self._sepa_direct_debit(zone(sdd)[:, 3:]))
        others = np.flatnonzero(structured & ~(is_ogm & twelve) & ~_eq(type_block, b"127"))
        if len(others):
            types = self._text(type_block[others], strip=False).to_list()
            contents = self._text(zone(others)[:, 3:], strip=False).to_list()
            cache: dict[tuple[str, str], object] = {}
            texts, refs, oks = [], [], []
            for key in zip(types, contents):
                decoded = cache.get(key)
                if decoded is None:
                    decoded = cache[key] = decode_movement(key[0] or "", key[1] or "")
                texts.append(decoded.text or None)
                refs.append(decoded.reference)
                oks.append(decoded.reference_valid)
            communication = communication.scatter(others, pl.Series(texts, dtype=pl.String))
            reference = reference.scatter(others, pl.Series(refs, dtype=pl.String))
            valid_series = valid_series.scatter(others, pl.Series(oks, dtype=pl.Boolean))
        bad = np.flatnonzero(valid_series.eq(False).fill_null(False).to_numpy())
        if len(bad):
            refs_list = reference.gather(bad).to_list()
            types_list = ctype.gather(bad).to_list()
            details = dict(zip(bad.tolist(), zip(types_list, refs_list)))
            self._warn_rows(
                R[bad],
                W_CHECK_DIGITS,
                lambda r: "structured communication {} {!r} fails the mod-97 check; movement kept and flagged "
                "(reference_valid = false)".format(*details[int(np.searchsorted(R, r))]),
            )
        return communication, ctype, reference, valid_series

    def _sepa_direct_debit(self, content: np.ndarray) -> pl.Series:
        """Type 127 made readable, vectorised (SEPA collections come by the thousand).

        Same text as `coda_records.decode_movement("127", ...)`, the reference the tests compare with.
        """
        settlement = grid.dates(content[:, 0:6])
        settlement_text = pl.select(
            pl.coalesce(settlement.dt.to_string("%Y-%m-%d"), self._text(content[:, 0:6]))
        ).to_series()
        scheme = pl.Series(np.where(content[:, 7] == ord("1"), "B2B", "CORE"))
        paid, r_type = content[:, 8], content[:, 141]
        refused = ~np.isin(paid, (ord("0"), grid.SPACE)) | ~np.isin(r_type, (ord("0"), grid.SPACE))
        refused_text = pl.select(
            pl.when(pl.Series(refused)).then(
                pl.concat_str(pl.lit("refused"), self._text(content[:, 141:142]), self._text(content[:, 142:146]),
                              separator=" ", ignore_nulls=True)
            )
        ).to_series()

        def labelled(label: str, values: pl.Series) -> pl.Expr:
            return pl.when(values.is_not_null()).then(pl.concat_str(pl.lit(label), values))

        return pl.select(
            pl.concat_str(
                pl.concat_str(pl.lit("SEPA direct debit "), scheme),
                labelled("creditor ", self._text(content[:, 9:44])),
                labelled("mandate ", self._text(content[:, 44:79])),
                pl.concat_str(pl.lit("settlement "), settlement_text),
                refused_text,
                self._text(content[:, 79:141]),
                separator="; ",
                ignore_nulls=True,
            )
        ).to_series()

    # ------------------------------------------------------------------ information (3.x, 4)

    def _information(self) -> pl.DataFrame:
        mat, kind, stmt = self.mat, self.kind, self.stmt
        is21, is31 = kind == K21, kind == K31
        I = np.flatnonzero(is31)
        n = len(I)
        last21 = grid.last_index(is21)[I]
        linked = (last21 >= 0) & (stmt[np.maximum(last21, 0)] == stmt[I])
        self._warn_rows(I[~linked], W_ORPHAN, lambda r: "information record 3.1 before any movement; kept unlinked")
        movement = np.where(linked, np.cumsum(is21)[I] - 1, -1)
        r32 = self._children(K32, is31, "3.2", "information (3.1)")
        r33 = self._children(K33, is31, "3.3", "information (3.1)")
        m31 = grid.take(mat, I, 1, RECORD_LENGTH)

        def zone(rows: np.ndarray, with_33: bool = True) -> np.ndarray:
            """The 268-character zone, 3.1 (73) + 3.2 (105) + 3.3 (90), of the information records `rows`
            (without the 3.3 part when the reader stops before it)."""
            parts = [m31[rows, 40:113], grid.take(mat, r32[rows], 11, 115)]
            if with_33:
                parts.append(grid.take(mat, r33[rows], 11, 100))
            return np.concatenate(parts, axis=1)

        structured = m31[:, 39] == ord("1")
        type_block = m31[:, 40:43]
        is001 = structured & _eq(type_block, b"001")
        last_link = np.where(r33 >= 0, mat[np.maximum(r33, 0), 127],
                             np.where(r32 >= 0, mat[np.maximum(r32, 0), 127], m31[:, 127]))

        communication = _nulls(n, "communication")
        party = _nulls(n, "party_name")
        rows001 = np.flatnonzero(is001)
        if len(rows001):
            texts, names = self._decode_001(rows001, zone(rows001, with_33=False), r32)
            communication = communication.scatter(rows001, texts)
            party = party.scatter(rows001, names)
        others = np.flatnonzero(structured & ~is001)
        if len(others):
            types = self._text(type_block[others], strip=False).to_list()
            contents = self._text(zone(others)[:, 3:], strip=False).to_list()
            cache: dict[tuple[str, str], str] = {}
            texts = [cache.setdefault(k, decode_information(k[0] or "", k[1] or "").text) for k in zip(types, contents)]
            communication = communication.scatter(others, pl.Series(texts, dtype=pl.String))

        free_rows = np.flatnonzero(~structured)
        free = _nulls(n, "free")
        if len(free_rows):
            part31 = self._text(m31[free_rows, 40:113], strip=False)
            part32 = self._text(grid.take(mat, r32[free_rows], 11, 115), strip=False)
            part33 = self._text(grid.take(mat, r33[free_rows], 11, 100), strip=False)
            joined = pl.select(
                pl.concat_str(
                    part31,
                    pl.when(pl.Series(r32[free_rows] >= 0)).then(part32),
                    pl.when(pl.Series(r33[free_rows] >= 0)).then(part33),
                    ignore_nulls=True,
                )
            ).to_series()
            free = free.scatter(free_rows, joined)

        info = pl.DataFrame(
            {
                "line": self.line[I],
                "stmt": stmt[I],
                "mov": _masked(movement, movement >= 0),
                "seq_raw": self._text(m31[:, 2:6], strip=False),
                "det_raw": self._text(m31[:, 6:10], strip=False),
                "bank_ref": self._text(m31[:, 10:31], strip=False),
                "transaction_code": self._text(m31[:, 31:39], strip=False),
                "structured": structured,
                "communication_type": pl.select(
                    pl.when(pl.Series(structured)).then(self._text(type_block, strip=False))
                ).to_series(),
                "communication": communication,
                "party_name": party,
                "free": free,
                "last_link": last_link == ord("1"),
            }
        )
        return self._merge_long_free_texts(info)

    def _decode_001(self, rows: np.ndarray, block: np.ndarray, r32: np.ndarray):
        """Type 001 (counterparty name 70, street 35, locality 35, id 35) -> (text, name) per row.

        `block` is the zone from its type on, at least 178 characters (the 3.3 part is not read).
        """
        name = self._text(block[:, 3:73])
        street = self._text(block[:, 73:108])
        locality = self._text(block[:, 108:143])
        ident = self._text(block[:, 143:178])
        # Some banks (BNP; php sample10) start the locality one or two columns early, so the postcode's
        # first digits end the 35-character street field and run into the locality field.
        suspects = np.flatnonzero(
            (r32[rows] >= 0) & (block[:, 107] != grid.SPACE) & (block[:, 108] != grid.SPACE)
        )
        shifted_lines = []
        if len(suspects):
            streets, localities = street.gather(suspects).to_list(), locality.gather(suspects).to_list()
            fixed = []
            for i, old_street, old_locality in zip(suspects.tolist(), streets, localities):
                match = _SHIFTED_STREET.match(old_street or "")
                if match:
                    fixed.append((i, match.group(1), match.group(2) + (old_locality or "")))
                    shifted_lines.append(int(r32[rows[i]]))
            if fixed:
                where = np.array([f[0] for f in fixed], dtype=np.int64)
                street = street.scatter(where, pl.Series([f[1] for f in fixed], dtype=pl.String))
                locality = locality.scatter(where, pl.Series([f[2] for f in fixed], dtype=pl.String))
        self._warn_rows(
            np.asarray(shifted_lines, dtype=np.int64),
            W_FIELD_SHIFT,
            lambda r: "counterparty address (type 001) in record 3.2 does not keep its field grid "
            "(the locality starts inside the 35-character street field); re-aligned",
        )
        text = pl.select(
            pl.concat_str(name, street, locality, ident,
                          separator=", ", ignore_nulls=True)
        ).to_series()
        return text, name

    @staticmethod
    def _merge_long_free_texts(info: pl.DataFrame) -> pl.DataFrame:
        """Consecutive free-text 3.1 records of one movement, linked by link code 1, are one text.

        Banks (ING, sample2) spread a long text over several 3.1 records with the same sequence and
        bank reference, cutting words in the middle; keeping only one of them lost the payer's text
        (php-coda-parser#8). Joining the raw zones restores the words.
        """
        def prev(c: str) -> pl.Expr:
            return pl.col(c).shift(1)

        continues = (
            ~pl.col("structured")
            & ~prev("structured").fill_null(True)
            & (pl.col("mov") == prev("mov")).fill_null(False)
            & (pl.col("stmt") == prev("stmt")).fill_null(False)
            & (pl.col("transaction_code") == prev("transaction_code")).fill_null(False)
            & (pl.col("bank_ref") == prev("bank_ref")).fill_null(False)
            & prev("last_link").fill_null(False)
        )
        info = info.with_columns(group=(~continues).cum_sum())
        if info.height and info["group"].n_unique() < info.height:
            firsts = [c for c in info.columns if c not in ("free", "group")]
            info = info.group_by("group", maintain_order=True).agg(
                [pl.col(c).first() for c in firsts] + [pl.col("free").str.join("")]
            )
        stripped = pl.col("free").str.strip_chars()
        return info.drop("group").with_columns(
            communication=pl.coalesce("communication", pl.when(stripped != "").then(stripped))
        )

    def _fill_counterparty_from_info(self, m: pl.DataFrame, info: pl.DataFrame) -> pl.DataFrame:
        """Some banks name the counterparty only in 3.1 type 001; use it when 2.3 gave no name."""
        named = info.filter(pl.col("party_name").is_not_null() & pl.col("mov").is_not_null())
        if named.height == 0:
            return m
        mov = named["mov"].to_numpy()
        if m.height and (np.diff(mov) >= 0).all() and m["mov"].equals(pl.Series("mov", np.arange(m.height))):
            # File order: the first name of each movement starts a run; no group-by and join needed.
            first = np.flatnonzero(np.concatenate(([True], mov[1:] != mov[:-1])))
            names = _nulls(m.height, "info_name").scatter(mov[first], named["party_name"].gather(first))
            return m.with_columns(counterparty_name=pl.coalesce(pl.col("counterparty_name"), names))
        names = named.group_by("mov", maintain_order=True).agg(info_name=pl.col("party_name").first())
        return m.join(names, on="mov", how="left", maintain_order="left").with_columns(
            counterparty_name=pl.coalesce("counterparty_name", "info_name")
        ).drop("info_name")

    # ------------------------------------------------------------------ statements

    def _statements(self, m: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """One row per 0..9 block; trailer and balance checks; the statement keys."""
        kind = self.kind
        by_stmt: dict[int, dict[str, list[tuple[int, str]]]] = defaultdict(lambda: defaultdict(list))
        for row in np.flatnonzero(np.isin(kind, (K0, K1, K8, K9))):
            by_stmt[int(self.stmt[row])][KIND_NAMES[int(kind[row])]].append((int(self.line[row]), self._record_text(row)))
        counted_rows = np.isin(kind, TRAILER_KINDS)
        counted = np.bincount(self.stmt[counted_rows], minlength=int(self.stmt.max()) + 1)
        sums = _booking_sums(m)
        rows: list[dict] = []
        seen_keys: dict[str, int] = {}
        for stmt in sorted(by_stmt):
            parts = by_stmt[stmt]
            row = self._statement_row(parts, int(counted[stmt]), sums.get(stmt, (0, 0, 0)))
            key = row["statement_key"]
            if key in seen_keys:
                seen_keys[key] += 1
                self.w.add(row["source_line"], W_DUPLICATE_STATEMENT,
                           f"statement {key} appears more than once in the file; keyed #{seen_keys[key]}")
                row["statement_key"] = f"{key}#{seen_keys[key]}"
            else:
                seen_keys[key] = 1
            row["stmt"] = stmt
            rows.append(row)
        frame = pl.DataFrame(rows, schema={**STATEMENT_SCHEMA, "stmt": pl.Int64, "_currency": pl.String,
                                           "_iban": pl.String}, orient="row")
        keys = frame.select("stmt", "statement_key", account_iban="_iban", currency="_currency")
        return frame.select(list(STATEMENT_SCHEMA)), keys

    def _account(self, structure: str, zone: str, v1: bool, line: int, warn: bool) -> tuple[str, str | None, str]:
        """(account as written, compact IBAN or None, currency) from the 37-character account zone."""
        if v1:
            return zone[0:12].strip(), None, zone[13:16].strip() or "EUR"
        if structure == "0":
            return zone[0:12].strip(), None, zone[13:16].strip()
        if structure in ("1", "2", "3"):
            width = 31 if structure == "2" else 34
            account = zone[0:width].strip()
            currency = zone[34:37].strip()
            iban = None
            if structure in ("2", "3"):
                compact = _compact_account(account)
                iban = compact if _looks_like_iban(compact) else None
                if warn:
                    from stdnum import iban as stdnum_iban

                    if not stdnum_iban.is_valid(compact):
                        self.w.add(line, W_IBAN, f"account {account!r} fails the IBAN check; kept as written")
            return account, iban, currency
        if warn:
            self.w.add(line, W_ACCOUNT_STRUCTURE, f"unknown account structure code {structure!r} in record 1 column 2")
        return zone[0:34].strip(), None, zone[34:37].strip()

    def _statement_row(self, parts, counted: int, sums: tuple[int, int, int]) -> dict:
        header_line, header = parts["0"][0]
        v1 = header[RECORD_LENGTH - 1] == "1"
        if len(parts["0"]) > 1:
            self.w.add(parts["0"][1][0], W_ORDER, "second header in one statement")
        app_code = _s(header, HEADER, "application_code")
        if app_code != "05":
            self.w.add(header_line, W_APPLICATION_CODE, f"application code {app_code!r} in the header, expected '05'")
        creation = _py_date(_s(header, HEADER, "creation_date"))
        if creation is None:
            self.w.add(header_line, W_BAD_DATE, f"creation date {_s(header, HEADER, 'creation_date')!r} is not DDMMYY")

        account = iban = currency = holder = coda_seq = None
        old_date = old_balance = None
        structure = "0"
        if parts["1"]:
            line1, r1 = parts["1"][0]
            if len(parts["1"]) > 1:
                self.w.add(parts["1"][1][0], W_ORDER, "second old balance (record 1) in one statement; ignored")
            structure = _s(r1, OLD_BALANCE, "structure")
            account, iban, currency = self._account(structure, _s(r1, OLD_BALANCE, "account_zone"), v1, line1, True)
            old_balance = _py_amount(_s(r1, OLD_BALANCE, "sign"), _s(r1, OLD_BALANCE, "amount"))
            if old_balance is None:
                self.w.add(line1, W_BAD_AMOUNT, "old balance is not a sign and 15 digits")
            old_date = _py_date(_s(r1, OLD_BALANCE, "date"))
            if old_date is None:
                self.w.add(line1, W_BAD_DATE, f"old balance date {_s(r1, OLD_BALANCE, 'date')!r} is not DDMMYY")
            holder = _s(r1, OLD_BALANCE, "holder_name").strip() or None
            coda_seq = _s(r1, OLD_BALANCE, "coda_sequence").strip() or None
        else:
            self.w.add(header_line, W_MISSING_OLD, "statement has no old balance (record 1)")

        count, credit, debit = sums
        new_date = new_balance = None
        if parts["8"]:
            line8, r8 = parts["8"][0]
            if len(parts["8"]) > 1:
                self.w.add(parts["8"][1][0], W_ORDER, "second new balance (record 8) in one statement; ignored")
            account8, _, _ = self._account(structure, _s(r8, NEW_BALANCE, "account_zone"), v1, line8, False)
            if account is not None and _compact_account(account8) != _compact_account(account):
                self.w.add(line8, W_ACCOUNT_MISMATCH, f"new balance account {account8!r} differs from {account!r}")
            new_balance = _py_amount(_s(r8, NEW_BALANCE, "sign"), _s(r8, NEW_BALANCE, "amount"))
            if new_balance is None:
                self.w.add(line8, W_BAD_AMOUNT, "new balance is not a sign and 15 digits")
            new_date = _py_date(_s(r8, NEW_BALANCE, "date"))
            if new_date is None:
                self.w.add(line8, W_BAD_DATE, f"new balance date {_s(r8, NEW_BALANCE, 'date')!r} is not DDMMYY")
        elif count == 0 and parts["1"]:
            # The spec's "empty file" (0, 1, 9): nothing moved, the new balance is the old one.
            new_date, new_balance = old_date, old_balance
        else:
            self.w.add(header_line, W_MISSING_NEW, "statement has movements but no new balance (record 8)")

        if parts["9"]:
            line9, r9 = parts["9"][0]
            self._check_trailer(line9, r9, counted, debit, credit)
        else:
            self.w.add(header_line, W_MISSING_TRAILER, "statement has no trailer (record 9): the file may be truncated")

        if old_balance is not None and new_balance is not None and old_balance + credit - debit != new_balance:
            self.w.add(
                parts["8"][0][0] if parts["8"] else header_line,
                W_BALANCE,
                f"old balance {old_balance} + credits {credit} - debits {debit} = {old_balance + credit - debit}, "
                f"but the new balance is {new_balance} (thousandths); file needs review",
            )
        key_account = _compact_account(account) if account else "unknown"
        key_date = (new_date or old_date or creation)
        key = f"coda:{key_account}:{coda_seq or '000'}:{key_date.isoformat() if key_date else 'nodate'}"
        return {
            "statement_key": key,
            "format": FORMAT,
            "account_iban": iban,
            "account_number": account,
            "currency": currency or None,
            "sequence_number": coda_seq,
            "statement_id": f"{account or 'unknown'}-{coda_seq or '000'}-{key_date.isoformat() if key_date else 'nodate'}",
            "creation_date": creation,
            "old_balance_date": old_date,
            "old_balance_milli": old_balance,
            "new_balance_date": new_date,
            "new_balance_milli": new_balance,
            "holder_name": holder,
            "movement_count": count,
            "credit_milli": credit,
            "debit_milli": debit,
            "duplicate_flag": _s(header, HEADER, "duplicate") == "D",
            "source_line": header_line,
            "_currency": currency or None,
            "_iban": iban,
        }

    def _check_trailer(self, line: int, rec: str, counted: int, debit: int, credit: int) -> None:
        count_raw, debit_raw, credit_raw = (_s(rec, TRAILER, k) for k in ("count", "debit", "credit"))
        if not count_raw.isdigit() or int(count_raw) != counted:
            self.w.add(line, W_TRAILER_COUNT, f"trailer counts {count_raw!r} records 1/2.x/3.x/8, the statement has {counted}")
        t_debit, t_credit = _py_amount("0", debit_raw), _py_amount("0", credit_raw)
        if t_debit != debit:
            self.w.add(line, W_TRAILER_DEBIT, f"trailer debit total {debit_raw!r} differs from the bookings' {debit}")
        if t_credit != credit:
            self.w.add(line, W_TRAILER_CREDIT, f"trailer credit total {credit_raw!r} differs from the bookings' {credit}")

    # ------------------------------------------------------------------ keys and final shapes

    def _finish_movements(self, m: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
        m = m.join(keys, on="stmt", how="left", maintain_order="left")
        # Occurrence counter: 0 unless the same (statement, sequence, detail) repeats (wrap after 9999,
        # hand-edited test files); computed in numpy and only grouped when a repeat exists.
        stmt = m["stmt"].to_numpy()
        seq = m["sequence"].fill_null(-1).to_numpy()
        det = m["detail_number"].fill_null(-1).to_numpy()
        numeric = stmt * 100_000_000 + seq * 10_000 + det
        # Strictly increasing (the usual file) proves uniqueness without sorting 500 k keys.
        clean = bool(m["seq_ok"].all()) and (
            bool((np.diff(numeric) > 0).all()) or len(np.unique(numeric)) == len(numeric)
        )
        occurrence = pl.lit("0") if clean else pl.int_range(pl.len()).over(["stmt", "seq_raw", "det_raw"]).cast(pl.String)
        m = m.with_columns(
            movement_key=pl.concat_str("statement_key", pl.lit(":"), "seq_raw", pl.lit(":"), "det_raw", pl.lit(":"),
                                       occurrence)
        )
        keys_by_mov = m["movement_key"]
        parent = m["parent"]
        parent_key = pl.select(
            pl.when(parent.is_not_null()).then(keys_by_mov.gather(parent.fill_null(0)))
        ).to_series() if m.height else pl.Series([], dtype=pl.String)
        self._movement_keys = keys_by_mov
        return m.select(
            "movement_key",
            "statement_key",
            pl.lit(FORMAT).alias("format"),
            "account_iban",
            "sequence",
            pl.col("detail_number").fill_null(0),
            parent_key.alias("parent_key"),
            "is_booking",
            "has_details",
            "booking_date",
            "value_date",
            "amount_milli",
            "currency",
            "is_reversal",
            "transaction_code",
            "communication_type",
            "structured_reference",
            "reference_valid",
            "communication",
            "counterparty_name",
            "counterparty_account",
            "counterparty_bic",
            pl.when(~pl.col("has_details")).then(pl.col("customer_reference")).alias("end_to_end_id"),
            "bank_reference",
            "customer_reference",
            "return_reason",
            pl.col("line").alias("source_line"),
        ).cast(MOVEMENT_SCHEMA)

    def _finish_information(self, info: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
        statement_keys = keys.select("stmt", "statement_key")
        movement_keys = self._movement_keys
        mov = info["mov"]
        movement_key = pl.select(
            pl.when(mov.is_not_null()).then(movement_keys.gather(mov.fill_null(0)))
        ).to_series() if info.height and len(movement_keys) else pl.Series([None] * info.height, dtype=pl.String)
        three = info.with_columns(movement_key=movement_key).join(
            statement_keys, on="stmt", how="left", maintain_order="left"
        ).select(
            "statement_key",
            "movement_key",
            sequence=pl.col("seq_raw").cast(pl.Int64, strict=False),
            detail_number=pl.col("det_raw").cast(pl.Int64, strict=False),
            record=pl.lit("3"),
            transaction_code="transaction_code",
            communication_type="communication_type",
            communication="communication",
            source_line="line",
        )
        rows = np.flatnonzero(self.kind == K4)
        four = pl.DataFrame(
            {
                "stmt": self.stmt[rows],
                "sequence": [_int_or_none(self._record_text(r)[2:6]) for r in rows],
                "detail_number": [_int_or_none(self._record_text(r)[6:10]) for r in rows],
                "communication": [self._record_text(r)[32:112].strip() or None for r in rows],
                "source_line": self.line[rows],
            },
            schema={"stmt": pl.Int64, "sequence": pl.Int64, "detail_number": pl.Int64,
                    "communication": pl.String, "source_line": pl.Int64},
        ).join(statement_keys, on="stmt", how="left", maintain_order="left").select(
            "statement_key",
            movement_key=pl.lit(None, dtype=pl.String),
            sequence="sequence",
            detail_number="detail_number",
            record=pl.lit("4"),
            transaction_code=pl.lit(None, dtype=pl.String),
            communication_type=pl.lit(None, dtype=pl.String),
            communication="communication",
            source_line="source_line",
        )
        return pl.concat([three.cast(INFORMATION_SCHEMA), four.cast(INFORMATION_SCHEMA)]).sort("source_line")


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def account_rule(raw: pl.Series) -> pl.Series:
    """Counterparty account as written -> as stored: all zeros -> null; IBAN-like -> compact upper case."""
    return pl.select(
        pl.when(raw.str.contains(r"^0+$"))
        .then(None)
        .when(raw.str.contains(r"^[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{1,30}$"))
        .then(raw.str.replace_all(" ", "", literal=True).str.to_uppercase())
        .otherwise(raw)
    ).to_series().alias(raw.name)


def _booking_sums(m: pl.DataFrame) -> dict[int, tuple[int, int, int]]:
    """{statement: (bookings, credit, debit)} in exact int64 (movements come in file order, so each
    statement is one run of rows and `reduceat` sums it without a group-by)."""
    booking = m["is_booking"].to_numpy()
    stmt = m["stmt"].to_numpy()[booking]
    if len(stmt) == 0:
        return {}
    amount = m["amount_milli"].fill_null(0).to_numpy()[booking]
    starts = np.flatnonzero(np.concatenate(([True], stmt[1:] != stmt[:-1])))
    if (np.diff(stmt[starts]) <= 0).any():  # not in file order after all: group the plain way
        order = np.argsort(stmt, kind="stable")
        stmt, amount = stmt[order], amount[order]
        starts = np.flatnonzero(np.concatenate(([True], stmt[1:] != stmt[:-1])))
    counts = np.diff(np.append(starts, len(stmt)))
    credit = np.add.reduceat(np.where(amount > 0, amount, 0), starts)
    debit = np.add.reduceat(np.where(amount < 0, -amount, 0), starts)
    return {int(k): (int(c), int(cr), int(db)) for k, c, cr, db in zip(stmt[starts], counts, credit, debit)}


def _same(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Rows where two narrow blocks hold the same bytes (column by column: a row-wise `all` over a few
    bytes pays numpy's per-row overhead, ten times the comparisons)."""
    left, right = np.ascontiguousarray(left), np.ascontiguousarray(right)  # one pass over the records
    result = left[:, 0] == right[:, 0]
    for col in range(1, left.shape[1]):
        result &= left[:, col] == right[:, col]
    return result


def _nulls(n: int, name: str) -> pl.Series:
    return pl.repeat(None, n, dtype=pl.String, eager=True).alias(name)


def _eq(block: np.ndarray, value: bytes) -> np.ndarray:
    """Rows of `block` equal to the ASCII bytes `value` (column by column: these are 2-3 bytes wide)."""
    block = np.ascontiguousarray(block)  # one pass over the records, then columns of a small block
    result = block[:, 0] == value[0]
    for col in range(1, len(value)):
        result &= block[:, col] == value[col]
    return result


def _masked(values: np.ndarray, ok: np.ndarray) -> pl.Series:
    """polars Series from numpy values, null where `ok` is False."""
    series = pl.from_arrow(pa.array(values, mask=~np.asarray(ok, dtype=bool)))
    assert isinstance(series, pl.Series)
    return series


CODA = CodaParser()
"""Module-level instance for registries (`parsers` are stateless)."""
