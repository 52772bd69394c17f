"""The matched filter's building blocks: running window sums, row medians, the continuum, and the
plane noise measured a block of channels at a time."""

import astropy.units as u
import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d

from deepfocus.detection import matched_filter as mf
from deepfocus.detection.tests import helpers


@pytest.fixture(scope="module")
def prepared():
    from deepfocus.detection.detector import prepare

    return prepare(helpers.simulation().dirty)


def _beam(cube):
    beam = cube.beams[cube.n_channels // 2]
    cell = cube.cell.to_value(u.arcsec)
    return {
        "beam_major_pix": beam.major.to_value(u.arcsec) / cell,
        "beam_minor_pix": beam.minor.to_value(u.arcsec) / cell,
        "beam_pa_deg": beam.pa.to_value(u.deg),
    }


@pytest.mark.parametrize("width", [1, 2, 3, 6, 12, 24, 40])
def test_window_sum_is_scipys_window(width):
    planes = np.random.default_rng(width).normal(size=(30, 5, 4)).astype(np.float32)
    expected = uniform_filter1d(planes.astype(float), size=width, axis=0, mode="constant") * width
    np.testing.assert_allclose(mf.window_sum(planes, width), expected, rtol=1e-5, atol=1e-5)


def test_window_sum_does_not_depend_on_the_block():
    planes = np.random.default_rng(0).normal(size=(60, 8, 8)).astype(np.float32)
    whole = mf.window_sum(planes, 12)
    # Planes 20..39 from a block holding 6 channels either side of them.
    block = mf.window_sum(planes[14:46], 12)
    np.testing.assert_array_equal(block[6:26], whole[20:40])


@pytest.mark.parametrize("n", [1, 2, 7, 128])
def test_median_rows_is_numpys_median(n):
    values = np.random.default_rng(n).normal(size=(50, n)).astype(np.float32)
    values[3] = 1.0  # ties
    np.testing.assert_array_equal(mf.median_rows(values), np.median(values, axis=1))


def _reference_continuum(cube, noise, clip=2.5, iterations=5, significance=3.0, margin=1):
    """The continuum, one spectrum at a time, as `estimate_continuum` defines it."""
    out = np.zeros(cube.shape[1:], dtype=np.float32)
    for y, x in np.ndindex(*cube.shape[1:]):
        blank = ~np.isfinite(cube[:, y, x])
        work = np.where(blank, 0.0, cube[:, y, x]).astype(np.float32)
        # A spectrum rougher than the channels' noise says has its noise scaled up to that.
        local = max(1.4826 / np.sqrt(2) * np.median(np.abs(np.diff(work))) / np.median(noise), 1.0)
        continuum = np.median(work)
        line = blank.copy()
        for k in range(iterations):
            above = np.flatnonzero(work > continuum + clip * noise * local)
            new_line = blank.copy()
            for shift in range(-margin, margin + 1):
                new_line[np.clip(above + shift, 0, len(work) - 1)] = True
            if k > 0 and not (new_line & ~line).any():
                break
            line = new_line
            continuum = np.median(work[~line]) if (~line).any() else np.nan
        used = np.sum(~line)
        sigma = 1.2533 * np.median(noise) * local / np.sqrt(max(used, 1))
        if used > 0 and abs(continuum) >= significance * sigma:
            out[y, x] = continuum
    return out


def test_continuum_unchanged_by_the_faster_medians(prepared, monkeypatch):
    cube = prepared.data.copy()
    cube[:, :10, :10] = np.nan  # a blank corner
    cube[:, 40:44, 40:44] += 5e-3  # continuum sources
    noise = np.asarray(prepared.noise.value)
    monkeypatch.setattr(mf, "CONTINUUM_BLOCK_PIXELS", 1000)  # several blocks of pixels
    whole = mf.estimate_continuum(cube, noise)
    np.testing.assert_array_equal(whole, _reference_continuum(cube, noise))
    assert np.any(whole[40:44, 40:44] != 0)
    # Each pixel depends on its own spectrum only: a part of the cube gives the same values.
    np.testing.assert_array_equal(mf.estimate_continuum(cube[:, 30:50, 35:60], noise), whole[30:50, 35:60])


def test_continuum_is_not_biased_by_a_bright_broad_line():
    # A line of peak 36 sigma and FWHM 15 channels fills a quarter of 64 channels. Replacing its
    # channels by the running estimate (instead of dropping them) biased the continuum by 1.9
    # sigma, which was then taken off every channel, other lines at the pixel included.
    rng = np.random.default_rng(1)
    z = np.arange(64)[:, None, None]
    line = 36 * np.exp(-0.5 * ((z - 25) / (15 / 2.3548)) ** 2)
    noise = np.ones(64)
    spectra = (line + rng.normal(size=(64, 20, 20))).astype(np.float32)
    assert np.abs(mf.estimate_continuum(spectra, noise)).mean() < 0.1
    # A true continuum under the same line is measured, not eaten.
    continuum = mf.estimate_continuum(spectra + np.float32(3.0), noise)
    assert np.all(np.abs(continuum - 3.0) < 1.5) and abs(continuum.mean() - 3.0) < 0.4
    # Where the noise is twice what the channels' noise says, the clip follows it: the
    # continuum is not dragged down by clipping the upper half of the noise as line emission.
    rough = (2 * rng.normal(size=(64, 20, 20))).astype(np.float32)
    assert np.mean(mf.estimate_continuum(rough, noise) != 0) < 0.05
    # A pixel blank in every channel: no estimate (0), not an infinite or NaN one.
    spectra[:, 0, 0] = np.nan
    assert mf.estimate_continuum(spectra, noise)[0, 0] == 0


@pytest.mark.parametrize("n", [5, 6, 63, 64])
def test_median_outside_is_numpys_median_of_the_rest(n):
    rng = np.random.default_rng(n)
    values = rng.normal(size=(300, n)).astype(np.float32)
    excluded = rng.random((300, n)) < rng.random((300, 1))
    excluded[0] = True
    expected = [np.median(v[~e]) if (~e).any() else np.nan for v, e in zip(values, excluded, strict=True)]
    np.testing.assert_array_equal(mf._median_outside(values, excluded), np.array(expected, np.float32))


def test_plane_noise_of_channel_blocks_is_the_single_passs(prepared, monkeypatch):
    noise = mf.usable_noise(prepared.noise.value)
    valid = prepared.valid.any(axis=0)
    continuum = mf.estimate_continuum(prepared.data, noise)
    seen = []
    original = mf.robust_plane_noise

    def recording(cube, valid):  # the plane noise the single pass measures, width by width
        seen.append(original(cube, valid))
        return seen[-1]

    monkeypatch.setattr(mf, "robust_plane_noise", recording)
    mf.signal_to_noise(prepared.data, noise, valid, **_beam(prepared))
    monkeypatch.undo()
    expected = np.array(seen, dtype=np.float32)
    for sizes in ([48], [1] * 48, [10, 1, 25, 12]):  # the whole cube, plane by plane, uneven blocks
        blocks = np.split(prepared.data, np.cumsum(sizes)[:-1])
        got = mf.filtered_plane_noise(blocks, noise, valid, continuum, **_beam(prepared))
        np.testing.assert_array_equal(got, expected)


def test_plane_noise_with_widths_beyond_the_band(prepared):
    data = prepared.data[:10]
    noise = mf.usable_noise(prepared.noise.value[:10])
    valid = prepared.valid.any(axis=0)
    continuum = np.zeros(valid.shape, dtype=np.float32)
    got = mf.filtered_plane_noise(np.split(data, [3]), noise, valid, continuum, **_beam(prepared))
    assert np.all(np.isnan(got[3:])) and np.all(np.isfinite(got[:3]))  # widths 12 and 24 > 10 channels


def test_given_statistics_reproduce_the_single_pass(prepared):
    noise = mf.usable_noise(prepared.noise.value)
    valid = prepared.valid.any(axis=0)
    whole = mf.signal_to_noise(prepared.data, noise, valid, **_beam(prepared))
    plane_noise = mf.filtered_plane_noise(prepared.data, noise, valid, whole.continuum, **_beam(prepared))
    given = mf.signal_to_noise(
        prepared.data,
        noise,
        valid,
        continuum=whole.continuum,
        plane_noise=plane_noise,
        **_beam(prepared),
    )
    np.testing.assert_array_equal(given.snr, whole.snr)
    np.testing.assert_array_equal(given.best_width, whole.best_width)
