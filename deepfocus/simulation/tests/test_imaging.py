import warnings

import numpy as np
import pytest

from deepfocus.exceptions import InvalidInputError
from deepfocus.simulation.imaging import (
    good_fft_size,
    gridding_kernel,
    imaging_weights,
    psf_from_uv,
    spheroidal,
)


def test_fft_sizes_as_casa():
    assert good_fft_size(1.2 * 256) == 320
    assert good_fft_size(1.2 * 200) == 240
    assert good_fft_size(1.2 * 512) == 640


def test_grid_correction_is_the_kernel_transform():
    # The image-plane correction must be the Fourier transform of the gridding kernel.
    n, oversample = 256, 64
    x = (np.arange(n * oversample) - n * oversample // 2) / oversample
    kernel = gridding_kernel(x)
    transform = np.abs(np.fft.fftshift(np.fft.fft(np.fft.ifftshift(kernel))))
    transform = transform[n * oversample // 2 - n // 2 : n * oversample // 2 + n // 2]
    transform /= transform[n // 2]
    expected = spheroidal((np.arange(n) - n // 2) / (n / 2))
    np.testing.assert_allclose(transform[16:-16], expected[16:-16], atol=2e-4)


def _random_uv(rng, n=4000, uvmax=300.0):
    return rng.uniform(-uvmax, uvmax, n), rng.uniform(-uvmax, uvmax, n)


def test_psf_peak_and_symmetry():
    rng = np.random.default_rng(0)
    u, v = _random_uv(rng)
    cell = 1.0 / (4 * 300.0)  # Nyquist-sampled twice over
    psf = psf_from_uv(u, v, np.ones_like(u), npix=64, cell=cell)
    assert psf[32, 32] == pytest.approx(1.0)
    assert psf.max() == pytest.approx(1.0)
    # A real-valued sky gives a point-symmetric PSF.
    np.testing.assert_allclose(psf[1:, 1:], psf[1:, 1:][::-1, ::-1], atol=1e-6)


def test_psf_equals_direct_fourier_sum():
    rng = np.random.default_rng(1)
    u, v = _random_uv(rng, n=300)
    cell = 1.0 / (4 * 300.0)
    npix = 48
    psf = psf_from_uv(u, v, np.ones_like(u), npix=npix, cell=cell)
    # x increases to the west, so the direction cosine l = -x cell.
    offsets = (np.arange(npix) - npix // 2) * cell
    l, m = -offsets[None, :], offsets[:, None]
    direct = np.cos(2 * np.pi * (u[:, None, None] * l + v[:, None, None] * m)).sum(axis=0) / len(u)
    np.testing.assert_allclose(psf, direct, atol=2e-3)


def test_weighting_schemes():
    rng = np.random.default_rng(2)
    # A dense core and a sparse outskirt: uniform weighting down-weights the core.
    u = np.concatenate([rng.normal(0, 20, 3000), rng.uniform(-300, 300, 300)])
    v = np.concatenate([rng.normal(0, 20, 3000), rng.uniform(-300, 300, 300)])
    cell = 1.0 / (4 * 300.0)
    natural = imaging_weights(u, v, 1.0, npix=128, cell=cell, weighting="natural")
    uniform = imaging_weights(u, v, 1.0, npix=128, cell=cell, weighting="uniform")
    robust = imaging_weights(u, v, 1.0, npix=128, cell=cell, weighting="briggs", robust=0.5)
    assert np.all(natural == 1)
    core, outer = slice(0, 3000), slice(3000, None)
    assert uniform[core].mean() < uniform[outer].mean()
    assert uniform[core].mean() / uniform[outer].mean() < robust[core].mean() / robust[outer].mean() < 1
    # Robust +5 is natural, robust -5 is uniform (to a constant).
    very_natural = imaging_weights(u, v, 1.0, npix=128, cell=cell, robust=5)
    np.testing.assert_allclose(very_natural / very_natural.max(), 1, rtol=1e-3)
    very_uniform = imaging_weights(u, v, 1.0, npix=128, cell=cell, robust=-5)
    ratio = very_uniform / uniform
    np.testing.assert_allclose(ratio / ratio.mean(), 1, rtol=1e-2)


def test_weights_of_a_grid_that_holds_no_visibility():
    # A cell so large that every visibility falls outside the density grid: zero weights, and
    # no 0 / 0 in the Briggs normalisation.
    u, v = _random_uv(np.random.default_rng(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = imaging_weights(u, v, 1.0, npix=32, cell=1.0, weighting="briggs")
    np.testing.assert_array_equal(weights, 0)


def test_max_cell_is_the_limit_of_the_uv_grid():
    from deepfocus.simulation.imaging import grid_weights, max_cell

    u, v = _random_uv(np.random.default_rng(4))
    limit = max_cell(u, v, npix=64)
    n_uv = good_fft_size(64 * 1.2)
    # Just below the limit the kernel fits in the grid; just above, grid_weights refuses it.
    grid_weights(u, v, np.ones_like(u), n_uv=n_uv, du=1 / (n_uv * limit * (1 - 1e-6)))
    with pytest.raises(InvalidInputError, match="beyond the uv grid"):
        grid_weights(u, v, np.ones_like(u), n_uv=n_uv, du=1 / (n_uv * limit * (1 + 1e-3)))
    with pytest.raises(InvalidInputError, match="longest baseline: choose a cell of at most"):
        psf_from_uv(u, v, np.ones_like(u), npix=64, cell=limit * 1.001)
