"""Högbom CLEAN of a dirty image with a known PSF.

Written here (no maintained Python package offers a small, dependency-free Högbom loop on a
given PSF); each iteration is vectorised numpy: one ``argmax`` and one in-place slice update.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from ..exceptions import InvalidInputError
from .base import BaseDeconvolver

__all__ = ["CleanResult", "HogbomClean", "hogbom_clean", "restore"]


@dataclass
class CleanResult:
    """Output of `hogbom_clean`.

    Attributes
    ----------
    model : `numpy.ndarray`
        CLEAN components (same unit as the dirty image times pixels per beam: Jy/pixel for a
        dirty image in Jy/beam).
    residual : `numpy.ndarray`
        Dirty image minus the model convolved with the PSF.
    iterations : int
        Components subtracted.
    """

    model: np.ndarray
    residual: np.ndarray
    iterations: int


def hogbom_clean(dirty, psf, *, gain=0.1, threshold=0.0, max_iter=10_000, mask=None):
    """Högbom CLEAN: repeatedly subtract a scaled, shifted PSF at the brightest residual pixel.

    Parameters
    ----------
    dirty : `numpy.ndarray`
        ``(ny, nx)`` dirty image (e.g. Jy/beam).
    psf : `numpy.ndarray`
        PSF with its peak (1) at pixel ``(psf.shape[0] // 2, psf.shape[1] // 2)``; twice the
        image size lets every component reach the whole image, a smaller one is truncated
        at its edges (as CASA's minor cycle does).
    gain : float
        Loop gain (0 < gain <= 1).
    threshold : float
        Stop when the largest residual (absolute value) falls below this, in the image's unit.
    max_iter : int
        Maximum number of components.
    mask : `numpy.ndarray` of bool, optional
        Where components may be placed (default everywhere).

    Returns
    -------
    result : `CleanResult`
    """
    residual = np.array(dirty, dtype=np.float64)
    psf = np.asarray(psf, dtype=np.float64)
    if residual.ndim != 2 or psf.ndim != 2:
        raise InvalidInputError("hogbom_clean needs a 2-D dirty image and a 2-D PSF")
    if not 0 < gain <= 1:
        raise InvalidInputError(f"gain must be in (0, 1], got {gain}")
    if np.isnan(threshold):  # no residual would ever fall below it: max_iter components, silently
        raise InvalidInputError(f"threshold must be a number, got {threshold}")
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    if not np.isclose(psf[cy, cx], 1.0, atol=1e-3):
        raise InvalidInputError("the PSF must peak at 1 at its centre pixel")
    ny, nx = residual.shape
    model = np.zeros_like(residual)
    search = np.abs(residual) if mask is None else np.where(mask, np.abs(residual), -np.inf)
    allowed = None if mask is None else np.asarray(mask, dtype=bool)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007
        index = int(np.argmax(search))
        py, px = divmod(index, nx)
        peak = residual[py, px]
        if abs(peak) <= threshold:
            iterations -= 1
            break
        flux = gain * peak
        model[py, px] += flux
        # Overlap of the PSF centred on (py, px) with the image.
        y0, y1 = max(0, py - cy), min(ny, py - cy + psf.shape[0])
        x0, x1 = max(0, px - cx), min(nx, px - cx + psf.shape[1])
        residual[y0:y1, x0:x1] -= flux * psf[y0 - py + cy : y1 - py + cy, x0 - px + cx : x1 - px + cx]
        part = np.abs(residual[y0:y1, x0:x1])
        search[y0:y1, x0:x1] = part if allowed is None else np.where(allowed[y0:y1, x0:x1], part, -np.inf)
    return CleanResult(model=model, residual=residual, iterations=iterations)


def restore(result: CleanResult, beam_kernel):
    """Restored image: CLEAN model convolved with a restoring-beam kernel (peak 1) plus residual."""
    kernel = np.asarray(beam_kernel, dtype=float)
    return fftconvolve(result.model, kernel / kernel.max(), mode="same") + result.residual


class HogbomClean(BaseDeconvolver):
    """Högbom CLEAN of a spectral cube: the classical counterpart of `~deepfocus.Deconvolver`.

    Same call and products as `~deepfocus.Deconvolver`; the sky estimate is
    the CLEAN model (components, Jy/pixel or Jy/pixel km/s). Each plane (the band-integrated
    image, or every channel) is cleaned down to ``threshold`` times its own robust noise, with
    components allowed only where the input is valid. The PSF (``psf=``, e.g. ``tclean``'s
    ``.psf`` exported to FITS) is required. In image mode the PSF of the integrated image is
    the mean of the channels' PSFs.

    Parameters
    ----------
    mode : {'image', 'cube'}
        Integrated line image or every channel.
    gain : float
        Loop gain, in (0, 1].
    threshold : float
        Stop when the largest residual falls below this many times the plane's noise (finite, >= 0; as
        ``tclean``'s ``threshold`` in Jy, expressed in noise units).
    max_iter : int
        Maximum number of components per plane (``tclean``'s ``niter``).
    memory_limit : int or str, optional
        Read a FITS cube in parts of at most this size (``mode='image'`` only; see
        `deepfocus.deconvolution.out_of_core`).

    Examples
    --------
    >>> from importlib.resources import files
    >>> from deepfocus.deconvolution import HogbomClean
    >>> data = files("deepfocus.data")  # the example cube shipped with deepfocus, and its PSF
    >>> cube, psf = data / "example_dirty.fits", data / "example_psf.fits"
    >>> result = HogbomClean(threshold=3)(cube, psf=psf, restored=True)
    >>> result.meta["iterations"]  # CLEAN components (one plane: the band-integrated image)
    [134]
    >>> result.restored.unit
    Unit("Jy km / (beam s)")
    """

    method = "hogbom"
    needs_psf = True

    def __init__(self, *, mode="image", gain=0.1, threshold=3.0, max_iter=10_000, memory_limit=None):
        super().__init__(mode=mode, memory_limit=memory_limit)
        if isinstance(gain, bool) or not isinstance(gain, (int, float, np.floating)) or not 0 < gain <= 1:
            raise InvalidInputError(f"gain must be a number in (0, 1], got {gain!r}")
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float, np.floating))
            or not 0 <= threshold < np.inf  # also refuses NaN
        ):
            raise InvalidInputError(
                f"threshold must be a finite number >= 0 (noise units), got {threshold!r}"
            )
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
            raise InvalidInputError(f"max_iter must be a positive integer, got {max_iter!r}")
        self.gain = float(gain)
        self.threshold = float(threshold)
        self.max_iter = int(max_iter)

    def _parameters(self):
        return {"mode": self.mode, "gain": self.gain, "threshold": self.threshold, "max_iter": self.max_iter}

    def _deconvolve(self, planes, sigma, psf, *, pixels_per_beam=None, valid=None):
        model = np.zeros_like(planes)
        iterations = []
        for k, plane in enumerate(planes):
            if not np.isfinite(sigma[k]) or not np.any(plane):
                iterations.append(0)
                continue
            result = hogbom_clean(
                plane,
                psf[k],
                gain=self.gain,
                threshold=self.threshold * sigma[k],
                max_iter=self.max_iter,
                mask=plane != 0,
            )
            model[k] = result.model
            iterations.append(result.iterations)
        return model, {"iterations": iterations}
