"""Gaussian line fits of candidate spectrum (`deepfocus.detection.lines.fit_line`)."""

import numpy as np
import pytest

from deepfocus.detection.lines import MIN_FWHM, bridge_blank_channels, channel_peak, fit_line
from deepfocus.simulation.catalog import _peak_fraction


def test_a_one_channel_spike_keeps_its_own_height():
    # Noise with one high channel: a sub-channel Gaussian between two channels needed an
    # amplitude three times the spike's, and the catalogue's S/N with it.
    rng = np.random.default_rng(3)
    spectrum = rng.normal(scale=0.3, size=40)
    spectrum[20] = 3.5
    line = fit_line(spectrum, 20.4, 1)
    assert line["fwhm"] >= MIN_FWHM - 1e-9
    assert line["peak"] <= 1.1 * spectrum.max()


@pytest.mark.parametrize(("centre", "fwhm"), [(20.0, 3.0), (20.5, 3.0), (17.3, 8.0)])
def test_peak_is_the_brightest_channel_of_the_line_as_the_truth_defines_it(centre, fwhm):
    n = 48
    sigma = fwhm / 2.3548
    edges = np.arange(n + 1) - 0.5
    from scipy.special import erf

    flux = 30.0  # S/N x channels
    spectrum = flux * np.diff(0.5 * (1 + erf((edges - centre) / (np.sqrt(2) * sigma))))
    expected = flux * _peak_fraction(np.array([centre]), np.array([fwhm]), n)[0]
    line = fit_line(spectrum, centre, fwhm)
    assert line["peak"] == pytest.approx(expected, rel=0.03)
    assert line["z_centroid"] == pytest.approx(centre, abs=0.05)


def test_channel_peak_of_a_wide_line_is_its_amplitude():
    assert channel_peak(5.0, 10.0, 6.0, 30) == pytest.approx(5.0, rel=0.01)
    # Centred between two channels, a line one channel wide puts under half its area in each.
    assert channel_peak(1.0, 10.5, 1 / 2.3548, 30) < 0.5 * np.sqrt(2 * np.pi) / 2.3548


def _gaussian_line(n, centre, fwhm, peak):
    channels = np.arange(n)
    return peak * np.exp(-0.5 * ((channels - centre) / (fwhm / 2.3548)) ** 2)


def test_blank_channels_are_left_out_of_the_fit():
    # Blank channels reach the fit as zeros in the S/N spectrum; with the noise NaN there
    # (`blank_as_nan`) they are left out, and the line keeps its centre and height.
    spectrum = _gaussian_line(48, 28.4, 6.8, 20.0)
    noise = np.ones(48)
    spectrum[[27, 30]] = 0.0
    noise[[27, 30]] = np.nan
    line = fit_line(spectrum, 28.0, 7.0, noise)
    assert line["z_centroid"] == pytest.approx(28.4, abs=0.05)
    assert line["fwhm"] == pytest.approx(6.8, rel=0.03)
    zeros = fit_line(spectrum, 28.0, 7.0, np.ones(48))  # what the zeros did
    assert abs(zeros["peak"] - line["peak"]) > 1.0


def test_limits_keep_the_fit_off_a_second_line():
    spectrum = _gaussian_line(48, 10.0, 6.0, 8.0) + _gaussian_line(48, 28.0, 9.0, 30.0)
    line = fit_line(spectrum, 10.0, 12, limits=(-np.inf, 19.0))
    assert line["z_centroid"] == pytest.approx(10.0, abs=0.1)
    assert line["fwhm"] == pytest.approx(6.0, rel=0.05)
    assert line["peak"] < 10.0
    reached = fit_line(spectrum, 10.0, 12)  # a window of 2 x 12 channels takes in the bright line
    assert reached["peak"] > 20.0


def test_a_spectrum_with_no_usable_channel_near_the_guess_gives_no_peak():
    line = fit_line(np.zeros(20), 10.0, 3.0, np.full(20, np.nan))
    assert line["peak"] == 0.0 and not line["fitted"]


def test_bridge_blank_channels_fills_gaps_but_not_the_band_ends():
    spectra = np.array([[0.0, 0.0, 2.0, 0.0, 0.0, 8.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]])
    blank = np.array([True, False, False, True, True, False, True])
    out = bridge_blank_channels(spectra, blank)
    assert np.allclose(out[0], [0.0, 0.0, 2.0, 4.0, 6.0, 8.0, 0.0])
    assert np.allclose(out[1], [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    assert spectra[0, 3] == 0  # a copy by default
    cube = np.zeros((7, 2, 3), np.float32)
    cube[2], cube[5] = 2.0, 8.0
    same = bridge_blank_channels(cube, blank, axis=0, copy=False)
    assert same is cube and np.allclose(cube[:, 1, 2], out[0])
    assert np.array_equal(bridge_blank_channels(spectra, np.ones(7, bool)), spectra)


def test_a_blank_channel_at_a_line_peak_does_not_split_it(tmp_path):
    # One blank channel at the example's bright line's peak (channel 28): the spectral network
    # saw a 0 there, cut the line in two and gave the fainter line at the same position (S/N 9,
    # channel 8) the bright line's S/N and width.
    from importlib import resources

    from astropy.io import fits
    from astropy.table import QTable

    from deepfocus import CubeDetector

    data = resources.files("deepfocus.data")
    truth = QTable.read(data / "example_truth.ecsv")
    blanked = tmp_path / "blanked.fits"
    with fits.open(data / "example_dirty.fits") as hdul:
        hdul[0].data[28] = np.nan
        hdul.writeto(blanked)
    catalog = CubeDetector()(blanked)
    same = np.hypot(catalog["x_centroid"].value - 48.96, catalog["y_centroid"].value - 47.72) < 1
    rows = catalog[same]
    assert len(rows) == 2
    faint, bright = np.argsort(rows["z_centroid"])
    assert rows["z_min"][bright] <= 23 and rows["z_max"][bright] >= 34
    true_faint = truth[np.argmin(np.abs(truth["z_centroid"] - rows["z_centroid"][faint]))]
    assert abs(rows["snr"][faint] / true_faint["snr"] - 1) < 0.2
