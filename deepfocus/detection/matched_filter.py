"""Classical stages of the detector: S/N normalisation, continuum removal and matched filters.

These steps carry over unchanged from simulations to CASA cubes (DESIGN section 2): every
channel is divided by its own robust noise; a per-pixel continuum (median over channels) is
removed; the cube is correlated with the beam in space and summed over several line widths in
frequency, each result renormalised by its own robust noise (which accounts for the
correlated noise of dirty images without modelling it).

Everything but that last noise is local: a voxel's value depends on its own spectrum and on
the pixels within the beam kernel. The plane noise of every line width and channel
(`filtered_plane_noise`) is measured over the whole image; a part of a cube (a tile of a large
one) is given it, and the whole image's continuum, so that it reproduces the single pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from scipy.signal import fftconvolve

__all__ = [
    "SignalToNoise",
    "signal_to_noise",
    "beam_kernel",
    "robust_plane_noise",
    "median_rows",
    "estimate_continuum",
    "filtered_plane_noise",
    "usable_noise",
    "window_sum",
    "DEFAULT_WIDTHS",
]

#: Line widths (channels) of the spectral matched filters.
DEFAULT_WIDTHS = (1, 3, 6, 12, 24)


def beam_kernel(beam_major_pix, beam_minor_pix, pa_deg):
    """Elliptical Gaussian of the beam (peak 1) on a pixel grid (x to the west, PA east of north)."""
    sigma_major = beam_major_pix / 2.3548
    sigma_minor = beam_minor_pix / 2.3548
    half = int(np.ceil(3 * sigma_major))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    pa = np.radians(pa_deg)
    along = -xx * np.sin(pa) + yy * np.cos(pa)
    across = -xx * np.cos(pa) - yy * np.sin(pa)
    return np.exp(-0.5 * ((along / sigma_major) ** 2 + (across / sigma_minor) ** 2))


def median_rows(values):
    """Median of every row of a 2-D array without NaN: `numpy.median` along ``axis=1``.

    The same values (the mean of the two middle elements of an even row is taken in the array's
    dtype, as numpy does), several times faster: one ``kth`` per `numpy.partition` instead of
    the two that `numpy.median` asks for.
    """
    n = values.shape[1]
    part = np.partition(values, n // 2, axis=1)
    upper = part[:, n // 2]
    if n % 2:
        return upper
    lower = part[:, : n // 2].max(axis=1)
    return (lower + upper) / values.dtype.type(2)


def robust_plane_noise(cube, valid, *, step=2):
    """Robust rms (MAD) of every plane over valid pixels (a sub-grid of every ``step`` pixels)."""
    sub = cube[:, ::step, ::step]
    ok = valid[::step, ::step]
    values = sub[:, ok]
    if values.shape[1] == 0:
        return np.full(len(cube), np.nan)
    if np.isnan(values).any():
        noise = mad_std(values, axis=1, ignore_nan=True)
    else:  # the common case, without numpy's slow NaN-aware median
        centre = median_rows(values)
        noise = 1.482602218505602 * median_rows(np.abs(values - centre[:, None]))
    return np.where(np.isfinite(noise) & (noise > 0), noise, np.nan)


def window_sum(planes, width, *, out=None):
    """Sums of ``width`` consecutive planes (zero beyond the ends).

    Plane ``z`` of the result sums planes ``z - width // 2`` to ``z - width // 2 + width - 1``,
    the window of `scipy.ndimage.uniform_filter1d` (``mode="constant"``) times ``width``. A
    running sum in float64 over float32 planes is exact unless the planes' magnitudes span more
    than about 2**24, so every plane comes out the same (the correctly rounded float32 sum)
    whichever block of channels it is computed in.

    Parameters
    ----------
    planes : `numpy.ndarray`
        ``(n, ny, nx)`` float32.
    width : int
        Window length (planes).
    out : `numpy.ndarray`, optional
        ``(n, ny, nx)`` float32 array for the result.

    Returns
    -------
    sums : `numpy.ndarray`
        ``(n, ny, nx)`` float32.
    """
    n = len(planes)
    out = np.empty(planes.shape, dtype=np.float32) if out is None else out
    if width == 1:
        np.copyto(out, planes)
        return out
    first = -(width // 2)  # the first plane of plane 0's window
    total = np.zeros(planes.shape[1:], dtype=np.float64)
    for k in range(max(0, first), min(n, first + width)):
        total += planes[k]
    out[0] = total
    for z in range(1, n):
        enter, leave = z + first + width - 1, z + first - 1
        if enter < n:
            total += planes[enter]
        if leave >= 0:
            total -= planes[leave]
        out[z] = total
    return out


@dataclass
class SignalToNoise:
    """Matched-filter S/N cubes of one input cube.

    Attributes
    ----------
    snr : `numpy.ndarray`
        ``(n_chan, ny, nx)`` best S/N over the line widths at each voxel (spatially
        beam-filtered, spectrally summed over ``widths[best]`` channels centred on the voxel).
    best_width : `numpy.ndarray`
        ``(n_chan, ny, nx)`` index into ``widths`` of the best filter.
    widths : tuple of int
        Line widths in channels.
    channel_snr : `numpy.ndarray`
        ``(n_chan, ny, nx)`` continuum-subtracted data / per-channel noise (no filtering).
    continuum : `numpy.ndarray`
        ``(ny, nx)`` continuum estimate (Jy/beam): per-pixel median over channels.
    """

    snr: np.ndarray
    best_width: np.ndarray
    widths: tuple
    channel_snr: np.ndarray
    continuum: np.ndarray


def estimate_continuum(cube, noise, *, clip=2.5, iterations=3, significance=3.0):
    """Per-pixel continuum (Jy/beam): median over channels with line channels clipped.

    A plain median over channels is biased up where lines fill much of the band (it then eats
    into the lines); channels more than ``clip`` noise above the running estimate are dropped
    and the median recomputed. Estimates below ``significance`` times their own noise are set
    to zero, so that line-only sources keep their full lines.

    Parameters
    ----------
    cube : `numpy.ndarray`
        ``(n_chan, ny, nx)`` Jy/beam, NaN where invalid.
    noise : `numpy.ndarray`
        ``(n_chan,)`` noise per channel (Jy/beam).

    Returns
    -------
    continuum : `numpy.ndarray`
        ``(ny, nx)`` float32, Jy/beam.
    """
    n_chan, spatial = cube.shape[0], cube.shape[1:]
    # (pixels, channels): medians along the contiguous axis are about twice as fast.
    work = np.ascontiguousarray(np.reshape(cube, (n_chan, -1)).T, dtype=np.float32)
    blank = ~np.isfinite(work)
    work[blank] = 0.0
    limit = clip * np.asarray(noise)[None, :]
    continuum = median_rows(work)
    # Line channels are replaced by the running estimate (not removed), so that plain, fast
    # medians can be used; a few passes settle on the median of the line-free channels. A pixel
    # without line (or blank) channels keeps its first median: only the others are recomputed.
    line = blank.copy()
    for iteration in range(iterations):
        new_line = blank | (work > continuum[:, None] + limit)
        if iteration > 0 and not (new_line & ~line).any():
            break
        line = new_line
        rows = np.flatnonzero(line.any(axis=1))
        continuum[rows] = median_rows(np.where(line[rows], continuum[rows, None], work[rows]))
    used = np.sum(~line, axis=1)
    continuum = np.where(used > 0, continuum, np.nan)
    sigma = 1.2533 * np.median(noise) / np.sqrt(np.maximum(used, 1))
    continuum = np.where(np.isfinite(continuum) & (np.abs(continuum) >= significance * sigma), continuum, 0.0)
    return continuum.astype(np.float32).reshape(spatial)


def usable_noise(noise):
    """Per-channel noise with unusable entries (NaN, 0) replaced by the median of the others."""
    noise = np.asarray(noise, dtype=float)
    return np.where(np.isfinite(noise) & (noise > 0), noise, np.nanmedian(noise))


def _smoothed(cube, noise, valid, continuum, kernel):
    """Continuum-subtracted channels over their noise (0 where invalid), and the same
    correlated with the beam ``kernel``; both ``(n_chan, ny, nx)`` float32."""
    channel_snr = cube - continuum[None]
    np.divide(channel_snr, noise[:, None, None], out=channel_snr)
    channel_snr[~(np.isfinite(channel_snr) & valid[None])] = 0.0
    smoothed = fftconvolve(channel_snr, kernel[None], mode="same", axes=(1, 2)).astype(np.float32)
    return channel_snr, smoothed


def _as_float32(data):
    return np.where(np.isfinite(data), data, np.nan).astype(np.float32)


def signal_to_noise(
    data,
    noise,
    valid,
    *,
    beam_major_pix,
    beam_minor_pix,
    beam_pa_deg,
    widths=DEFAULT_WIDTHS,
    continuum=None,
    plane_noise=None,
):
    """Normalise, remove the continuum and apply the spatial and spectral matched filters.

    Parameters
    ----------
    data : `numpy.ndarray`
        ``(n_chan, ny, nx)`` Jy/beam, NaN where invalid.
    noise : `numpy.ndarray`
        ``(n_chan,)`` robust noise per channel (Jy/beam).
    valid : `numpy.ndarray`
        ``(ny, nx)`` pixels with data.
    beam_major_pix, beam_minor_pix, beam_pa_deg : float
        Restoring beam (pixels, degrees east of north).
    widths : sequence of int
        Spectral filter widths in channels.
    continuum : `numpy.ndarray`, optional
        ``(ny, nx)`` continuum (Jy/beam), as `estimate_continuum` gives it; default: estimated
        from ``data``.
    plane_noise : `numpy.ndarray`, optional
        ``(len(widths), n_chan)`` robust noise of every summed plane (S/N units), as
        `filtered_plane_noise` gives it over a whole image of which ``data`` is a part; default:
        measured on ``data`` (over ``valid``).

    Returns
    -------
    result : `SignalToNoise`
    """
    cube = _as_float32(data)
    noise = usable_noise(noise)
    if continuum is None:
        continuum = estimate_continuum(cube, noise)
    kernel = beam_kernel(beam_major_pix, beam_minor_pix, beam_pa_deg)
    channel_snr, smoothed = _smoothed(cube, noise, valid, continuum, kernel)
    del cube
    n_chan = channel_snr.shape[0]
    best = np.full(channel_snr.shape, -np.inf, dtype=np.float32)
    best_width = np.zeros(channel_snr.shape, dtype=np.int8)
    snr = np.empty_like(smoothed)
    for index, width in enumerate(widths):
        if width > n_chan:
            continue
        window_sum(smoothed, width, out=snr)
        sigma = robust_plane_noise(snr, valid) if plane_noise is None else plane_noise[index]
        sigma = np.asarray(sigma, dtype=np.float32)
        np.divide(snr, np.where(np.isfinite(sigma), sigma, np.inf)[:, None, None], out=snr)
        better = snr > best
        np.copyto(best, snr, where=better)
        best_width[better] = index
    best[:, ~valid] = 0.0
    return SignalToNoise(best, best_width, tuple(widths), channel_snr, continuum)


def filtered_plane_noise(
    data,
    noise,
    valid,
    continuum,
    *,
    beam_major_pix,
    beam_minor_pix,
    beam_pa_deg,
    widths=DEFAULT_WIDTHS,
    planes=slice(None),
    n_channels=None,
):
    """Robust noise of the matched filter's summed planes, as `signal_to_noise` measures it.

    ``data`` may be a block of consecutive channels of full images (a large cube read a block at
    a time) with ``max(widths) // 2`` channels on either side of the ``planes`` whose noise is
    wanted (fewer at the ends of the cube): the sums over those planes then hold every channel
    the whole cube's would.

    Parameters
    ----------
    data : `numpy.ndarray`
        ``(n, ny, nx)`` Jy/beam, NaN where invalid: whole images.
    noise : `numpy.ndarray`
        ``(n,)`` noise of those channels (Jy/beam): `usable_noise` of the whole cube's noise
        (the entries it replaces depend on every channel).
    valid : `numpy.ndarray`
        ``(ny, nx)`` pixels with data.
    continuum : `numpy.ndarray`
        ``(ny, nx)`` continuum (Jy/beam) of the whole cube (`estimate_continuum`).
    beam_major_pix, beam_minor_pix, beam_pa_deg : float
        Restoring beam (pixels, degrees east of north).
    widths : sequence of int
        Spectral filter widths in channels.
    planes : slice
        The channels of ``data`` to measure.
    n_channels : int, optional
        Channels of the whole cube (widths above it are not used); default ``len(data)``.

    Returns
    -------
    plane_noise : `numpy.ndarray`
        ``(len(widths), n_planes)`` float32 (S/N units); NaN for unused widths and planes
        without valid pixels.
    """
    n_channels = len(data) if n_channels is None else int(n_channels)
    kernel = beam_kernel(beam_major_pix, beam_minor_pix, beam_pa_deg)
    _, smoothed = _smoothed(_as_float32(data), np.asarray(noise, dtype=float), valid, continuum, kernel)
    wanted = range(len(data))[planes]
    out = np.full((len(widths), len(wanted)), np.nan, dtype=np.float32)
    summed = np.empty_like(smoothed)
    for index, width in enumerate(widths):
        if width <= n_channels:
            window_sum(smoothed, width, out=summed)
            out[index] = robust_plane_noise(summed[planes], valid)
    return out
