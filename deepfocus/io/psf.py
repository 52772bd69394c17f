"""Reading PSF cubes as CASA ``tclean`` writes them (``exportfits`` of the ``.psf`` image)."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..exceptions import InvalidInputError

__all__ = ["read_psf"]


def read_psf(path):
    """Read a PSF image or cube from a FITS file.

    Degenerate axes (a Stokes axis, a single channel) are dropped; the result is ordered
    ``(n_chan, ny, nx)``. Each plane is normalised to 1 at its centre pixel ``(ny // 2, nx // 2)``,
    where ``tclean`` puts the peak.

    Parameters
    ----------
    path : str or path-like
        FITS file with a celestial WCS (e.g. ``image.psf.fits``).

    Returns
    -------
    psf : `numpy.ndarray`
        ``(n_chan, ny, nx)`` float64.
    cell : `~astropy.units.Quantity`
        Pixel size (arcsec) from the WCS.

    Raises
    ------
    InvalidInputError
        If the file cannot be read, has no celestial WCS, non-square pixels, or a zero or
        non-finite centre pixel.
    """
    try:
        with fits.open(path, memmap=False) as hdul:
            header = hdul[0].header
            data = hdul[0].data
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"cannot read PSF FITS file {str(path)!r}: {exc}") from exc
    if data is None:
        raise InvalidInputError(f"{path}: the primary HDU holds no image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # CASA headers: harmless fix-ups
        wcs = WCS(header)
    if not wcs.has_celestial:
        raise InvalidInputError(f"{path}: the PSF has no celestial (RA/Dec) WCS")
    scales = np.abs(wcs.celestial.wcs.cdelt) if wcs.celestial.wcs.has_cd() is False else None
    if scales is None:
        scales = np.sqrt(np.sum(wcs.celestial.pixel_scale_matrix**2, axis=0))
    if not np.isclose(scales[0], scales[1], rtol=1e-6):
        raise InvalidInputError(f"{path}: non-square pixels ({scales[0]} x {scales[1]} deg)")
    array = np.asarray(data, dtype=float)
    ny, nx = array.shape[-2:]
    array = array.reshape(-1, ny, nx)
    centre = array[:, ny // 2, nx // 2]
    if not np.all(np.isfinite(centre)) or np.any(centre == 0):
        raise InvalidInputError(f"{path}: the PSF is zero or not finite at its centre pixel")
    return array / centre[:, None, None], (scales[0] * u.deg).to(u.arcsec)
