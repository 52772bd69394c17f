"""Finding a candidate's line in its spectrum: the spectral network, or a Gaussian fit."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from astropy.modeling import fitting, models

__all__ = ["fit_line", "network_lines", "mask_runs"]

_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def fit_line(spectrum, z_guess, width_guess):
    """Least-squares Gaussian line of a continuum-free spectrum in S/N units.

    Parameters
    ----------
    spectrum : `numpy.ndarray`
        ``(n_chan,)`` spectrum divided by the per-channel noise.
    z_guess : float
        Channel of the line (e.g. the matched-filter peak).
    width_guess : float
        Line width guess (channels, e.g. the matched-filter width).

    Returns
    -------
    line : dict
        ``z_centroid``, ``fwhm`` (channels), ``peak`` (S/N), ``z_min`` and ``z_max`` (centre
        -/+ one FWHM, clipped to the band), ``fitted`` (False when the fit failed and moments
        were used).
    """
    n = len(spectrum)
    channels = np.arange(n, dtype=float)
    half = max(3.0, 2.0 * width_guess)
    sel = (channels >= z_guess - half) & (channels <= z_guess + half)
    x, y = channels[sel], np.nan_to_num(spectrum[sel])
    sigma0 = max(width_guess / _FWHM, 0.5)
    init = models.Gaussian1D(amplitude=max(float(np.max(y)), 0.1), mean=z_guess, stddev=sigma0)
    init.mean.bounds = (max(0.0, z_guess - half), min(n - 1.0, z_guess + half))
    init.stddev.bounds = (0.3, n / 2)
    fitted = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fitting.TRFLSQFitter()(init, x, y, maxiter=100)
        z, sigma, peak = float(fit.mean.value), float(abs(fit.stddev.value)), float(fit.amplitude.value)
        if not (np.isfinite(z) and np.isfinite(sigma) and peak > 0):
            raise ValueError("non-physical fit")
    except Exception:
        fitted = False
        w = np.clip(y, 0, None)
        z = float(np.sum(w * x) / max(np.sum(w), 1e-9)) if np.sum(w) > 0 else float(z_guess)
        sigma, peak = sigma0, float(np.max(y))
    fwhm = _FWHM * sigma
    return {
        "z_centroid": float(np.clip(z, 0, n - 1)),
        "fwhm": fwhm,
        "peak": peak,
        "z_min": int(np.clip(np.floor(z - fwhm), 0, n - 1)),
        "z_max": int(np.clip(np.ceil(z + fwhm), 0, n - 1)),
        "fitted": fitted,
    }


def mask_runs(mask, *, min_length=2, max_gap=1):
    """Contiguous runs of True in a 1-D mask (gaps of ``max_gap`` channels bridged)."""
    mask = np.asarray(mask, dtype=bool).copy()
    n = len(mask)
    # Bridge short gaps.
    idx = np.nonzero(mask)[0]
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if 1 < b - a <= max_gap + 1:
            mask[a:b] = True
    runs, start = [], None
    for k in range(n + 1):
        on = k < n and mask[k]
        if on and start is None:
            start = k
        elif not on and start is not None:
            if k - start >= min_length:
                runs.append((start, k - 1))
            start = None
    return runs


def network_lines(spectra, model, *, batch=256):
    """Line masks and denoised spectra from the spectral network.

    Parameters
    ----------
    spectra : `numpy.ndarray`
        ``(n, n_chan)`` spectra in S/N units.
    model : `torch.nn.Module`
        The spectral network (2 output channels: line logits, denoised spectrum).

    Returns
    -------
    probability : `numpy.ndarray`
        ``(n, n_chan)`` probability that a channel holds line emission.
    denoised : `numpy.ndarray`
        ``(n, n_chan)`` denoised spectra (S/N units).
    """
    x = torch.from_numpy(np.nan_to_num(np.asarray(spectra, dtype=np.float32)))[:, None]
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            outs.append(model(x[start : start + batch]))
    out = torch.cat(outs).numpy() if outs else np.zeros((0, 2, x.shape[-1]), np.float32)
    return 1 / (1 + np.exp(-out[:, 0])), out[:, 1]
