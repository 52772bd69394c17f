"""Primary-beam correction of catalogue fluxes.

Sources are found and measured in the flat-noise image that ``tclean`` writes as ``.image``
(sky times the antennas' primary beam, noise the same everywhere), not in the ``.image.pbcor``
(noise rising towards the field edge, which a single noise per channel would misjudge). The
fluxes measured there are attenuated by the primary-beam gain at the source; dividing by the
gain (``tclean``'s ``.pb``) gives the sky's fluxes, as ``pbcor`` does for images.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..exceptions import DeepFocusWarning, InvalidInputError
from ..io.catalog import SourceFlag

__all__ = ["primary_beam_correct", "primary_beam_gain", "MIN_PRIMARY_BEAM_GAIN"]

#: Below this gain (CASA's default ``pblimit``) a flux is not corrected: the source is flagged
#: ``EDGE`` (at the primary-beam cut-off) and keeps its measured flux.
MIN_PRIMARY_BEAM_GAIN = 0.2
#: Largest gain accepted (a ``.pb`` peaks at 1; a little more allows rounding).
MAX_PRIMARY_BEAM_GAIN = 1.01


def _squeezed_shape(shape):
    """``shape`` without degenerate leading axes (Stokes; the one channel of an ``mfs`` image),
    keeping the last two."""
    shape = tuple(shape)
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape


def primary_beam_gain(pb, x, y, z, *, shape):
    """The primary-beam gain at pixels ``(x, y)`` in channels ``z`` (nearest pixel and channel).

    Parameters
    ----------
    pb : str, path-like or `numpy.ndarray`
        The gain: a FITS file (``tclean``'s ``.pb`` exported with ``exportfits``; degenerate
        leading axes are dropped) or an array, ``(n_chan, ny, nx)`` or one plane ``(ny, nx)``
        (e.g. an ``mfs`` image's) for every channel. Only the planes of the sources are read
        from a file.
    x, y, z : array-like
        0-based pixel column, row and channel (in the cube's own channel order).
    shape : tuple of int
        ``(n_chan, ny, nx)`` of the cube the catalogue was made from.

    Returns
    -------
    gain : `numpy.ndarray`
        NaN where the file or array has no finite value (CASA blanks the gain below ``pblimit``).

    Raises
    ------
    InvalidInputError
        The file cannot be read, or the gain's shape does not match the cube's.
    """
    n_chan, ny, nx = shape
    zi = np.clip(np.rint(np.asarray(z, dtype=float)).astype(int), 0, n_chan - 1)
    yi = np.clip(np.rint(np.asarray(y, dtype=float)).astype(int), 0, ny - 1)
    xi = np.clip(np.rint(np.asarray(x, dtype=float)).astype(int), 0, nx - 1)
    if isinstance(pb, (str, os.PathLike)):
        return _gain_from_file(pb, zi, yi, xi, shape)
    gain = np.asarray(pb, dtype=float)
    gain = gain.reshape(_squeezed_shape(gain.shape))
    _check_shape(gain.shape, shape, "the primary beam")
    if gain.ndim == 2:
        return gain[yi, xi]
    return gain[zi, yi, xi]


def _check_shape(gain_shape, shape, what):
    if tuple(gain_shape) not in (tuple(shape), tuple(shape[1:])):
        raise InvalidInputError(
            f"{what} has shape {tuple(gain_shape)}; the cube is {tuple(shape)} "
            "(channels, rows, columns): give the .pb of the same tclean run"
        )


def _gain_from_file(path, zi, yi, xi, shape):
    """The gain at the sources, reading only their planes (`astropy.io.fits` sections)."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            header = hdul[0].header
            naxis = int(header.get("NAXIS", 0))
            if naxis < 2:
                raise InvalidInputError(f"{path}: no image in the primary HDU")
            full = tuple(int(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
            gain_shape = _squeezed_shape(full)
            _check_shape(gain_shape, shape, str(path))
            lead = (0,) * (len(full) - len(gain_shape))
            section = hdul[0].section
            if len(gain_shape) == 2:
                plane = np.asarray(section[lead + (slice(None), slice(None))], dtype=float)
                return plane[yi, xi]
            gain = np.empty(len(zi))
            for z in np.unique(zi):
                here = zi == z
                plane = np.asarray(section[lead + (int(z), slice(None), slice(None))], dtype=float)
                gain[here] = plane[yi[here], xi[here]]
            return gain
    except InvalidInputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidInputError(f"cannot read the primary beam {path}: {exc}") from None


def primary_beam_correct(catalog, pb, *, shape, min_gain=MIN_PRIMARY_BEAM_GAIN):
    """Divide a catalogue's fluxes by the primary-beam gain at each source.

    Parameters
    ----------
    catalog : `~astropy.table.QTable`
        A characterised catalogue (``x_centroid``, ``y_centroid``, ``z_centroid``, ``flux``;
        ``continuum_flux`` and ``flags`` when present), in the channel order of the cube.
    pb : str, path-like or `numpy.ndarray`
        The gain (see `primary_beam_gain`).
    shape : tuple of int
        ``(n_chan, ny, nx)`` of the cube the catalogue was made from.
    min_gain : float
        Gains below this (or not finite) leave the fluxes as measured and set the ``EDGE`` flag.

    Returns
    -------
    catalog : `~astropy.table.QTable`
        A copy with ``flux`` and ``continuum_flux`` corrected, a ``primary_beam_gain`` column
        and ``meta["primary_beam_corrected"] = True``.
    """
    if not 0 < min_gain <= 1:
        raise InvalidInputError(f"min_gain must be in (0, 1], got {min_gain!r}")
    table = catalog.copy()
    gain = primary_beam_gain(
        pb,
        table["x_centroid"].value,
        table["y_centroid"].value,
        np.asarray(table["z_centroid"], dtype=float),
        shape=shape,
    )
    finite = gain[np.isfinite(gain)]
    if np.any((finite < 0) | (finite > MAX_PRIMARY_BEAM_GAIN)):
        raise InvalidInputError(
            f"primary-beam gains from {finite.min():.3g} to {finite.max():.3g} at the sources: a gain lies "
            "in [0, 1] (is it tclean's .pb?)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN gains compare False
        usable = np.isfinite(gain) & (gain >= min_gain)
    # One source below the limit is an ordinary edge source (flagged); all of several is a sign
    # of a wrong file.
    if len(gain) > 1 and not usable.any():
        warnings.warn(
            f"every source lies where the primary-beam gain is below {min_gain:g} (at most "
            f"{np.nanmax(gain) if finite.size else float('nan'):.3g}): none is corrected, all are flagged "
            "EDGE (is it tclean's .pb of this cube?)",
            DeepFocusWarning,
            stacklevel=2,
        )
    factor = np.where(usable, gain, 1.0)
    for name in ("flux", "continuum_flux"):
        if name in table.colnames:
            table[name] = table[name] / factor
    if "flags" in table.colnames:
        table["flags"] = (np.asarray(table["flags"]) | np.where(usable, 0, int(SourceFlag.EDGE))).astype(
            np.int32
        )
    table["primary_beam_gain"] = np.where(np.isfinite(gain), gain, np.nan)
    table.meta["primary_beam_corrected"] = True
    return table
