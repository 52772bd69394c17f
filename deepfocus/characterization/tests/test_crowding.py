"""Sources measured among their neighbours (`deepfocus.characterization.crowding`)."""

from dataclasses import replace

import astropy.units as u
import numpy as np
import pytest
from scipy.signal import fftconvolve
from scipy.special import erf

from deepfocus import SourceCharacterizer
from deepfocus.characterization import crowding
from deepfocus.characterization.crowding import flux_window, line_fractions, neighbour_image, window_share
from deepfocus.characterization.forward import _crop, _source_image
from deepfocus.detection.detector import prepare
from deepfocus.detection.tests import helpers
from deepfocus.io.catalog import SourceFlag


def test_line_fractions_even_and_gaussian():
    windows = np.array([[10, 19], [15, 24], [40, 45]])
    even = line_fractions(windows)
    assert np.allclose(np.diag(even), 1.0)
    assert even[0, 1] == pytest.approx(0.5) and even[1, 0] == pytest.approx(0.5)
    assert even[2, 0] == 0 and even[0, 2] == 0
    # A Gaussian line centred on its window puts more of its flux in the window's middle.
    gaussian = line_fractions(windows, centres=[14.5, 18.0, 42.5], widths=[6.0, 6.0, 3.0])
    assert np.allclose(np.diag(gaussian), 1.0)
    assert 0.65 < gaussian[0, 1] < 0.75  # half of source 1's window, but most of its line
    assert gaussian[2, 1] == 0


@pytest.mark.parametrize(
    ("x", "y", "major", "minor"), [(10.3, 12.7, 4.0, 2.0), (-15.2, 40.6, 3.0, 3.0), (50.0, -8.4, 0.0, 0.0)]
)
def test_neighbour_image_is_the_convolution_on_a_large_grid(x, y, major, minor):
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(65, 65))
    kernel[32, 32] = 5.0
    size, pad = 30, 60
    grid = size + 2 * pad
    source = _source_image(grid, x + pad, y + pad, major, minor, np.radians(30.0))
    expected = fftconvolve(source, _crop(kernel, grid), mode="same")[pad : pad + size, pad : pad + size]
    image = neighbour_image(size, x, y, major, minor, 30.0, kernel)
    assert image.shape == (size, size)
    assert np.abs(image - expected).max() < 1e-5 * np.abs(expected).max()


def test_a_second_line_at_the_position_is_not_continuum():
    # Each source's continuum is measured outside the lines of the sources within
    # LINE_FREE_RADIUS beams, in every pass: the other line at the position once came out as
    # continuum of each (1.3-1.5 mJy) and took half its flux where no second pass ran (first
    # pass 0.53 and 0.50 of the true fluxes, without a PSF 0.51 and 0.48).
    rows = (
        (40.3, 50.6, 12.0, 1.0, 0.7, 30.0, 9.0, 15.0, 0.0),
        (40.3, 50.6, 33.0, 1.0, 0.7, 30.0, 9.0, 15.0, 0.0),
    )
    sim = helpers.simulation(rows, seed=3)
    catalog = sim.truth[["id", "x_centroid", "y_centroid", "z_centroid", "z_min", "z_max"]]
    runs = {
        "first pass": SourceCharacterizer(model=None)(sim.dirty, catalog, psf=sim.psf, crowded=False),
        "second pass": SourceCharacterizer(model=None)(sim.dirty, catalog, psf=sim.psf),
        "no PSF": SourceCharacterizer(model=None)(sim.dirty, catalog),
    }
    for name, table in runs.items():
        assert np.all(table["continuum_flux"] == 0), name
        ratio = (table["flux"] / sim.truth["flux"]).to_value(u.one)
        assert np.all((ratio > 0.8) & (ratio < 1.2)), (name, ratio)  # no PSF: 0.88 and 0.85


def test_a_fit_among_neighbours_clears_the_fallback_flag():
    # Two lines at one position: each is fitted again among the other, which replaces a first
    # fit set aside (flag 32); the flag stays where no fit replaced it.
    rows = (
        (40.3, 50.6, 10.0, 1.0, 0.7, 30.0, 5.0, 15.0, 0.0),
        (40.3, 50.6, 24.0, 1.0, 0.7, 30.0, 5.0, 15.0, 0.0),
        (80.0, 20.0, 41.0, 0.0, 0.0, 0.0, 3.0, 12.0, 0.0),  # far, and no line shared
    )
    sim = helpers.simulation(rows, seed=3)
    catalog = sim.truth[["id", "x_centroid", "y_centroid", "z_centroid", "z_min", "z_max"]]
    alone = SourceCharacterizer(model=None)(sim.dirty, catalog, psf=sim.psf, crowded=False)
    alone["flags"] = np.asarray(alone["flags"]) | int(SourceFlag.FIT_FALLBACK)
    among = crowding.refit_crowded(alone, prepare(sim.dirty, psf=sim.psf), kernel="psf")
    assert ((np.asarray(among["flags"]) & SourceFlag.FIT_FALLBACK) > 0).tolist() == [False, False, True]


def test_neighbours_sidelobes_are_taken_out_of_the_fit():
    # Three extended sources 3.5 beams apart, their lines overlapping: each sits on the others'
    # sidelobes and negative bowls, and alone comes out too faint.
    itf = helpers.interferometer()
    d = 3.5 * itf.beam.major.to_value(u.arcsec) / itf.cell.to_value(u.arcsec)
    rows = (
        (30.0, 48.0, 24.0, 1.5, 1.0, 30.0, 12.0, 25.0, 0.0),
        (30.0 + d, 48.0, 26.0, 1.4, 0.8, 100.0, 12.0, 25.0, 0.0),
        (30.0 + d / 2, 48.0 + d * 0.87, 22.0, 1.6, 1.0, 60.0, 12.0, 25.0, 0.0),
    )
    ratios = {False: [], True: []}
    for seed in (1, 2, 3):
        sim = helpers.simulation(rows, seed=seed)
        catalog = sim.truth[["id", "x_centroid", "y_centroid", "z_centroid", "z_min", "z_max", "line_width"]]
        for crowded in ratios:
            table = SourceCharacterizer()(sim.dirty, catalog, psf=sim.psf, crowded=crowded)
            ratios[crowded].append((table["flux"] / sim.truth["flux"]).to_value(u.one))
    alone, among = np.concatenate(ratios[False]), np.concatenate(ratios[True])
    assert alone.mean() < 0.96  # biased low by the neighbours
    assert np.abs(among - 1).mean() < 0.5 * np.abs(alone - 1).mean()
    assert np.abs(among - 1).max() < 0.06


@pytest.mark.parametrize("seed", [1, 2])
def test_fainter_sources_are_fitted_among_their_brighter_neighbours_refits(seed):
    # A bright extended source (3 x 2 beams) whose first fit, made alone, took a fainter
    # neighbour's flux for its own (10 % too bright, 20 % too long); the neighbour lies on its
    # major axis 2.9 beams away. Subtracting that first model took the neighbour to about 65 %
    # of its flux; fitted after its bright neighbour's refit, it keeps it.
    rows = (
        (30.0, 48.0, 24.0, 3.0, 2.0, 90.0, 12.0, 30.0, 0.0),
        (44.5, 48.0, 25.0, 0.8, 0.5, 100.0, 12.0, 15.0, 0.0),
    )
    sim = helpers.simulation(rows, seed=seed)
    first = sim.truth.copy()
    first["flux"][0] *= 1.1
    first["fwhm_major"][0] *= 1.2
    among = crowding.refit_crowded(first[::-1], prepare(sim.dirty, psf=sim.psf), kernel="psf")[::-1]
    ratios = (among["flux"] / sim.truth["flux"]).to_value(u.one)
    assert ratios == pytest.approx([1, 1], abs=0.05)


def test_flux_window_holds_the_line_core():
    # FWHM 8 centred on 20.3 in a window 8..40: the channels within 1 FWHM, 98 % of the line.
    first, last, share = flux_window((8, 40), 20.3, 8.0)
    assert (first, last) == (13, 28)
    sigma = 8.0 / np.sqrt(8 * np.log(2))
    whole = 0.5 * (erf((28.5 - 20.3) / (np.sqrt(2) * sigma)) - erf((12.5 - 20.3) / (np.sqrt(2) * sigma)))
    assert share == pytest.approx(whole) and 0.97 < share < 0.99
    # The share is of the whole line, whatever the detector's window beyond the core: the flux
    # does not depend on it (a share of the window's part of the line left fluxes ~1 % low).
    assert flux_window((12, 29), 20.3, 8.0) == (first, last, pytest.approx(share))
    assert flux_window((8, 40)) == (8, 40, 1.0)  # no line profile: the whole window
    assert flux_window((8, 40), 45.0, 8.0) == (8, 40, 1.0)  # a centre outside its window
    assert flux_window((8, 40), 20.3, 0.2)[:2] == (20, 20)  # at least the centre's channel
    # A window narrower than the core (5 channels of a 30-channel FWHM line holds 16 % of it):
    # the profile extends the line at most MIN_WINDOW_SHARE beyond the window.
    assert flux_window((8, 12), 10.0, 30.0) == (8, 12, crowding.MIN_WINDOW_SHARE)


def test_window_share_converts_window_fractions_to_whole_line_fluxes():
    # A neighbour's flux is its whole line's; line_fractions are of its flux over its window.
    # Their product with window_share is the share of the whole line in another's channels.
    windows = np.array([[13.0, 28.0], [8.0, 12.0], [8.0, 40.0], [8.0, 40.0]])
    centres, widths = np.array([20.3, 10.0, 20.3, 45.0]), np.array([8.0, 30.0, 8.0, 8.0])
    share = window_share(windows, centres, widths)
    sigma = 8.0 / np.sqrt(8 * np.log(2))
    core = 0.5 * (erf((28.5 - 20.3) / (np.sqrt(2) * sigma)) - erf((12.5 - 20.3) / (np.sqrt(2) * sigma)))
    assert share[0] == pytest.approx(core)  # a window of +-1 FWHM holds 98 % of the line
    assert share[1] == crowding.MIN_WINDOW_SHARE  # as flux_window's floor
    assert share[2] == pytest.approx(1.0, abs=1e-4) and share[3] == 1.0  # centre outside: the sum
    assert np.all(window_share(windows) == 1.0)  # no profile: the window's sum
    # flux_window's share of the whole line is the window's part times the window's share.
    first, last, whole = flux_window((12, 29), 20.3, 8.0)
    part = line_fractions([[first, last], [12, 29]], [20.3] * 2, [8.0] * 2)[0, 1]
    assert whole == pytest.approx(part * window_share([[12, 29]], [20.3], [8.0])[0])


@pytest.mark.parametrize("crowded", [False, True])
def test_flux_comes_from_the_line_core(monkeypatch, crowded):
    # A point source whose detector window (8..40) is much wider than its line (FWHM 8 at 24):
    # signal in the window's outer channels (here a copy of a fraction of the source) is not
    # line flux, and summing it, as the whole window did, biases the flux high.
    sim = helpers.simulation(((48.0, 48.0, 24.0, 0.0, 0.0, 0.0, 8.0, 20.0, 0.0),), seed=3)
    prepared = prepare(sim.dirty, psf=sim.psf)
    catalog = sim.truth[["id", "x_centroid", "y_centroid", "z_centroid", "z_min", "z_max", "line_width"]]
    catalog["z_min"], catalog["z_max"] = [8], [40]
    if crowded:  # a faint neighbour 6 beams away sends the source through the second pass too
        catalog.add_row(catalog[0])
        catalog["x_centroid"][1] += 6 * helpers.interferometer().beam.major / prepared.cell * u.pix
    data = prepared.data.copy()
    data[[*range(8, 14), *range(35, 41)]] += 0.3 * data[24]
    wings = replace(prepared, data=data)

    def ratio():
        table = SourceCharacterizer()(wings, catalog)
        return (table["flux"][0] / sim.truth["flux"][0]).to_value(u.one)

    assert ratio() == pytest.approx(1, abs=0.03)
    monkeypatch.setattr(crowding, "FLUX_WINDOW", 100.0)  # the whole window, as before
    assert ratio() > 1.2
