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
    "normalised_channels",
    "usable_noise",
    "blank_as_nan",
    "blank_channels",
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
    smoothed : `numpy.ndarray`
        ``(n_chan, ny, nx)`` ``channel_snr`` correlated with the beam (each width's filter is a
        window sum of it).
    plane_noise : `numpy.ndarray`
        ``(len(widths), n_chan)`` robust noise of each width's summed planes (NaN where a width
        is not used).
    valid : `numpy.ndarray`
        ``(ny, nx)`` pixels with data.
    """

    snr: np.ndarray
    best_width: np.ndarray
    widths: tuple
    channel_snr: np.ndarray
    continuum: np.ndarray
    smoothed: np.ndarray
    plane_noise: np.ndarray
    valid: np.ndarray

    def width_snr(self, index, out=None):
        """The whole S/N cube of filter ``widths[index]`` (0 at invalid pixels)."""
        out = window_sum(self.smoothed, self.widths[index], out=out)
        sigma = self.plane_noise[index]
        np.divide(out, np.where(np.isfinite(sigma), sigma, np.inf)[:, None, None].astype(np.float32), out=out)
        out[:, ~self.valid] = 0.0
        return out

    def width_snr_at(self, index, points):
        """The S/N of filter ``widths[index]`` at integer voxels ``points`` (``(m, 3)`` ``(z, y, x)``).

        The same values as `width_snr` (the window of ``w`` channels at ``z`` covers
        ``z - w // 2`` to ``z - w // 2 + w - 1``, zero beyond the band), for a few voxels.
        """
        points = np.asarray(points, dtype=int).reshape(-1, 3)
        width = self.widths[index]
        n_chan = self.smoothed.shape[0]
        z, y, x = points[:, 0], points[:, 1], points[:, 2]
        channels = z[:, None] - width // 2 + np.arange(width)[None, :]
        inside = (channels >= 0) & (channels < n_chan)
        values = self.smoothed[np.clip(channels, 0, n_chan - 1), y[:, None], x[:, None]]
        total = np.sum(np.where(inside, values, 0.0), axis=1, dtype=np.float64)
        sigma = self.plane_noise[index, z]
        snr = np.where(np.isfinite(sigma), total / np.where(np.isfinite(sigma), sigma, 1.0), 0.0)
        return np.where(self.valid[y, x], snr, 0.0)


def estimate_continuum(cube, noise, *, clip=2.5, iterations=5, significance=3.0, margin=1):
    """Per-pixel continuum (Jy/beam): median over the channels free of line emission.

    A plain median over channels is biased up where lines fill much of the band (it then eats
    into the lines, and into every other line at the same position): channels more than
    ``clip`` noise above the running estimate, and ``margin`` channels either side of them
    (the line's wings), are dropped and the median of the others recomputed, until no channel
    is added. The noise is the channel's, scaled up where the pixel's spectrum is rougher than
    that (the robust rms of its channel-to-channel differences), so that a noisier part of the
    field is not clipped as if it were line emission. Estimates below
    ``significance`` times their own noise are set to zero, so that line-only sources keep
    their full lines.

    A line of peak 36 times the noise and FWHM 15 of 64 channels raised the continuum of an
    earlier version (which replaced line channels by the running estimate rather than dropping
    them) by 1.9 times the noise; here by less than 0.01 (and a continuum of 3 under it comes
    out 0.3 high).

    Parameters
    ----------
    cube : `numpy.ndarray`
        ``(n_chan, ny, nx)`` Jy/beam, NaN where invalid.
    noise : `numpy.ndarray`
        ``(n_chan,)`` noise per channel (Jy/beam).
    clip : float
        Channels this many times their noise above the estimate are line channels.
    iterations : int
        Most passes of clipping.
    significance : float
        Smallest continuum kept, in units of the noise of the median.
    margin : int
        Channels either side of a line channel also dropped (its wings).

    Returns
    -------
    continuum : `numpy.ndarray`
        ``(ny, nx)`` float32, Jy/beam.
    """
    n_chan, spatial = cube.shape[0], cube.shape[1:]
    pixels = np.reshape(cube, (n_chan, -1))
    noise = np.asarray(noise)
    sigma_scale = 1.2533 * np.median(noise)
    # Each pixel's estimate uses its own spectrum only: blocks of pixels bound the work arrays.
    continuum = np.empty(pixels.shape[1], dtype=np.float32)
    for start in range(0, pixels.shape[1], CONTINUUM_BLOCK_PIXELS):
        block = slice(start, start + CONTINUUM_BLOCK_PIXELS)
        continuum[block] = _pixel_continuum(
            pixels[:, block], noise, sigma_scale, clip, iterations, significance, margin
        )
    return continuum.reshape(spatial)


#: Pixels whose continuum is estimated at once (`estimate_continuum`).
CONTINUUM_BLOCK_PIXELS = 8192


def _roughness(work):
    """Robust rms of the channel-to-channel differences of each row of ``work`` (``(n_pixels,
    n_chan)``, blank channels 0: they make a spectrum look smoother, never rougher)."""
    if work.shape[1] < 2:
        return np.zeros(len(work), dtype=np.float32)
    return (1.4826 / np.sqrt(2) * median_rows(np.abs(np.diff(work, axis=1)))).astype(np.float32)


def _pixel_continuum(pixels, noise, sigma_scale, clip, iterations, significance, margin=1):
    """`estimate_continuum` of the ``(n_chan, n_pixels)`` spectra ``pixels``."""
    # (pixels, channels): medians along the contiguous axis are about twice as fast.
    work = np.ascontiguousarray(pixels.T, dtype=np.float32)
    blank = ~np.isfinite(work)
    work[blank] = 0.0
    # Where a spectrum is rougher than the channels' noise says (a noisier part of the field:
    # a mosaic, a primary-beam-corrected cube), its noise is scaled up to its roughness; never
    # down (channels correlated by the correlator make every spectrum look smoother).
    local = np.maximum(_roughness(work) / np.float32(np.median(noise)), np.float32(1.0))
    limit = clip * noise[None, :] * local[:, None]
    continuum = median_rows(work)
    # A pixel without line (or blank) channels keeps its first median, and a pixel stops once
    # a pass adds no line channel to it: each pixel's result depends on its own spectrum only.
    line = blank.copy()
    active = np.arange(len(work))
    for iteration in range(iterations):
        new_line = _widened(work[active] > continuum[active, None] + limit[active], margin) | blank[active]
        if iteration > 0:
            grew = (new_line & ~line[active]).any(axis=1)
            active, new_line = active[grew], new_line[grew]
            if not len(active):
                break
        line[active] = new_line
        rows = active[new_line.any(axis=1)]
        continuum[rows] = _median_outside(work[rows], line[rows])
    used = np.sum(~line, axis=1)
    continuum = np.where(used > 0, continuum, np.nan)
    sigma = sigma_scale * local / np.sqrt(np.maximum(used, 1))
    continuum = np.where(np.isfinite(continuum) & (np.abs(continuum) >= significance * sigma), continuum, 0.0)
    return continuum.astype(np.float32)


def _widened(mask, margin):
    """``mask`` (rows of channels) with ``margin`` channels either side of each True also True.

    `scipy.ndimage.binary_dilation` with a ``(1, 2 * margin + 1)`` structure gives the same,
    about ten times slower on these blocks (7.5 against 0.8 ms for 8192 x 128).
    """
    out = mask.copy()
    for shift in range(1, margin + 1):
        out[:, shift:] |= mask[:, :-shift]
        out[:, :-shift] |= mask[:, shift:]
    return out


def _median_outside(values, excluded):
    """The median of every row of ``values`` over its entries not ``excluded`` (NaN if none).

    Written for speed (numpy has no per-row masked median short of sorting every row): the
    excluded entries become -inf and +inf in equal numbers, with one more column of them where
    their count is odd, so that one plain median per row (`median_rows`) is the median of the
    rest.
    """
    n_rows, n = values.shape
    out = np.full(n_rows, np.nan, dtype=values.dtype)
    count = excluded.sum(axis=1)
    for odd in (0, 1):
        rows = np.flatnonzero(count % 2 == odd)
        if not len(rows):
            continue
        mask = excluded[rows]
        if odd:  # one more excluded column, so that an even number of them straddle the median
            mask = np.concatenate([mask, np.ones((len(rows), 1), dtype=bool)], axis=1)
            row_values = np.concatenate([values[rows], np.zeros((len(rows), 1), values.dtype)], axis=1)
        else:
            row_values = values[rows]
        half = mask.sum(axis=1, keepdims=True) // 2
        fill = np.where(np.cumsum(mask, axis=1) <= half, -np.inf, np.inf).astype(values.dtype)
        with np.errstate(invalid="ignore"):  # a row without a kept entry: -inf + inf
            median = median_rows(np.where(mask, fill, row_values))
        out[rows] = np.where(count[rows] < n, median, np.nan)
    return out


def usable_noise(noise):
    """Per-channel noise with unusable entries (NaN, 0) replaced by the median of the others."""
    noise = np.asarray(noise, dtype=float)
    return np.where(np.isfinite(noise) & (noise > 0), noise, np.nanmedian(noise))


def blank_as_nan(noise):
    """Per-channel noise with unusable entries (NaN, 0, negative) as NaN: the blank channels,
    which `~deepfocus.detection.lines.fit_line` leaves out."""
    noise = np.asarray(noise, dtype=float)
    return np.where(np.isfinite(noise) & (noise > 0), noise, np.nan)


def blank_channels(noise):
    """The channels without usable noise (bool, ``(n_chan,)``): blank in the whole cube when
    ``noise`` is a cube's (or a tile's, which carries the whole cube's)."""
    return ~np.isfinite(blank_as_nan(noise))


#: Planes filtered per FFT call: bounds the transient float64/complex work arrays of
#: `scipy.signal.fftconvolve` (about 30 bytes per voxel of the block) to a few planes.
FFT_BLOCK_PLANES = 8


def normalised_channels(data, noise, valid, continuum):
    """Continuum-subtracted channels over their noise, 0 where invalid (float32).

    Element by element, so any part of a cube (a block of channels, the spectra of a few
    pixels) gets the whole cube's values.

    Parameters
    ----------
    data : `numpy.ndarray`
        ``(n_chan, ...)`` Jy/beam, NaN where invalid (the trailing axes are pixels: an image,
        or a list of pixels).
    noise : `numpy.ndarray`
        ``(n_chan,)`` noise of every channel (Jy/beam), as `usable_noise` gives it.
    valid : `numpy.ndarray`
        Bool over the trailing axes: pixels with data.
    continuum : `numpy.ndarray`
        Over the trailing axes: the continuum (Jy/beam).

    Returns
    -------
    channel_snr : `numpy.ndarray`
        ``data``'s shape, float32.
    """
    channel_snr = np.asarray(data, dtype=np.float32) - continuum[None]
    np.divide(channel_snr, np.reshape(noise, (-1,) + (1,) * (channel_snr.ndim - 1)), out=channel_snr)
    channel_snr[~(np.isfinite(channel_snr) & valid[None])] = 0.0
    return channel_snr


def _smoothed(cube, noise, valid, continuum, kernel):
    """Continuum-subtracted channels over their noise (0 where invalid), and the same
    correlated with the beam ``kernel``; both ``(n_chan, ny, nx)`` float32."""
    channel_snr = normalised_channels(cube, noise, valid, continuum)
    smoothed = np.empty_like(channel_snr)
    # Each plane is filtered on its own, so blocks of planes give the whole cube's values.
    for start in range(0, len(channel_snr), FFT_BLOCK_PLANES):
        block = slice(start, start + FFT_BLOCK_PLANES)
        smoothed[block] = fftconvolve(channel_snr[block], kernel[None], mode="same", axes=(1, 2))
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
    used_noise = np.full((len(widths), n_chan), np.nan, dtype=np.float32)
    for index, width in enumerate(widths):
        if width > n_chan:
            continue
        window_sum(smoothed, width, out=snr)
        sigma = robust_plane_noise(snr, valid) if plane_noise is None else plane_noise[index]
        sigma = np.asarray(sigma, dtype=np.float32)
        used_noise[index] = sigma
        np.divide(snr, np.where(np.isfinite(sigma), sigma, np.inf)[:, None, None], out=snr)
        better = snr > best
        np.copyto(best, snr, where=better)
        best_width[better] = index
    best[:, ~valid] = 0.0
    return SignalToNoise(
        best, best_width, tuple(widths), channel_snr, continuum, smoothed, used_noise, np.asarray(valid)
    )


def filtered_plane_noise(
    blocks,
    noise,
    valid,
    continuum,
    *,
    beam_major_pix,
    beam_minor_pix,
    beam_pa_deg,
    widths=DEFAULT_WIDTHS,
):
    """Robust noise of the matched filter's summed planes, as `signal_to_noise` measures it.

    The cube may come a block of consecutive channels at a time (a cube larger than memory):
    the window sums run across the blocks, keeping the last ``max(widths)`` beam-filtered
    planes, so every summed plane is the one the whole cube gives (bit for bit) and every
    channel is read and filtered once.

    Parameters
    ----------
    blocks : `numpy.ndarray` or iterable of `numpy.ndarray`
        The cube ``(n_chan, ny, nx)``, or its consecutive blocks of channels ``(k, ny, nx)`` in
        order (Jy/beam, NaN where invalid; whole images).
    noise : `numpy.ndarray`
        ``(n_chan,)`` noise of every channel of the cube (Jy/beam), as `usable_noise` gives it.
    valid : `numpy.ndarray`
        ``(ny, nx)`` pixels with data.
    continuum : `numpy.ndarray`
        ``(ny, nx)`` continuum (Jy/beam) of the cube (`estimate_continuum`).
    beam_major_pix, beam_minor_pix, beam_pa_deg : float
        Restoring beam (pixels, degrees east of north).
    widths : sequence of int
        Spectral filter widths in channels.

    Returns
    -------
    plane_noise : `numpy.ndarray`
        ``(len(widths), n_chan)`` float32 (S/N units): the ``plane_noise`` input of
        `signal_to_noise`; NaN for widths above ``n_chan`` and planes without valid pixels.
    """
    noise = np.asarray(noise, dtype=float)
    n_chan = len(noise)
    if isinstance(blocks, np.ndarray):
        blocks = (blocks,)
    kernel = beam_kernel(beam_major_pix, beam_minor_pix, beam_pa_deg)
    sums = _StreamedWindowSums(widths, n_chan, valid.shape)
    out = np.full((len(widths), n_chan), np.nan, dtype=np.float32)

    def measure(results):
        for index, z, plane in results:
            out[index, z] = robust_plane_noise(plane[None], valid)[0]

    z = 0
    for block in blocks:
        k = len(block)
        _, smoothed = _smoothed(_as_float32(block), noise[z : z + k], valid, continuum, kernel)
        for plane in smoothed:
            measure(sums.push(plane))
        z += k
    if z != n_chan:
        raise ValueError(f"the blocks hold {z} channels, the noise {n_chan}")
    measure(sums.flush())
    return out


class _StreamedWindowSums:
    """`window_sum` of every width over planes that arrive one at a time, in order.

    ``push`` takes the next plane and returns the summed planes it completes, ``flush`` those
    left at the end, as ``(width index, channel, float32 plane)``. The operations on each running
    float64 sum are `window_sum`'s, in its order, so the planes are identical to its.
    """

    def __init__(self, widths, n_chan, shape):
        self.widths = [(i, w) for i, w in enumerate(widths) if w <= n_chan]
        self.n_chan = n_chan
        self.depth = max([w for _, w in self.widths], default=1)
        self.ring = np.zeros((self.depth,) + tuple(shape), dtype=np.float32)  # the last `depth` planes
        self.totals = {i: np.zeros(shape, dtype=np.float64) for i, w in self.widths if w > 1}
        self.z = 0  # the next plane to arrive

    def _step(self, plane):
        z, done = self.z, []
        for index, width in self.widths:
            if width == 1:
                if plane is not None:
                    done.append((index, z, plane))
                continue
            total = self.totals[index]
            if plane is not None:
                total += plane
            if z - width >= 0:
                total -= self.ring[(z - width) % self.depth]
            out = z - (width - 1 - width // 2)  # the plane whose window ends with plane z
            if 0 <= out < self.n_chan:
                done.append((index, out, total.astype(np.float32)))
        if plane is not None:
            self.ring[z % self.depth] = plane
        self.z += 1
        return done

    def push(self, plane):
        return self._step(plane)

    def flush(self):
        done = []
        while self.z < self.n_chan + self.depth:
            done += self._step(None)
        return done
