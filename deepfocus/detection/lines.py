"""Finding a candidate's line in its spectrum: the spectral network, or a Gaussian fit."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from astropy.modeling import fitting, models

__all__ = [
    "bridge_blank_channels",
    "fit_line",
    "channel_peak",
    "MIN_FWHM",
    "network_lines",
    "mask_runs",
    "split_at_valleys",
    "split_shared_runs",
    "repeated_lines",
    "VALLEY_DEPTH",
    "SHARED_RUN_SEPARATION",
    "SHARED_RUN_DROP",
]

#: A run of line channels is two lines where the denoised spectrum between two maxima falls
#: below this fraction of the lower one. 0.5 cut too few: the lines of two sources 0.6 beam
#: apart, 15 channels apart (FWHM 10), left a valley at 0.56 of the lower maximum and came
#: out as one source. 0.6 and 0.7 split that pair and changed nothing else on three sets of
#: validation and test cubes, whose lines are all Gaussian (one maximum). Double-horned lines
#: (rotating discs; ``benchmarks/double_horn.py``) stay one source at 0.5 and 0.6 for bright
#: horns of FWHM 8 channels with dips down to 0.42 of their peaks; faint horns of FWHM 12 are
#: cut in two in 1 of 3 runs at a dip of 0.58 at both depths, and at 0.42 in 2 of 3 at 0.5 and
#: 3 of 3 at 0.6.
VALLEY_DEPTH = 0.6
#: Two candidates within a beam whose denoised spectra peak this many channels apart or more in
#: one run of line channels hold two lines (the candidate stage's saddle test has already kept
#: them apart): the run is cut between the peaks. Two blended lines 1.3 FWHMs apart leave a
#: shoulder, not a valley, in either spectrum; on three sets of validation cubes this recovered
#: 5 blended sources of S/N 8-14 (their brighter partners' fluxes, which had taken in both lines,
#: came within 6 %) and added no false one.
SHARED_RUN_SEPARATION = 4
#: ... and only where each of the two spectra, halfway between the peaks, has fallen below this
#: fraction of its own peak: two noisy peaks on the flat top of one faint line are not two lines
#: (without it, a faint line of the benchmark's test cubes came out as two sources; the
#: validation sets are the same with it).
SHARED_RUN_DROP = 0.9

_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: Narrowest line FWHM a fit may return (channels): a narrower line is unresolved, and a Gaussian
#: narrower than a channel sampled at channel centres between two of them needs an amplitude
#: several times the data's to fit them (a one-channel noise spike came out at S/N 10).
MIN_FWHM = 1.0


def channel_peak(amplitude, mean, sigma, n_chan):
    """Largest mean of a Gaussian line over one channel (channel ``c`` spans ``c -/+ 0.5``): the
    per-channel peak of a line as the truth catalogues define it.

    Parameters
    ----------
    amplitude, mean, sigma : float
        The Gaussian's peak value, centre and standard deviation (channels).
    n_chan : int
        Channels of the spectrum.
    """
    from scipy.special import erf

    edges = (np.arange(n_chan + 1) - 0.5 - mean) / (np.sqrt(2.0) * sigma)
    share = np.diff(0.5 * (1.0 + erf(edges))).max()
    return float(amplitude * sigma * np.sqrt(2.0 * np.pi) * share)


def fit_line(spectrum, z_guess, width_guess, noise=None, *, limits=None):
    """Least-squares Gaussian line of a continuum-free spectrum in S/N units.

    Parameters
    ----------
    spectrum : `numpy.ndarray`
        ``(n_chan,)`` spectrum divided by the per-channel noise.
    z_guess : float
        Channel of the line (e.g. the matched-filter peak).
    width_guess : float
        Line width guess (channels, e.g. the matched-filter width).
    noise : `numpy.ndarray`, optional
        ``(n_chan,)`` the per-channel noise the spectrum was divided by (any scale). Given, the
        line is fitted in flux units (the spectrum times the noise, weighted by its inverse): a
        bright line's sidelobes raise the noise measured in its own channels (by 20 % at the
        peak of an S/N 40 line), which flattens an S/N spectrum and broadened its fitted FWHM
        by about 6 %. Channels whose noise is NaN (blank channels) are left out of the fit.
    limits : tuple of float, optional
        ``(first, last)``: the fit uses no channel outside them (e.g. a second line's channels).

    Returns
    -------
    line : dict
        ``z_centroid``, ``fwhm`` (channels, at least `MIN_FWHM`), ``peak`` (S/N of the fitted
        line's brightest channel, `channel_peak`), ``z_min`` and ``z_max`` (centre
        -/+ one FWHM, clipped to the band), ``fitted`` (False when the fit failed and moments
        were used).
    """
    spectrum = np.asarray(spectrum, dtype=float)
    n = len(spectrum)
    channels = np.arange(n, dtype=float)
    half = max(3.0, 2.0 * width_guess)
    first, last = (-np.inf, np.inf) if limits is None else limits
    sel = (channels >= max(z_guess - half, first)) & (channels <= min(z_guess + half, last))
    usable = np.isfinite(spectrum)
    if noise is None:
        scale = np.ones(n)
    else:
        noise = np.asarray(noise, dtype=float)
        usable &= np.isfinite(noise) & (noise > 0)
        scale = noise / np.median(noise[usable]) if usable.any() else np.ones(n)
    scale = np.where(usable, scale, 1.0)
    sel &= usable
    if sel.sum() < 3:  # too few channels with data to fit or take moments of
        sel = (channels >= max(z_guess - 1, first)) & (channels <= min(z_guess + 1, last)) & usable
    x, y = channels[sel], spectrum[sel]
    sigma0 = max(width_guess / _FWHM, 0.5, MIN_FWHM / _FWHM)
    flux = y * scale[sel]
    init = models.Gaussian1D(amplitude=float(np.max(flux, initial=0.1)), mean=z_guess, stddev=sigma0)
    init.mean.bounds = (max(0.0, z_guess - half, first), min(n - 1.0, z_guess + half, last))
    init.stddev.bounds = (MIN_FWHM / _FWHM, n / 2)
    fitted = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fitting.TRFLSQFitter()(init, x, flux, weights=1 / scale[sel], maxiter=100)
        z, sigma = float(fit.mean.value), float(abs(fit.stddev.value))
        amplitude = channel_peak(
            float(fit.amplitude.value), float(fit.mean.value), abs(float(fit.stddev.value)), n
        )
        peak = amplitude / float(np.interp(z, channels, scale))  # back to S/N
        if not (np.isfinite(z) and np.isfinite(sigma) and peak > 0):
            raise ValueError("non-physical fit")
    except Exception:
        fitted = False
        w = np.clip(y, 0, None)
        z = float(np.sum(w * x) / max(np.sum(w), 1e-9)) if np.sum(w) > 0 else float(z_guess)
        sigma, peak = sigma0, float(np.max(y, initial=0.0))
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


def split_at_valleys(run, spectrum, *, depth=VALLEY_DEPTH, min_length=2):
    """Split a run of line channels where the spectrum between two of its maxima dips deeply.

    The spectral network marks the channels of blended lines (two sources a beam apart, or two
    lines of one source) as one run; its denoised spectrum still shows two maxima with a valley
    between them. The run is cut at every valley lower than ``depth`` times the lower of its
    two neighbouring maxima (the spectrum smoothed over 3 channels first).

    Parameters
    ----------
    run : tuple of int
        ``(first, last)`` channel of the run.
    spectrum : `numpy.ndarray`
        ``(n_chan,)`` denoised spectrum (S/N units).
    depth : float
        Largest valley-to-maximum ratio that separates two lines.
    min_length : int
        Shortest piece (channels); shorter pieces are not cut off.

    Returns
    -------
    runs : list of tuple
        The pieces, in channel order.
    """
    from scipy.ndimage import uniform_filter1d

    first, last = run
    values = uniform_filter1d(np.asarray(spectrum[first : last + 1], dtype=float), 3, mode="nearest")
    n = len(values)
    maxima = [
        i
        for i in range(n)
        if (i == 0 or values[i] >= values[i - 1]) and (i == n - 1 or values[i] > values[i + 1])
    ]
    pieces, start = [], first
    for a, b in zip(maxima[:-1], maxima[1:], strict=True):
        lower = min(values[a], values[b])
        valley = a + int(np.argmin(values[a : b + 1]))
        cut = first + valley
        if (
            lower > 0
            and values[valley] < depth * lower
            and cut - start >= min_length
            and last - cut >= min_length
        ):
            pieces.append((start, cut - 1))
            start = cut + 1
    pieces.append((start, last))
    return pieces


def split_shared_runs(
    pieces, spectrum, neighbours, *, separation=SHARED_RUN_SEPARATION, drop=SHARED_RUN_DROP
):
    """Cut runs of line channels between this candidate's line and its neighbours' lines.

    A run of the spectral network often covers the lines of two sources blended within a beam
    when their lines overlap, and `split_at_valleys` finds no valley in it: each spectrum peaks
    at its own source's line, with the other as a shoulder. Where a neighbour's spectrum peaks
    ``separation`` or more channels from this one's inside a run, and both spectra have fallen
    below ``drop`` times their own peak halfway between the peaks, the run is cut there.

    Parameters
    ----------
    pieces : list of tuple
        ``(first, last)`` runs of line channels of this candidate (`split_at_valleys`).
    spectrum : `numpy.ndarray`
        ``(n_chan,)`` this candidate's denoised spectrum, smoothed over 3 channels.
    neighbours : sequence of `numpy.ndarray`
        The same of the candidates within a beam of it.
    separation : int
        Smallest distance (channels) between the two peaks.
    drop : float
        Largest value of each spectrum halfway between the peaks, as a fraction of its peak.

    Returns
    -------
    pieces : list of tuple
        The runs after the cuts, in channel order.
    foreign : set of tuple
        The pieces cut off for a neighbour's line (not this candidate's own).
    """
    out, foreign = [], set()
    for first, last in pieces:
        peak = first + int(np.argmax(spectrum[first : last + 1]))
        lo, hi = first, last
        for other_spectrum in neighbours:
            other = first + int(np.argmax(other_spectrum[first : last + 1]))
            if not first < other < last or abs(other - peak) < separation:
                continue  # the neighbour's line is not inside this run, or is this line
            cut = (peak + other) // 2
            if spectrum[cut] > drop * spectrum[peak] or other_spectrum[cut] > drop * other_spectrum[other]:
                continue  # no drop between them: one line's flat top
            if other > peak:
                hi = min(hi, cut)
            else:
                lo = max(lo, cut + 1)
        if hi - lo < 1:
            out.append((first, last))
            continue
        before, after = (first, lo - 1), (hi + 1, last)
        for piece in (before, (lo, hi), after):
            if piece[1] >= piece[0]:
                out.append(piece)
                if piece != (lo, hi):
                    foreign.add(piece)
    return out, foreign


#: Spectra of 512 channels per spectral-network call: 57 MiB of activations (0.11 MiB per
#: channel, measured); longer spectra go in proportionally smaller batches (`spectral_batch`).
SPECTRAL_BATCH = 64


def spectral_batch(n_chan):
    """Spectra per spectral-network call for spectra of ``n_chan`` channels: `SPECTRAL_BATCH`
    up to 512 channels, fewer beyond, so that a batch's activations stay near 57 MiB."""
    return int(np.clip(SPECTRAL_BATCH * 512 // max(int(n_chan), 1), 1, SPECTRAL_BATCH))


def bridge_blank_channels(values, blank, *, axis=-1, copy=True):
    """``values`` with the ``blank`` channels between channels with data interpolated linearly
    from the nearest ones; blank channels beyond the first or last with data are left as they
    are (the band ends there).

    A blank channel holds 0 once NaN are zeroed: inside a line, the spectral network took that
    gap for the end of the line (one blank channel at a bright line's peak cut it in two and
    gave its fainter neighbour line its S/N), and line images lost the channel's flux. Values
    without a channel of data are returned as they are.

    Parameters
    ----------
    values : `numpy.ndarray`
        Spectra or a cube, the channels along ``axis``.
    blank : `numpy.ndarray`
        ``(n_chan,)`` bool, the channels without data.
    axis : int
        The channel axis of ``values``.
    copy : bool
        False: fill the blank channels of ``values`` (a float array) in place.

    Returns
    -------
    values : `numpy.ndarray`
    """
    values = np.array(values, copy=True) if copy else values
    blank = np.asarray(blank, dtype=bool)
    good = np.flatnonzero(~blank)
    if good.size in (0, blank.size):
        return values
    planes = np.moveaxis(values, axis, 0)  # a view: filling it fills ``values``
    for k in np.flatnonzero(blank):
        after = int(np.searchsorted(good, k))
        if after == 0 or after == good.size:
            continue  # beyond the first or last channel with data: the band ends there
        p, q = good[after - 1], good[after]
        t = (k - p) / (q - p)
        planes[k] = (1 - t) * planes[p] + t * planes[q]
    return values


def network_lines(spectra, model, *, batch=None, blank=None):
    """Line masks and denoised spectra from the spectral network.

    Parameters
    ----------
    spectra : `numpy.ndarray`
        ``(n, n_chan)`` spectra in S/N units.
    model : `torch.nn.Module`
        The spectral network (2 output channels: line logits, denoised spectrum).
    batch : int, optional
        Spectra per call (bounds the memory of the network's activations); default
        `spectral_batch` of the spectra's length.
    blank : `numpy.ndarray`, optional
        ``(n_chan,)`` bool, the channels without data: the network sees them interpolated
        between their neighbours (`bridge_blank_channels`).

    Returns
    -------
    probability : `numpy.ndarray`
        ``(n, n_chan)`` probability that a channel holds line emission.
    denoised : `numpy.ndarray`
        ``(n, n_chan)`` denoised spectra (S/N units).
    """
    if blank is not None:
        spectra = bridge_blank_channels(np.asarray(spectra, dtype=np.float32), blank)
    x = torch.from_numpy(np.nan_to_num(np.asarray(spectra, dtype=np.float32)))[:, None]
    batch = spectral_batch(x.shape[-1]) if batch is None else int(batch)
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            outs.append(model(x[start : start + batch]))
    out = torch.cat(outs).numpy() if outs else np.zeros((0, 2, x.shape[-1]), np.float32)
    return 1 / (1 + np.exp(-out[:, 0])), out[:, 1]


def repeated_lines(x, y, z, fwhm, snr, *, beam_pix, fraction=0.5):
    """Which lines repeat a brighter one: the same source found from two candidates.

    Candidates of one source found in different filters (or at two channels of one broad line)
    end, once their lines are measured, as rows within a beam of each other whose line centres
    lie within ``fraction`` of the wider line's FWHM (at least 2 channels).

    Parameters
    ----------
    x, y : array-like
        Positions (pixels).
    z, fwhm : array-like
        Line centres and FWHMs (channels).
    snr : array-like
        Brightness order (the matched-filter S/N of each row's candidate): a row repeats only
        a brighter one.
    beam_pix : float
        Beam major axis (pixels).
    fraction : float
        Largest centre offset, in FWHMs, of two rows of one line.

    Returns
    -------
    repeated : `numpy.ndarray` of bool
    """
    x, y, z, fwhm, snr = (np.asarray(v, dtype=float) for v in (x, y, z, fwhm, snr))
    repeated = np.zeros(len(x), dtype=bool)
    kept = []
    for i in np.argsort(-snr, kind="stable"):
        for j in kept:
            if np.hypot(x[i] - x[j], y[i] - y[j]) <= beam_pix and abs(z[i] - z[j]) <= fraction * max(
                fwhm[i], fwhm[j], 2.0
            ):
                repeated[i] = True
                break
        else:
            kept.append(i)
    return repeated
