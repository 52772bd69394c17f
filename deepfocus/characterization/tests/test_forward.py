"""The forward-model refinement: an elliptical Gaussian through the PSF, fitted to an image."""

import numpy as np
import pytest
from scipy.signal import fftconvolve

from deepfocus.characterization.forward import _source_image, refine_sources
from deepfocus.detection.tests import helpers

SIZE = 48


@pytest.fixture(scope="module")
def psf():
    """A simulated ALMA PSF (sidelobes and all), peak 1 at its centre."""
    plane = np.asarray(helpers.interferometer().psf(helpers.N_CHANNELS // 2), dtype=float)
    return plane / plane[plane.shape[0] // 2, plane.shape[1] // 2]


def _dirty(psf, flux, major, minor, pa_deg, x=24.3, y=23.6):
    """The noiseless dirty image of the source: its Gaussian convolved with the whole PSF (cut
    to an odd size around its peak, so that the convolution keeps positions) on the PSF's grid,
    then cut to `SIZE` pixels."""
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    h = min(cy, cx, psf.shape[0] - 1 - cy, psf.shape[1] - 1 - cx)
    kernel = psf[cy - h : cy + h + 1, cx - h : cx + h + 1]
    padded = np.zeros_like(kernel)
    padded[h - SIZE // 2 : h + SIZE // 2, h - SIZE // 2 : h + SIZE // 2] = _source_image(
        SIZE, x, y, major, minor, np.radians(pa_deg)
    )
    full = flux * fftconvolve(padded, kernel, mode="same")
    return full[h - SIZE // 2 : h + SIZE // 2, h - SIZE // 2 : h + SIZE // 2]


@pytest.mark.parametrize(("major", "minor", "pa"), [(9.0, 5.0, 35.0), (6.0, 2.0, 150.0), (0.0, 0.0, 0.0)])
def test_noiseless_source_is_recovered_from_rough_first_estimates(psf, major, minor, pa):
    image = _dirty(psf, 2.5, major, minor, pa)
    valid = np.ones_like(image, dtype=bool)
    # First estimates 30 % off in size, 20 deg off in angle, 40 % off in flux.
    fit = refine_sources(
        [image], [valid], [psf], [24.3], [23.6], [1.3 * major], [0.7 * minor], [pa + 20], [1.4 * 2.5]
    )
    assert fit["ok"][0]
    assert fit["flux"][0] == pytest.approx(2.5, rel=0.01)
    if major > 0:
        assert fit["major"][0] == pytest.approx(major, rel=0.03)
        assert fit["minor"][0] == pytest.approx(minor, rel=0.05)
        assert abs((fit["pa"][0] - pa + 90) % 180 - 90) < 1.0
    else:
        assert fit["major"][0] < 1.0  # a point source stays under a pixel


def test_a_resolved_source_s_position_is_fitted_within_half_a_beam(psf):
    from deepfocus.characterization.forward import POSITION_FIT_REACH, _crop, _fwhm

    image = _dirty(psf, 2.5, 9.0, 5.0, 35.0)
    valid = np.ones_like(image, dtype=bool)
    shape = ([9.0], [5.0], [35.0], [2.5])
    # Started 1.2 and 0.9 pixels off (less than half a beam), the true position comes back.
    fit = refine_sources([image], [valid], [psf], [25.5], [22.7], *shape)
    assert fit["ok"][0]
    assert (fit["x"][0], fit["y"][0]) == (pytest.approx(24.3, abs=0.05), pytest.approx(23.6, abs=0.05))
    assert fit["flux"][0] == pytest.approx(2.5, rel=0.01)
    # Started far away, the position moves at most half a beam along each axis.
    reach = POSITION_FIT_REACH * _fwhm(_crop(psf, SIZE))
    far = refine_sources([image], [valid], [psf], [29.3], [23.6], *shape)
    assert far["ok"][0]
    assert far["x"][0] == pytest.approx(29.3 - reach, abs=1e-6)
    assert abs(far["y"][0] - 23.6) <= reach + 1e-9


def test_a_point_source_keeps_its_first_position(psf):
    image = _dirty(psf, 2.5, 0.0, 0.0, 0.0)
    valid = np.ones_like(image, dtype=bool)
    fit = refine_sources([image], [valid], [psf], [25.0], [23.1], [0.0], [0.0], [0.0], [2.5])
    assert fit["ok"][0]
    assert (fit["x"][0], fit["y"][0]) == (25.0, 23.1)


def test_sidelobes_matter_for_the_flux(psf):
    # The same image fitted with a clean Gaussian beam instead of the PSF is biased.
    import astropy.units as u
    from radio_beam import Beam

    from deepfocus.characterization.forward import beam_image

    image = _dirty(psf, 2.5, 8.0, 4.0, 60.0)
    valid = np.ones_like(image, dtype=bool)
    args = ([24.3], [23.6], [8.0], [4.0], [60.0], [2.5])
    with_psf = refine_sources([image], [valid], [psf], *args)
    itf = helpers.interferometer()
    cell = itf.cell.to_value(u.arcsec)
    beam = Beam(major=itf.beam.major, minor=itf.beam.minor, pa=itf.beam.pa)
    with_beam = refine_sources([image], [valid], [beam_image(beam, cell, SIZE)], *args)
    assert abs(with_psf["flux"][0] / 2.5 - 1) < 0.01
    assert abs(with_beam["flux"][0] / 2.5 - 1) > 0.02


def test_a_fit_without_signal_keeps_the_first_estimates(psf):
    image = np.zeros((SIZE, SIZE))
    image[0, 0] = 1.0
    valid = np.zeros_like(image, dtype=bool)  # nothing to fit
    fit = refine_sources([image], [valid], [psf], [24.0], [24.0], [5.0], [3.0], [10.0], [1.0])
    assert not fit["ok"][0]
    assert (fit["major"][0], fit["minor"][0], fit["pa"][0], fit["flux"][0]) == (5.0, 3.0, 10.0, 1.0)


@pytest.mark.parametrize(
    ("source", "better"),
    [
        ((48.0, 48.0, 24.0, 1.5, 0.8, 50.0, 8.0, 8.0, 0.0), True),  # extended: the fit wins
        ((48.0, 48.0, 24.0, 0.0, 0.0, 0.0, 6.0, 8.0, 0.0), False),  # a point: near the noise, unbiased
    ],
)
def test_psf_fit_on_isolated_noisy_sources(source, better):
    from deepfocus import DeepFocus
    from deepfocus.evaluation import matched_table

    errors = {"auto": [], None: []}
    for seed in range(8):
        sim = helpers.simulation((source,), seed=seed)
        for fit in errors:
            catalog = DeepFocus(forward_fit=fit)(sim.dirty, psf=sim.psf)
            pairs = matched_table(sim.truth, catalog)
            errors[fit].append(float(pairs["det_flux"][0] / pairs["true_flux"][0]) - 1)
    fitted, network = np.abs(errors["auto"]), np.abs(errors[None])
    if better:
        assert fitted.mean() < 0.8 * network.mean() and fitted.max() < 0.1
    else:  # the noise limit here is about 6 % (a PSF fitted at the true position and window)
        assert fitted.mean() < 0.1 and abs(np.mean(errors["auto"])) < 0.04 and fitted.max() < 0.15
