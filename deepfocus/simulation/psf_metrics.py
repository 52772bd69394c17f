"""Measures that compare two PSFs sidelobe for sidelobe (used by tests and benchmarks)."""

from __future__ import annotations

import astropy.units as u
import numpy as np

__all__ = ["compare_psfs", "outside_beam_mask"]


def outside_beam_mask(shape, *, cell, beam, scale=1.5):
    """Pixels outside the ellipse of ``scale`` x the beam FWHM, centred on ``shape // 2``.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)``.
    cell : `~astropy.units.Quantity`
        Pixel size.
    beam : tuple of `~astropy.units.Quantity`
        ``(major, minor, pa)`` FWHMs and position angle (east of north).
    """
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    dx, dy = xx - nx // 2, yy - ny // 2
    major, minor, pa = beam
    cell_as = u.Quantity(cell, u.arcsec).value
    a = scale * major.to_value(u.arcsec) / cell_as
    b = scale * minor.to_value(u.arcsec) / cell_as
    theta = pa.to_value(u.rad)
    # x increases to the west, so east is -x.
    along = -dx * np.sin(theta) + dy * np.cos(theta)
    across = -dx * np.cos(theta) - dy * np.sin(theta)
    return (along / a) ** 2 + (across / b) ** 2 > 1


def compare_psfs(psf, reference, *, cell, beam, radius_beams=10.0):
    """Correlation, peak sidelobe and sidelobe rms of ``psf`` relative to ``reference``.

    Both images have their peak (1) at pixel ``(ny // 2, nx // 2)``. Sidelobes are the pixels
    outside 1.5 x the reference beam's FWHM ellipse; correlation and rms are measured within
    ``radius_beams`` beam major axes of the centre; the peak sidelobe over the whole image.

    Returns
    -------
    result : dict
        ``correlation``, ``peak_sidelobe`` and ``peak_sidelobe_reference`` (max abs value),
        ``sidelobe_rms`` and ``sidelobe_rms_reference``, and their ratios ``*_ratio``.
    """
    psf = np.asarray(psf, dtype=float)
    reference = np.asarray(reference, dtype=float)
    ny, nx = reference.shape
    yy, xx = np.mgrid[:ny, :nx]
    radius = np.hypot(xx - nx // 2, yy - ny // 2)
    cell_as = u.Quantity(cell, u.arcsec).value
    inner = radius <= radius_beams * beam[0].to_value(u.arcsec) / cell_as
    outside = outside_beam_mask(reference.shape, cell=cell, beam=beam)
    sidelobes = outside & inner
    result = {
        "correlation": float(np.corrcoef(psf[inner], reference[inner])[0, 1]),
        "peak_sidelobe": float(np.abs(psf[outside]).max()),
        "peak_sidelobe_reference": float(np.abs(reference[outside]).max()),
        "sidelobe_rms": float(np.sqrt(np.mean(psf[sidelobes] ** 2))),
        "sidelobe_rms_reference": float(np.sqrt(np.mean(reference[sidelobes] ** 2))),
    }
    result["peak_sidelobe_ratio"] = result["peak_sidelobe"] / result["peak_sidelobe_reference"]
    result["sidelobe_rms_ratio"] = result["sidelobe_rms"] / result["sidelobe_rms_reference"]
    return result
