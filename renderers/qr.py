"""EPC QR symbols: segno's encoder, a vectorised mask choice, and vector drawing on a reportlab canvas.

Why not plain `segno.make_qr(payload, error="m", boost_error=False)`: segno spends ~80 % of its time
choosing the data mask (8 full masks, each scored by a pure-Python loop over every module; ~7.5 ms of
a ~15 ms page, performance.md 1.1). Any mask decodes, but the penalty score exists to avoid patterns
that confuse scanners (fake finder patterns, large blocks), so we keep the choice and make it cheap:

1. segno encodes once with mask 0 (data codewords, RS blocks, placement: all segno's work, ~1.5 ms);
2. the mask is undone on the data modules, all 8 candidate masks are applied at once as one
   (8, n, n) numpy array and scored with the ISO/IEC 18004 7.8.3 rules N1..N4 exactly as segno scores
   them (format/version areas blank while scoring, segno's N3 search semantics), ~0.3 ms;
3. the winning mask's format information is written in.

The result equals `segno.make_qr(payload, error="m", boost_error=False)` module for module
(tests/test_renderers_qr.py checks it), at about a fifth of the cost. The per-version layout (which
modules are data, where the format bits go) comes from segno's own encoder helpers and is cached.

When zxing-cpp (>= 3, C++) is installed, "auto" uses its encoder instead: ~0.4 ms per code with its
own ISO penalty mask choice, 5-8x cheaper again, which is what keeps a page well above 150/s on a
busy core. It gets the payload as bytes (a str would be transcoded to Latin-1 without ECI, while
line 3 says UTF-8) and the result is checked the same way: level M, version <= 13.

Drawing: merged horizontal runs as integer `x y w 1 re` operators in module units, sent through
`canvas.addLiteral` inside a saved, translated and scaled graphics state; reportlab's float
formatting (`fp_str`) on thousands of `rect()` calls was the measured bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from typing import Literal

import numpy as np
import segno
from segno import consts as segno_consts
from segno import encoder as segno_encoder

from creditflow.renderers.epc import EpcError

MAX_EPC_VERSION = 13
"""EPC069-12: at most version 13 at error level M (331 bytes)."""

QUIET_ZONE = 4
"""Modules of light margin on each side, required by ISO/IEC 18004 for reliable scanning."""

_N3_PATTERN = np.array([1, 0, 1, 1, 1, 0, 1], dtype=bool)


@dataclass(frozen=True, slots=True, eq=False)
class QrSymbol:
    """A QR matrix without quiet zone: `modules[row, col]` is True for a dark module."""

    modules: np.ndarray
    version: int
    mask: int

    @property
    def size(self) -> int:
        return self.modules.shape[0]


@dataclass(frozen=True, slots=True, eq=False)
class _Layout:
    data: np.ndarray  # (n, n) bool: the modules a data mask applies to
    masks: np.ndarray  # (8, n, n) bool: mask pattern k restricted to data modules
    reserved: np.ndarray  # (n, n) bool: format/version areas and dark module, blank while scoring
    format_cells: np.ndarray  # (n, n) bool: where the format information goes
    format_bits: np.ndarray  # (8, n, n) bool: format information of mask k at level M


try:  # optional C++ encoder
    import zxingcpp as _zxingcpp

    _HAS_ZXING = hasattr(_zxingcpp, "create_barcode")
except ImportError:  # pragma: no cover - depends on the installation
    _zxingcpp = None
    _HAS_ZXING = False

Encoder = Literal["auto", "zxing", "segno"]


def encode_epc_qr(payload: bytes, encoder: Encoder = "auto") -> QrSymbol:
    """Encode payload bytes as-is (no ECI) at level M; reject versions > 13 (EPC069-12)."""
    if not isinstance(payload, (bytes, bytearray)):
        raise TypeError("EPC payload must be bytes (a str would be re-encoded by guesswork)")
    if encoder == "zxing" or (encoder == "auto" and _HAS_ZXING):
        try:
            return _encode_zxing(bytes(payload))
        except EpcError:
            # zxing-cpp's mode choice can need one version more than segno's at the very top of the
            # range (a 331-byte payload): fall back to segno, which always fits what EPC allows.
            if encoder == "zxing":
                raise
    return _encode_segno(bytes(payload))


def _encode_zxing(payload: bytes) -> QrSymbol:
    if not _HAS_ZXING:
        raise RuntimeError("zxing-cpp >= 3 is not installed")
    if len(payload) > 331:  # zxing would pick a larger version; EPC stops at 13-M = 331 bytes
        raise EpcError("payload", "too_long", f"{len(payload)} bytes; EPC allows at most 331")
    barcode = _zxingcpp.create_barcode(payload, _zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    modules = np.asarray(barcode.to_image(scale=1, add_quiet_zones=False)) < 128
    version = (modules.shape[0] - 17) // 4
    if version > MAX_EPC_VERSION:
        raise EpcError("payload", "too_long", f"needs QR version {version}; EPC allows at most 13")
    return QrSymbol(modules=modules, version=version, mask=_format_mask(modules))


def _format_mask(modules: np.ndarray) -> int:
    """The mask number written in the symbol's format information (bits 10-12 after unmasking)."""
    bits = [modules[8, i] for i in (0, 1, 2, 3, 4, 5, 7, 8)] + [modules[i, 8] for i in (7, 5, 4, 3, 2, 1, 0)]
    value = int("".join("1" if bit else "0" for bit in bits), 2) ^ 0b101010000010010
    return (value >> 10) & 0b111


def _encode_segno(payload: bytes) -> QrSymbol:
    try:
        qr = segno.make_qr(payload, error="m", boost_error=False, mask=0)
    except segno.DataOverflowError:
        raise EpcError("payload", "too_long", "does not fit any QR version at level M") from None
    if qr.version > MAX_EPC_VERSION:
        raise EpcError("payload", "too_long", f"needs QR version {qr.version}; EPC allows at most 13")
    n = qr.symbol_size(scale=1, border=0)[0]
    masked0 = np.frombuffer(b"".join(qr.matrix), dtype=np.uint8).reshape(n, n).astype(bool)
    layout = _layout(qr.version)
    raw = masked0 ^ layout.masks[0]
    candidates = raw[np.newaxis] ^ layout.masks
    scoring = candidates & ~layout.reserved
    best = int(np.argmin(penalty_scores(scoring)))  # first minimum, as segno picks it
    modules = np.where(layout.format_cells, layout.format_bits[best], candidates[best])
    return QrSymbol(modules=modules, version=qr.version, mask=best)


def penalty_scores(matrices: np.ndarray) -> np.ndarray:
    """ISO/IEC 18004:2015 7.8.3 penalty (N1+N2+N3+N4) of each (n, n) matrix in a (k, n, n) stack."""
    m = matrices.astype(bool, copy=False)
    k, n = m.shape[0], m.shape[-1]
    lines = np.concatenate((m, m.transpose(0, 2, 1)))  # rows and columns scored in one pass
    n1 = _runs_penalty(lines)
    n3 = 40 * _finder_like(lines)
    corner = m[:, :-1, :-1]
    same = (corner == m[:, :-1, 1:]) & (corner == m[:, 1:, :-1]) & (corner == m[:, 1:, 1:])
    n2 = 3 * same.sum(axis=(1, 2))
    dark = m.sum(axis=(1, 2), dtype=np.int64)
    n4 = 10 * (np.abs(100 * dark - 50 * n * n) // (5 * n * n))
    return n1[:k] + n1[k:] + n3[:k] + n3[k:] + n2 + n4


def _runs_penalty(m: np.ndarray) -> np.ndarray:
    """N1: a run of L >= 5 same-colour modules costs L - 2 (= windows of five (L - 4) + 2)."""
    eq = m[:, :, 1:] == m[:, :, :-1]
    five = eq[:, :, :-3] & eq[:, :, 1:-2] & eq[:, :, 2:-1] & eq[:, :, 3:]
    starts = five[:, :, 0].sum(axis=1) + (five[:, :, 1:] & ~five[:, :, :-1]).sum(axis=(1, 2))
    return five.sum(axis=(1, 2)) + 2 * starts


def _finder_like(m: np.ndarray) -> np.ndarray:
    """N3 occurrences: 1011101 with 4 light modules (or the symbol edge) before or after it.

    segno resumes its search 7 modules after a counted occurrence, so an occurrence 4 or 6 modules
    after a counted one is not counted; a suppressed one can never itself be followed by a counted
    one (the overlap leaves no light run), hence one shift of the candidates suffices.
    """
    k, rows, n = m.shape
    padded = np.zeros((k, rows, n + 8), dtype=bool)
    padded[:, :, 4:-4] = m
    starts = n - 6  # p = 0 .. n-7
    occ = np.ones((k, rows, starts), dtype=bool)
    for offset, bit in enumerate(_N3_PATTERN):
        window = m[:, :, offset : offset + starts]
        occ &= window if bit else ~window
    light_before = np.ones_like(occ)
    light_after = np.ones_like(occ)
    for offset in range(4):
        light_before &= ~padded[:, :, offset : offset + starts]
        light_after &= ~padded[:, :, 11 + offset : 11 + offset + starts]
    candidates = occ & (light_before | light_after)
    counted = candidates.copy()
    counted[:, :, 4:] &= ~candidates[:, :, :-4]
    counted[:, :, 6:] &= ~candidates[:, :, :-6]
    return counted.sum(axis=(1, 2))


@lru_cache(maxsize=None)
def _layout(version: int) -> _Layout:
    """Function-pattern and format-area geometry of one version, from segno's encoder helpers."""
    n = segno_encoder.calc_matrix_size(version)
    function = segno_encoder.make_matrix(n, n)
    segno_encoder.add_finder_patterns(function, n, n)
    segno_encoder.add_alignment_patterns(function, n, n)
    function_arr = np.array([list(row) for row in function], dtype=np.uint8)
    data = function_arr > 1
    data[n - 8, 8] = False  # the dark module
    reserved_matrix = segno_encoder.make_matrix(n, n, add_timing=False)
    reserved = np.array([list(row) for row in reserved_matrix], dtype=np.uint8) == 0
    reserved[6, :] = reserved[:, 6] = False  # the timing pattern crosses the format area there
    rows, cols = np.indices((n, n))
    masks = np.stack([np.vectorize(fn)(rows, cols).astype(bool) & data for fn in segno_encoder.get_data_mask_functions(False)])
    format_cells = np.zeros((n, n), dtype=bool)
    format_bits = np.zeros((8, n, n), dtype=bool)
    for mask in range(8):
        scratch = segno_encoder.make_matrix(n, n, reserve_regions=False, add_timing=False)
        segno_encoder.add_format_info(scratch, version, segno_consts.ERROR_LEVEL_M, mask)
        placed = np.array([list(row) for row in scratch], dtype=np.uint8)
        format_cells |= placed != 2
        format_bits[mask] = placed == 1
    for arr in (data, reserved, masks, format_cells, format_bits):
        arr.flags.writeable = False
    return _Layout(data=data, masks=masks, reserved=reserved, format_cells=format_cells, format_bits=format_bits)


def run_operators(symbol: QrSymbol) -> str:
    """PDF `re` operators for the dark modules, one per horizontal run, in module units.

    The origin is the lower-left corner of the quiet zone; PDF's y axis points up, so row r of the
    matrix sits at y = quiet + n - 1 - r.
    """
    n = symbol.size
    padded = np.zeros((n, n + 2), dtype=np.int8)
    padded[:, 1:-1] = symbol.modules
    edges = np.diff(padded, axis=1)
    start_rows, start_cols = np.nonzero(edges == 1)
    _, end_cols = np.nonzero(edges == -1)
    top = QUIET_ZONE + n - 1
    return "\n".join(
        f"{QUIET_ZONE + x} {top - r} {w} 1 re"
        for r, x, w in zip(start_rows.tolist(), start_cols.tolist(), (end_cols - start_cols).tolist())
    )


def draw_qr(canvas, symbol: QrSymbol, x: float, y: float, size: float) -> None:
    """Draw the symbol with its quiet zone into the square (x, y, size) on a reportlab canvas."""
    modules_across = symbol.size + 2 * QUIET_ZONE
    scale = size / modules_across
    canvas.saveState()
    canvas.setFillColorRGB(0, 0, 0)
    canvas.translate(x, y)
    canvas.scale(scale, scale)
    canvas.addLiteral(run_operators(symbol) + "\nf")
    canvas.restoreState()
