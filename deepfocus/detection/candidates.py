"""Candidate sources from the classical stages: matched filters, 3-D peaks, deblending.

Peaks are found in the S/N cube of every filter width separately, not only in the best S/N
over widths: next to a bright, broad line the wide filters' response covers a fainter
neighbour (a blended source a beam away, or a second line at one position), which then has no
peak of its own in the best-over-widths cube but does in the narrower filters. Peaks that
belong to one source are then merged by a saddle test (`~deepfocus.detection.peaks.deblend_peaks`).
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable

from .matched_filter import DEFAULT_WIDTHS, signal_to_noise
from .peaks import DEFAULT_DIP, DEFAULT_DIP_FRACTION, DEFAULT_REACH, deblend_peaks, find_peaks_3d

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


def _subpixel(patch, y, x, shape):
    """Parabolic refinement of a peak at integer ``(y, x)`` from the 3 x 3 ``patch`` of S/N
    around it (no shift along an axis where the peak is on the image's edge)."""
    ny, nx = shape

    def vertex(a, b, c):
        d = a - 2 * b + c
        return 0.0 if d >= 0 else float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))

    dx = vertex(patch[1, 0], patch[1, 1], patch[1, 2]) if 0 < x < nx - 1 else 0.0
    dy = vertex(patch[0, 1], patch[1, 1], patch[2, 1]) if 0 < y < ny - 1 else 0.0
    return x + dx, y + dy


def find_candidates(
    cube,
    *,
    threshold=5.0,
    widths=DEFAULT_WIDTHS,
    beam_scale=1.0,
    continuum=None,
    plane_noise=None,
    beam=None,
    peak_channels=None,
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
    beam : tuple of float, optional
        ``(major, minor, pa)`` of the spatial filter (pixels, pixels, degrees); default
        `filter_beam` of ``cube`` (a block of channels of a larger cube is given the whole
        cube's).
    peak_channels : slice, optional
        Channels of ``cube`` where peaks may lie (a block of channels of a larger cube: those
        whose filter windows lie inside the block); default: all.

    Returns
    -------
    candidates : `~astropy.table.QTable`
        ``x_centroid``, ``y_centroid`` (pix), ``z_centroid``, ``z_min``, ``z_max``,
        ``filter_snr`` (matched-filter S/N), ``filter_width`` (channels); brightest first.
    mf : `~deepfocus.detection.matched_filter.SignalToNoise`
        The S/N cubes (for the later stages).
    """
    n_chan = cube.data.shape[0]
    major, minor, pa = filter_beam(cube) if beam is None else beam
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
    peaks, values, width_index = _peaks_of_every_width(mf, threshold, footprint, cube.valid)
    if peak_channels is not None:
        lo, hi, _ = peak_channels.indices(n_chan)
        inside = (peaks[:, 0] >= lo) & (peaks[:, 0] < hi)
        peaks, values, width_index = peaks[inside], values[inside], width_index[inside]
    keep = deblend_peaks(
        peaks,
        values,
        np.array(mf.widths)[width_index],
        beam_pix=beam_scale * major,
        snr_along=lambda width, points: mf.width_snr_at(mf.widths.index(width), points),
        dip=DEFAULT_DIP,
        dip_fraction=DEFAULT_DIP_FRACTION,
        reach=DEFAULT_REACH,
    )
    table = QTable()
    rows = []
    for i in keep:
        z, y, x = (int(v) for v in peaks[i])
        w = int(mf.widths[width_index[i]])
        xs, ys = _subpixel(_plane_around(mf, width_index[i], z, y, x), y, x, mf.snr.shape[1:])
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


def _peaks_of_every_width(mf, threshold, footprint, valid):
    """3-D peaks of every filter width's S/N cube, brightest first.

    Returns ``(peaks (n, 3), values (n,), width_index (n,))``.
    """
    n_chan = mf.snr.shape[0]
    found = []
    buffer = np.empty_like(mf.smoothed)
    for index, width in enumerate(mf.widths):
        if width > n_chan:
            continue
        peaks, values = find_peaks_3d(
            mf.width_snr(index, out=buffer), threshold, spatial_size=footprint, spectral_size=3, valid=valid
        )
        found.append((peaks, values, np.full(len(values), index)))
    if not found:
        return np.zeros((0, 3), int), np.zeros(0), np.zeros(0, int)
    peaks, values, index = (np.concatenate(parts) for parts in zip(*found, strict=True))
    order = np.argsort(-values, kind="stable")
    return peaks[order], values[order], index[order]


def _plane_around(mf, index, z, y, x):
    """The 3 x 3 pixels of filter ``index``'s S/N around ``(y, x)`` in channel ``z`` (edges
    repeat the nearest pixel)."""
    ny, nx = mf.snr.shape[1:]
    yy, xx = np.meshgrid(
        np.clip(np.arange(y - 1, y + 2), 0, ny - 1),
        np.clip(np.arange(x - 1, x + 2), 0, nx - 1),
        indexing="ij",
    )
    points = np.column_stack([np.full(9, z), yy.ravel(), xx.ravel()])
    return mf.width_snr_at(index, points).reshape(3, 3)
