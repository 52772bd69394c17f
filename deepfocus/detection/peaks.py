"""3-D peak finding in matched-filter S/N cubes and deblending of peaks that belong together."""

from __future__ import annotations

import numpy as np

__all__ = [
    "find_peaks_3d",
    "deblend_peaks",
    "path_points",
    "DEFAULT_DIP",
    "DEFAULT_DIP_FRACTION",
    "DEFAULT_REACH",
]

#: A fainter peak is a separate source when the S/N drops by at least this much (noise units)
#: on the way from it to a brighter peak, or by `DEFAULT_DIP_FRACTION` of its own S/N if that is
#: less (both chosen on validation cubes, not the benchmark's).
DEFAULT_DIP = 3.0
#: The drop, as a fraction of the fainter peak's S/N, that also separates it. A faint source
#: 1-2 beams from a much brighter one sits on the brighter one's wing, so the path between them
#: rarely falls 3 noise units below the fainter peak even with a clear saddle; a drop of a fifth
#: of its S/N separates it (on the validation cubes: 3 more of 232 sources, no false one).
DEFAULT_DIP_FRACTION = 0.2
#: Peaks further apart than this many beams are always separate sources.
DEFAULT_REACH = 2.0


def find_peaks_3d(snr, threshold, *, spatial_size, spectral_size=3, valid=None):
    """Local maxima of a ``(n_chan, ny, nx)`` S/N cube above ``threshold``.

    A voxel is a peak when no voxel of the ``(spectral_size, spatial_size, spatial_size)`` box
    centred on it is higher (voxels beyond the cube do not count), as with
    `scipy.ndimage.maximum_filter`; only the voxels above the threshold are examined, which
    is far cheaper than filtering the whole cube when they are few.

    Parameters
    ----------
    snr : `numpy.ndarray`
        S/N cube.
    threshold : float
        Minimum S/N of a peak.
    spatial_size : int
        Footprint of the maximum filter in pixels (about a beam).
    spectral_size : int
        Footprint along the spectral axis in channels.
    valid : `numpy.ndarray`, optional
        ``(ny, nx)`` pixels where peaks may lie.

    Returns
    -------
    peaks : `numpy.ndarray`
        ``(n, 3)`` integer ``(z, y, x)``, brightest first.
    values : `numpy.ndarray`
        ``(n,)`` S/N at the peaks.
    """
    above = snr >= threshold
    if valid is not None:
        above &= valid[None]
    z, y, x = np.nonzero(above)
    values = snr[z, y, x]
    half_z, half_s = max(1, spectral_size) // 2, max(1, spatial_size) // 2
    shape = snr.shape
    is_peak = np.ones(len(z), dtype=bool)
    # Neighbours beyond the cube are clipped onto voxels of the box itself, which changes nothing.
    for dz in range(-half_z, half_z + 1):
        zz = np.clip(z + dz, 0, shape[0] - 1)
        for dy in range(-half_s, half_s + 1):
            yy = np.clip(y + dy, 0, shape[1] - 1)
            for dx in range(-half_s, half_s + 1):
                if dz == dy == dx == 0:
                    continue
                is_peak &= values >= snr[zz, yy, np.clip(x + dx, 0, shape[2] - 1)]
    z, y, x, values = z[is_peak], y[is_peak], x[is_peak], values[is_peak]
    order = np.argsort(-values, kind="stable")
    return np.column_stack([z, y, x])[order], values[order]


def path_points(a, b):
    """Voxels on the straight segment from ``a`` to ``b`` (``(z, y, x)``), both ends included.

    Returns
    -------
    points : `numpy.ndarray`
        ``(n, 3)`` integer voxels, one per unit step along the longest axis.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = int(np.max(np.abs(b - a))) + 1
    t = np.linspace(0.0, 1.0, max(n, 2))[:, None]
    return np.rint(a * (1 - t) + b * t).astype(int)


def deblend_peaks(
    peaks,
    values,
    widths,
    *,
    beam_pix,
    snr_along,
    dip=DEFAULT_DIP,
    dip_fraction=DEFAULT_DIP_FRACTION,
    reach=DEFAULT_REACH,
):
    """Keep the peaks that are separate sources; drop those that belong to a brighter one.

    Peaks are taken brightest first. A peak may belong to a brighter kept peak when the two lie
    within a beam, or within ``reach`` beams with overlapping line windows (their filter
    widths). It does when the S/N, in the fainter peak's own filter, never drops by
    ``min(dip, dip_fraction * S/N of the fainter peak)`` or more on the straight path between
    them (a saddle test, as image deblenders use): one
    source whose emission is continuous, rather than two lines of blended sources or two lines
    at one position.

    Parameters
    ----------
    peaks : `numpy.ndarray`
        ``(n, 3)`` ``(z, y, x)`` sorted brightest first.
    values : `numpy.ndarray`
        S/N of the peaks (each in its own filter).
    widths : `numpy.ndarray`
        ``(n,)`` filter width (channels) of each peak.
    beam_pix : float
        Beam major axis in pixels (times the detector's ``min_separation``).
    snr_along : callable
        ``snr_along(width, points)``: the S/N of the ``width``-channel filter at the integer
        voxels ``points`` (``(m, 3)`` ``(z, y, x)``).
    dip : float
        A drop (S/N units) that separates two peaks.
    dip_fraction : float
        A drop, as a fraction of the fainter peak's S/N, that separates two peaks (the smaller
        of the two drops is needed).
    reach : float
        Peaks further apart than this many beams are always separate.

    Returns
    -------
    keep : `numpy.ndarray`
        Indices of the kept peaks (brightest first).
    """
    kept: list[int] = []
    peaks = np.asarray(peaks)
    for i in range(len(peaks)):
        z, y, x = (int(v) for v in peaks[i])
        needed = min(dip, dip_fraction * float(values[i]))
        belongs = False
        for j in kept:
            zj, yj, xj = (int(v) for v in peaks[j])
            distance = np.hypot(x - xj, y - yj)
            if distance > reach * beam_pix:
                continue
            overlap = abs(z - zj) <= 0.5 * (widths[i] + widths[j]) + 1
            if distance > beam_pix and not overlap:
                continue
            lowest = float(np.min(snr_along(int(widths[i]), path_points((z, y, x), (zj, yj, xj)))))
            if values[i] - lowest < needed:
                belongs = True
                break
        if not belongs:
            kept.append(i)
    return np.array(kept, dtype=int)
