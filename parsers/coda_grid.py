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
        buf = np.frombuffer(data, dtype=np.uint8)
        lookup = np.zeros(256, dtype=bool)
        lookup[sorted(CP1252_UNDEFINED)] = True
        undefined = int(np.count_nonzero(lookup[buf]))
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


def text(block: np.ndarray, decode: Callable[[bytes], str], utf8_len: np.ndarray, *, strip: bool = True) -> pl.Series:
    """String column from a byte block: stripped of blanks (or raw), blank -> null.

    The block becomes an Arrow string array without copying row by row (fixed offsets), decoded in
    one call when it holds non-ASCII bytes; polars then strips, which measured 3x faster than
    compacting the bytes in numpy.
    """
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


def take(mat: np.ndarray, rows: np.ndarray, first: int, last: int) -> np.ndarray:
    """Columns first..last (1-based, inclusive) of `rows`; rows < 0 give a blank row (absent record)."""
    out = mat[np.maximum(rows, 0), first - 1 : last]
    absent = rows < 0
    if absent.any():
        out[absent] = SPACE
    return out


def last_index(flags: np.ndarray) -> np.ndarray:
    """For every position, the index of the last True at or before it (-1 when none)."""
    idx = np.where(flags, np.arange(len(flags)), -1)
    return np.maximum.accumulate(idx) if len(idx) else idx
