"""Reading spectral cubes as CASA ``tclean``/``exportfits`` writes them into one prepared form.

Whatever the input (a FITS path or a `~spectral_cube.SpectralCube`), `read_cube` returns a
`PreparedCube`: float32 data ``(n_chan, ny, nx)`` in Jy/beam with NaN outside the valid area,
frequency ascending, one beam per channel, the per-channel robust noise and the bookkeeping
needed to map results back to the input cube's channels.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.constants as const
import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales
from radio_beam import Beam, Beams

from ..exceptions import DeepFocusWarning, InvalidInputError
from ._nearest import nearest_true

__all__ = ["PreparedCube", "read_cube", "robust_channel_noise"]

JY_PER_BEAM = u.Jy / u.beam

#: FITS Stokes codes (Greisen & Calabretta 2002, table 7).
STOKES_NAMES = {
    1: "I",
    2: "Q",
    3: "U",
    4: "V",
    -1: "RR",
    -2: "LL",
    -3: "RL",
    -4: "LR",
    -5: "XX",
    -6: "YY",
    -7: "XY",
    -8: "YX",
}

#: BUNIT spellings astropy does not parse but CASA, AIPS, MIRIAD or GILDAS write.
_BUNIT_ALIASES = {
    "jy/beam": JY_PER_BEAM,
    "jy/bm": JY_PER_BEAM,
    "jy/b": JY_PER_BEAM,
    "jy beam-1": JY_PER_BEAM,
    "jy.beam-1": JY_PER_BEAM,
    "jy/beam.": JY_PER_BEAM,
    "beam-1 jy": JY_PER_BEAM,
    "k": u.K,
    "kelvin": u.K,
}

#: Spectral CTYPEs (first four characters) that need no rest frequency to give a frequency.
_FREQUENCY_LIKE = ("FREQ", "ENER", "WAVN", "WAVE", "AWAV")

#: A channel needs at least this many valid pixels for its noise to be estimated.
MIN_NOISE_PIXELS = 10

#: At most this many pixels (a regular subsample) enter one channel's noise estimate.
MAX_NOISE_SAMPLES = 1 << 14

#: MAD of a Gaussian times this is its standard deviation (astropy.stats.mad_std's factor).
_MAD_TO_STD = 1.482602218505602

_FITS_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, EOFError, fits.VerifyError)


@dataclass(eq=False)
class PreparedCube:
    """A spectral cube ready for detection: Jy/beam, frequency ascending, a beam per channel.

    Made by `read_cube`. Channel ``z`` of ``data`` is
    channel ``to_input_channel(z)`` of the input cube (they differ when the input's frequency
    axis was descending: ``flipped``).

    Attributes
    ----------
    data : `numpy.ndarray`
        ``(n_chan, ny, nx)`` float32, Jy/beam, NaN outside the valid area.
    wcs : `~astropy.wcs.WCS`
        3-D WCS of ``data`` (RA, Dec, frequency in Hz, frequency ascending).
    spectral_axis : `~astropy.units.Quantity`
        Frequency of every channel (GHz), ascending.
    beams : `~radio_beam.Beams`
        Beam of every channel, in the order of ``data``.
    cell : `~astropy.units.Quantity`
        Pixel size (arcsec); pixels are square.
    rest_frequency : `~astropy.units.Quantity`
        ``RESTFRQ`` (GHz), or the band's central frequency if the input has none.
    rest_frequency_from_header : bool
        Whether ``rest_frequency`` came from the input (``RESTFRQ``/``RESTFREQ``/``RESTWAV``).
    channel_velocity_width : `~astropy.units.Quantity`
        Channel width (km/s, positive), radio convention at ``rest_frequency`` (median over
        channels if the axis is not linear in frequency).
    noise : `~astropy.units.Quantity`
        Robust rms of every channel (Jy/beam); NaN for channels with fewer than
        `MIN_NOISE_PIXELS` valid pixels.
    valid : `numpy.ndarray`
        ``(n_chan, ny, nx)`` bool, True where ``data`` is finite.
    pixels_per_beam : float
        Beam major axis (FWHM) of the middle channel over the pixel size.
    source_path : `~pathlib.Path` or None
        The file read, None for an in-memory cube.
    flipped : bool
        True if the input's channels ran from high to low frequency and were reversed.
    header : `~astropy.io.fits.Header`
        Copy of the input's header (as read; axes and units not rewritten).
    psf : `numpy.ndarray` or None
        ``(n_chan, ny_psf, nx_psf)`` PSF, peak 1 per channel, in the order of ``data``.
    """

    data: np.ndarray = field(repr=False)
    wcs: WCS = field(repr=False)
    spectral_axis: u.Quantity = field(repr=False)
    beams: Beams = field(repr=False)
    cell: u.Quantity
    rest_frequency: u.Quantity
    rest_frequency_from_header: bool
    channel_velocity_width: u.Quantity
    noise: u.Quantity = field(repr=False)
    valid: np.ndarray = field(repr=False)
    pixels_per_beam: float
    source_path: Path | None
    flipped: bool
    header: fits.Header = field(repr=False)
    psf: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self):
        n, ny, nx = self.shape
        f = self.spectral_axis
        where = str(self.source_path) if self.source_path is not None else "in memory"
        return (
            f"<PreparedCube {n} x {ny} x {nx} ({where}): {f[0].to_value(u.GHz):.6f}..."
            f"{f[-1].to_value(u.GHz):.6f} GHz, cell {self.cell.to_value(u.arcsec):.4g} arcsec, "
            f"{self.pixels_per_beam:.2f} pix/beam, median noise "
            f"{np.nanmedian(self.noise.to_value(JY_PER_BEAM)) * 1e3:.4g} mJy/beam"
            f"{', flipped' if self.flipped else ''}{', with PSF' if self.psf is not None else ''}>"
        )

    @property
    def shape(self):
        """``(n_chan, ny, nx)``."""
        return self.data.shape

    @property
    def n_channels(self):
        """Number of channels."""
        return self.data.shape[0]

    @property
    def unit(self):
        """Unit of ``data``: Jy/beam."""
        return JY_PER_BEAM

    @property
    def channel_order(self):
        """Input channel of every channel of ``data`` (int array; reversed if ``flipped``)."""
        order = np.arange(self.n_channels)
        return order[::-1].copy() if self.flipped else order

    def to_input_channel(self, z):
        """Map channel indices of ``data`` (float or array) to those of the input cube.

        Parameters
        ----------
        z : float or array-like
            0-based channel(s) of ``data``; fractional values allowed.

        Returns
        -------
        z_input : float, int or `numpy.ndarray`
            The same channel(s) counted in the input cube (integers stay integers).
        """
        z = np.asarray(z)
        if not np.issubdtype(z.dtype, np.integer):
            z = z.astype(float)
        out = (self.n_channels - 1) - z if self.flipped else z
        return out.item() if out.ndim == 0 else out

    def line_channels(self, z_min, z_max):
        """``(lo, hi)`` channels of ``data`` spanning input channels ``z_min``..``z_max``
        (a catalogue row's line window), clipped to the cube."""
        ends = sorted(int(self.to_input_channel(int(z))) for z in (z_min, z_max))
        lo, hi = (int(np.clip(v, 0, self.n_channels - 1)) for v in ends)
        return lo, hi

    def channel_to_frequency(self, z):
        """Frequency of (fractional) channel(s) of ``data``, linear between channel centres.

        Beyond the first and last channel the end channels' spacing is extrapolated.

        Parameters
        ----------
        z : float or array-like
            0-based channel(s) of ``data``.

        Returns
        -------
        frequency : `~astropy.units.Quantity`
            GHz.
        """
        z = np.asarray(z, dtype=float)
        f = self.spectral_axis.to_value(u.GHz)
        n = f.size
        out = np.interp(z, np.arange(n), f)
        out = np.where(z < 0, f[0] + z * (f[1] - f[0]), out)
        out = np.where(z > n - 1, f[-1] + (z - (n - 1)) * (f[-1] - f[-2]), out)
        return out * u.GHz

    def pixel_to_world(self, x, y):
        """Sky position (ICRS) of 0-based pixel coordinates ``x``, ``y``.

        Returns
        -------
        coord : `~astropy.coordinates.SkyCoord`
            ICRS.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            celestial = self.wcs.celestial
        return celestial.pixel_to_world(x, y).icrs

    def north_angle(self, x, y):
        """Position angle (deg, east of ICRS north) of the pixel grid's +y axis at 0-based pixel
        coordinates ``x``, ``y``.

        Angles measured on the grid (from +y towards -x) are east of ICRS north once this is
        added: a galactic or B1950 cube's grid points to its own frame's north (63 deg west of
        ICRS north at l = 30 deg, b = 0; a few tenths of a degree for FK4),
        and away from the reference pixel a projection's meridians converge.
        """
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        angle = self.pixel_to_world(x, y).position_angle(self.pixel_to_world(x, y + 1)).to_value(u.deg)
        return (angle + 180) % 360 - 180

    def spectral_cube(self):
        """The data as a `~spectral_cube.SpectralCube` (no copy of ``data``).

        Returns
        -------
        cube : `~spectral_cube.SpectralCube` or `~spectral_cube.VaryingResolutionSpectralCube`
            Jy/beam, masked where ``valid`` is False; a `SpectralCube` with one beam if all
            channels have the same beam.
        """
        from spectral_cube import SpectralCube, VaryingResolutionSpectralCube
        from spectral_cube.masks import BooleanArrayMask

        data = u.Quantity(self.data, JY_PER_BEAM, copy=False)
        mask = BooleanArrayMask(self.valid, self.wcs)
        meta = {"BUNIT": "Jy/beam"}
        b = self.beams
        same = np.all(b.major == b.major[0]) and np.all(b.minor == b.minor[0]) and np.all(b.pa == b.pa[0])
        if same:
            return SpectralCube(data=data, wcs=self.wcs, mask=mask, meta=meta, beam=b[0])
        return VaryingResolutionSpectralCube(data=data, wcs=self.wcs, mask=mask, meta=meta, beams=b)


# --------------------------------------------------------------------------------------------
# noise


def robust_channel_noise(data, valid=None, *, sigma=3.0, maxiters=5, min_pixels=MIN_NOISE_PIXELS):
    """Per-channel robust rms: sigma-clipped MAD standard deviation of the valid pixels.

    Each channel's finite (and ``valid``) pixels are clipped at ``sigma`` times the MAD-based
    standard deviation around the median, up to ``maxiters`` times, and the MAD standard
    deviation of what remains is the channel's noise. Channels with more than
    `MAX_NOISE_SAMPLES` valid pixels use a regular subsample of them (neighbouring pixels of a
    dirty cube are correlated over a beam, so this loses little).

    Parameters
    ----------
    data : array-like
        ``(n_chan, ny, nx)``; NaN pixels are ignored.
    valid : array-like of bool, optional
        Pixels to use (default: the finite ones).
    sigma : float
        Clipping threshold in standard deviations.
    maxiters : int
        Maximum number of clipping iterations.
    min_pixels : int
        Channels with fewer valid pixels get NaN.

    Returns
    -------
    noise : `numpy.ndarray`
        ``(n_chan,)`` float64, in the unit of ``data``.
    """
    data = np.asarray(data)
    n_chan = data.shape[0]
    flat = data.reshape(n_chan, -1)
    ok = np.isfinite(flat)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool).reshape(n_chan, -1)
    noise = np.full(n_chan, np.nan)
    for k in range(n_chan):
        x = flat[k][ok[k]]
        if x.size < min_pixels:
            continue
        if x.size > MAX_NOISE_SAMPLES:
            x = x[:: -(-x.size // MAX_NOISE_SAMPLES)]
        for iteration in range(maxiters + 1):
            dev = np.abs(x - np.median(x))
            std = _MAD_TO_STD * float(np.median(dev))
            if not std > 0 or iteration == maxiters:
                break
            keep = dev <= sigma * std
            if keep.all():
                break
            x = x[keep]
        if x.size >= min_pixels and std > 0:
            noise[k] = std
    return noise


def flagged_channels(data, valid=None):
    """Channels that hold valid pixels, all exactly 0 (CASA writes flagged channels so).

    Parameters
    ----------
    data : `numpy.ndarray`
        ``(n_chan, ny, nx)``.
    valid : `numpy.ndarray` of bool, optional
        Pixels to look at (default: the finite ones).

    Returns
    -------
    flagged : `numpy.ndarray`
        ``(n_chan,)`` bool.
    """
    valid = np.isfinite(data) if valid is None else valid
    # Channel by channel: no temporary the size of the cube.
    return np.array(
        [bool(v.any()) and not np.any(d[v]) for d, v in zip(data, valid, strict=True)], dtype=bool
    )


def _check_noise(label, noise, counts, flagged):
    """Refuse a cube none of whose channels has a measurable noise, and warn about the channels
    that hold data but no measurable noise (they are then blank to every later stage).

    Parameters
    ----------
    label : str
        The cube's name in messages.
    noise : `numpy.ndarray`
        ``(n_chan,)`` robust noise (`robust_channel_noise`), in the input's channel order.
    counts : `numpy.ndarray`
        ``(n_chan,)`` valid pixels of every channel.
    flagged : `numpy.ndarray`
        ``(n_chan,)`` bool: flagged channels (`flagged_channels`, warned about already).

    Raises
    ------
    InvalidInputError
        If no channel has a measurable noise: nothing can be normalised by it.
    """
    noise, counts = np.asarray(noise, dtype=float), np.asarray(counts)
    measured = np.isfinite(noise) & (noise > 0)
    if not measured.any():
        if counts.max(initial=0) < MIN_NOISE_PIXELS:
            raise InvalidInputError(
                f"{label}: no channel has a measurable noise: each has fewer than {MIN_NOISE_PIXELS} "
                "valid pixels"
            )
        raise InvalidInputError(
            f"{label}: no channel has a measurable noise: in each, more than half of the valid pixels "
            "hold one value (a constant image, or zeros rather than NaN outside a mask?)"
        )
    unmeasured = np.flatnonzero(~measured & ~np.asarray(flagged, dtype=bool) & (counts >= MIN_NOISE_PIXELS))
    if len(unmeasured):
        warnings.warn(
            f"{label}: input channels {[int(k) for k in unmeasured]} have no measurable noise (more than "
            "half of their valid pixels hold one value: zeros rather than NaN outside a mask?); treating "
            "them as blank",
            DeepFocusWarning,
            stacklevel=4,
        )


def _warn_flagged(label, channels, n_chan):
    """Warn about the flagged input ``channels`` (refuse a cube with nothing else)."""
    if len(channels) == 0:
        return
    if len(channels) == n_chan:
        raise InvalidInputError(f"{label}: every pixel of the cube is exactly 0")
    warnings.warn(
        f"{label}: input channels {sorted(int(k) for k in channels)} are exactly 0 everywhere (flagged?); "
        "treating them as blank",
        DeepFocusWarning,
        stacklevel=4,
    )


# --------------------------------------------------------------------------------------------
# reading


@dataclass
class _Raw:
    """What the input gives before normalisation: data ``(n_chan, ny, nx)`` and its 3-D WCS."""

    data: np.ndarray
    wcs: WCS
    header: fits.Header
    bunit: object  # str from FITS, a Unit from a SpectralCube
    beams: list | None
    label: str
    path: Path | None


def read_cube(source, *, psf=None) -> PreparedCube:
    """Read a spectral cube and prepare it for detection.

    Accepts what CASA ``tclean`` + ``exportfits`` writes and the common variants: a degenerate
    Stokes axis (dropped; of several Stokes parameters, I is taken with a warning), a beam per
    channel (``BEAMS`` table, `~spectral_cube.VaryingResolutionSpectralCube`) or one beam
    (``BMAJ``/``BMIN``/``BPA``), NaN borders, a frequency, velocity or wavelength axis in any
    unit and either direction.

    - The spectral axis is converted to frequency and made ascending (channels reversed if
      needed: ``flipped``; `PreparedCube.to_input_channel` maps channels back).
    - ``Jy/beam`` in any spelling (``JY/BEAM``, ``Jy beam-1``) is taken as is, ``mJy/beam`` and
      other multiples are scaled, ``K`` (brightness temperature) and ``Jy/sr`` are converted to
      Jy/beam through each channel's beam and frequency. A missing ``BUNIT`` is taken as
      Jy/beam with a warning; other units (``Jy/pixel``, ...) are refused.
    - Infinite values become NaN (with a warning); channels whose valid pixels are all exactly
      0 (CASA's flagged channels) are marked invalid (with a warning).
    - The file is opened read-only and never modified.

    Parameters
    ----------
    source : str, path-like or `~spectral_cube.SpectralCube`
        A FITS file, or an in-memory (`~spectral_cube.VaryingResolutionSpectralCube`) cube.
    psf : str, path-like or array-like, optional
        The PSF cube (``exportfits`` of ``tclean``'s ``.psf``), read with
        `~deepfocus.io.read_psf`, or an array ``(n_chan, ny, nx)``, in the input cube's
        channel order. It must have the cube's pixel size and number of channels (or one
        plane, used for every channel), and a file's channels the cube's frequencies in the
        same order (`~deepfocus.io.psf.check_psf_channels`); it is reordered with the cube.

    Returns
    -------
    cube : `PreparedCube`

    Raises
    ------
    InvalidInputError
        If the cube cannot be used; the message names the file and the problem.
    TypeError
        If ``source`` is neither a path nor a spectral cube.
    """
    if isinstance(source, (str, os.PathLike)):
        raw = _read_fits(Path(source))
    else:
        try:
            from spectral_cube.spectral_cube import BaseSpectralCube
        except ImportError:  # pragma: no cover - spectral-cube is a dependency
            BaseSpectralCube = ()
        if not isinstance(source, BaseSpectralCube):
            if getattr(source, "ndim", 3) < 3 and hasattr(source, "wcs"):  # a spectral-cube slice
                raise InvalidInputError(
                    f"deepfocus needs a spectral cube (3-D); got a {source.ndim}-D {type(source).__name__}"
                )
            raise TypeError(f"read_cube needs a FITS path or a SpectralCube, got {type(source).__name__}")
        raw = _from_spectral_cube(source)
    return _prepare(raw, psf)


def _read_fits(path: Path, region=None) -> _Raw:
    """Read ``path``; ``region``: optional ``(channels, y, x)`` slices of the cube (spectral axis in
    the file's order) read through ``section`` without loading the rest (out-of-core tiles)."""
    label = str(path)
    if not path.exists():
        raise InvalidInputError(f"{label}: no such file")
    if path.is_dir():
        raise InvalidInputError(
            f"{label} is a directory (a CASA image?): export it to FITS first with casatasks.exportfits"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # A region is read from the file without a memory map: pages of a mapped file that
            # are touched (and read ahead) count in the process's resident memory. A whole cube
            # is mapped where astropy can (None: not for integers scaled by BSCALE/BZERO/BLANK).
            with fits.open(path, mode="readonly", memmap=None if region is None else False) as hdul:
                _check_complete(hdul, path, label)
                raw = _read_hdul(hdul, label, path, region)
        except InvalidInputError:
            raise
        except _FITS_READ_ERRORS as exc:
            raise InvalidInputError(
                f"{label}: cannot read this FITS file (truncated or corrupt?): {type(exc).__name__}: {exc}"
            ) from exc
    notes = set()
    for w in caught:
        message = str(w.message)
        if issubclass(w.category, FITSFixedWarning):
            continue  # astropy filling in MJD-OBS, OBSGEO-L/B/H from CASA's keywords: harmless
        if "truncated" in message:
            message = f"{label}: {message} (the data were read in full)"
            if message in notes:
                continue
            notes.add(message)
            warnings.warn(message, DeepFocusWarning, stacklevel=3)
            continue
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return raw


def _compressed(path):
    """Whether ``path`` is a gzip, bzip2 or zip file (by its first bytes)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:4] == b"PK\x03\x04"


def _truncated(label, where, size, needed):
    return InvalidInputError(
        f"{label}: cannot read this FITS file (truncated or corrupt?): the file ends inside {where} "
        f"({size} bytes, at least {needed} expected)"
    )


def _hdu_part(hdu, index):
    """How a message names the data of an HDU: ``"its BEAMS table (HDU 1)"``."""
    name = hdu.name if hdu.name and hdu.name != "PRIMARY" else ""
    if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)):
        return "its image data" + ("" if index == 0 else f" (HDU {index}{f', {name}' if name else ''})")
    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        return f"its {name} table (HDU {index})" if name else f"its table in HDU {index}"
    return f"the data of its HDU {index}" + (f" ({name})" if name else "")


def _extname(block):
    """EXTNAME of the header cards in the bytes ``block`` (a header cut short), or ''."""
    for k in range(0, len(block) - 79, 80):
        if block[k : k + 8] == b"EXTNAME ":
            try:
                return str(fits.Card.fromstring(block[k : k + 80].decode("ascii")).value).strip()
            except (ValueError, UnicodeDecodeError, fits.VerifyError):
                return ""
    return ""


def _check_complete(hdul, path, label=None):
    """Refuse a FITS file that ends before its last HDU does (an interrupted download or copy).

    Only headers are read: every HDU's data must end within the file (``datLoc`` of
    `~astropy.io.fits.HDUList.fileinfo` plus the data size its header gives), and bytes after
    the last HDU that astropy could read must not begin an extension (a header cut short). A
    file cut after its image data would otherwise lose its BEAMS table and read as a cube
    without a beam. The FITS block padding after the last HDU's data may be missing (the data
    are whole; astropy warns). Files compressed as a whole (gzip, bzip2, zip) are skipped: their
    offsets count the decompressed stream, whose length is only known once it is all
    decompressed; so is the data of a tile-compressed image (its header gives the uncompressed
    size; the HDUs around it are checked).

    Astropy's warnings while reading the headers are raised again unless the file is refused
    (the refusal says it in one line).
    """
    label = str(path) if label is None else label
    if _compressed(path):
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        n_hdu = len(hdul)  # reads every header (not the data); stops at one it cannot read
    size = Path(path).stat().st_size
    end = None
    for index in range(n_hdu):
        hdu, info = hdul[index], hdul.fileinfo(index)
        if info is None:
            continue
        end = info["datLoc"] + info["datSpan"]  # with the padding, as on disk (also compressed)
        if isinstance(hdu, fits.CompImageHDU):
            continue
        needed = info["datLoc"] + hdu.size
        if needed > size:
            hdul.close()
            raise _truncated(label, _hdu_part(hdu, index), size, needed)
    if end is not None and end < size:
        with open(path, "rb") as f:
            f.seek(end)
            rest = f.read(10 * 2880)
        if b"XTENSION".startswith(rest[:8]):  # the start of an extension's header, cut short
            name = _extname(rest)
            hdul.close()
            where = f"the header of its HDU {n_hdu}" + (f" ({name})" if name else "")
            raise _truncated(label, where, size, end + 2880)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _missing_beams_hint(header):
    """A note for a cube without a beam whose header says that a BEAMS table follows it."""
    if header.get("CASAMBM") is True:
        return "; the header's CASAMBM = T says a BEAMS table follows the image: was the file truncated?"
    return ""


def _image_hdu(hdul, label):
    """The first HDU holding an image (CASA: the primary)."""
    for hdu in hdul:
        if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            continue
        naxis = int(hdu.header.get("ZNAXIS", hdu.header.get("NAXIS", 0)))
        if naxis == 0:
            continue
        lengths = [
            int(hdu.header.get(f"NAXIS{i}", hdu.header.get(f"ZNAXIS{i}", 0))) for i in range(1, naxis + 1)
        ]
        if 0 in lengths:
            i = lengths.index(0) + 1
            raise InvalidInputError(f"{label}: the image has a zero-length axis (NAXIS{i} = 0)")
        return hdu
    raise InvalidInputError(f"{label}: no image data in any HDU")


def _read_hdul(hdul, label, path, region=None) -> _Raw:
    hdu = _image_hdu(hdul, label)
    header = hdu.header
    # A region is read through `section` (only its bytes, even for scaled integer data).
    data = hdu.data if region is None else hdu.section
    if region is None and data is None:
        raise InvalidInputError(f"{label}: no image data in any HDU")
    shape = data.shape if region is None else hdu.shape
    ndim = len(shape)
    if ndim < 2:
        raise InvalidInputError(f"{label}: deepfocus needs a spectral cube (3-D); got {ndim}-D data")
    if ndim == 2:
        raise InvalidInputError(f"{label}: deepfocus needs a spectral cube (3-D); got a 2-D image")
    wcs = _parse_wcs(header, ndim, label)
    lng, lat, spec, stokes = _axes(wcs, label)
    index = [slice(None)] * ndim
    if region is not None:
        for axis, part in zip((spec, lat, lng), region, strict=True):
            index[ndim - 1 - axis] = slice(*part.indices(shape[ndim - 1 - axis])[:2])
    stokes_index = 0
    for i in range(ndim):  # WCSAXES may be smaller than NAXIS: axes without keywords
        if i in (lng, lat, spec):
            continue
        ax = ndim - 1 - i
        ctype = (wcs.wcs.ctype[i] if i < wcs.naxis else "") or "(none)"
        if i == stokes:
            stokes_index = _stokes_index(wcs, i, shape[ax], label)
            index[ax] = stokes_index
        elif shape[ax] == 1:
            index[ax] = 0
        else:
            raise InvalidInputError(
                f"{label}: unexpected axis {i + 1} (CTYPE{i + 1} = {ctype!r}) of length {shape[ax]}; "
                "deepfocus needs RA, Dec and a spectral axis (plus an optional Stokes axis)"
            )
    kept = sorted((lng, lat, spec))
    position = {w: len(kept) - 1 - kept.index(w) for w in kept}
    selected = data[tuple(index)] if region is None else _read_region(data, index)
    cube = np.array(np.transpose(selected, (position[spec], position[lat], position[lng])), dtype=np.float32)
    wcs3 = wcs.sub([lng + 1, lat + 1, spec + 1])
    beams = _beams_from_hdul(hdul, header, shape[ndim - 1 - spec], stokes_index, label)
    if region is not None:  # pixel (0, 0, 0) of the region is (x0, y0, z0) of the file
        z0, y0, x0 = (index[ndim - 1 - a].start for a in (spec, lat, lng))
        wcs3.wcs.crpix = wcs3.wcs.crpix - np.array([x0, y0, z0], dtype=float)
        wcs3.wcs.set()
        if beams is not None and len(beams) > 1:
            beams = beams[z0 : z0 + cube.shape[0]]
    return _Raw(cube, wcs3, header.copy(), header.get("BUNIT", ""), beams, label, path)


def _read_region(section, index):
    """``section[index]`` read one plane of its outermost sliced axis at a time, whole rows.

    Astropy's ``Section`` reads a box narrower than the image one row segment at a time (a file
    read each); with whole rows every plane is one contiguous read, about 40 times faster for a
    tile of a few hundred pixels.
    """
    index = list(index)
    sliced = [a for a, key in enumerate(index) if isinstance(key, slice)]
    last = len(index) - 1
    if len(sliced) < 2 or sliced[-1] != last:
        return section[tuple(index)]
    outer, columns = sliced[0], index[last]
    index[last] = slice(None)
    planes = range(index[outer].start, index[outer].stop)
    out = None
    for i, plane in enumerate(planes):
        index[outer] = plane
        block = section[tuple(index)][..., columns]
        if out is None:
            out = np.empty((len(planes), *block.shape), dtype=block.dtype)
        out[i] = block
    return out


def _parse_wcs(header, naxis, label):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=naxis)
            wcs.wcs.set()
    except Exception as exc:  # wcslib raises its own classes (InconsistentAxisTypesError, ...)
        raise InvalidInputError(f"{label}: cannot interpret the WCS: {exc}") from exc
    return wcs


#: Fewest pixels across the beam (FWHM) that are measured without a warning (CASA's
#: guideline is 3 to 5; at 2.5, fluxes without a PSF came out half the truth).
MIN_PIXELS_PER_BEAM = 3.0
#: Fewest channels that are searched without a warning: a line needs its own channels and
#: line-free ones for the continuum (the networks were trained on lines of 3 to 20 channels).
MIN_CHANNELS = 8


def warn_sampling(label, pixels_per_beam, n_chan, stacklevel=5):
    """Warn about cubes sampled too coarsely in space or with too few channels."""
    if pixels_per_beam < MIN_PIXELS_PER_BEAM:
        warnings.warn(
            f"{label}: the beam spans {pixels_per_beam:.2g} pixels; below {MIN_PIXELS_PER_BEAM:g} "
            "positions, sizes and fluxes degrade (image with a smaller cell)",
            DeepFocusWarning,
            stacklevel=stacklevel,
        )
    if n_chan < MIN_CHANNELS:
        warnings.warn(
            f"{label}: only {n_chan} channels; lines need their own channels and line-free ones "
            f"for the continuum (at least {MIN_CHANNELS})",
            DeepFocusWarning,
            stacklevel=stacklevel,
        )


#: Largest rotation (deg) of a pixel grid from north that is taken for none (rounding).
MAX_GRID_ROTATION = 0.05


def _check_orientation(celestial, label):
    """Refuse pixel grids that are mirrored or rotated: the beam kernels, the forward fits and
    the position angles assume CASA's grid (north up, east to the left), north being that of the
    cube's frame (galactic, ecliptic or equatorial; `PreparedCube.north_angle` turns angles on
    the grid into angles east of ICRS north)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        matrix = celestial.pixel_scale_matrix  # world (lng, lat) by pixel (x, y), deg per pixel
    fix = "regrid it to north up and east to the left (as CASA writes cubes) first, e.g. with reproject"
    if np.linalg.det(matrix) > 0:  # CASA's grid: -cdelt along x, +cdelt along y
        raise InvalidInputError(f"{label}: the pixel grid is mirrored (east to the right or south up); {fix}")
    rotation = np.degrees(np.arctan2(matrix[1, 0], matrix[1, 1]))
    skew = np.degrees(np.arctan2(matrix[0, 1], -matrix[0, 0]))
    if max(abs(rotation), abs(skew)) > MAX_GRID_ROTATION:
        angle = abs(rotation if abs(rotation) > MAX_GRID_ROTATION else skew)
        raise InvalidInputError(f"{label}: the pixel grid is rotated by {angle:.3g} deg from north; {fix}")


def _axes(wcs, label):
    """World-axis indices of longitude, latitude, spectral and Stokes axes (Stokes -1 if none)."""
    lng, lat, spec = wcs.wcs.lng, wcs.wcs.lat, wcs.wcs.spec
    if lng < 0 or lat < 0:
        ctypes = ", ".join(repr(c) for c in wcs.wcs.ctype) or "none"
        raise InvalidInputError(
            f"{label}: no celestial WCS (RA/Dec axes, e.g. CTYPE1 = 'RA---SIN', CTYPE2 = 'DEC--SIN'); "
            f"CTYPEs: {ctypes}"
        )
    if spec < 0:
        ctypes = ", ".join(repr(c) for c in wcs.wcs.ctype)
        raise InvalidInputError(
            f"{label}: no spectral axis (a CTYPE such as 'FREQ', 'VRAD', 'VOPT' or 'WAVE'); CTYPEs: {ctypes}"
        )
    stokes = -1
    for i, ctype in enumerate(wcs.wcs.ctype):
        if ctype.upper().startswith("STOKES"):
            stokes = i
    return lng, lat, spec, stokes


def _stokes_index(wcs, axis, length, label, *, what="cube", warn=True):
    """Pixel index of Stokes I along the Stokes axis (refuses images without I).

    ``what`` names the image in messages ("cube", "PSF"); ``warn``: warn when the axis holds
    several Stokes parameters.
    """
    pixel = np.arange(length) + 1.0
    w = wcs.wcs
    values = w.crval[axis] + w.cdelt[axis] * w.get_pc()[axis, axis] * (pixel - w.crpix[axis])
    codes = np.rint(values).astype(int)
    names = [STOKES_NAMES.get(int(c), str(int(c))) for c in codes]
    if 1 not in codes:
        which = ", ".join(names)
        raise InvalidInputError(
            f"{label}: the {what} holds Stokes {which} but no Stokes I; deepfocus needs total intensity (I)"
        )
    index = int(np.flatnonzero(codes == 1)[0])
    if warn and length > 1:
        warnings.warn(
            f"{label}: the cube holds Stokes {', '.join(names)}; using Stokes I",
            DeepFocusWarning,
            stacklevel=5,
        )
    return index


def _column_unit(table_hdu, name, default):
    col = table_hdu.columns[name]
    text = (col.unit or "").strip()
    if not text:
        return default
    try:
        return u.Unit(text)
    except ValueError:
        return default


def _beams_from_hdul(hdul, header, n_chan, stokes_index, label):
    """Per-channel beams ``[(major, minor, pa) Quantity, ...]`` in file channel order, or None."""
    if "BEAMS" in hdul:
        table_hdu = hdul["BEAMS"]
        try:
            table = table_hdu.data
        except _FITS_READ_ERRORS as exc:
            raise InvalidInputError(
                f"{label}: cannot read the BEAMS table of this FITS file (truncated or corrupt?): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        names = [n.upper() for n in table_hdu.columns.names]
        if table is None or not {"BMAJ", "BMIN", "BPA"} <= set(names):
            raise InvalidInputError(f"{label}: the BEAMS table lacks BMAJ/BMIN/BPA columns")
        rows = np.ones(len(table), dtype=bool)
        if "POL" in names:
            rows = np.asarray(table["POL"]) == stokes_index
        chan = np.asarray(table["CHAN"])[rows] if "CHAN" in names else np.arange(rows.sum())
        order = np.argsort(chan, kind="stable")
        if rows.sum() != n_chan or not np.array_equal(chan[order], np.arange(n_chan)):
            raise InvalidInputError(
                f"{label}: the BEAMS table has {int(rows.sum())} beams for this Stokes parameter "
                f"but the cube has {n_chan} channels"
            )
        columns = [
            np.asarray(table[name], dtype=float)[rows][order] * _column_unit(table_hdu, name, default)
            for name, default in (("BMAJ", u.arcsec), ("BMIN", u.arcsec), ("BPA", u.deg))
        ]
        return list(zip(*columns, strict=True))
    if "BMAJ" in header and "BMIN" in header:
        try:
            major = float(header["BMAJ"]) * u.deg
            minor = float(header["BMIN"]) * u.deg
            pa = float(header.get("BPA", 0.0)) * u.deg
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{label}: BMAJ/BMIN/BPA are not numbers: {exc}") from exc
        return [(major, minor, pa)]
    try:  # AIPS keeps the clean beam in HISTORY cards; radio_beam knows how to find it
        beam = Beam.from_fits_header(header)
    except Exception:
        return None
    return [(beam.major, beam.minor, beam.pa)]


def _from_spectral_cube(cube) -> _Raw:
    label = "the input SpectralCube"
    if any(n == 0 for n in cube.shape):
        raise InvalidInputError(f"{label} has a zero-length axis (shape {cube.shape})")
    wcs = cube.wcs.deepcopy()
    lng, lat, spec, _ = _axes(wcs, label)
    data = cube.filled_data[:]
    data = np.asarray(getattr(data, "value", data))
    kept = sorted((lng, lat, spec))
    position = {w: len(kept) - 1 - kept.index(w) for w in kept}
    data = np.array(np.transpose(data, (position[spec], position[lat], position[lng])), dtype=np.float32)
    wcs = wcs.sub([lng + 1, lat + 1, spec + 1])
    if hasattr(cube, "beams"):
        beams = [(b.major, b.minor, b.pa) for b in cube.beams]
    else:
        try:
            beam = cube.beam
        except Exception:  # spectral_cube's NoBeamError
            beam = None
        beams = None if beam is None else [(beam.major, beam.minor, beam.pa)]
    header = cube.header.copy()
    return _Raw(data, wcs, header, cube.unit, beams, label, None)


# --------------------------------------------------------------------------------------------
# normalisation


def _parse_bunit(bunit, label):
    """The unit of the data: a `~astropy.units.UnitBase`, or None if ``BUNIT`` is empty."""
    if isinstance(bunit, u.UnitBase):
        return None if bunit == u.dimensionless_unscaled else bunit
    text = str(bunit).strip()
    if not text:
        return None
    alias = _BUNIT_ALIASES.get(" ".join(text.lower().split()))
    if alias is not None:
        return alias
    for fmt in ("fits", None):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return u.Unit(text, format=fmt)
        except ValueError:
            continue
    raise InvalidInputError(
        f"{label}: unknown brightness unit BUNIT = {text!r}; deepfocus needs Jy/beam "
        "(or K, converted through the beam)"
    )


def _unit_factors(unit, label, frequencies, beams):
    """Per-channel factors that turn the data into Jy/beam."""
    n = len(frequencies)
    if unit is None:
        warnings.warn(f"{label}: no BUNIT; assuming the data are in Jy/beam", DeepFocusWarning, stacklevel=4)
        return np.ones(n)
    if unit.is_equivalent(JY_PER_BEAM):
        return np.full(n, unit.to(JY_PER_BEAM))
    if unit.is_equivalent(u.K) or unit.is_equivalent(u.Jy / u.sr):
        out = np.empty(n)
        for k, (f, b) in enumerate(zip(frequencies, beams, strict=True)):
            eq = u.brightness_temperature(f, beam_area=b.sr) + u.beam_angular_area(b.sr)
            out[k] = (1.0 * unit).to_value(JY_PER_BEAM, equivalencies=eq)
        return out
    if unit.is_equivalent(u.Jy / u.pix) or unit.is_equivalent(u.Jy):
        raise InvalidInputError(
            f"{label}: BUNIT = {unit.to_string()!r} is a flux density per pixel (a sky model?), not a "
            "surface brightness; deepfocus needs an interferometric image in Jy/beam"
        )
    raise InvalidInputError(
        f"{label}: unsupported brightness unit BUNIT = {unit.to_string()!r}; deepfocus needs Jy/beam "
        "(or K, converted through the beam)"
    )


def _rest_frequency(wcs):
    """Rest frequency (Hz) from the WCS (``RESTFRQ``/``RESTFREQ``, or ``RESTWAV``), or 0."""
    if wcs.wcs.restfrq > 0:
        return float(wcs.wcs.restfrq)
    if wcs.wcs.restwav > 0:
        return float(const.c.to_value(u.m / u.s) / wcs.wcs.restwav)
    return 0.0


def _to_frequency(wcs, n_chan, label):
    """Frequency WCS and channel frequencies (Hz) of the spectral axis (WCS axis 2).

    wcslib's ``wcssptr`` translates the axis exactly: a velocity (radio) axis becomes a linear
    ``FREQ`` axis, a wavelength or optical-velocity axis becomes ``FREQ-W2F`` (still linear in
    wavelength), a relativistic velocity axis ``FREQ-V2F``.
    """
    ctype = wcs.wcs.ctype[2]
    rest = _rest_frequency(wcs)
    if not ctype.upper().startswith(_FREQUENCY_LIKE) and rest <= 0:
        raise InvalidInputError(
            f"{label}: the spectral axis is {ctype.strip()!r} (a velocity) but the header gives no rest "
            "frequency (RESTFRQ): add RESTFRQ in Hz to convert it to frequency"
        )
    out = wcs.deepcopy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            if not ctype.upper().startswith("FREQ") or out.wcs.cunit[2] != u.Hz:
                out.wcs.sptr("FREQ-???", 2)
            out.wcs.set()
            freqs = np.asarray(out.sub([3]).pixel_to_world_values(np.arange(n_chan)), dtype=float)
    except Exception as exc:  # wcslib's errors (InvalidTransformError, ValueError, ...)
        raise InvalidInputError(
            f"{label}: cannot convert the spectral axis ({ctype.strip()!r}) to frequency: {exc}"
        ) from exc
    if not np.all(np.isfinite(freqs)) or np.any(freqs <= 0):
        raise InvalidInputError(f"{label}: the spectral axis gives non-positive or non-finite frequencies")
    step = np.diff(freqs)
    if n_chan > 1 and not (np.all(step > 0) or np.all(step < 0)):
        raise InvalidInputError(f"{label}: the spectral axis is not monotonic in frequency")
    return out, freqs, rest


def _flip_spectral_wcs(wcs, n_chan):
    """WCS whose spectral pixel axis (axis 2) runs the other way (pixel z -> n_chan - 1 - z)."""
    w = wcs.deepcopy()
    w.wcs.crpix[2] = n_chan + 1 - w.wcs.crpix[2]
    if w.wcs.has_cd():
        cd = w.wcs.cd.copy()
        cd[:, 2] *= -1
        w.wcs.cd = cd
    else:
        pc = w.wcs.get_pc().copy()
        if np.all(np.delete(pc[:, 2], 2) == 0):
            w.wcs.cdelt[2] *= -1
        else:
            pc[:, 2] *= -1
            w.wcs.pc = pc
    w.wcs.set()
    return w


def _beam_list(raw, n_chan, data):
    """`~radio_beam.Beams` for every channel, bad beams (0, NaN) replaced by the nearest good one."""
    if not raw.beams:
        raise InvalidInputError(
            f"{raw.label}: no beam: the header has no BMAJ/BMIN/BPA and there is no BEAMS table; "
            "deepfocus needs the restoring beam (as tclean writes it)" + _missing_beams_hint(raw.header)
        )
    entries = raw.beams * n_chan if len(raw.beams) == 1 else raw.beams
    major = u.Quantity([b[0] for b in entries]).to(u.arcsec)
    minor = u.Quantity([b[1] for b in entries]).to(u.arcsec)
    pa = u.Quantity([b[2] for b in entries]).to(u.deg)
    good = np.isfinite(major.value) & np.isfinite(minor.value) & (major.value > 0) & (minor.value > 0)
    good &= np.isfinite(pa.value)
    if not good.any():
        raise InvalidInputError(f"{raw.label}: no valid beam (every BMAJ/BMIN is zero or not finite)")
    if not good.all():
        bad_idx = np.flatnonzero(~good)
        nearest = nearest_true(good)[bad_idx]
        with_data = [int(k) for k in bad_idx if np.isfinite(data[k]).any()]
        if with_data:
            warnings.warn(
                f"{raw.label}: channels {with_data} have no valid beam; using the nearest channel's",
                DeepFocusWarning,
                stacklevel=4,
            )
        major, minor, pa = major.copy(), minor.copy(), pa.copy()
        major[bad_idx], minor[bad_idx], pa[bad_idx] = major[nearest], minor[nearest], pa[nearest]
    swapped = minor > major
    if swapped.any():  # BMIN > BMAJ: the same ellipse is BMAJ <-> BMIN with the PA turned by 90 deg
        warnings.warn(
            f"{raw.label}: BMIN > BMAJ in {int(swapped.sum())} channel(s); axes swapped, PA + 90 deg",
            DeepFocusWarning,
            stacklevel=4,
        )
        major, minor = np.where(swapped, minor, major), np.where(swapped, major, minor)
        pa = np.where(swapped, pa + 90 * u.deg, pa)
    return Beams(major=major, minor=minor, pa=pa)


def _prepare(raw: _Raw, psf, statistics=None) -> PreparedCube:
    """``statistics``: for a part of a larger cube (a tile, a block of channels), the whole cube's
    `~deepfocus.io.tiles.CubeStatistics` for ``raw``'s channels: its noise is used instead of one
    estimated from ``raw``, its flagged channels are blanked (instead of the channels that happen
    to be 0 in ``raw``), and the beam is checked against the whole image."""
    label = raw.label
    data = raw.data
    n_chan, ny, nx = data.shape
    if min(data.shape) == 0:
        raise InvalidInputError(f"{label}: the cube has a zero-length axis (shape {data.shape})")
    if n_chan == 1:
        raise InvalidInputError(
            f"{label}: deepfocus needs a spectral cube (3-D); got a 2-D image (a single channel)"
        )

    # Pixels.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        scales = proj_plane_pixel_scales(raw.wcs.celestial) * u.deg
    if not np.isclose(scales[0], scales[1], rtol=1e-6):
        raise InvalidInputError(
            f"{label}: non-square pixels ({scales[0].to_value(u.arcsec):.6g} x "
            f"{scales[1].to_value(u.arcsec):.6g} arcsec); regrid to square pixels first"
        )
    cell = scales[0].to(u.arcsec)
    _check_orientation(raw.wcs.celestial, label)

    # Unit (refuse early: before complaining about the beam of a Jy/pixel model).
    unit = _parse_bunit(raw.bunit, label)
    if unit is not None:
        _unit_factors(unit, label, [], [])  # raises for units that cannot be converted

    # Spectral axis: frequency, ascending.
    wcs, freqs, rest = _to_frequency(raw.wcs, n_chan, label)
    beams = _beam_list(raw, n_chan, data)
    flipped = bool(freqs[-1] < freqs[0])
    if flipped:
        data = np.ascontiguousarray(data[::-1])
        freqs = freqs[::-1].copy()
        beams = Beams(major=beams.major[::-1], minor=beams.minor[::-1], pa=beams.pa[::-1])
        wcs = _flip_spectral_wcs(wcs, n_chan)
    rest_from_header = rest > 0
    if not rest_from_header:
        rest = 0.5 * (freqs[0] + freqs[-1])
        wcs.wcs.restfrq = rest
        wcs.wcs.set()
    wcs.pixel_shape = (nx, ny, n_chan)
    spectral_axis = (freqs * u.Hz).to(u.GHz)

    # Brightness unit.
    factors = _unit_factors(unit, label, spectral_axis, beams)
    if not np.all(factors == 1.0):
        data *= factors.astype(np.float32)[:, None, None]

    # Valid pixels.
    infinite = np.isinf(data)
    if infinite.any():
        warnings.warn(
            f"{label}: {int(infinite.sum())} infinite values treated as NaN (blanked)",
            DeepFocusWarning,
            stacklevel=3,
        )
        data[infinite] = np.nan
    valid = np.isfinite(data)
    if not valid.any():
        raise InvalidInputError(f"{label}: the cube has no valid pixel (all NaN)")
    if statistics is None:
        flagged = flagged_channels(data, valid)
        _warn_flagged(label, np.flatnonzero(flagged[::-1] if flipped else flagged), n_chan)
    else:  # the whole cube's (its pass warned)
        flagged = np.asarray(statistics.flagged, dtype=bool)
        flagged = flagged[::-1] if flipped else flagged
    data[flagged] = np.nan
    valid[flagged] = False

    if statistics is None:
        noise = robust_channel_noise(data, valid) * JY_PER_BEAM
    else:
        noise = np.asarray(statistics.noise, dtype=float)
        noise = (noise[::-1] if flipped else noise) * np.abs(factors) * JY_PER_BEAM
    dv = (const.c * np.median(np.abs(np.diff(freqs))) / rest).to(u.km / u.s)
    ppb = float((beams[n_chan // 2].major / cell).decompose())
    widest = float((beams.major.max() / cell).decompose())
    side = max(ny, nx) if statistics is None else max(statistics.image_shape)
    if widest > side:  # the filters would need kernels larger than the image (and memory)
        raise InvalidInputError(
            f"{label}: the beam ({beams.major.max().to_value(u.arcsec):.4g} arcsec) is wider than the image "
            f"({side} pixels of {cell.to_value(u.arcsec):.4g} arcsec): wrong BMAJ/BMIN (degrees)?"
        )

    if statistics is None:  # a tile's statistics: the whole cube's reading warned
        order = slice(None, None, -1) if flipped else slice(None)
        _check_noise(label, noise.value[order], valid.reshape(n_chan, -1).sum(axis=1)[order], flagged[order])
        warn_sampling(label, ppb, n_chan)
    psf_array = _prepare_psf(psf, label, n_chan, cell, flipped, spectral_axis) if psf is not None else None
    return PreparedCube(
        data=data,
        wcs=wcs,
        spectral_axis=spectral_axis,
        beams=beams,
        cell=cell,
        rest_frequency=(rest * u.Hz).to(u.GHz),
        rest_frequency_from_header=bool(rest_from_header),
        channel_velocity_width=dv,
        noise=noise,
        valid=valid,
        pixels_per_beam=ppb,
        source_path=raw.path,
        flipped=flipped,
        header=raw.header,
        psf=psf_array,
    )


def _prepare_psf(psf, label, n_chan, cell, flipped, frequencies=None):
    """The PSF as ``PreparedCube.psf`` holds it; ``frequencies``: the cube's (ascending), which a
    PSF file's channels must match."""
    from .psf import check_psf_peaks, fill_blank_planes, read_psf

    if isinstance(psf, (str, os.PathLike)):
        array, psf_cell = read_psf(psf, frequencies=frequencies, flipped=flipped)
        if not np.isclose(psf_cell.to_value(u.arcsec), cell.to_value(u.arcsec), rtol=1e-4):
            raise InvalidInputError(
                f"{psf}: the PSF's pixels ({psf_cell.to_value(u.arcsec):.6g} arcsec) differ from the "
                f"cube's ({cell.to_value(u.arcsec):.6g} arcsec, {label})"
            )
        where = str(psf)
    else:
        array = np.asarray(psf, dtype=float)
        where = "the PSF array"
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise InvalidInputError(f"{where} must be (n_chan, ny, nx), got shape {array.shape}")
        check_psf_peaks(array, where, allow_blank=True)
        array = fill_blank_planes(array, where)  # normalised, as read_psf gives it
    if array.shape[0] == 1 and n_chan > 1:
        array = np.repeat(array, n_chan, axis=0)
    if array.shape[0] != n_chan:
        raise InvalidInputError(f"{where} has {array.shape[0]} channels but the cube has {n_chan} ({label})")
    array = np.array(array, dtype=np.float32)
    return np.ascontiguousarray(array[::-1]) if flipped else array
