"""Imaging of visibilities as CASA ``tclean`` does it: weighting, gridding and the PSF.

The PSF is what decides the dirty-beam sidelobes that the networks must learn to reject, so this
module follows ``tclean``'s standard gridder closely: imaging weights (natural, uniform, Briggs
with CASA's robustness definition) computed on the image's uv grid, a prolate-spheroidal gridding
kernel with a support of three cells on each side, a padded FFT grid (padding 1.2) and division by
the gridding correction function. Written by hand because no maintained Python library grids
visibilities with CASA's conventions; the spheroidal function is Schwab's (1984) rational
approximation, the same one CASA and AIPS use.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..exceptions import InvalidInputError

__all__ = [
    "spheroidal",
    "good_fft_size",
    "imaging_weights",
    "grid_weights",
    "max_cell",
    "psf_from_uv",
]

_P = np.array(
    [
        [8.203343e-2, -3.644705e-1, 6.278660e-1, -5.335581e-1, 2.312756e-1],
        [4.028559e-3, -3.697768e-2, 1.021332e-1, -1.201436e-1, 6.412774e-2],
    ]
)
_Q = np.array([[1.0, 8.212018e-1, 2.078043e-1], [1.0, 9.599102e-1, 2.918724e-1]])

#: Half-width of the gridding kernel in uv cells (CASA's standard gridder).
KERNEL_SUPPORT = 3
#: Kernel samples per uv cell in CASA's tabulated convolution function.
_OVERSAMPLING = 100


def spheroidal(nu):
    """Prolate spheroidal function (m=6, alpha=1) of Schwab (1984), zero outside ``|nu| <= 1``.

    Parameters
    ----------
    nu : array-like
        Argument, the distance over the function's half-width.
    """
    nu = np.abs(np.asarray(nu, dtype=float))
    out = np.zeros_like(nu)
    for part, (lo, hi, end) in enumerate(((0.0, 0.75, 0.75), (0.75, 1.0 + 1e-12, 1.0))):
        sel = (nu >= lo) & (nu < hi)
        d = nu[sel] ** 2 - end**2
        out[sel] = np.polyval(_P[part][::-1], d) / np.polyval(_Q[part][::-1], d)
    return out


@lru_cache(maxsize=1)
def _kernel_table():
    """The gridding kernel tabulated every 1/100 cell, out to one cell past its support."""
    table = gridding_kernel(np.arange((KERNEL_SUPPORT + 1) * _OVERSAMPLING + 1) / _OVERSAMPLING)
    table.setflags(write=False)
    return table


def gridding_kernel(offset):
    """Gridding convolution function at ``offset`` uv cells: ``(1 - nu^2) * spheroidal(nu)``."""
    nu = np.asarray(offset, dtype=float) / KERNEL_SUPPORT
    return np.where(np.abs(nu) < 1, (1 - nu**2) * spheroidal(nu), 0.0)


def good_fft_size(n: float) -> int:
    """FFT grid size for a padded image of ``n`` pixels, chosen as CASA chooses it.

    The smallest even integer strictly above ``int(n - 0.5)`` whose only prime factors are 2, 3
    and 5 (``n`` is the padded size, e.g. ``1.2 * 256``; 256 pixels give a 320 grid).
    """
    m = int(n - 0.5) + 1
    m += m % 2
    while True:
        k = m
        for prime in (2, 3, 5):
            while k % prime == 0:
                k //= prime
        if k == 1:
            return m
        m += 2


def imaging_weights(u, v, natural, *, npix, cell, weighting="briggs", robust=0.5, specmode="cube"):
    """Imaging weights of visibilities as ``tclean`` computes them.

    Parameters
    ----------
    u, v : `numpy.ndarray`
        uv coordinates in wavelengths (one entry per visibility; the conjugate is implied).
    natural : `numpy.ndarray` or float
        Natural weights (1 / sigma^2), one per visibility or one for all.
    npix : int
        Image size in pixels (the density grid has this size, as CASA with ``npixels=0``).
    cell : float
        Image cell in radians.
    weighting : {'natural', 'uniform', 'briggs'}
        Weighting scheme.
    robust : float
        Briggs robustness (CASA definition; -2 is near uniform, +2 near natural).
    specmode : {'cube', 'mfs'}
        ``tclean``'s mode. Its cube imaging (per-channel weight density) places samples in
        the density grid by rounding, its ``mfs`` imaging by truncation; the two PSFs differ
        at the per-cent level in the sidelobes.

    Returns
    -------
    weights : `numpy.ndarray`
        Imaging weight of each visibility.
    """
    natural = np.broadcast_to(np.asarray(natural, dtype=float), np.shape(u)).copy()
    if weighting == "natural":
        return natural
    if weighting not in ("uniform", "briggs"):
        raise InvalidInputError(f"weighting must be 'natural', 'uniform' or 'briggs', not {weighting!r}")
    # CASA's density grid: the image's own uv grid (not the padded one), cells found in single
    # precision (rounded for cubes, truncated for mfs), each visibility counted at (u, v) and at
    # (-u, -v), and only cells 1..npix-1 used (visibilities elsewhere get zero weight).
    if specmode not in ("cube", "mfs"):
        raise InvalidInputError(f"specmode must be 'cube' or 'mfs', not {specmode!r}")
    scale = np.float32(npix * cell)
    u32, v32 = np.asarray(u, np.float32), np.asarray(v, np.float32)
    half = np.float32(npix // 2)
    pos_u = np.concatenate([(-scale * u32 + half), (scale * u32 + half)])
    pos_v = np.concatenate([(scale * v32 + half), (-scale * v32 + half)])
    if specmode == "cube":
        pos_u, pos_v = np.rint(pos_u), np.rint(pos_v)
    iu, iv = pos_u.astype(np.int64), pos_v.astype(np.int64)
    inside = (iu > 0) & (iu < npix) & (iv > 0) & (iv < npix)
    flat = np.where(inside, iv * npix + iu, 0)
    w2 = np.concatenate([natural, natural])
    density = np.bincount(flat[inside], weights=w2[inside], minlength=npix * npix)
    ok = inside[: len(u)]
    if not ok.any():
        # No visibility inside the grid (a cell far too large): all weights are zero, and the
        # Briggs normalisation below would be 0 / 0.
        return np.zeros_like(natural)
    local = np.where(ok, density[flat[: len(u)]], 0.0)
    if weighting == "uniform":
        return np.where(ok, natural / np.where(ok, local, 1.0), 0.0)
    f2 = (5.0 * 10.0 ** (-robust)) ** 2 / (np.sum(density**2) / np.sum(density))
    return np.where(ok, natural / (1.0 + local * f2), 0.0)


def grid_weights(u, v, weights, *, n_uv, du):
    """Grid real weights and their conjugates with the spheroidal kernel on an ``n_uv`` grid.

    Parameters
    ----------
    u, v : `numpy.ndarray`
        uv coordinates in wavelengths. ``u`` is towards east; the grid's first axis is v and its
        second axis is -u, so that the image's x axis increases towards the west as in a FITS
        image with a negative ``CDELT1``.
    weights : `numpy.ndarray`
        Weight of each sample.
    n_uv : int
        Grid size.
    du : float
        uv cell in wavelengths.

    Returns
    -------
    grid : `numpy.ndarray`
        ``(n_uv, n_uv)`` gridded weights, origin at ``n_uv // 2``.
    """
    # Only the samples themselves are gridded; the conjugates are added by point reflection.
    gu = -np.asarray(u) / du + n_uv // 2
    gv = np.asarray(v) / du + n_uv // 2
    base_u = np.rint(gu).astype(np.int64)
    base_v = np.rint(gv).astype(np.int64)
    taps = np.arange(-KERNEL_SUPPORT, KERNEL_SUPPORT + 1)
    # CASA tabulates the kernel every 1/100 cell and rounds the sub-cell offset to that table.
    table = _kernel_table()
    off_u = np.rint((base_u - gu) * _OVERSAMPLING).astype(np.int64)
    off_v = np.rint((base_v - gv) * _OVERSAMPLING).astype(np.int64)
    ku = table[np.abs(taps[None, :] * _OVERSAMPLING + off_u[:, None])]  # (n, 7)
    kv = table[np.abs(taps[None, :] * _OVERSAMPLING + off_v[:, None])]
    iu = base_u[:, None] + taps[None, :]
    iv = base_v[:, None] + taps[None, :]
    if iu.min() < 1 or iv.min() < 1 or iu.max() >= n_uv or iv.max() >= n_uv:
        raise InvalidInputError(
            "baselines reach beyond the uv grid: the cell is too large for the longest baseline "
            "(choose a smaller cell)"
        )
    flat = (iv[:, :, None] * n_uv + iu[:, None, :]).ravel()
    vals = ((np.asarray(weights)[:, None] * kv)[:, :, None] * ku[:, None, :]).ravel()
    grid = np.bincount(flat, weights=vals, minlength=n_uv * n_uv).reshape(n_uv, n_uv)
    # Index i reflects to n_uv - i about the origin at n_uv // 2 (n_uv is even).
    return grid + np.roll(grid[::-1, ::-1], 1, axis=(0, 1))


def max_cell(u, v, *, npix, padding=1.2) -> float:
    """The largest cell whose padded uv grid holds every sample with its gridding kernel.

    A sample ``(u, v)`` and the kernel's ``KERNEL_SUPPORT`` (3) cells on each side must fall inside
    the ``good_fft_size(npix * padding)`` grid that `psf_from_uv` uses (the condition that
    `grid_weights` checks), which needs ``max(|u|, |v|) * n_uv * cell < n_uv / 2 - 3.5``.

    Parameters
    ----------
    u, v : `numpy.ndarray`
        uv coordinates in wavelengths.
    npix : int
        Image size (square).
    padding : float
        FFT grid padding factor, as in `psf_from_uv`.

    Returns
    -------
    cell : float
        The largest cell in radians (infinite without baselines).
    """
    n_uv = good_fft_size(npix * padding)
    longest = max(np.max(np.abs(u), initial=0.0), np.max(np.abs(v), initial=0.0))
    if longest == 0:
        return np.inf
    return (n_uv / 2 - KERNEL_SUPPORT - 0.5) / (n_uv * longest)


def _round_down(value: float, digits: int = 3) -> float:
    """``value`` rounded down to ``digits`` significant figures (a limit quoted in a message)."""
    scale = 10.0 ** (np.floor(np.log10(value)) - digits + 1)
    return float(np.floor(value / scale) * scale)


def psf_from_uv(u, v, weights, *, npix, cell, padding=1.2):
    """Point spread function of weighted uv samples, gridded and corrected as ``tclean`` does.

    Parameters
    ----------
    u, v : `numpy.ndarray`
        uv coordinates in wavelengths.
    weights : `numpy.ndarray`
        Imaging weights (see `imaging_weights`).
    npix : int
        Output image size (square).
    cell : float
        Pixel size in radians.
    padding : float
        FFT grid padding factor (CASA default 1.2).

    Returns
    -------
    psf : `numpy.ndarray`
        ``(npix, npix)`` PSF normalised to 1 at the phase centre, pixel ``(npix // 2, npix // 2)``.
    """
    if npix < 8:
        raise InvalidInputError(f"image size must be at least 8 pixels, not {npix}")
    limit = max_cell(u, v, npix=npix, padding=padding)
    if cell > limit:
        raise InvalidInputError(
            f"the cell {np.degrees(cell) * 3600:.4g} arcsec is too large for the longest baseline: "
            f"choose a cell of at most {_round_down(np.degrees(limit) * 3600):.3g} arcsec"
        )
    n_uv = good_fft_size(npix * padding)
    du = 1.0 / (n_uv * cell)
    grid = grid_weights(u, v, weights, n_uv=n_uv, du=du)
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(grid))).real
    start = n_uv // 2 - npix // 2
    image = image[start : start + npix, start : start + npix]
    axis = (np.arange(npix) - npix // 2) / (n_uv / 2)
    correction = spheroidal(axis)
    image = image / correction[:, None] / correction[None, :]
    return image / image[npix // 2, npix // 2]
