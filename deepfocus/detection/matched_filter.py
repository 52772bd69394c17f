"""Classical stages of the detector: S/N normalisation, continuum removal and matched filters.

These steps carry over unchanged from simulations to CASA cubes (DESIGN section 2): every
channel is divided by its own robust noise; a per-pixel continuum (median over channels) is
removed; the cube is correlated with the beam in space and summed over several line widths in
frequency, each result renormalised by its own robust noise (which accounts for the
correlated noise of dirty images without modelling it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from scipy.ndimage import uniform_filter1d
from scipy.signal import fftconvolve

__all__ = ["SignalToNoise", "signal_to_noise", "beam_kernel", "robust_plane_noise", "DEFAULT_WIDTHS"]

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
        centre = np.median(values, axis=1, keepdims=True)
        noise = 1.482602218505602 * np.median(np.abs(values - centre), axis=1)
    return np.where(np.isfinite(noise) & (noise > 0), noise, np.nan)


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
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels (blank borders)
        blank = ~np.isfinite(cube)
        work = np.where(blank, 0.0, cube).astype(np.float32)
        continuum = np.median(work, axis=0)
        # Line channels are replaced by the running estimate (not removed), so that plain,
        # fast medians can be used; a few passes settle on the median of the line-free channels.
        line = blank.copy()
        for _ in range(iterations):
            new_line = blank | (work > continuum[None] + clip * noise[:, None, None])
            if not (new_line & ~line).any() and _ > 0:
                break
            line = new_line
            continuum = np.median(np.where(line, continuum[None], work), axis=0)
        used = np.sum(~line, axis=0)
        continuum = np.where(used > 0, continuum, np.nan)
    sigma = 1.2533 * np.median(noise) / np.sqrt(np.maximum(used, 1))
    continuum = np.where(np.isfinite(continuum) & (np.abs(continuum) >= significance * sigma), continuum, 0.0)
    return continuum.astype(np.float32)


def signal_to_noise(
    data, noise, valid, *, beam_major_pix, beam_minor_pix, beam_pa_deg, widths=DEFAULT_WIDTHS
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

    Returns
    -------
    result : `SignalToNoise`
    """
    cube = np.where(np.isfinite(data), data, np.nan).astype(np.float32)
    noise = np.where(np.isfinite(noise) & (noise > 0), noise, np.nanmedian(noise))
    continuum = estimate_continuum(cube, noise)
    channel_snr = (cube - continuum[None]) / noise[:, None, None]
    channel_snr = np.where(np.isfinite(channel_snr) & valid[None], channel_snr, 0.0).astype(np.float32)
    kernel = beam_kernel(beam_major_pix, beam_minor_pix, beam_pa_deg)
    smoothed = fftconvolve(channel_snr, kernel[None], mode="same", axes=(1, 2)).astype(np.float32)
    best = np.full(channel_snr.shape, -np.inf, dtype=np.float32)
    best_width = np.zeros(channel_snr.shape, dtype=np.int8)
    n_chan = channel_snr.shape[0]
    for index, width in enumerate(widths):
        if width > n_chan:
            continue
        # Running mean over `width` channels centred on each channel (edges: shorter windows
        # are not used, the filter simply reflects).
        summed = uniform_filter1d(smoothed, size=width, axis=0, mode="constant") * width
        sigma = robust_plane_noise(summed, valid)
        snr = summed / np.where(np.isfinite(sigma), sigma, np.inf)[:, None, None]
        better = snr > best
        best = np.where(better, snr, best)
        best_width = np.where(better, index, best_width).astype(np.int8)
    best = np.where(valid[None], best, 0.0).astype(np.float32)
    return SignalToNoise(best, best_width, tuple(widths), channel_snr, continuum)
