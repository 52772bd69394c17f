"""Högbom CLEAN of a dirty image with a known PSF.

Written here (no maintained Python package offers a small, dependency-free Högbom loop on a
given PSF); each iteration is vectorised numpy: one ``argmax`` and one in-place slice update.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from ..exceptions import InvalidInputError

__all__ = ["CleanResult", "hogbom_clean", "restore"]


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
