"""QR encoding: identical to segno's own symbol (same mask choice), EPC limits, vector drawing."""

import random
import re

import numpy as np
import pytest
import segno

from creditflow.renderers.epc import EpcError
from creditflow.renderers.qr import QUIET_ZONE, encode_epc_qr, penalty_scores, run_operators


def _segno_matrix(payload: bytes, **kwargs) -> tuple[np.ndarray, segno.QRCode]:
    qr = segno.make_qr(payload, error="m", boost_error=False, **kwargs)
    return np.array([list(row) for row in qr.matrix], dtype=bool), qr


def _payloads(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    alphabets = [b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789 \n+/", b"0123456789\n", bytes(range(256))]
    return [bytes(rng.choice(rng.choice(alphabets)) for _ in range(rng.randint(1, 331))) for _ in range(count)]


@pytest.mark.parametrize("payload", _payloads(30, seed=11))
def test_symbol_equals_segno_automatic_mask(payload):
    ours = encode_epc_qr(payload, encoder="segno")
    reference, qr = _segno_matrix(payload)
    assert ours.version == qr.version <= 13
    assert ours.mask == qr.mask
    assert np.array_equal(ours.modules, reference)


def test_penalty_scores_match_segno_for_every_mask():
    from segno import encoder

    payload = b"BCD\n002\n1\nSCT\nGKCCBEBB\nDemo\nBE71096123456769\nEUR1\n\n090933755493"
    for mask in range(8):
        matrix, qr = _segno_matrix(payload, mask=mask)
        n = matrix.shape[0]
        expected = sum(encoder.mask_scores(tuple(bytearray(r.astype(np.uint8)) for r in matrix), n, n))
        assert int(penalty_scores(matrix[np.newaxis])[0]) == expected


@pytest.mark.parametrize("encoder", ["segno", "zxing"])
def test_version_13_is_the_limit(encoder):
    assert encode_epc_qr(b"x" * 300, encoder=encoder).version <= 13
    with pytest.raises(EpcError) as err:
        encode_epc_qr(b"x" * 332, encoder=encoder)
    assert (err.value.field, err.value.code) == ("payload", "too_long")
    with pytest.raises(TypeError):
        encode_epc_qr("BCD", encoder=encoder)


@pytest.mark.parametrize("payload", _payloads(15, seed=5) + ["BCD\n002\n1\nSCT\n\nZoë Ñandú €\nBE71096123456769\nEUR1".encode()])
def test_zxing_encoder_is_well_formed_level_m_without_eci(payload):
    zxingcpp = pytest.importorskip("zxingcpp")
    symbol = encode_epc_qr(payload, encoder="zxing")
    assert symbol.size == 17 + 4 * symbol.version and 1 <= symbol.version <= 13
    ours_segno = encode_epc_qr(payload, encoder="segno")
    assert symbol.version <= ours_segno.version + 1
    image = np.pad(~symbol.modules, QUIET_ZONE, constant_values=True).astype(np.uint8) * 255
    image = np.kron(image, np.ones((4, 4), dtype=np.uint8))
    [result] = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert bytes(result.bytes) == payload
    assert result.ec_level == "M"
    assert result.symbology_identifier == "]Q1"  # no ECI header


def test_format_mask_reads_the_mask_from_the_symbol():
    from creditflow.renderers.qr import _format_mask

    for mask in range(8):
        matrix, _ = _segno_matrix(b"BCD\n002\n1\nSCT", mask=mask)
        assert _format_mask(matrix) == mask


def test_auto_falls_back_to_segno_when_zxing_needs_version_14():
    symbol = encode_epc_qr(b"x" * 331)
    assert symbol.version == 13


def test_run_operators_redraw_the_exact_matrix():
    symbol = encode_epc_qr(b"BCD\n002\n1\nSCT\n\nDemo\nBE71096123456769\nEUR1\n\n\n+++090/9337/55493+++")
    n = symbol.size
    canvas = np.zeros((n + 2 * QUIET_ZONE, n + 2 * QUIET_ZONE), dtype=bool)
    ops = run_operators(symbol).splitlines()
    for op in ops:
        x, y, w, h = map(int, re.fullmatch(r"(\d+) (\d+) (\d+) (1) re", op).groups())
        row = n + 2 * QUIET_ZONE - 1 - y
        assert not canvas[row, x:x + w].any()  # runs never overlap
        canvas[row, x:x + w] = True
    assert np.array_equal(canvas[QUIET_ZONE:-QUIET_ZONE, QUIET_ZONE:-QUIET_ZONE], symbol.modules)
    assert not canvas[:QUIET_ZONE].any() and not canvas[:, :QUIET_ZONE].any()
    assert len(ops) < symbol.modules.sum()  # merged runs, not one rect per module
