"""The sidelobe test as a function of a catalogue's rows and the beam-filtered PSF."""

import astropy.units as u
import numpy as np
import pytest
from radio_beam import Beams

from deepfocus.detection.sidelobes import FilteredPSF, far_sidelobe_rms, sidelobe_rejected

BEAM_PIX = 5.0
THRESHOLD = 6.0


def ghost_psf(size=101, offset=(0, 30), level=0.1):
    """A filtered PSF: 1 at the centre, ``level`` at ``offset`` (dy, dx) pixels from it."""
    plane = np.zeros((size, size))
    c = size // 2
    plane[c, c] = 1.0
    plane[c + offset[0], c + offset[1]] = level
    return lambda channel: plane


def reject(x, y, snr, lo, hi, psf=None):
    psf = ghost_psf() if psf is None else psf
    return sidelobe_rejected(x, y, snr, lo, hi, filtered_psf=psf, beam_pix=BEAM_PIX, threshold=THRESHOLD)


def test_a_sidelobe_of_a_brighter_row_is_rejected():
    # A row at S/N 100 puts 10 at 30 pixels east: a row there at S/N 12 is mostly its sidelobe.
    x, y = [50.0, 80.0], [50.0, 50.0]
    np.testing.assert_array_equal(reject(x, y, [100.0, 12.0], [10, 12], [20, 22]), [False, True])
    # Brighter than what the sidelobe explains (S/N 20 - 10 >= 3): kept.
    assert not reject(x, y, [100.0, 20.0], [10, 12], [20, 22]).any()


def test_rows_that_cannot_be_sidelobes_are_kept():
    # Lines that do not overlap; a row within 1.5 beams (5 pixels) of the brighter one.
    lines = reject([50.0, 80.0], [50.0, 50.0], [100.0, 12.0], [10, 30], [20, 40])
    near = reject([50.0, 55.0], [50.0, 50.0], [100.0, 12.0], [10, 12], [20, 22], psf=ghost_psf(offset=(0, 5)))
    assert not lines.any() and not near.any()


def test_rejected_rows_cast_no_sidelobes_and_order_does_not_matter():
    # A (S/N 100) explains B (S/N 12, 30 px east); B's own sidelobe would explain C (S/N 4)
    # 30 px further east, but B is rejected, and C is too far from A for A's sidelobe.
    x = np.array([50.0, 80.0, 110.0])
    y = np.array([50.0, 50.0, 50.0])
    snr = np.array([100.0, 12.0, 4.0])
    lo, hi = np.array([10, 10, 10]), np.array([20, 20, 20])
    kwargs = {"filtered_psf": ghost_psf(size=201), "beam_pix": BEAM_PIX, "threshold": THRESHOLD}
    rejected = sidelobe_rejected(x, y, snr, lo, hi, **kwargs)
    np.testing.assert_array_equal(rejected, [False, True, False])
    # Had B been kept (brighter), its sidelobe would have explained C.
    assert sidelobe_rejected(x, y, [100.0, 40.0, 4.0], lo, hi, **kwargs)[2]
    order = np.array([2, 0, 1])
    shuffled = sidelobe_rejected(x[order], y[order], snr[order], lo[order], hi[order], **kwargs)
    np.testing.assert_array_equal(shuffled, rejected[order])


def far_psf(size=41, level=0.02):
    """A filtered PSF with sidelobes of rms ``level`` in its outer ring and none inside it."""
    plane = np.zeros((size, size))
    c = size // 2
    yy, xx = np.mgrid[:size, :size]
    ring = (np.abs(yy - c) >= 0.375 * size) | (np.abs(xx - c) >= 0.375 * size)
    plane[ring] = level * np.where((yy + xx)[ring] % 2, 1.0, -1.0)
    plane[c, c] = 1.0
    return lambda channel: plane


def test_far_sidelobe_rms_is_the_outer_rings():
    assert far_sidelobe_rms(far_psf(level=0.02)(0)) == pytest.approx(0.02)


def test_rows_beyond_the_psf_of_a_brighter_row_meet_its_unknown_sidelobes():
    # A row 60 pixels from one of S/N 100, beyond a 41-pixel PSF: its sidelobe there is unknown,
    # of size 100 x 0.02 = 2, so the row needs S/N 6 + 2.
    x, y, lo, hi = [10.0, 70.0], [50.0, 50.0], [10, 12], [20, 22]
    psf = far_psf()
    np.testing.assert_array_equal(reject(x, y, [100.0, 7.5], lo, hi, psf=psf), [False, True])
    assert not reject(x, y, [100.0, 8.5], lo, hi, psf=psf).any()
    # Lines that do not overlap, or a brighter row within the PSF's reach: no unknown sidelobe.
    assert not reject(x, y, [100.0, 7.5], [10, 30], [20, 40], psf=psf).any()
    assert not reject([40.0, 55.0], y, [100.0, 6.5], lo, hi, psf=psf).any()
    # Several brighter rows add in quadrature: two of S/N 100 need 6 + 2.83.
    three = ([10.0, 10.0, 70.0], [20.0, 80.0, 50.0], [100.0, 100.0, 8.5], [10, 10, 12], [20, 20, 22])
    np.testing.assert_array_equal(reject(*three, psf=psf), [False, False, True])


def test_each_channel_is_filtered_once():
    calls = []
    plane = ghost_psf()(0)

    def filtered(channel):
        calls.append(channel)
        return plane

    x, y = [10.0, 40.0, 70.0, 40.0], [10.0, 10.0, 10.0, 60.0]
    reject(x, y, [50.0, 10.0, 9.0, 8.0], [0, 0, 0, 4], [4, 4, 4, 8], psf=filtered)
    assert sorted(calls) == [2, 6]


def test_filtered_psf_peaks_at_one_in_the_centre():
    beams = Beams(major=[0.5, 0.6] * u.arcsec, minor=[0.4, 0.4] * u.arcsec, pa=[10, 20] * u.deg)
    planes = np.zeros((2, 41, 41), dtype=np.float32)
    planes[:, 20, 20] = 1.0
    planes[:, 20, 30] = 0.2
    filtered = FilteredPSF(planes, beams, 0.1 * u.arcsec)
    for channel in (0, 1):
        out = filtered(channel)
        assert out[20, 20] == pytest.approx(1.0)
        assert out.argmax() == 20 * 41 + 20
    assert filtered(1)[20, 24] > filtered(0)[20, 24]  # the wider beam spreads further
