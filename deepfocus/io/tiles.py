"""Out-of-core access to large FITS cubes: tile plans, tiles read from disk, whole-cube noise.

A cube larger than memory is processed in spatial tiles that span all channels. Each tile is a
*core* (the pixels it is responsible for) plus a *halo* (pixels around the core that the
detector and the characterizer need to measure a core source exactly as a single pass would:
the beam-matched filter, the peak-finding footprint, the characterizer's cutouts). Cores tile
the image without overlap; halos overlap their neighbours' cores.

Tiles are read from a memory-mapped FITS file through `astropy.io.fits` ``section``, so only the
tile's bytes are read, and each becomes a `~deepfocus.io.cube.PreparedCube` with its own sliced
WCS. Statistics that must be the same for every tile (the robust noise of every channel) are
computed once over the whole cube, a block of channels at a time (`channel_noise`).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from ..exceptions import InvalidInputError
from . import cube as _cube

__all__ = [
    "BYTES_PER_VOXEL",
    "CubeLayout",
    "Tile",
    "TilePlan",
    "channel_noise",
    "crop_psf",
    "cube_layout",
    "parse_memory",
    "plan_tiles",
    "read_tile",
]

log = logging.getLogger(__name__)

#: Peak working memory of detection + characterisation per voxel of a tile (bytes): 71 measured
#: by ``benchmarks/scale.py`` (peak RSS growth over the voxels of the largest tile, shipped
#: networks, 512 x 512 x 128 cube in 8 tiles, channel-noise pass included; 61-68 on the
#: 512 x 1024 x 1024 benchmark cube), plus a margin.
BYTES_PER_VOXEL = 80

#: Smallest core side (pixels) a plan may use.
MIN_CORE = 16


def parse_memory(value):
    """A memory size in bytes from a number of bytes or a string such as ``"2 GiB"`` or ``"500MB"``.

    Parameters
    ----------
    value : int, float or str
        Bytes, or a size with a unit (``kB``, ``MB``, ``GB``, ``KiB``, ``MiB``, ``GiB``, ...),
        parsed by `dask.utils.parse_bytes`.

    Returns
    -------
    size : int
        Bytes (positive).

    Raises
    ------
    InvalidInputError
        If ``value`` is not a positive size.
    """
    from dask.utils import parse_bytes

    if isinstance(value, bool):
        raise InvalidInputError(f"memory limit must be a size such as '2 GiB', got {value!r}")
    if isinstance(value, str) and not any(c.isdigit() for c in value):  # parse_bytes("") and ("kB") give 1000
        raise InvalidInputError(f"memory limit must be a size such as '2 GiB', got {value!r}")
    try:
        size = int(value) if isinstance(value, (int, float, np.integer, np.floating)) else parse_bytes(value)
    except (ValueError, TypeError, KeyError):
        raise InvalidInputError(f"memory limit must be a size such as '2 GiB', got {value!r}") from None
    if size <= 0:
        raise InvalidInputError(f"memory limit must be positive, got {value!r}")
    return int(size)


@dataclass(frozen=True)
class Tile:
    """One tile of a plan: a core and the halo-extended box around it (full-cube pixels).

    Attributes
    ----------
    index : int
        Position in the plan.
    core : tuple of slice
        ``(y, x)`` pixels this tile is responsible for (half-open, full-cube pixels).
    outer : tuple of slice
        ``(y, x)`` pixels read: the core plus the halo, clipped to the image.
    """

    index: int
    core: tuple
    outer: tuple

    @property
    def origin(self):
        """``(y0, x0)``: full-cube pixel of the tile's pixel ``(0, 0)``."""
        return self.outer[0].start, self.outer[1].start

    @property
    def shape(self):
        """``(ny, nx)`` of the outer box."""
        return tuple(s.stop - s.start for s in self.outer)

    def depth(self, x, y, image_shape):
        """How far full-cube positions lie inside the core (pixels; negative outside).

        The distance to the nearest core edge that borders another tile; edges on the image
        border do not count (no other tile can claim what lies beyond them).

        Parameters
        ----------
        x, y : array-like
            Full-cube pixel positions.
        image_shape : tuple
            ``(ny, nx)`` of the cube.
        """
        x, y = np.asarray(x, float), np.asarray(y, float)
        ny, nx = image_shape
        (ys, xs) = self.core
        # A pixel centre k covers [k - 0.5, k + 0.5): the core of [a, b) spans [a - 0.5, b - 0.5).
        sides = [
            (x - (xs.start - 0.5), xs.start > 0),
            ((xs.stop - 0.5) - x, xs.stop < nx),
            (y - (ys.start - 0.5), ys.start > 0),
            ((ys.stop - 0.5) - y, ys.stop < ny),
        ]
        out = np.full(np.broadcast(x, y).shape, np.inf)
        for distance, counts in sides:
            if counts:
                out = np.minimum(out, distance)
        return out


@dataclass(frozen=True)
class TilePlan:
    """How a cube is cut into tiles (`plan_tiles`).

    Attributes
    ----------
    shape : tuple of int
        ``(n_chan, ny, nx)`` of the cube.
    tiles : tuple of `Tile`
    halo : int
        Halo width (pixels).
    memory_limit : int
        Budget for the tiles in flight together (bytes).
    max_in_flight : int
        Tiles processed at once.
    tile_bytes : int
        Estimated peak working memory of the largest tile (bytes).
    """

    shape: tuple
    tiles: tuple
    halo: int
    memory_limit: int
    max_in_flight: int
    tile_bytes: int

    def __len__(self):
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    @property
    def grid(self):
        """``(n_y, n_x)`` tiles along each axis."""
        ys = sorted({t.core[0].start for t in self.tiles})
        xs = sorted({t.core[1].start for t in self.tiles})
        return len(ys), len(xs)


def _edges(n, parts):
    """Split ``range(n)`` into ``parts`` nearly equal half-open pieces."""
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def plan_tiles(shape, *, memory_limit, halo, max_in_flight=1, bytes_per_voxel=BYTES_PER_VOXEL):
    """Cut a cube into the fewest spatial tiles whose working memory fits the budget.

    Tiles span all channels. The budget is shared by the ``max_in_flight`` tiles processed at
    once; a tile of ``ny x nx`` pixels (core plus halo) needs about
    ``bytes_per_voxel * n_chan * ny * nx`` bytes.

    Parameters
    ----------
    shape : tuple of int
        ``(n_chan, ny, nx)``.
    memory_limit : int or str
        Budget for the tiles in flight (bytes, or a size such as ``"2 GiB"``); the process's fixed
        footprint (Python, the networks: a few hundred MB) comes on top.
    halo : int
        Halo width (pixels) added on every side of a core that borders another tile.
    max_in_flight : int
        Tiles processed at once.
    bytes_per_voxel : float
        Working memory per voxel of a tile (default `BYTES_PER_VOXEL`).

    Returns
    -------
    plan : `TilePlan`

    Raises
    ------
    InvalidInputError
        If the budget cannot hold one tile of the smallest core (`MIN_CORE` pixels) with its
        halo; the message gives the size needed.
    """
    n_chan, ny, nx = (int(n) for n in shape)
    limit = parse_memory(memory_limit)
    if int(max_in_flight) != max_in_flight or max_in_flight < 1:
        raise InvalidInputError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
    max_in_flight = int(max_in_flight)
    halo = int(halo)
    if halo < 0:
        raise InvalidInputError(f"halo must be >= 0 pixels, got {halo}")
    per_tile = limit / max_in_flight
    per_pixel = bytes_per_voxel * n_chan

    def need(tile_y, tile_x):
        return int(per_pixel * tile_y * tile_x)

    whole = need(ny, nx)
    if whole <= per_tile:
        tiles = (Tile(0, (slice(0, ny), slice(0, nx)), (slice(0, ny), slice(0, nx))),)
        return TilePlan((n_chan, ny, nx), tiles, halo, limit, max_in_flight, whole)
    smallest = need(min(ny, MIN_CORE + 2 * halo), min(nx, MIN_CORE + 2 * halo))
    if smallest > per_tile:
        raise InvalidInputError(
            f"memory limit {_human(limit)} is too small: one tile of {MIN_CORE} x {MIN_CORE} pixels plus a "
            f"{halo}-pixel halo over {n_chan} channels needs {_human(smallest)}"
            + (
                f" ({max_in_flight} tiles in flight need {_human(smallest * max_in_flight)})"
                if max_in_flight > 1
                else ""
            )
            + "; raise the memory limit"
        )

    def outer(n, parts):  # the longest outer extent of `parts` cores along an axis of n pixels
        return max(min(n, c.stop + halo) - max(0, c.start - halo) for c in _edges(n, parts))

    best = None
    for parts_y in range(1, max(1, ny // MIN_CORE) + 1):
        outer_y = outer(ny, parts_y)
        parts_x = 1
        while parts_x <= max(1, nx // MIN_CORE) and need(outer_y, outer(nx, parts_x)) > per_tile:
            parts_x += 1
        if need(outer_y, outer(nx, parts_x)) > per_tile:
            continue
        # Fewest tiles; among equals the squarest cores (least halo).
        key = (parts_y * parts_x, abs(math.log((ny / parts_y) / (nx / parts_x))))
        if best is None or key < best[0]:
            best = (key, parts_y, parts_x)
    if best is None:
        raise InvalidInputError(
            f"memory limit {_human(limit)} is too small for tiles of at least {MIN_CORE} pixels with a "
            f"{halo}-pixel halo over {n_chan} channels; raise the memory limit"
        )
    _, parts_y, parts_x = best
    tiles = []
    for core_y in _edges(ny, parts_y):
        for core_x in _edges(nx, parts_x):
            outer = (
                slice(max(0, core_y.start - halo), min(ny, core_y.stop + halo)),
                slice(max(0, core_x.start - halo), min(nx, core_x.stop + halo)),
            )
            tiles.append(Tile(len(tiles), (core_y, core_x), outer))
    largest = max(need(*t.shape) for t in tiles)
    return TilePlan((n_chan, ny, nx), tuple(tiles), halo, limit, max_in_flight, largest)


def _human(n):
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


@dataclass(frozen=True)
class CubeLayout:
    """What the header of a cube file says, without reading its data.

    Attributes
    ----------
    shape : tuple of int
        ``(n_chan, ny, nx)`` (channels in the file's order).
    cell : `~astropy.units.Quantity`
        Pixel size (arcsec).
    beam_major : `~astropy.units.Quantity`
        Major axis of the middle channel's beam (arcsec).
    nbytes : int
        Size of the cube as float32 (bytes).
    """

    shape: tuple
    cell: u.Quantity
    beam_major: u.Quantity

    @property
    def nbytes(self):
        return 4 * int(np.prod(self.shape))

    @property
    def pixels_per_beam(self):
        """Beam major axis in pixels."""
        return float((self.beam_major / self.cell).decompose())


def _image(path):
    """Open ``path`` (memory-mapped) and return ``(hdul, hdu, wcs, (lng, lat, spec))``."""
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise InvalidInputError(f"{label}: no such file")
    try:
        hdul = fits.open(path, mode="readonly", memmap=True)
    except _cube._FITS_READ_ERRORS as exc:
        raise InvalidInputError(f"{label}: cannot read this FITS file: {type(exc).__name__}: {exc}") from exc
    hdu = _cube._image_hdu(hdul, label)
    wcs = _cube._parse_wcs(hdu.header, len(hdu.shape), label)
    lng, lat, spec, _ = _cube._axes(wcs, label)
    return hdul, hdu, wcs, (lng, lat, spec)


def cube_layout(path):
    """Shape, pixel size and beam of a FITS cube from its header (no data read).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    layout : `CubeLayout`
    """
    hdul, hdu, wcs, (lng, lat, spec) = _image(path)
    with hdul:
        ndim = len(hdu.shape)
        shape = tuple(int(hdu.shape[ndim - 1 - a]) for a in (spec, lat, lng))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            cell = (proj_plane_pixel_scales(wcs.sub([lng + 1, lat + 1])) * u.deg).to(u.arcsec)[0]
        beams = _cube._beams_from_hdul(hdul, hdu.header, shape[0], 0, str(path))
    if not beams:
        raise InvalidInputError(f"{path}: no beam (BMAJ/BMIN/BPA or a BEAMS table)")
    major = u.Quantity(beams[len(beams) // 2][0]).to(u.arcsec)
    return CubeLayout(shape, cell, major)


def channel_noise(path, *, block_bytes=256 * 2**20):
    """Robust noise of every channel of a FITS cube, read a block of channels at a time.

    The same estimate as `~deepfocus.io.cube.robust_channel_noise` on the whole cube (it is
    computed channel by channel), in the file's channel order and brightness unit; tiles use it
    instead of their own (`read_tile`), so that every tile normalises by the same noise.

    Parameters
    ----------
    path : str or path-like
        FITS cube.
    block_bytes : int
        Largest block of channels read at once (bytes, float32).

    Returns
    -------
    noise : `numpy.ndarray`
        ``(n_chan,)``, NaN for channels without enough valid pixels.
    """
    layout = cube_layout(path)
    n_chan, ny, nx = layout.shape
    step = max(1, int(block_bytes // (4 * ny * nx)))
    noise = np.empty(n_chan)
    for z0 in range(0, n_chan, step):
        z1 = min(n_chan, z0 + step)
        raw = _cube._read_fits(Path(path), region=(slice(z0, z1), slice(None), slice(None)))
        noise[z0:z1] = _cube.robust_channel_noise(raw.data)
    log.info("channel noise of %s from %d blocks of %d channels", path, math.ceil(n_chan / step), step)
    return noise


def read_tile(path, tile, *, noise=None, psf=None):
    """Read one tile of a FITS cube as a `~deepfocus.io.cube.PreparedCube`.

    Only the tile's bytes are read (``section`` of the memory-mapped file). The tile is prepared
    as `~deepfocus.io.cube.read_cube` prepares a whole cube (units, Stokes, beams, frequency
    ascending), with its WCS shifted to the tile, and the whole cube's channel noise.

    Parameters
    ----------
    path : str or path-like
        FITS cube.
    tile : `Tile`
    noise : array-like, optional
        Per-channel noise of the whole cube (`channel_noise`); None measures it on the tile
        (right when the tile is the whole cube).
    psf : array-like, optional
        PSF ``(n_chan, ny, nx)`` or one plane, already cut to what the tile needs (`crop_psf`).

    Returns
    -------
    cube : `~deepfocus.io.cube.PreparedCube` or None
        None when the tile holds no valid, non-zero pixel (beyond the primary-beam cut-off, which
        some tools blank with NaN and others fill with 0).
    """
    raw = _cube._read_fits(Path(path), region=(slice(None), tile.outer[0], tile.outer[1]))
    if not (np.abs(raw.data) > 0).any():  # NaN compares False: all-NaN tiles are empty too
        return None
    return _cube._prepare(raw, psf, channel_noise=noise)


def crop_psf(psf, half_size, *, cell=None):
    """The centre of a PSF, ``2 * half_size + 1`` pixels on a side (or less if it is smaller).

    The sidelobe test of the detector looks the PSF up at the offsets between sources of one
    tile, so a tile needs no more than its own extent around the PSF's centre.

    Parameters
    ----------
    psf : str, path-like or array-like
        A PSF FITS file (read through a memory map: only the crop is read) or an array
        ``(n_chan, ny, nx)`` / ``(ny, nx)`` with its peak at ``(ny // 2, nx // 2)``.
    half_size : int
        Largest offset needed (pixels).
    cell : `~astropy.units.Quantity`, optional
        The cube's pixel size; a PSF file with other pixels is refused.

    Returns
    -------
    psf : `numpy.ndarray`
        ``(n_chan, m, m)`` float32, peak 1 at the centre of every plane.
    """
    half = int(half_size)
    if isinstance(psf, (str, Path)):
        hdul, hdu, wcs, (lng, lat, spec) = _image(psf)
        with hdul:
            ny, nx = hdu.shape[-2:]
            cy, cx = ny // 2, nx // 2
            index = tuple([slice(None)] * (len(hdu.shape) - 2)) + (
                slice(max(0, cy - half), cy + half + 1),
                slice(max(0, cx - half), cx + half + 1),
            )
            array = np.asarray(hdu.section[index], dtype=np.float32)
            if cell is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FITSFixedWarning)
                    psf_cell = proj_plane_pixel_scales(wcs.sub([lng + 1, lat + 1]))[0] * u.deg
                if not np.isclose(
                    psf_cell.to_value(u.arcsec), u.Quantity(cell).to_value(u.arcsec), rtol=1e-4
                ):
                    raise InvalidInputError(
                        f"{psf}: the PSF's pixels ({psf_cell.to_value(u.arcsec):.6g} arcsec) differ from the "
                        f"cube's ({u.Quantity(cell).to_value(u.arcsec):.6g} arcsec)"
                    )
    else:
        array = np.asarray(psf, dtype=np.float32)
        ny, nx = array.shape[-2:]
        cy, cx = ny // 2, nx // 2
        array = array[..., max(0, cy - half) : cy + half + 1, max(0, cx - half) : cx + half + 1]
    array = np.array(array.reshape(-1, *array.shape[-2:]), dtype=np.float32)
    my, mx = array.shape[-2:]
    # Keep the peak at (m // 2, m // 2): trim to an odd, centred, square box.
    cy, cx = min(cy, half), min(cx, half)
    h = min(cy, cx, my - 1 - cy, mx - 1 - cx)
    array = array[:, cy - h : cy + h + 1, cx - h : cx + h + 1]
    centre = array[:, h, h]
    if not np.all(np.isfinite(centre)) or np.any(centre == 0):
        raise InvalidInputError("the PSF is zero or not finite at its centre pixel")
    return array / centre[:, None, None]
