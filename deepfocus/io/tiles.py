"""Out-of-core access to large FITS cubes: tile plans, parts read from disk, whole-cube statistics.

A cube larger than memory is processed in spatial tiles that span all channels (read, for a
cube with many channels, in overlapping blocks of channels: `ChannelBlock`). Each tile is a
*core* (the pixels it is responsible for) plus a *halo* (pixels around the core that the
detector and the characterizer need to measure a core source exactly as a single pass would:
the beam-matched filter, the peak-finding footprint, the characterizer's cutouts). Cores tile
the image without overlap; halos overlap their neighbours' cores.

Parts of the cube (spatial tiles, blocks of channels) are read from the FITS file (not
memory-mapped) through `astropy.io.fits` ``section``, so little more than their bytes are
read, and each becomes a
`~deepfocus.io.cube.PreparedCube` with its own sliced WCS. What `~deepfocus.io.cube.read_cube`
decides channel by channel from the data (the robust noise of every channel, which channels are
flagged: exactly 0 wherever valid) is measured once over the whole cube, a block of channels at
a time (`cube_statistics`), and every part is prepared with it.
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

from .._validation import check_positive_int
from ..exceptions import InvalidInputError
from . import cube as _cube
from ._nearest import nearest_true

__all__ = [
    "BYTES_PER_VOXEL",
    "ChannelBlock",
    "CubeLayout",
    "CubeStatistics",
    "Tile",
    "TilePlan",
    "channel_blocks",
    "channel_noise",
    "cube_layout",
    "cube_statistics",
    "parse_memory",
    "plan_tiles",
    "read_part",
    "read_tile",
]

log = logging.getLogger(__name__)

#: Peak working memory of detection + characterisation per voxel of a tile (bytes): 43 measured
#: (anonymous resident memory during the tiles beyond the process's footprint, shipped networks,
#: a 512 x 512 x 512 cube of ``benchmarks/scale.py`` in 81 tiles of up to 135 x 135 pixels;
#: the networks' batches are reserved apart, `deepfocus.detection.tiled.network_bytes`), plus
#: a margin. Tiles are read without a memory map, so the file's pages do not count.
BYTES_PER_VOXEL = 52

#: Smallest core side (pixels) a plan may use.
MIN_CORE = 16
#: Smallest block of channels (core) a plan may use.
MIN_BLOCK = 16


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
class ChannelBlock:
    """One block of channels of a plan: the channels it is responsible for and those read.

    Attributes
    ----------
    core : slice
        File channels whose detections this block reports (half-open).
    outer : slice
        File channels read: the core plus the channel halo, clipped to the band.
    """

    core: slice
    outer: slice


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
    channel_blocks : tuple of `ChannelBlock`
        The blocks of channels each tile is read in; empty when tiles are read with all their
        channels at once.
    channel_halo : int
        Channels added on either side of a block's core.
    """

    shape: tuple
    tiles: tuple
    halo: int
    memory_limit: int
    max_in_flight: int
    tile_bytes: int
    channel_blocks: tuple = ()
    channel_halo: int = 0

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


def channel_blocks(n_chan, parts, halo):
    """``parts`` nearly equal `ChannelBlock` of ``n_chan`` channels with ``halo`` channels
    added on either side of each core (clipped to the band)."""
    return tuple(
        ChannelBlock(core, slice(max(0, core.start - halo), min(n_chan, core.stop + halo)))
        for core in _edges(n_chan, parts)
    )


def _grid(ny, nx, halo, need, per_tile):
    """``(parts_y, parts_x)``: the fewest tiles (among equals the squarest cores) whose
    ``need(outer_y, outer_x)`` fits ``per_tile``, or None."""

    def extents(n):  # the longest outer extent of `parts` cores along an axis of n pixels, by parts
        return {
            parts: max(min(n, c.stop + halo) - max(0, c.start - halo) for c in _edges(n, parts))
            for parts in range(1, max(1, n // MIN_CORE) + 1)
        }

    outer_y, outer_x = extents(ny), extents(nx)
    best = None
    for parts_y in outer_y:
        fits = [p for p in outer_x if need(outer_y[parts_y], outer_x[p]) <= per_tile]
        if not fits:
            continue
        parts_x = fits[0]
        # Fewest tiles; among equals the squarest cores (least halo).
        key = (parts_y * parts_x, abs(math.log((ny / parts_y) / (nx / parts_x))))
        if best is None or key < best[0]:
            best = (key, parts_y, parts_x)
    return None if best is None else best[1:]


def _tiles(ny, nx, halo, parts_y, parts_x):
    tiles = []
    for core_y in _edges(ny, parts_y):
        for core_x in _edges(nx, parts_x):
            outer = (
                slice(max(0, core_y.start - halo), min(ny, core_y.stop + halo)),
                slice(max(0, core_x.start - halo), min(nx, core_x.stop + halo)),
            )
            tiles.append(Tile(len(tiles), (core_y, core_x), outer))
    return tuple(tiles)


def plan_tiles(
    shape,
    *,
    memory_limit,
    halo,
    max_in_flight=1,
    bytes_per_voxel=BYTES_PER_VOXEL,
    tile_overhead=0,
    channel_halo=None,
    column_bytes=0,
    channel_parts=None,
):
    """Cut a cube into the fewest spatial tiles whose working memory fits the budget.

    Tiles span all channels. The budget is shared by the ``max_in_flight`` tiles processed at
    once; a tile of ``ny x nx`` pixels (core plus halo) needs about
    ``bytes_per_voxel * n_chan * ny * nx + tile_overhead`` bytes.

    With ``channel_halo``, a cube whose smallest tile of all channels does not fit (or any cube,
    with ``channel_parts``) is also cut along the spectral axis: each tile is then read in
    blocks of channels (`ChannelBlock`) with ``channel_halo`` channels on either side, and needs
    about ``bytes_per_voxel * block * ny * nx + tile_overhead + column_bytes`` bytes, where
    ``block`` is the longest block with its halo and ``column_bytes`` the memory of the
    measurements made on all channels around one source at a time. Among the cuts that fit, the
    one that reads the fewest voxels (halos included, and `PIECE_COST_VOXELS` for each piece
    read) is chosen.

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
    tile_overhead : int
        Working memory of a tile besides its voxels (bytes): the networks' batches
        (`deepfocus.detection.tiled.network_bytes`).
    channel_halo : int, optional
        Channels a block of channels needs on either side of its core; None: tiles always span
        all channels.
    column_bytes : int
        With blocks of channels: the working memory of the measurements around one source over
        all channels (bytes).
    channel_parts : int, optional
        Cut the band into this many blocks of channels (needs ``channel_halo``); default: only
        when a tile of all channels does not fit, into as many as read the fewest voxels.

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
    max_in_flight = check_positive_int(max_in_flight, "max_in_flight")
    halo = int(halo)
    if halo < 0:
        raise InvalidInputError(f"halo must be >= 0 pixels, got {halo}")
    per_tile = limit / max_in_flight
    per_pixel = bytes_per_voxel * n_chan

    def need(tile_y, tile_x):
        return int(per_pixel * tile_y * tile_x + tile_overhead)

    def blocked_plan(parts_choices):
        return _blocked_plan(
            (n_chan, ny, nx),
            limit,
            halo,
            max_in_flight,
            bytes_per_voxel,
            tile_overhead + column_bytes,
            int(channel_halo),
            parts_choices,
        )

    if channel_parts is not None:
        if channel_halo is None:
            raise InvalidInputError("channel_parts needs a channel_halo")
        if int(channel_parts) != channel_parts or not 1 <= channel_parts <= n_chan:
            raise InvalidInputError(f"channel_parts must be an integer in 1..{n_chan}, got {channel_parts!r}")
        if channel_parts > 1:
            plan = blocked_plan([int(channel_parts)])
            if plan is None:
                raise InvalidInputError(
                    f"memory limit {_human(limit)} is too small for tiles of at least {MIN_CORE} pixels "
                    f"with a {halo}-pixel halo over {channel_parts} blocks of channels; raise the limit"
                )
            return plan
    whole = need(ny, nx)
    if whole <= per_tile:
        tiles = (Tile(0, (slice(0, ny), slice(0, nx)), (slice(0, ny), slice(0, nx))),)
        return TilePlan((n_chan, ny, nx), tiles, halo, limit, max_in_flight, whole)
    smallest = need(min(ny, MIN_CORE + 2 * halo), min(nx, MIN_CORE + 2 * halo))
    grid = _grid(ny, nx, halo, need, per_tile) if smallest <= per_tile else None
    spatial = None
    if grid is not None:
        tiles = _tiles(ny, nx, halo, *grid)
        spatial = TilePlan(
            (n_chan, ny, nx), tiles, halo, limit, max_in_flight, max(need(*t.shape) for t in tiles)
        )
    if channel_halo is not None and channel_parts is None:
        blocked = blocked_plan(_block_counts(n_chan))
        # Tiles of all channels measure every source in one read; blocks of channels pay a read
        # of its column of all channels per source: they are chosen when the tiles of all
        # channels would be so small that their halos make them cost twice as much or more.
        if blocked is not None and (spatial is None or 2 * _cost(blocked) <= _cost(spatial)):
            return blocked
    if spatial is not None:
        return spatial
    if smallest > per_tile:
        raise InvalidInputError(
            f"memory limit {_human(limit)} is too small: one tile of {MIN_CORE} x {MIN_CORE} pixels plus a "
            f"{halo}-pixel halo over {n_chan} channels needs {_human(smallest)}"
            + (
                f" ({max_in_flight} tiles in flight need {_human(smallest * max_in_flight)})"
                if max_in_flight > 1
                else ""
            )
            + (
                f", and blocks of channels need {_human(tile_overhead + column_bytes)} besides their voxels"
                if channel_halo is not None
                else ""
            )
            + "; raise the memory limit"
        )
    raise InvalidInputError(
        f"memory limit {_human(limit)} is too small for tiles of at least {MIN_CORE} pixels with a "
        f"{halo}-pixel halo over {n_chan} channels; raise the memory limit"
    )


#: The fixed cost of a piece of a plan (a tile, or a block of channels of a tile) in voxels: the
#: file opened and its header read (about 20 ms), the matched filter's set-up, about 0.1 s in
#: all, the time to process some 2**17 voxels (about 1.3 Mvoxel/s on one core).
PIECE_COST_VOXELS = 2**17


def _cost(plan):
    """What a plan costs in voxels: those read, halos included, plus `PIECE_COST_VOXELS` a piece."""
    area = sum(a * b for a, b in (t.shape for t in plan.tiles))
    if not plan.channel_blocks:
        return area * plan.shape[0] + PIECE_COST_VOXELS * len(plan.tiles)
    pieces = len(plan.tiles) * len(plan.channel_blocks)
    return area * sum(b.outer.stop - b.outer.start for b in plan.channel_blocks) + PIECE_COST_VOXELS * pieces


def _block_counts(n_chan):
    """Numbers of blocks worth trying: block lengths from half the band down to `MIN_BLOCK`
    channels, about 10 % apart."""
    lengths = np.geomspace(
        n_chan / 2, MIN_BLOCK, max(2, int(np.log(n_chan / 2 / MIN_BLOCK) / np.log(1.1)) + 1)
    )
    return sorted({max(2, int(np.ceil(n_chan / length))) for length in lengths if length >= MIN_BLOCK})


def _blocked_plan(shape, limit, halo, max_in_flight, bytes_per_voxel, overhead, channel_halo, parts_choices):
    """The plan with blocks of channels that costs least (`_cost`), among ``parts_choices``
    blocks (in increasing order), or None if none fits."""
    n_chan, ny, nx = shape
    per_tile = limit / max_in_flight
    best = None
    for parts in parts_choices:
        blocks = channel_blocks(n_chan, parts, channel_halo)
        longest = max(b.outer.stop - b.outer.start for b in blocks)

        def need(tile_y, tile_x, longest=longest):
            return int(bytes_per_voxel * longest * tile_y * tile_x + overhead)

        grid = _grid(ny, nx, halo, need, per_tile)
        if grid is None:
            continue
        tiles = _tiles(ny, nx, halo, *grid)
        plan = TilePlan(
            shape, tiles, halo, limit, max_in_flight, max(need(*t.shape) for t in tiles), blocks, channel_halo
        )
        if best is None or _cost(plan) < _cost(best):
            best = plan
        if len(tiles) == 1:  # more blocks would only read more halo channels
            break
    return best


def _human(n):
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{n / 2**10:.0f} KiB" if n >= 2**10 else f"{int(n)} bytes"


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
        with warnings.catch_warnings():
            # A truncated file: `_cube._check_complete` says so in one line.
            warnings.filterwarnings("ignore", message="File may have been truncated")
            hdul = fits.open(path, mode="readonly", memmap=None)  # not mapped where scaled (BSCALE)
            _cube._check_complete(hdul, path, label)  # before the BEAMS table is looked for
            hdu = _cube._image_hdu(hdul, label)
    except InvalidInputError:
        raise
    except _cube._FITS_READ_ERRORS as exc:
        raise InvalidInputError(f"{label}: cannot read this FITS file: {type(exc).__name__}: {exc}") from exc
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
        raise InvalidInputError(
            f"{path}: no beam (BMAJ/BMIN/BPA or a BEAMS table)" + _cube._missing_beams_hint(hdu.header)
        )
    # The middle channel's beam, or the nearest valid one (as `read_cube` replaces bad beams).
    majors = u.Quantity([u.Quantity(b[0]).to(u.arcsec) for b in beams])
    minors = u.Quantity([u.Quantity(b[1]).to(u.arcsec) for b in beams])
    good = np.isfinite(majors) & np.isfinite(minors) & (majors.value > 0) & (minors.value > 0)
    if not good.any():
        raise InvalidInputError(f"{path}: no valid beam (every BMAJ/BMIN is zero or not finite)")
    major = majors[nearest_true(good)[len(beams) // 2]]
    return CubeLayout(shape, cell, major)


@dataclass(frozen=True)
class CubeStatistics:
    """What `~deepfocus.io.cube.read_cube` would decide from the whole cube's data, for its parts.

    Made by `cube_statistics`; a part of the cube prepared with it (`read_part`) is normalised
    and blanked exactly as the same pixels of the whole cube.

    Attributes
    ----------
    noise : `numpy.ndarray`
        ``(n_chan,)`` robust noise of every channel (the file's channel order and brightness
        unit), NaN for channels without enough valid pixels.
    flagged : `numpy.ndarray`
        ``(n_chan,)`` bool: channels whose valid pixels are all exactly 0 (blanked).
    image_shape : tuple of int
        ``(ny, nx)`` of the whole cube.
    """

    noise: np.ndarray
    flagged: np.ndarray
    image_shape: tuple

    def channels(self, part):
        """The statistics of the file channels ``part`` (a slice), for a block of channels."""
        return CubeStatistics(self.noise[part], self.flagged[part], self.image_shape)


def _channel_blocks(n_chan, ny, nx, block_bytes):
    """File channel slices of at most ``block_bytes`` (float32) each."""
    step = max(1, int(block_bytes // (4 * ny * nx)))
    return [slice(z0, min(n_chan, z0 + step)) for z0 in range(0, n_chan, step)]


def cube_statistics(path, *, block_bytes=256 * 2**20):
    """Robust noise and flagged channels of a FITS cube, read a block of channels at a time.

    The same estimates as `~deepfocus.io.cube.read_cube` makes on the whole cube (both are
    computed channel by channel). Warns once about flagged channels, as ``read_cube`` does.

    Parameters
    ----------
    path : str or path-like
        FITS cube.
    block_bytes : int
        Largest block of channels read at once (bytes, float32).

    Returns
    -------
    statistics : `CubeStatistics`

    Raises
    ------
    InvalidInputError
        If the cube has no valid pixel, every channel is flagged, or no channel has a measurable
        noise.
    """
    layout = cube_layout(path)
    n_chan, ny, nx = layout.shape
    blocks = _channel_blocks(n_chan, ny, nx, block_bytes)
    noise = np.empty(n_chan)
    counts = np.zeros(n_chan, dtype=np.int64)
    flagged = np.zeros(n_chan, dtype=bool)
    any_valid = False
    for part in blocks:
        raw = _cube._read_fits(Path(path), region=(part, slice(None), slice(None)))
        valid = np.isfinite(raw.data)
        any_valid = any_valid or bool(valid.any())
        flagged[part] = _cube.flagged_channels(raw.data, valid)
        counts[part] = valid.reshape(len(valid), -1).sum(axis=1)
        noise[part] = _cube.robust_channel_noise(raw.data, valid)
    if not any_valid:
        raise InvalidInputError(f"{path}: the cube has no valid pixel (all NaN)")
    noise[flagged] = np.nan
    _cube._warn_flagged(str(path), np.flatnonzero(flagged), n_chan)
    _cube._check_noise(str(path), noise, counts, flagged)
    log.info("channel statistics of %s from %d blocks of %d channels", path, len(blocks), blocks[0].stop)
    return CubeStatistics(noise, flagged, (ny, nx))


def channel_noise(path, *, block_bytes=256 * 2**20):
    """Robust noise of every channel of a FITS cube (`cube_statistics`), in the file's channel
    order and brightness unit; NaN for channels without enough valid pixels and flagged ones."""
    return cube_statistics(path, block_bytes=block_bytes).noise


def read_part(path, *, channels=slice(None), y=slice(None), x=slice(None), statistics=None):
    """Read a box of a FITS cube as a `~deepfocus.io.cube.PreparedCube`.

    Only the box's bytes are read (``section``, without a memory map). It is prepared as
    `~deepfocus.io.cube.read_cube` prepares a whole cube (units, Stokes, beams, frequency
    ascending), with its WCS shifted to the box and, with ``statistics``, the whole cube's noise
    and flagged channels.

    Parameters
    ----------
    path : str or path-like
        FITS cube.
    channels, y, x : slice
        The box: channels in the file's order, pixels.
    statistics : `CubeStatistics`, optional
        The whole cube's (`cube_statistics`); None measures them on the box (right when the
        box is the whole cube).

    Returns
    -------
    cube : `~deepfocus.io.cube.PreparedCube` or None
        None when the box holds no finite pixel.
    """
    raw = _cube._read_fits(Path(path), region=(channels, y, x))
    if not np.isfinite(raw.data).any():
        return None
    if statistics is not None:
        statistics = statistics.channels(channels)
    return _cube._prepare(raw, None, statistics)


def read_tile(path, tile, *, statistics=None):
    """Read one tile (all channels) of a FITS cube as a `~deepfocus.io.cube.PreparedCube`.

    As `read_part` for the tile's outer box, but a tile without a non-zero pixel is empty.

    Parameters
    ----------
    path : str or path-like
        FITS cube.
    tile : `Tile`
    statistics : `CubeStatistics`, optional
        The whole cube's (`cube_statistics`); None measures them on the tile (right when the
        tile is the whole cube).

    Returns
    -------
    cube : `~deepfocus.io.cube.PreparedCube` or None
        None when the tile holds no valid, non-zero pixel (beyond the primary-beam cut-off, which
        some tools blank with NaN and others fill with 0).
    """
    raw = _cube._read_fits(Path(path), region=(slice(None), tile.outer[0], tile.outer[1]))
    if not (np.abs(raw.data) > 0).any():  # NaN compares False: all-NaN tiles are empty too
        return None
    return _cube._prepare(raw, None, statistics)
