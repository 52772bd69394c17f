"""3-D peaks, the saddle test that deblends them, and the splitting of blended lines."""

import numpy as np
import pytest
from scipy.ndimage import maximum_filter

from deepfocus.detection.lines import repeated_lines, split_at_valleys, split_shared_runs
from deepfocus.detection.peaks import deblend_peaks, find_peaks_3d, path_points


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_peaks_are_the_maximum_filters(seed):
    rng = np.random.default_rng(seed)
    snr = rng.normal(size=(16, 30, 27)).astype(np.float32)
    valid = rng.random((30, 27)) > 0.1
    peaks, values = find_peaks_3d(snr, 1.5, spatial_size=5, spectral_size=3, valid=valid)
    local = maximum_filter(snr, size=(3, 5, 5), mode="constant", cval=-np.inf)
    expected = set(zip(*np.nonzero((snr == local) & (snr >= 1.5) & valid[None]), strict=True))
    assert set(map(tuple, peaks)) == expected and len(peaks) == len(expected)
    assert np.all(np.diff(values) <= 0)  # brightest first
    np.testing.assert_array_equal(values, snr[tuple(peaks.T)])


def test_path_points_join_the_ends():
    points = path_points((0, 0, 0), (4, 2, -3))
    assert tuple(points[0]) == (0, 0, 0) and tuple(points[-1]) == (4, 2, -3)
    assert len(points) == 5 and np.all(np.abs(np.diff(points, axis=0)) <= 1)


def _two_blobs(dz, dip_depth):
    """A 1-D-in-z toy: two peaks on one pixel, a valley of ``dip_depth`` below the fainter."""
    z = np.arange(40)
    profile = 20 * np.exp(-0.5 * ((z - 10) / 2) ** 2) + 12 * np.exp(-0.5 * ((z - 10 - dz) / 2) ** 2)
    floor = 12 - dip_depth
    between = (z > 10) & (z < 10 + dz)
    profile[between] = np.maximum(np.minimum(profile[between], floor), floor)
    return profile


@pytest.mark.parametrize(("dip_depth", "separate"), [(6.0, True), (0.5, False)])
def test_saddle_test_separates_two_lines_only_across_a_dip(dip_depth, separate):
    profile = _two_blobs(12, dip_depth)
    peaks = np.array([[10, 5, 5], [22, 5, 5]])
    values = profile[[10, 22]]

    def snr_along(width, points):
        return profile[points[:, 0]]

    keep = deblend_peaks(peaks, values, np.array([3, 3]), beam_pix=5.0, snr_along=snr_along)
    assert list(keep) == ([0, 1] if separate else [0])


@pytest.mark.parametrize(
    ("faint", "dip_depth", "separate"),
    [(8.0, 2.0, True), (8.0, 1.0, False), (20.0, 2.5, False), (20.0, 3.5, True)],
)
def test_a_faint_peak_needs_a_dip_of_a_fifth_of_its_snr(faint, dip_depth, separate):
    """The drop that separates two peaks: 3 noise units, or a fifth of the fainter peak's S/N
    if that is less (a faint source on a bright neighbour's wing)."""
    profile = np.full(40, faint - dip_depth)
    profile[10], profile[22] = 40.0, faint
    peaks = np.array([[10, 5, 5], [22, 5, 5]])

    def snr_along(width, points):
        return profile[points[:, 0]]

    keep = deblend_peaks(peaks, profile[[10, 22]], np.array([3, 3]), beam_pix=5.0, snr_along=snr_along)
    assert list(keep) == ([0, 1] if separate else [0])


def test_far_peaks_are_always_separate():
    def never_dips(width, points):
        return np.full(len(points), 100.0)

    peaks = np.array([[10, 5, 5], [10, 5, 30]])  # 25 pixels = 5 beams apart
    keep = deblend_peaks(peaks, np.array([20.0, 10.0]), np.array([3, 3]), beam_pix=5.0, snr_along=never_dips)
    assert list(keep) == [0, 1]


def test_blended_lines_are_split_at_the_valley():
    z = np.arange(60.0)
    two = 10 * np.exp(-0.5 * ((z - 20) / 3) ** 2) + 6 * np.exp(-0.5 * ((z - 35) / 3) ** 2)
    pieces = split_at_valleys((10, 45), two)
    assert len(pieces) == 2 and pieces[0][0] == 10 and pieces[1][1] == 45
    assert pieces[0][1] < 28 < pieces[1][0]  # the cut lies in the valley between 20 and 35
    one = 10 * np.exp(-0.5 * ((z - 28) / 8) ** 2)
    assert split_at_valleys((10, 45), one) == [(10, 45)]


def test_two_lines_with_a_shallow_valley_between_them_are_split():
    # The denoised spectrum of a candidate between two sources 0.6 beam apart whose lines lie 16
    # channels apart: maxima of 7.9 and 6.1, a valley at 0.55 of the lower (3-channel smoothed).
    z = np.arange(64.0)
    sigma = 11 / 2.3548
    spectrum = 8.0 * np.exp(-0.5 * ((z - 15) / sigma) ** 2) + 6.2 * np.exp(-0.5 * ((z - 31) / sigma) ** 2)
    pieces = split_at_valleys((5, 43), spectrum)
    assert len(pieces) == 2 and pieces[0][0] == 5 and pieces[1][1] == 43
    assert 15 < pieces[0][1] < pieces[1][0] < 31
    # A single broad line stays whole.
    assert split_at_valleys((5, 43), 8.0 * np.exp(-0.5 * ((z - 24) / (2 * sigma)) ** 2)) == [(5, 43)]


def test_a_run_shared_by_two_blended_lines_is_cut_between_their_peaks():
    # Lines at channels 23 and 31.5 (FWHM 6.8), of sources half a beam apart: one run, no valley
    # in either spectrum (each peaks at its own line, the other a shoulder).
    z = np.arange(60.0)
    sigma = 6.8 / 2.3548
    bright = 11.6 * np.exp(-0.5 * ((z - 23) / sigma) ** 2) + 2.5 * np.exp(-0.5 * ((z - 31.5) / sigma) ** 2)
    faint = 4.0 * np.exp(-0.5 * ((z - 23) / sigma) ** 2) + 7.0 * np.exp(-0.5 * ((z - 31.5) / sigma) ** 2)
    assert split_at_valleys((11, 40), bright) == [(11, 40)]
    pieces, foreign = split_shared_runs([(11, 40)], bright, [faint])
    assert pieces == [(11, 27), (28, 40)] and foreign == {(28, 40)}
    pieces, foreign = split_shared_runs([(11, 40)], faint, [bright])
    assert pieces == [(11, 27), (28, 40)] and foreign == {(11, 27)}
    # A neighbour whose spectrum peaks at this line (another candidate of it), or outside the
    # run, cuts nothing.
    near_same = 5.0 * np.exp(-0.5 * ((z - 25) / sigma) ** 2)
    elsewhere = 5.0 * np.exp(-0.5 * ((z - 50) / sigma) ** 2)
    assert split_shared_runs([(11, 40)], bright, [near_same, elsewhere]) == ([(11, 40)], set())
    # Two candidates on the flat top of one broad line (FWHM 20), their spectra peaking 5
    # channels apart: neither has fallen by a tenth halfway between, so nothing is cut.
    broad = 5.0 * np.exp(-0.5 * ((z - 25) / (20 / 2.3548)) ** 2)
    shifted = 5.0 * np.exp(-0.5 * ((z - 30) / (20 / 2.3548)) ** 2)
    assert split_shared_runs([(10, 45)], broad, [shifted]) == ([(10, 45)], set())


def test_repeated_lines_keep_the_brightest_of_one_line():
    x = np.array([10.0, 10.5, 10.2, 30.0])
    y = np.array([10.0, 10.0, 10.5, 10.0])
    z = np.array([20.0, 21.0, 35.0, 20.0])  # row 1 repeats row 0; row 2 is another line; row 3 far
    fwhm = np.array([6.0, 4.0, 5.0, 6.0])
    snr = np.array([10.0, 12.0, 8.0, 9.0])
    repeated = repeated_lines(x, y, z, fwhm, snr, beam_pix=5.0)
    assert list(repeated) == [True, False, False, False]  # the brighter of the pair is row 1
