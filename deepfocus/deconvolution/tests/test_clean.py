import numpy as np
import pytest

from deepfocus.deconvolution import hogbom_clean
from deepfocus.exceptions import InvalidInputError


def gaussian_psf(n, sigma=2.0):
    yy, xx = np.mgrid[:n, :n] - n // 2
    psf = np.exp(-0.5 * (xx**2 + yy**2) / sigma**2)
    # Add sidelobes so that CLEAN has something to remove.
    psf += 0.1 * np.cos(xx / 2.0) * np.exp(-0.5 * (xx**2 + yy**2) / (4 * sigma) ** 2) * (np.hypot(xx, yy) > 3)
    psf /= psf[n // 2, n // 2]
    return psf


def test_noiseless_point_source_is_recovered_exactly():
    n = 48
    psf = gaussian_psf(2 * n)
    dirty = np.zeros((n, n))
    # A 2.5 Jy point source at (x, y) = (20, 27): its dirty image is the shifted PSF.
    dirty[:] = 2.5 * psf[n - 27 : 2 * n - 27, n - 20 : 2 * n - 20]
    result = hogbom_clean(dirty, psf, gain=0.5, threshold=1e-9, max_iter=500)
    assert result.model.sum() == pytest.approx(2.5, rel=1e-6)
    assert np.unravel_index(np.argmax(result.model), result.model.shape) == (27, 20)
    assert np.count_nonzero(result.model) == 1
    assert np.abs(result.residual).max() < 1e-8


def test_threshold_and_mask():
    n = 32
    psf = gaussian_psf(2 * n)
    dirty = np.zeros((n, n))
    dirty += 1.0 * psf[n - 10 : 2 * n - 10, n - 10 : 2 * n - 10]
    dirty += 0.2 * psf[n - 22 : 2 * n - 22, n - 22 : 2 * n - 22]
    shallow = hogbom_clean(dirty, psf, gain=0.2, threshold=0.3)
    assert np.abs(shallow.residual).max() <= 0.3 + 1e-12
    assert shallow.model[22, 22] == 0
    mask = np.zeros((n, n), dtype=bool)
    mask[18:26, 18:26] = True
    masked = hogbom_clean(dirty, psf, gain=0.2, threshold=0.01, mask=mask, max_iter=200)
    assert masked.model[~mask].sum() == 0 and masked.model[mask].sum() > 0


def test_bad_input():
    with pytest.raises(InvalidInputError, match="2-D"):
        hogbom_clean(np.zeros((2, 8, 8)), np.ones((8, 8)))
    with pytest.raises(InvalidInputError, match="peak at 1"):
        hogbom_clean(np.zeros((8, 8)), np.zeros((16, 16)))
    with pytest.raises(InvalidInputError, match="gain"):
        hogbom_clean(np.zeros((8, 8)), gaussian_psf(16), gain=0)


@pytest.mark.parametrize("threshold", [np.nan, float("nan")])
def test_nan_threshold_is_refused(threshold):
    # No residual is ever below NaN: CLEAN would silently run max_iter components.
    with pytest.raises(InvalidInputError, match="threshold must be a number, got nan"):
        hogbom_clean(np.zeros((8, 8)), gaussian_psf(16), threshold=threshold)
