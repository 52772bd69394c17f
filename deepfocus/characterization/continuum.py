"""A source's continuum in its cutout: which channels are free of lines, and whether the
continuum there is significant enough to subtract from a line image.

Shared by the characterizer, its fits among neighbours and its training samples, so that the
network sees at work the line images it learnt from.
"""

from __future__ import annotations

import numpy as np

__all__ = ["line_free_channels", "significant_continuum"]


def line_free_channels(has_data, windows, rows):
    """The channels with data outside the line windows of ``rows``: where a source's continuum
    is measured, so that a second line at its position is not taken for continuum.

    Parameters
    ----------
    has_data : `numpy.ndarray` of bool
        ``(n_chan,)`` channels that hold data.
    windows : array-like of int
        ``(n, 2)`` first and last channel of each line.
    rows : index
        Which ``windows`` to leave out (e.g. the source's and its neighbours').

    Returns
    -------
    off : `numpy.ndarray` of bool
        ``(n_chan,)`` the line-free channels with data.
    """
    off = has_data.copy()
    for first, last in np.asarray(windows, dtype=int)[rows]:
        off[first : last + 1] = False
    return off


def significant_continuum(block, off, noise, centre, beam_pix, continuum=None):
    """The per-pixel continuum of a cutout, or 0 when it is not significant (3 sigma) within
    half a beam of the centre: subtracting a continuum that is not there only adds the noise of
    the median to the line image.

    Parameters
    ----------
    block : `numpy.ndarray`
        ``(n_chan, size, size)`` cutout of the cube (Jy/beam).
    off : `numpy.ndarray` of bool
        ``(n_chan,)`` its line-free channels (`line_free_channels`); fewer than 3 give 0.
    noise : `numpy.ndarray`
        ``(n_chan,)`` noise per channel (Jy/beam).
    centre : float
        The cutout's centre pixel (both axes), on the source's catalogued position.
    beam_pix : float
        Beam major axis FWHM (pixels).
    continuum : `numpy.ndarray`, optional
        ``(size, size)`` the median of ``block`` over ``off`` where already computed.

    Returns
    -------
    continuum : `numpy.ndarray` or float
        The median of ``block`` over ``off`` (Jy/beam per channel), or 0.0.
    """
    if off.sum() < 3:
        return 0.0
    continuum = np.median(block[off], axis=0) if continuum is None else continuum
    sigma = np.sqrt(np.pi / 2) * np.median(noise[off]) / np.sqrt(off.sum())
    yy, xx = np.mgrid[: block.shape[1], : block.shape[2]]
    near = np.hypot(xx - centre, yy - centre) <= 0.5 * beam_pix
    return continuum if abs(float(continuum[near].mean())) >= 3 * sigma else 0.0
