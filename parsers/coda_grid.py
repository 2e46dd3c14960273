"""Fixed-width records as a numpy byte matrix: the fast path under the CODA parser.

Why not polars `str.slice`: measured here (polars 2.1, 2 busy cores) one slice costs ~240 ns per row,
and a CODA file needs ~45 field slices over 1.8 M records; that alone was slower than pycoda. A record
of 128 characters in a single-byte encoding is a row of a (n, 128) uint8 matrix, and a field is a
column range of it: digits become integers by arithmetic, dates by calendar arithmetic, and text
becomes an Arrow string column built straight from the bytes. Python only touches rows that carry a
non-ASCII byte (accented names) to decode them.

"Single-byte" means each decoded *character* is one byte, so slicing stays on characters as the spec
requires: cp1252 files are used as they are; a UTF-8 file is re-encoded to cp1252 or, if it holds
characters cp1252 lacks (U+FFFD junk), to a per-file table of at most 128 such characters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa

SPACE = 0x20
DIGIT0 = 0x30
RECORD = 128
CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


class Undecodable(Exception):
    """The bytes are neither UTF-8 nor cp1252 in any usable sense."""


def to_single_byte(data: bytes) -> tuple[bytes, Callable[[bytes], str], str, int]:
    """(single-byte data, decoder for a field's bytes, encoding name, bytes replaced by U+FFFD)."""
    if data.isascii():
        return data, _ascii, "ascii", 0
    try:
        _utf8_prefix_ok(data)
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        undefined = _count_undefined(np.frombuffer(data, dtype=np.uint8))
        if undefined * 100 > len(data):
            raise Undecodable(f"neither UTF-8 nor cp1252: {undefined} bytes undefined in cp1252") from None
        return data, _cp1252, "cp1252", undefined
    try:
        return text.encode("cp1252"), _cp1252, "utf-8", 0
    except UnicodeEncodeError:
        pass
    extra = sorted({ch for ch in text if ord(ch) > 0x7F})
    if len(extra) > 128:
        raise Undecodable(f"UTF-8 file with {len(extra)} distinct non-ASCII characters") from None
    forward = {ord(ch): chr(0x80 + i) for i, ch in enumerate(extra)}
    back = {0x80 + i: ch for i, ch in enumerate(extra)}
    encoded = text.translate(forward).encode("latin-1")
    return encoded, (lambda raw: raw.decode("latin-1").translate(back)), "utf-8", 0


CHUNK = 1 << 20
"""Whole-file scans go by 1 MB: a 230 MB boolean temporary cost more in page faults than the test."""


def _count_undefined(buf: np.ndarray) -> int:
    undefined = np.array(sorted(CP1252_UNDEFINED), dtype=np.uint8)
    count = 0
    for at in range(0, len(buf), CHUNK):
        chunk = buf[at : at + CHUNK]
        if chunk.max() >= 0x80:
            count += int(np.count_nonzero(np.isin(chunk[chunk >= 0x80], undefined)))
    return count


def _utf8_prefix_ok(data: bytes, size: int = 1 << 16) -> None:
    """Raise early when the start of the file is already not UTF-8 (saves decoding 200 MB to find out)."""
    try:
        data[:size].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < min(size, len(data)) - 4:
            raise


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii", errors="replace")


def _cp1252(raw: bytes) -> str:
    return raw.decode("cp1252", errors="replace")


def regular_records(data: bytes) -> tuple[np.ndarray, int] | None:
    """(n, 128) view on `data` and its record count when every line is a plain 128-character record.

    The usual file: one kind of line ending, every record 128 characters, a final newline, no blank
    line. Then records need no line index and no copy at all, only a reshape; anything else (None)
    goes through `Lines`, which handles irregular files line by line.
    """
    first = data.find(b"\n")
    if first == RECORD:
        stride = RECORD + 1
    elif first == RECORD + 1 and data[RECORD] == 0x0D:
        stride = RECORD + 2
    else:
        return None
    n, rest = divmod(len(data), stride)
    if rest or n == 0:
        return None
    rows = np.frombuffer(data, dtype=np.uint8).reshape(n, stride)
    step = max(CHUNK // stride, 1)
    blank_start = np.array([0x20, 0x09, 0x00, 0x1A], dtype=np.uint8)
    for at in range(0, n, step):  # one pass, a cache-sized block of records at a time
        part = rows[at : at + step]
        if np.count_nonzero(part == 0x0A) != len(part) or not (part[:, -1] == 0x0A).all():
            return None  # a newline inside a record, or a record of another length
        if stride == RECORD + 2:
            if not (part[:, RECORD] == 0x0D).all():
                return None
        elif (part[:, RECORD - 1] == 0x0D).any():  # "...\r\n" would be a 127-character record
            return None
        if np.isin(part[:, 0], blank_start).any():  # maybe a blank line: let Lines decide
            return None
    return rows[:, :RECORD], n


class Lines:
    """Physical lines of the file: where each starts, how long it is (CR/LF removed), its number."""

    def __init__(self, data: bytes):
        buf = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(buf == 0x0A)
        starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
        ends = np.concatenate((newlines, [len(buf)])).astype(np.int64)
        if len(starts) and starts[-1] == len(buf):  # the final newline does not open a line
            starts, ends = starts[:-1], ends[:-1]
        has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 0x0D)
        ends = ends - has_cr
        self.buf = buf
        self.starts = starts
        self.lengths = ends - starts
        self.numbers = np.arange(1, len(starts) + 1, dtype=np.int64)

    def matrix(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 128) records, short lines padded with blanks, long ones cut.

        The usual file (every line 128 characters, one kind of line ending) is a reshape of the buffer;
        only irregular files pay for a row-by-row gather.
        """
        n = len(rows)
        mat = np.empty((n, RECORD), dtype=np.uint8)
        if n == 0:
            return mat
        starts, lengths = self.starts[rows], self.lengths[rows]
        regular = n - 1
        if n > 1:
            stride = int(starts[1] - starts[0])
            steps_ok = np.diff(starts) == stride
            full = lengths[:-1] == RECORD
            bad = np.flatnonzero(~(steps_ok & full))
            regular = int(bad[0]) if len(bad) else n - 1
            if regular and stride >= RECORD:
                first = int(starts[0])
                view = self.buf[first : first + regular * stride].reshape(regular, stride)
                mat[:regular] = view[:, :RECORD]
        else:
            regular = 0
        for i in range(regular, n) if n - regular < 64 else ():
            start, length = int(starts[i]), min(int(lengths[i]), RECORD)
            mat[i, :length] = self.buf[start : start + length]
            mat[i, length:] = SPACE
        if n - regular >= 64:
            padded = np.concatenate((self.buf, np.full(RECORD, SPACE, dtype=np.uint8)))
            windows = np.lib.stride_tricks.sliding_window_view(padded, RECORD)
            rest = windows[starts[regular:]]
            cols = np.arange(RECORD)
            rest[cols[None, :] >= lengths[regular:, None]] = SPACE
            mat[regular:] = rest
        return mat

    def blank(self) -> np.ndarray:
        """Lines that are empty or hold only blanks, tabs, NUL or Ctrl-Z."""
        blank = self.lengths == 0
        first = self.buf[np.minimum(self.starts, max(len(self.buf) - 1, 0))] if len(self.buf) else self.starts
        suspects = np.flatnonzero(~blank & np.isin(first, (0x20, 0x09, 0x00, 0x1A)))
        for i in suspects:
            s, n = self.starts[i], self.lengths[i]
            blank[i] = not bytes(self.buf[s : s + n]).strip(b" \t\x00\x1a")
        return blank


def digits(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, ok) of a block of ASCII digit columns; ok is False where any is not 0-9."""
    block = np.ascontiguousarray(block)  # columns of a record matrix are 128 bytes apart: copy once
    n, width = block.shape
    value = np.zeros(n, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    for col in range(width):
        d = block[:, col] - np.uint8(DIGIT0)  # wraps for bytes below '0', so one test covers both ends
        ok &= d <= 9
        value *= 10
        value += d
    return value, ok


def dates(block: np.ndarray) -> pl.Series:
    """DDMMYY columns -> pl.Date (null when not a real date; YY < 70 is 20YY, like %y)."""
    value, ok = digits(block)
    day, month, year = value // 10000, (value // 100) % 100, value % 100
    year = np.where(year < 70, 2000 + year, 1900 + year)
    ok &= (month >= 1) & (month <= 12) & (day >= 1)
    months = (year - 1970) * 12 + np.clip(month, 1, 12) - 1
    first = months.astype("datetime64[M]").astype("datetime64[D]")
    following = (months + 1).astype("datetime64[M]").astype("datetime64[D]")
    ok &= day <= (following - first).astype(np.int64)
    result = first + np.where(ok, day - 1, 0).astype("timedelta64[D]")
    series = pl.Series(result).cast(pl.Date)
    return pl.select(pl.when(pl.Series(ok)).then(series)).to_series()


def utf8_lengths(decode: Callable[[bytes], str]) -> np.ndarray:
    """UTF-8 length of every byte of the single-byte encoding (the decoders map byte by byte)."""
    return np.array([len(decode(bytes([b])).encode("utf-8")) for b in range(256)], dtype=np.int64)


def text(block: np.ndarray, decode: Callable[[bytes], str], utf8_len: np.ndarray, *, strip: bool = True,
         valid: np.ndarray | None = None) -> pl.Series:
    """String column from a byte block: stripped of blanks (or raw), blank -> null; null where not `valid`.

    An ASCII block becomes an Arrow string array over the block's own bytes (fixed offsets), with no
    row-by-row copy; polars strips it. A block holding non-ASCII bytes (names, free text) becomes an
    Arrow *string view* array instead: 16 bytes per row (length, then the bytes inline up to 12 or a
    prefix, buffer number and offset), so only the rows with a non-ASCII byte are decoded, into a
    second buffer; decoding the whole block was most of the cost of a name column. Same result as
    `text_offsets`, the plain construction the tests hold it to.
    """
    n, width = block.shape
    if n == 0:
        return pl.Series(values=[], dtype=pl.String)
    block = np.ascontiguousarray(block)
    flat = block.reshape(-1)
    high = None if block.max() < 0x80 else np.flatnonzero(flat >= 0x80)
    if high is None or n * width >= 1 << 31:
        series = text_offsets(block, decode, utf8_len, strip=False)
    else:
        series = _views(block, high, decode, utf8_len)
    if strip:
        # Without control characters and non-ASCII spaces (no-break space) the blank is the only
        # whitespace, so polars' whitespace strip, 2.5x faster than stripping a given character,
        # strips exactly the blanks.
        plain = block.min() >= 0x20 and (high is None or not np.isin(flat[high], _spaces(decode)).any())
        stripped = series.str.strip_chars() if plain else series.str.strip_chars(" ")
        keep = stripped != ""
        if valid is not None:
            keep = keep & pl.Series(valid)
        return pl.select(pl.when(keep).then(stripped)).to_series().alias("")
    if valid is not None:
        return pl.select(pl.when(pl.Series(valid)).then(series)).to_series().alias("")
    return series.alias("")


def _spaces(decode: Callable[[bytes], str]) -> np.ndarray:
    """Non-ASCII bytes that decode to whitespace (cp1252: the no-break space)."""
    return np.array([b for b in range(0x80, 0x100) if decode(bytes([b])).isspace()], dtype=np.uint8)


def _views(block: np.ndarray, high_bytes: np.ndarray, decode: Callable[[bytes], str],
           utf8_len: np.ndarray) -> pl.Series:
    """Unstripped string-view column of a C-contiguous block whose bytes at flat positions
    `high_bytes` are non-ASCII (see `text`)."""
    n, width = block.shape
    views = np.zeros((n, 4), dtype=np.int32)
    view_bytes = views.view(np.uint8).reshape(n, 16)
    views[:, 0] = width
    if width <= 12:
        view_bytes[:, 4 : 4 + width] = block
    else:
        view_bytes[:, 4:8] = block[:, :4]
        views[:, 3] = np.arange(0, n * width, width, dtype=np.int32)
    high = np.unique(high_bytes // width)  # few rows: names with accents
    # Decoding maps one byte to one character; a row's UTF-8 length is the sum of its bytes'.
    rows = block[high]
    encoded = np.frombuffer(decode(rows.tobytes()).encode("utf-8"), dtype=np.uint8)
    length = utf8_len[rows].sum(axis=1)
    start = np.zeros(len(high), dtype=np.int64)
    np.cumsum(length[:-1], out=start[1:])
    padded = np.concatenate((encoded, np.zeros(12, dtype=np.uint8)))
    head = np.lib.stride_tricks.sliding_window_view(padded, 12)[start]
    long = length > 12
    view_bytes[high, 4:16] = np.where(np.arange(12)[None, :] < length[:, None], head, 0)
    view_bytes[high[long], 8:16] = 0
    views[high, 0] = length
    views[high[long], 2] = 1
    views[high[long], 3] = start[long]
    buffers = [pa.py_buffer(block.reshape(-1)), pa.py_buffer(encoded)]
    array = pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views), *buffers])
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series


def text_offsets(block: np.ndarray, decode: Callable[[bytes], str], utf8_len: np.ndarray, *,
                 strip: bool = True) -> pl.Series:
    """`text` built the plain way (offsets array, whole block decoded, polars strips): the reference."""
    n, width = block.shape
    if n == 0:
        return pl.Series(values=[], dtype=pl.String)
    block = np.ascontiguousarray(block)
    data = memoryview(block).cast("B")
    lengths = None
    if block.max() >= 0x80:
        high = np.flatnonzero((block >= 0x80).any(axis=1))
        lengths = np.full(n, width, dtype=np.int64)
        lengths[high] += (utf8_len[block[high]] - 1).sum(axis=1)
        data = decode(bytes(data)).encode("utf-8")
    if lengths is None:
        offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    else:
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
    array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    series = series.cast(pl.String)
    if not strip:
        return series
    stripped = series.str.strip_chars(" ")
    return pl.select(pl.when(stripped != "").then(stripped)).to_series().alias("")


def first_two(mat: np.ndarray) -> np.ndarray:
    """Bytes 1 and 2 of every record as one big-endian integer (byte1 * 256 + byte2), in one pass."""
    items = _as_items(mat[:, 0:2])
    if items is None:
        return (mat[:, 0].astype(np.uint16) << 8) | mat[:, 1]
    return items.view(">u2").astype(np.uint16)


def take(mat: np.ndarray, rows: np.ndarray, first: int, last: int) -> np.ndarray:
    """Columns first..last (1-based, inclusive) of `rows`; rows < 0 give a blank row (absent record).

    Each record's column range is gathered as one fixed-size item (a numpy void), which measured twice
    as fast as fancy indexing rows and slicing columns in one step.
    """
    width = last - first + 1
    items = _as_items(mat[:, first - 1 : last])
    picked = np.maximum(rows, 0)
    out = mat[picked, first - 1 : last] if items is None else items[picked].view(np.uint8).reshape(len(rows), width)
    absent = rows < 0
    if absent.any():
        out[absent] = SPACE
    return out


def _as_items(block: np.ndarray) -> np.ndarray | None:
    """The rows of a 2-D uint8 block (contiguous columns) as a 1-D array of void items, or None."""
    if block.ndim != 2 or block.strides[1] != 1 or 0 in block.shape or block.strides[0] < block.shape[1]:
        return None  # not rows of bytes laid out forwards (the record matrices always are)
    root = block
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not root.flags.c_contiguous:
        return None
    offset = block.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return np.ndarray((block.shape[0],), dtype=np.dtype((np.void, block.shape[1])), buffer=root,
                      offset=offset, strides=(block.strides[0],))


def last_index(flags: np.ndarray) -> np.ndarray:
    """For every position, the index of the last True at or before it (-1 when none)."""
    idx = np.where(flags, np.arange(len(flags)), -1)
    return np.maximum.accumulate(idx) if len(idx) else idx
