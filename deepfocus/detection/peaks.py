"""3-D peak finding in matched-filter S/N cubes and merging of duplicate peaks."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter

__all__ = ["find_peaks_3d", "merge_candidates"]


def find_peaks_3d(snr, threshold, *, spatial_size, spectral_size=3, valid=None):
    """Local maxima of a ``(n_chan, ny, nx)`` S/N cube above ``threshold``.

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
    size = (max(1, spectral_size), max(1, spatial_size), max(1, spatial_size))
    local_max = maximum_filter(snr, size=size, mode="constant", cval=-np.inf)
    is_peak = (snr == local_max) & (snr >= threshold)
    if valid is not None:
        is_peak &= valid[None]
    z, y, x = np.nonzero(is_peak)
    values = snr[z, y, x]
    order = np.argsort(-values, kind="stable")
    return np.column_stack([z, y, x])[order], values[order]


def merge_candidates(peaks, values, widths, *, beam_pix):
    """Drop peaks that repeat a brighter one: within a beam in position and within the
    brighter peak's line (its filter width) in channel.

    Two lines at one position stay separate when their centres are further apart than the
    brighter line's half width plus the fainter line's half width.

    Parameters
    ----------
    peaks : `numpy.ndarray`
        ``(n, 3)`` ``(z, y, x)`` sorted brightest first.
    values : `numpy.ndarray`
        S/N of the peaks.
    widths : `numpy.ndarray`
        ``(n,)`` matched-filter width (channels) of each peak.
    beam_pix : float
        Beam major axis in pixels.

    Returns
    -------
    keep : `numpy.ndarray`
        Indices of the kept peaks (brightest first).
    """
    kept: list[int] = []
    for i in range(len(peaks)):
        z, y, x = peaks[i]
        duplicate = False
        for j in kept:
            zj, yj, xj = peaks[j]
            close = np.hypot(x - xj, y - yj) <= beam_pix
            same_line = abs(int(z) - int(zj)) <= 0.5 * (widths[j] + widths[i]) + 1
            if close and same_line:
                duplicate = True
                break
        if not duplicate:
            kept.append(i)
    return np.array(kept, dtype=int)
