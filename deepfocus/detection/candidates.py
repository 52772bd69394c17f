"""Candidate sources from the classical stages: matched filters, 3-D peaks, spectral merging."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable

from .matched_filter import DEFAULT_WIDTHS, signal_to_noise
from .peaks import find_peaks_3d, merge_candidates

__all__ = ["filter_beam", "find_candidates"]


def filter_beam(cube):
    """The beam the spatial matched filter uses: the middle channel's.

    Parameters
    ----------
    cube : `~deepfocus.io.cube.PreparedCube`

    Returns
    -------
    major, minor : float
        FWHM axes (pixels).
    pa : float
        Position angle (degrees east of north).
    """
    beam = cube.beams[cube.data.shape[0] // 2]
    cell = cube.cell.to_value(u.arcsec)
    return beam.major.to_value(u.arcsec) / cell, beam.minor.to_value(u.arcsec) / cell, beam.pa.to_value(u.deg)


def _subpixel(image, y, x):
    """Parabolic refinement of a peak at integer ``(y, x)`` of ``image``."""
    ny, nx = image.shape

    def vertex(a, b, c):
        d = a - 2 * b + c
        return 0.0 if d >= 0 else float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))

    dx = vertex(image[y, x - 1], image[y, x], image[y, x + 1]) if 0 < x < nx - 1 else 0.0
    dy = vertex(image[y - 1, x], image[y, x], image[y + 1, x]) if 0 < y < ny - 1 else 0.0
    return x + dx, y + dy


def find_candidates(
    cube, *, threshold=5.0, widths=DEFAULT_WIDTHS, beam_scale=1.0, continuum=None, plane_noise=None
):
    """Candidate line sources of a prepared cube from the classical matched-filter stages.

    Parameters
    ----------
    cube : `~deepfocus.io.cube.PreparedCube`
        The cube (frequency ascending, Jy/beam, per-channel noise and beams).
    threshold : float
        Minimum matched-filter S/N.
    widths : sequence of int
        Spectral filter widths (channels).
    beam_scale : float
        Footprint of peak finding and merging in beams.
    continuum, plane_noise : `numpy.ndarray`, optional
        For a part of a larger cube: the whole cube's continuum over the part's pixels and plane
        noise (see `~deepfocus.detection.matched_filter.signal_to_noise`).

    Returns
    -------
    candidates : `~astropy.table.QTable`
        ``x_centroid``, ``y_centroid`` (pix), ``z_centroid``, ``z_min``, ``z_max``,
        ``filter_snr`` (matched-filter S/N), ``filter_width`` (channels); brightest first.
    mf : `~deepfocus.detection.matched_filter.SignalToNoise`
        The S/N cubes (for the later stages).
    """
    n_chan = cube.data.shape[0]
    major, minor, pa = filter_beam(cube)
    mf = signal_to_noise(
        cube.data,
        cube.noise,
        cube.valid,
        beam_major_pix=major,
        beam_minor_pix=minor,
        beam_pa_deg=pa,
        widths=widths,
        continuum=continuum,
        plane_noise=plane_noise,
    )
    footprint = max(3, int(round(beam_scale * major)) | 1)
    peaks, values = find_peaks_3d(
        mf.snr, threshold, spatial_size=footprint, spectral_size=3, valid=cube.valid
    )
    width_of = np.array(mf.widths)[mf.best_width[peaks[:, 0], peaks[:, 1], peaks[:, 2]]] if len(peaks) else []
    keep = merge_candidates(peaks, values, np.asarray(width_of), beam_pix=beam_scale * major)
    table = QTable()
    rows = []
    for i in keep:
        z, y, x = (int(v) for v in peaks[i])
        w = int(width_of[i])
        xs, ys = _subpixel(mf.snr[z], y, x)
        rows.append(
            (xs, ys, float(z), max(0, z - w // 2), min(n_chan - 1, z + (w - 1) // 2), float(values[i]), w)
        )
    rows = np.array(rows, dtype=float).reshape(-1, 7)
    table["x_centroid"] = rows[:, 0] * u.pix
    table["y_centroid"] = rows[:, 1] * u.pix
    table["z_centroid"] = rows[:, 2]
    table["z_min"] = rows[:, 3].astype(int)
    table["z_max"] = rows[:, 4].astype(int)
    table["filter_snr"] = rows[:, 5]
    table["filter_width"] = rows[:, 6].astype(int)
    return table, mf
