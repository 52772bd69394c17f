"""Reading PSF cubes as CASA ``tclean`` writes them (``exportfits`` of the ``.psf`` image)."""

from __future__ import annotations

import os
import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, WCSSUB_LATITUDE, WCSSUB_LONGITUDE, WCSSUB_SPECTRAL, FITSFixedWarning

from ..exceptions import InvalidInputError
from ._nearest import nearest_true
from .cube import _stokes_index, _to_frequency

__all__ = [
    "PSFPlanes",
    "read_psf",
    "check_psf_peaks",
    "check_psf_channels",
    "fill_blank_planes",
    "nearest_valid_planes",
]


def _header_wcs(header):
    """The WCS of a PSF's FITS header."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # CASA headers: harmless fix-ups
        return WCS(header)


def _pixel_size(wcs, path):
    """Pixel size (arcsec) of a PSF's WCS, which must be celestial with square pixels."""
    if not wcs.has_celestial:
        raise InvalidInputError(f"{path}: the PSF has no celestial (RA/Dec) WCS")
    scales = np.abs(wcs.celestial.wcs.cdelt) if wcs.celestial.wcs.has_cd() is False else None
    if scales is None:
        scales = np.sqrt(np.sum(wcs.celestial.pixel_scale_matrix**2, axis=0))
    if not np.isclose(scales[0], scales[1], rtol=1e-6):
        raise InvalidInputError(f"{path}: non-square pixels ({scales[0]} x {scales[1]} deg)")
    return (scales[0] * u.deg).to(u.arcsec)


def check_psf_channels(wcs, n_planes, path, frequencies, flipped):
    """Refuse a PSF file whose channels are not the cube's.

    The planes are paired with the cube's channels by their order, so a PSF made for another
    spectral window, or one whose frequency axis runs the other way, would be used silently.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        The PSF file's WCS.
    n_planes : int
        Planes of the PSF; one plane serves every channel and is not checked.
    path : str or path-like
        The PSF file (for the message).
    frequencies : `~astropy.units.Quantity` or None
        The cube's channel frequencies, ascending (`~deepfocus.io.cube.PreparedCube.spectral_axis`);
        None skips the check.
    flipped : bool
        Whether the cube's channels were reversed from its file's order.

    Raises
    ------
    InvalidInputError
        If the PSF's channel frequencies differ from the cube's by half a channel or more.
    """
    if frequencies is None or n_planes == 1:
        return
    cube = u.Quantity(frequencies, u.Hz).value
    cube = cube[::-1] if flipped else cube  # the order of the cube's file, as the PSF's planes are read
    spectral = wcs.sub([WCSSUB_LONGITUDE, WCSSUB_LATITUDE, WCSSUB_SPECTRAL])
    if spectral.naxis < 3 or len(cube) != n_planes:  # no spectral axis, or the channel count check names it
        return
    try:
        _, psf, _ = _to_frequency(spectral, n_planes, str(path))
    except InvalidInputError:  # a velocity axis without a rest frequency: nothing to compare
        return
    tolerance = 0.5 * np.median(np.abs(np.diff(cube)))
    if np.all(np.abs(psf - cube) < tolerance):
        return

    def span(values):
        return f"{values[0] / 1e9:.6f} to {values[-1] / 1e9:.6f} GHz"

    if np.all(np.abs(psf[::-1] - cube) < tolerance):
        raise InvalidInputError(
            f"{path}: the PSF's channels run from {span(psf)}, the cube's the other way ({span(cube)}): "
            "export both with the same channel order"
        )
    raise InvalidInputError(f"{path}: the PSF's channels ({span(psf)}) are not the cube's ({span(cube)})")


def _stokes_i(wcs, shape, path):
    """``(axis, index)``: the array axis of the PSF's Stokes axis and the index of Stokes I along
    it, or None if it has none.

    ``tclean``'s PSF of a full-Stokes image holds a plane per Stokes parameter; the cube is read
    in Stokes I (`~deepfocus.io.read_cube` warns about the others), so its PSF is that of I.

    Raises
    ------
    InvalidInputError
        If the Stokes axis holds no Stokes I.
    """
    ndim = len(shape)
    for i, ctype in enumerate(list(wcs.wcs.ctype)[:ndim]):
        if ctype.upper().startswith("STOKES"):
            axis = ndim - 1 - i
            if shape[axis] == 1:  # one plane: the beam does not depend on what it holds
                return axis, 0
            return axis, _stokes_index(wcs, i, shape[axis], path, what="PSF", warn=False)
    return None


def _check_centres(centre, path, first=0):
    bad = np.flatnonzero(~np.isfinite(centre) | (centre <= 0))
    if bad.size:
        raise InvalidInputError(
            f"{path}: plane {first + int(bad[0])} of the PSF is not positive at its centre pixel "
            "(is it the PSF?)"
        )


def _blank(centre):
    """Planes whose centre pixel is 0 or not finite: ``tclean`` leaves the PSF of a channel it
    flagged entirely blank."""
    return ~np.isfinite(centre) | (centre == 0)


def nearest_valid_planes(centre, where):
    """For each PSF plane, the index of the nearest plane that is not blank (itself if it is not).

    Parameters
    ----------
    centre : `numpy.ndarray`
        The planes' centre pixels.
    where : str
        The PSF's name in messages.

    Raises
    ------
    InvalidInputError
        If every plane is blank, or a centre pixel is negative.
    """
    centre = np.asarray(centre, dtype=float)
    blank = _blank(centre)
    if blank.all():
        raise InvalidInputError(f"{where}: the PSF is zero or not finite at its centre pixel in every plane")
    _check_centres(np.where(blank, 1.0, centre), where)
    return nearest_true(~blank)


def fill_blank_planes(planes, where):
    """PSF planes normalised to 1 at their centre pixel, each blank plane (a channel ``tclean``
    flagged) replaced by the nearest valid one (a PSF changes slowly with frequency).

    Parameters
    ----------
    planes : array-like
        ``(n, ny, nx)`` PSF planes, centred at ``(ny // 2, nx // 2)``.
    where : str
        The PSF's name in messages.

    Returns
    -------
    planes : `numpy.ndarray`
        ``(n, ny, nx)`` float64, 0 where a valid plane is not finite.
    """
    planes = np.asarray(planes, dtype=float)
    ny, nx = planes.shape[-2:]
    centre = planes[:, ny // 2, nx // 2]
    source = nearest_valid_planes(centre, where)
    return np.nan_to_num(planes[source] / centre[source][:, None, None], nan=0.0, posinf=0.0, neginf=0.0)


#: A PSF plane may exceed its centre pixel by this fraction elsewhere (rounding); more, and it
#: is not a PSF: ``tclean`` puts the peak, 1, at the centre pixel ``(ny // 2, nx // 2)``.
PEAK_TOLERANCE = 0.01


def check_psf_peaks(planes, where, first=0, *, allow_blank=False):
    """Check that each of ``planes`` (``(n, ny, nx)``) peaks at its centre pixel.

    Parameters
    ----------
    planes : array-like
        PSF planes, centred at ``(ny // 2, nx // 2)``.
    where : str
        The PSF's name in messages (a path, "the PSF array").
    first : int
        Channel of the first plane, for messages.
    allow_blank : bool
        Let planes through whose centre is zero or not finite (blank channels, which a caller
        fills in); otherwise they are refused.

    Raises
    ------
    InvalidInputError
        Naming ``where`` and the channel of the first plane that does not peak at its centre: a
        dirty image given as the PSF, for instance.
    """
    planes = np.asarray(planes, dtype=float)
    ny, nx = planes.shape[-2:]
    centre = planes[:, ny // 2, nx // 2]
    blank = _blank(centre)
    _check_centres(np.where(blank, 1.0, centre) if allow_blank else centre, where, first)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blank planes
        peak = np.nanmax(planes, axis=(1, 2))
        bad = np.flatnonzero(~blank & (peak > (1 + PEAK_TOLERANCE) * centre))
    if bad.size:
        k = int(bad[0])
        raise InvalidInputError(
            f"{where}: plane {first + k} peaks at {peak[k] / centre[k]:.3g} times its centre pixel; a PSF "
            "(tclean's .psf) peaks at its centre"
        )


def read_psf(path, *, frequencies=None, flipped=False):
    """Read a PSF image or cube from a FITS file.

    Degenerate axes (a Stokes axis, a single channel) are dropped and of several Stokes
    parameters (the PSF of a full-Stokes image) Stokes I is taken; the result is ordered
    ``(n_chan, ny, nx)``. Each plane is normalised to 1 at its centre pixel ``(ny // 2, nx // 2)``,
    where ``tclean`` puts the peak; a blank plane (a channel ``tclean`` flagged) takes the
    nearest valid plane's PSF (`fill_blank_planes`).

    Parameters
    ----------
    path : str or path-like
        FITS file with a celestial WCS (e.g. ``image.psf.fits``).
    frequencies : `~astropy.units.Quantity`, optional
        The cube's channel frequencies, ascending: the PSF's must be the same
        (`check_psf_channels`).
    flipped : bool, optional
        Whether the cube's channels were reversed from its file's order (default False).

    Returns
    -------
    psf : `numpy.ndarray`
        ``(n_chan, ny, nx)`` float64.
    cell : `~astropy.units.Quantity`
        Pixel size (arcsec) from the WCS.

    Raises
    ------
    InvalidInputError
        If the file cannot be read, has no celestial WCS or non-square pixels, has a Stokes axis
        without Stokes I, a plane does not peak at its centre pixel, every plane is blank, or
        its channels are not the cube's ``frequencies``.
    """
    try:
        with fits.open(path, memmap=False) as hdul:
            header = hdul[0].header
            data = hdul[0].data
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"cannot read PSF FITS file {str(path)!r}: {exc}") from exc
    if data is None:
        raise InvalidInputError(f"{path}: the primary HDU holds no image")
    wcs = _header_wcs(header)
    cell = _pixel_size(wcs, path)
    stokes = _stokes_i(wcs, data.shape, path)
    if stokes is not None:
        data = np.take(data, stokes[1], axis=stokes[0])
    array = np.asarray(data, dtype=float)
    ny, nx = array.shape[-2:]
    array = array.reshape(-1, ny, nx)
    check_psf_channels(wcs, len(array), path, frequencies, flipped)
    check_psf_peaks(array, path, allow_blank=True)
    return fill_blank_planes(array, path), cell


class _FilePlanes:
    """The planes of a FITS image ``section`` as an ``(n_planes, ny, nx)`` sequence, read one
    at a time (leading axes flattened in C order); ``stokes``: ``(axis, index)`` of a Stokes
    axis, of which only that index is read (`_stokes_i`)."""

    def __init__(self, section, shape, stokes=None):
        self._section = section
        self._key = [slice(None)] * (len(shape) - 2)  # the planes' key, leading axes
        if stokes is not None:
            self._key[stokes[0]] = stokes[1]
        self._free = [a for a, key in enumerate(self._key) if isinstance(key, slice)]
        self._leading = tuple(shape[a] for a in self._free)
        self.shape = (int(np.prod(self._leading)), *shape[-2:])

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        key = list(self._key)
        for axis, i in zip(self._free, np.unravel_index(index, self._leading), strict=True):
            key[axis] = i
        return self._section[(*key, slice(None), slice(None))]

    def centres(self):
        """The centre pixel ``(ny // 2, nx // 2)`` of every plane (only those pixels are read)."""
        ny, nx = self.shape[-2:]
        return np.asarray(self._section[(*self._key, ny // 2, nx // 2)], dtype=float).ravel()


class PSFPlanes:
    """The PSF plane of one channel at a time, in a prepared cube's channel order.

    ``planes[z]`` is what ``PreparedCube.psf[z]`` holds when the cube is read with the same
    ``psf`` (`~deepfocus.io.cube.read_cube`), without loading the whole PSF: only the planes
    of a FITS file asked for are read.

    Parameters
    ----------
    psf : str, path-like or array-like
        A PSF FITS file (``exportfits`` of ``tclean``'s ``.psf``; of several Stokes parameters,
        Stokes I is read) or an array ``(n_chan, ny, nx)`` or ``(ny, nx)``, in the input cube's
        channel order; one plane serves every channel.
    n_channels : int
        Channels of the cube.
    cell : `~astropy.units.Quantity`
        The cube's pixel size; a PSF file with other pixels is refused.
    flipped : bool
        Whether the prepared cube reversed the input's channels
        (`~deepfocus.io.cube.PreparedCube.flipped`).
    frequencies : `~astropy.units.Quantity`, optional
        The cube's channel frequencies, ascending: a PSF file's must be the same
        (`check_psf_channels`).

    Raises
    ------
    InvalidInputError
        If the PSF cannot be read, has other pixels or another number of channels than the cube,
        other channel frequencies, a Stokes axis without Stokes I, or a zero or non-finite
        centre pixel.
    """

    def __init__(self, psf, n_channels, cell, *, flipped=False, frequencies=None):
        self.n_channels = int(n_channels)
        self.flipped = bool(flipped)
        self._hdul = None
        self._checked = set()  # planes already checked (a plane is read once per source)
        if isinstance(psf, (str, os.PathLike)):
            self._path = psf
            try:
                self._planes = self._open(psf, cell, frequencies)
            except InvalidInputError:
                self.close()  # the file opened before a check refused it
                raise
            self._from_file = True
        else:
            array = np.asarray(psf)
            if array.ndim == 2:
                array = array[None]
            if array.ndim != 3:
                raise InvalidInputError(f"the PSF array must be (n_chan, ny, nx), got shape {array.shape}")
            self._path, self._planes, self._from_file = "the PSF array", array, False
            ny, nx = array.shape[-2:]
            self._centres = np.asarray(array[:, ny // 2, nx // 2], dtype=float)
        if len(self._planes) not in (1, self.n_channels):
            raise InvalidInputError(
                f"{self._path} has {len(self._planes)} channels but the cube has {self.n_channels}"
            )
        # Blank planes (channels tclean flagged) read the nearest valid plane, as read_cube fills them.
        self._source = nearest_valid_planes(self._centres, self._path)

    @classmethod
    def for_cube(cls, psf, cube):
        """The planes of ``psf`` in the order of ``cube``'s channels, checked against its pixels,
        channels and frequencies.

        Parameters
        ----------
        psf : str, path-like or array-like
            As for `PSFPlanes`.
        cube : `~deepfocus.io.cube.PreparedCube`
            The cube, a tile or block of it over all its channels, or its metadata.
        """
        return cls(psf, cube.n_channels, cube.cell, flipped=cube.flipped, frequencies=cube.spectral_axis)

    def _open(self, path, cell, frequencies):
        """The file's image as ``(n_planes, ny, nx)`` planes read on demand, its header checked."""
        try:
            # Not memory-mapped: the pages of a mapped file that are touched stay in the
            # process's resident memory while it is open.
            self._hdul = fits.open(path, mode="readonly", memmap=False)
            hdu = self._hdul[0]
            shape = hdu.shape
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidInputError(f"cannot read PSF FITS file {str(path)!r}: {exc}") from exc
        if len(shape) < 2:
            raise InvalidInputError(f"{path}: the primary HDU holds no image")
        wcs = _header_wcs(hdu.header)
        psf_cell = _pixel_size(wcs, path)
        if not np.isclose(psf_cell.to_value(u.arcsec), u.Quantity(cell).to_value(u.arcsec), rtol=1e-4):
            raise InvalidInputError(
                f"{path}: the PSF's pixels ({psf_cell.to_value(u.arcsec):.6g} arcsec) differ from the "
                f"cube's ({u.Quantity(cell).to_value(u.arcsec):.6g} arcsec)"
            )
        planes = _FilePlanes(hdu.section, shape, _stokes_i(wcs, shape, path))
        check_psf_channels(wcs, len(planes), path, frequencies, self.flipped)
        self._centres = planes.centres()
        return planes

    def close(self):
        """Close the PSF file (if one was opened)."""
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def shape(self):
        """``(ny, nx)`` of a plane."""
        return tuple(self._planes.shape[-2:])

    def __len__(self):
        return self.n_channels

    def __getitem__(self, channel):
        """The float32 PSF plane of prepared channel ``channel`` (files: peak 1 at the centre)."""
        channel = int(channel)
        if not 0 <= channel < self.n_channels:
            raise IndexError(f"channel {channel} outside 0..{self.n_channels - 1}")
        index = 0 if len(self._planes) == 1 else (self.n_channels - 1 - channel if self.flipped else channel)
        index = int(self._source[index])
        plane = np.asarray(self._planes[index], dtype=float)
        if index not in self._checked:
            check_psf_peaks(plane[None], self._path, first=index)
            self._checked.add(index)
        return fill_blank_planes(plane[None], self._path)[0].astype(np.float32)  # as read_cube
