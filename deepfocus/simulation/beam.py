"""Fit the restoring beam to the main lobe of a PSF, as ``tclean`` does."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.modeling import fitting, models
from radio_beam import Beam
from scipy import ndimage

from ..exceptions import InvalidInputError

__all__ = ["fit_beam", "main_lobe_mask"]

_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def main_lobe_mask(psf, *, cutoff=0.35):
    """Pixels of the PSF above ``cutoff`` (fraction of the peak) connected to the peak.

    Parameters
    ----------
    psf : `numpy.ndarray`
        2-D PSF with its peak at the maximum pixel.
    cutoff : float
        Fraction of the peak (``tclean``'s ``psfcutoff``, default 0.35).
    """
    peak = np.unravel_index(np.nanargmax(psf), psf.shape)
    labels, _ = ndimage.label(psf >= cutoff * psf[peak])
    return labels == labels[peak]


def fit_beam(psf, cell, *, cutoff=0.35):
    """Least-squares elliptical Gaussian fit to the main lobe of a PSF, as ``tclean`` fits it.

    Parameters
    ----------
    psf : `numpy.ndarray`
        2-D PSF ``(ny, nx)``, x increasing to the west (RA decreasing) as in a FITS image.
    cell : `~astropy.units.Quantity`
        Pixel size (angle).
    cutoff : float
        Only pixels above this fraction of the peak, connected to it, are fitted (the main lobe).

    Returns
    -------
    beam : `radio_beam.Beam`
        FWHM major and minor axes and position angle (east of north).
    """
    psf = np.asarray(psf, dtype=float)
    if psf.ndim != 2 or not np.isfinite(psf).any():
        raise InvalidInputError("the PSF must be a finite 2-D image")
    mask = main_lobe_mask(psf, cutoff=cutoff)
    if mask.sum() < 6:
        raise InvalidInputError(
            "the PSF main lobe covers fewer than 6 pixels: the cell is too coarse for a beam fit"
        )
    peak_y, peak_x = np.unravel_index(np.nanargmax(psf), psf.shape)
    # As tclean: resample the main lobe bicubically to ~3000 points, then fit those above the
    # cutoff that connect to the peak, with unit height and the centre fixed on the peak.
    rows, cols = np.nonzero(mask)
    half = int(max(np.abs(rows - peak_y).max(), np.abs(cols - peak_x).max())) + 5
    factor = max(1, int(np.sqrt(3001 / mask.sum())))
    offsets = np.arange(-half * factor, half * factor + 1) / factor
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    fine = ndimage.map_coordinates(psf, [peak_y + dy, peak_x + dx], order=3, mode="nearest")
    fine /= psf[peak_y, peak_x]
    fine_mask = main_lobe_mask(fine, cutoff=cutoff)
    x, y, z = dx[fine_mask], dy[fine_mask], fine[fine_mask]
    # Moments give the starting point; the least-squares fit refines it.
    w = np.clip(z, 1e-6, None)
    cov = np.array([[np.sum(w * x * x), np.sum(w * x * y)], [np.sum(w * x * y), np.sum(w * y * y)]])
    evals, evecs = np.linalg.eigh(cov / np.sum(w))
    init = models.Gaussian2D(
        amplitude=1.0,
        x_mean=0.0,
        y_mean=0.0,
        x_stddev=np.sqrt(max(evals[1], 0.25)),
        y_stddev=np.sqrt(max(evals[0], 0.25)),
        theta=np.arctan2(evecs[1, 1], evecs[0, 1]),
        fixed={"amplitude": True, "x_mean": True, "y_mean": True},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fitting.LevMarLSQFitter()(init, x, y, z)
    sx, sy, theta = abs(fit.x_stddev.value), abs(fit.y_stddev.value), fit.theta.value
    if sx < sy:
        sx, sy, theta = sy, sx, theta + np.pi / 2
    # theta is the major axis angle from +x (west) towards +y (north); PA is from north to east.
    pa = np.degrees(np.pi / 2 + theta)
    pa = (pa + 90.0) % 180.0 - 90.0
    cell_arcsec = u.Quantity(cell, u.arcsec).value
    return Beam(
        major=sx * _FWHM * cell_arcsec * u.arcsec,
        minor=sy * _FWHM * cell_arcsec * u.arcsec,
        pa=pa * u.deg,
    )
