"""Detection and characterisation of cubes larger than memory, tile by tile.

`TiledPipeline` runs a `~deepfocus.DeepFocus` (or a `~deepfocus.CubeDetector`) on the spatial
tiles of a FITS cube planned by `~deepfocus.io.tiles.plan_tiles` and stitches their catalogues
into the one a single pass gives. Everything the single pass measures over the whole cube is
measured over the whole cube first, in passes whose blocks fit the memory budget:

1. the robust noise of every channel and the flagged channels, a block of channels at a time
   (`~deepfocus.io.tiles.cube_statistics`);
2. the continuum of every pixel and the map of valid pixels (the user's mask applied), over
   spatial tiles without halo (`continuum_map`);
3. the robust noise of every plane of every matched filter width, over whole images, a block
   of channels at a time in frequency order (`plane_noise`);

then every tile is read with a halo around its core wide enough for the matched filter, the
peak finding, the deconvolver and the characterizer, given these, and run without the PSF:

- a tile keeps the detections that lie in its core, or within a beam outside it (so that a
  source on a core edge that float rounding puts a hair on the wrong side is not lost); the
  same source reported by two tiles (within half a beam, overlapping lines) is kept once, from
  the tile it lies deepest inside;
- with a PSF, the sidelobe test (`~deepfocus.detection.sidelobes.sidelobe_rejected`) runs once
  on the stitched catalogue, reading the PSF one plane at a time
  (`~deepfocus.io.psf.PSFPlanes`), and the characterizer's blended-neighbour flag is set
  again among the rows that remain;
- the characterizer measures the sources with neighbours again, among all the rows that remain
  (`~deepfocus.characterization.crowding.refit_crowded`), reading a column of the cube around
  each of them (tiles characterise their rows alone);
- pixel coordinates are shifted to the full cube and the rows renumbered ``1..N``, brightest
  first.

Tiles may run concurrently on any ``concurrent.futures``-style executor (an object with
``submit`` returning futures with ``result()``): a `~concurrent.futures.ThreadPoolExecutor`, or a
``dask.distributed.Client`` whose workers can read the file. At most ``max_in_flight`` tiles are
submitted at once, which bounds memory. The passes run in the calling process.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import vstack
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..exceptions import DeepFocusWarning, InvalidInputError, NoDetectionsWarning
from ..io.cube import warn_sampling
from ..io.tiles import cube_layout, cube_statistics, plan_tiles, read_part, read_tile

__all__ = [
    "CONTINUUM_BYTES_PER_VOXEL",
    "PLANE_BYTES_PER_VOXEL",
    "TiledPipeline",
    "continuum_map",
    "default_halo",
    "detect_cube_tiled",
    "input_spectral_axis",
    "network_bytes",
    "plane_noise",
]

log = logging.getLogger(__name__)

#: Peak working memory of the continuum pass (`continuum_map`) per voxel of a tile (bytes): 20
#: measured (tracemalloc, 128 x 256 x 256 cube in 6 tiles), plus a 3-D mask's copy and a margin.
CONTINUUM_BYTES_PER_VOXEL = 32

#: Peak working memory of the plane-noise pass (`plane_noise`) per voxel of a block of
#: channels (bytes): 43 measured (tracemalloc, blocks of 22 channels of 256 x 256), plus a
#: margin. On top come the last ``max(widths)`` filtered planes (4 bytes per pixel each) and a
#: running sum per width (8 bytes per pixel each).
PLANE_BYTES_PER_VOXEL = 56


def network_bytes(n_channels):
    """Working memory of the networks for one tile, besides its voxels (bytes).

    The stages run one after the other, so the largest counts: the deconvolver's batches of
    `~deepfocus.detection.detector.DECONVOLVER_BATCH` cutouts (50 MiB measured), the spectral
    network's batches (`~deepfocus.detection.lines.spectral_batch`: 0.11 MiB per channel
    and spectrum of the batch measured, 57 MiB for 64 spectra of 512 channels, smaller batches
    for longer spectra) and the characterizer, one cutout at a time (less than either), plus a
    margin.

    Parameters
    ----------
    n_channels : int
        Channels of the cube.
    """
    from .lines import spectral_batch

    spectra = 0.11 * 2**20 * n_channels * spectral_batch(n_channels) / 64
    return int(max(96 * 2**20, 1.3 * spectra))


def _uses_networks(pipeline):
    detector, characterizer = _stages(pipeline)
    networks = [detector._spectral, detector._deconvolver, getattr(characterizer, "_network", None)]
    return any(n is not None for n in networks)


def default_halo(pixels_per_beam, *, deconvolver=True):
    """Halo (pixels) that lets a tile measure its core sources as a single pass would.

    The largest spatial reach of the stages: the characterizer's forward-fit reach
    (`~deepfocus.characterization.characterizer.fit_half_limit`: its cutout half-size plus two
    beams, which also cover the peak finding footprint and the blended-neighbour test) plus
    the beam-matched filter's kernel half-size (3 sigma of the beam); the kernel half-size plus
    the deblending reach (`~deepfocus.detection.peaks.DEFAULT_REACH` beams from a detection kept up to a beam
    outside the core, to a peak whose footprint of half a beam lies in the tile), if that is
    more; with the deconvolver, its cutout half-size
    (`~deepfocus.detection.detector.DECONVOLVER_CUTOUT`) plus the beam by which a kept detection
    may lie outside its tile's core, if that is more.

    Parameters
    ----------
    pixels_per_beam : float
        Beam major axis (FWHM) in pixels.
    deconvolver : bool
        Whether the detector judges candidates with the deconvolver network.
    """
    from ..characterization.characterizer import fit_half_limit
    from .detector import DECONVOLVER_CUTOUT
    from .peaks import DEFAULT_REACH

    kernel_half = math.ceil(3 * pixels_per_beam / 2.3548)
    halo = fit_half_limit(pixels_per_beam) + kernel_half
    halo = max(halo, kernel_half + math.ceil((DEFAULT_REACH + 1.5) * pixels_per_beam))
    if deconvolver:
        halo = max(halo, DECONVOLVER_CUTOUT // 2 + math.ceil(max(1.0, pixels_per_beam)) + 1)
    return int(halo)


def _stages(pipeline):
    """``(detector, characterizer or None)`` of a `~deepfocus.DeepFocus` or a `CubeDetector`."""
    from .detector import CubeDetector

    if isinstance(pipeline, CubeDetector):
        return pipeline, None
    detector = getattr(pipeline, "detector", None)
    if isinstance(detector, CubeDetector):
        return detector, getattr(pipeline, "characterizer", None)
    raise TypeError(f"pipeline must be a DeepFocus or a CubeDetector, got {pipeline!r}")


@dataclasses.dataclass
class _WholeCube:
    """What the passes measure over the whole cube, and the cube's metadata.

    Attributes
    ----------
    statistics : `~deepfocus.io.tiles.CubeStatistics`
    continuum : `numpy.ndarray`
        ``(ny, nx)`` Jy/beam.
    plane_noise : `numpy.ndarray`
        ``(len(widths), n_chan)``, frequency-ascending channels.
    reference : `~deepfocus.io.cube.PreparedCube`
        The cube's metadata (beams, channel order, pixel size, the WCS of the full cube) on a
        one-pixel cube.
    valid : `numpy.ndarray`
        ``(ny, nx)`` pixels with data in some channel, the user's mask applied.
    """

    statistics: object
    continuum: np.ndarray
    plane_noise: np.ndarray
    reference: object
    valid: np.ndarray


class TiledPipeline:
    """Run a detection pipeline over a large FITS cube in tiles, with bounded memory.

    The catalogue is the one a single pass (``pipeline(path, psf=psf)``) gives: the statistics
    a single pass measures over the whole cube are measured over the whole cube (see
    `deepfocus.detection.tiled`).

    Parameters
    ----------
    pipeline : `~deepfocus.DeepFocus` or `~deepfocus.CubeDetector`
        What runs on each tile (its detector, then its characterizer).
    memory_limit : int or str
        Budget for the tiles in flight together (their voxels and, with networks, their batches:
        `network_bytes`), and for each pass over the whole cube (bytes, or a size such as
        ``"2 GiB"``). The process's fixed footprint (Python, torch, the networks' weights: about
        0.4 GiB) comes on top.
    halo : int, optional
        Halo width (pixels); default `default_halo` of the cube's beam.
    max_in_flight : int
        Tiles processed at once (threads, or tasks on ``executor``).
    executor : object, optional
        Anything with a ``concurrent.futures``-style ``submit(fn, *args)`` (a
        `~concurrent.futures.ThreadPoolExecutor`, a ``dask.distributed.Client``, ...). Default:
        the calling thread for one tile in flight, else a thread pool of ``max_in_flight``.
    progress : bool
        Show progress bars over the passes and the tiles (tqdm).
    channel_blocks : int, optional
        Read every tile in this many blocks of channels (see
        `deepfocus.detection.channel_blocks`). Default: only when a tile of all channels would
        not fit the budget, or would be so small that its halo doubles the voxels read.

    Examples
    --------
    >>> from deepfocus import DeepFocus
    >>> from deepfocus.detection.tiled import TiledPipeline
    >>> tiled = TiledPipeline(DeepFocus(), memory_limit="2 GiB", max_in_flight=2)
    >>> catalog = tiled("big_cube.fits")  # doctest: +SKIP

    The example cube shipped with deepfocus (40 channels of 96 x 96 pixels) needs one tile:

    >>> from importlib.resources import files
    >>> len(tiled.plan(files("deepfocus.data") / "example_dirty.fits"))
    1
    """

    def __init__(
        self,
        pipeline,
        *,
        memory_limit,
        halo=None,
        max_in_flight=1,
        executor=None,
        progress=True,
        channel_blocks=None,
    ):
        from .._validation import check_positive_int
        from ..io.tiles import parse_memory

        _stages(pipeline)
        max_in_flight = check_positive_int(max_in_flight, "max_in_flight")
        if halo is not None and (isinstance(halo, bool) or int(halo) != halo or halo < 0):
            raise InvalidInputError(f"halo must be a non-negative number of pixels, got {halo!r}")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise TypeError(f"executor must have a submit(fn, *args) method, got {executor!r}")
        if channel_blocks is not None and (
            isinstance(channel_blocks, bool) or int(channel_blocks) != channel_blocks or channel_blocks < 1
        ):
            raise InvalidInputError(f"channel_blocks must be a positive integer, got {channel_blocks!r}")
        self.pipeline = pipeline
        self.memory_limit = parse_memory(memory_limit)
        self.halo = None if halo is None else int(halo)
        self.max_in_flight = int(max_in_flight)
        self.executor = executor
        self.progress = bool(progress)
        self.channel_blocks = None if channel_blocks is None else int(channel_blocks)

    def plan(self, path, layout=None):
        """The `~deepfocus.io.tiles.TilePlan` for the FITS cube at ``path`` (header only;
        ``layout``, its `~deepfocus.io.tiles.cube_layout`, if already read)."""
        from .channel_blocks import COLUMN_BYTES_PER_VOXEL, channel_halo, column_half

        layout = cube_layout(path) if layout is None else layout
        detector, _ = _stages(self.pipeline)
        halo = self.halo
        if halo is None:
            halo = default_halo(layout.pixels_per_beam, deconvolver=detector._deconvolver is not None)
        overhead = network_bytes(layout.shape[0]) if _uses_networks(self.pipeline) else 0
        n_chan, ny, nx = layout.shape
        side = 2 * column_half(layout.pixels_per_beam) + 1
        column = COLUMN_BYTES_PER_VOXEL * n_chan * min(side, ny) * min(side, nx)
        return plan_tiles(
            layout.shape,
            memory_limit=self.memory_limit,
            halo=halo,
            max_in_flight=self.max_in_flight,
            tile_overhead=overhead,
            channel_halo=channel_halo(detector.widths) if n_chan > 1 else None,
            column_bytes=column,
            channel_parts=self.channel_blocks,
        )

    def __call__(self, path, *, mask=None, psf=None, plan=None):
        """Detect (and characterise) the sources of the FITS cube at ``path``.

        Parameters
        ----------
        path : str or path-like
            FITS cube (as `~deepfocus.io.cube.read_cube` accepts).
        mask : `numpy.ndarray` of bool, optional
            ``(ny, nx)`` or ``(n_chan, ny, nx)`` (input channel order); True marks pixels to ignore.
        psf : str, path-like or array-like, optional
            The cube's PSF (input channel order); a file is read one plane at a time.
        plan : `~deepfocus.io.tiles.TilePlan`, optional
            ``self.plan(path)``, if the caller has it already.

        Returns
        -------
        catalog : `~astropy.table.QTable` or None
            The stitched catalogue (pixel coordinates of the full cube, ids ``1..N``); None with
            a `~deepfocus.exceptions.NoDetectionsWarning` when nothing is found. ``meta["tiling"]``
            records the plan.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"tiled processing reads a FITS file; got {type(path).__name__}")
        layout = cube_layout(path)
        plan = self.plan(path, layout) if plan is None else plan
        n_chan, ny, nx = plan.shape
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape not in ((ny, nx), plan.shape):
                raise InvalidInputError(
                    f"mask shape {mask.shape} matches neither the image {(ny, nx)} nor the cube"
                )
        log.info(
            "%s: %d x %d x %d in %d tiles (%d x %d grid, halo %d pix, %s, <= %.0f MiB each, %d in flight)",
            path,
            n_chan,
            ny,
            nx,
            len(plan),
            *plan.grid,
            plan.halo,
            f"{len(plan.channel_blocks)} blocks of channels" if plan.channel_blocks else "all channels",
            plan.tile_bytes / 2**20,
            plan.max_in_flight,
        )
        if len(plan) == 1 and not plan.channel_blocks:
            catalog = self._single_pass(path, mask, psf)
        else:  # the tiles' reads do not warn: the whole cube's sampling is checked here
            warn_sampling(str(path), layout.pixels_per_beam, n_chan, stacklevel=3)
            catalog = self._tiles(path, mask, psf, plan, layout)
        if catalog is None:
            warnings.warn(f"no sources detected in {path}", NoDetectionsWarning, stacklevel=2)
            return None
        catalog.meta["source"] = str(path)
        catalog.meta["tiling"] = tiling_meta(plan)
        # The tiles' detectors ran without it: the stitched sidelobe test had the PSF.
        catalog.meta.setdefault("parameters", {})["psf"] = psf is not None
        return catalog

    def _single_pass(self, path, mask, psf):
        """A one-tile plan: the whole cube in memory, as ``pipeline(path)`` runs it."""
        from ..io.cube import read_cube

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            return self.pipeline(read_cube(path, psf=psf), mask=mask)

    def _measure(self, path, mask, plan):
        """The passes over the whole cube (see `deepfocus.detection.tiled`)."""
        detector, _ = _stages(self.pipeline)
        statistics = cube_statistics(path, block_bytes=plan.memory_limit // 4)
        continuum, valid, reference = continuum_map(
            path, statistics, mask=mask, memory_limit=plan.memory_limit, progress=self.progress
        )
        if reference is None:  # not reached: cube_statistics refuses a cube without valid pixels
            raise InvalidInputError(f"{path}: the cube has no valid pixel (all NaN)")
        noise = plane_noise(
            path,
            statistics,
            continuum,
            valid,
            reference,
            widths=detector.widths,
            mask=mask,
            memory_limit=plan.memory_limit,
            progress=self.progress,
        )
        return _WholeCube(statistics, continuum, noise, reference, valid)

    def _tiles(self, path, mask, psf, plan, layout):
        """Detections of every tile, stitched; the sidelobe test on the stitched catalogue."""
        from tqdm.auto import tqdm

        whole = self._measure(path, mask, plan)
        stages = _stages(self.pipeline)
        n_chan, ny, nx = plan.shape
        margin = max(1.0, layout.pixels_per_beam)
        jobs = []
        for tile in plan.tiles:
            part = None if mask is None else mask[..., tile.outer[0], tile.outer[1]]
            given = (whole.statistics, whole.continuum[tile.outer], whole.plane_noise)
            if plan.channel_blocks:  # what the blocks need besides
                frame = _shifted(whole.reference, tile.origin)
                given += (whole.valid[tile.outer], frame, plan.channel_blocks)
            jobs.append((stages, str(path), tile, given, part, (ny, nx), margin, psf))
        tables, meta = [], None
        with warnings.catch_warnings():
            # Empty tiles are normal; the stitched result warns once if everything is empty.
            warnings.simplefilter("ignore", NoDetectionsWarning)
            bar = tqdm(total=len(jobs), desc="tiles", unit="tile", disable=not self.progress)
            with bar:
                for index, table, tile_meta in self._run(jobs):
                    bar.update(1)
                    tile = plan.tiles[index]
                    n = 0 if table is None else len(table)
                    log.info(
                        "tile %d/%d (y %d:%d, x %d:%d): %d detections kept",
                        index + 1,
                        len(plan),
                        tile.core[0].start,
                        tile.core[0].stop,
                        tile.core[1].start,
                        tile.core[1].stop,
                        n,
                    )
                    if tile_meta is not None and meta is None:
                        meta = tile_meta
                    if n:
                        tables.append(table)
        if not tables:
            return None
        catalog = _stitch(tables, layout.pixels_per_beam)
        catalog = _reject_sidelobes(catalog, psf, whole.reference, *stages)
        catalog = _refit_crowded(catalog, stages[1], path, psf, whole.reference, whole.statistics, (ny, nx))
        if catalog is None:
            return None
        if stages[1] is not None and stages[1]._network is not None:
            from ..characterization.training_range import flag_out_of_range

            # The sizes measured again among neighbours, and the whole cube's beams.
            flag_out_of_range(catalog, whole.reference)
        catalog.meta.update(meta or {})
        return catalog

    def _run(self, jobs):
        """Results of ``_process_tile`` over ``jobs``, at most ``max_in_flight`` submitted at once."""
        if self.executor is None and self.max_in_flight == 1:
            for job in jobs:
                yield _process_tile(*job)
            return
        if self.executor is None:
            with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="deepfocus-tile") as pool:
                yield from _bounded(pool, jobs, self.max_in_flight)
        else:
            yield from _bounded(self.executor, jobs, self.max_in_flight)


def _metadata_only(prepared, origin=(0, 0)):
    """``prepared`` reduced to one pixel: its beams, channel order, WCS and noise, no image;
    ``origin``: the full-cube pixel ``(y, x)`` of ``prepared``'s pixel ``(0, 0)``, to which the
    WCS is shifted back (it is then the full cube's)."""
    return _shifted(
        dataclasses.replace(
            prepared, data=prepared.data[:, :1, :1].copy(), valid=prepared.valid[:, :1, :1].copy()
        ),
        (-origin[0], -origin[1]),
    )


def _shifted(prepared, origin):
    """``prepared`` with its WCS shifted so that its pixel ``(0, 0)`` is its pixel ``origin``
    (``(y, x)``)."""
    wcs = prepared.wcs.deepcopy()
    wcs.wcs.crpix = wcs.wcs.crpix - np.array([origin[1], origin[0], 0], dtype=float)
    wcs.wcs.set()
    return dataclasses.replace(prepared, wcs=wcs)


def _quiet_read(path, **box):
    """`~deepfocus.io.tiles.read_part` without the reader's warnings (infinite values, a missing
    BUNIT, ...): the tiles, which cover the same pixels, give them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeepFocusWarning)
        return read_part(path, **box)


def continuum_map(path, statistics, *, mask=None, memory_limit, progress=False):
    """The continuum and the valid pixels of a whole FITS cube, over spatial tiles of all channels.

    Per pixel what `~deepfocus.detection.matched_filter.signal_to_noise` estimates on the whole
    cube (each pixel's continuum depends on its own spectrum and the whole cube's channel noise).

    Parameters
    ----------
    path : str or path-like
        FITS cube.
    statistics : `~deepfocus.io.tiles.CubeStatistics`
        The whole cube's.
    mask : `numpy.ndarray` of bool, optional
        The user's mask, as `~deepfocus.CubeDetector` takes it (input channel order).
    memory_limit : int
        Budget (bytes); tiles hold `CONTINUUM_BYTES_PER_VOXEL` per voxel.
    progress : bool
        Show a progress bar over the tiles.

    Returns
    -------
    continuum : `numpy.ndarray`
        ``(ny, nx)`` float32, Jy/beam (0 where a pixel has no valid channel).
    valid : `numpy.ndarray`
        ``(ny, nx)`` bool: pixels valid in some channel and not masked (the detector's map).
    reference : `~deepfocus.io.cube.PreparedCube` or None
        The cube's metadata on one pixel, with the full cube's WCS (None if no tile held a
        finite pixel).
    """
    from tqdm.auto import tqdm

    from .detector import masked_view
    from .matched_filter import estimate_continuum, usable_noise

    layout = cube_layout(path)
    n_chan, ny, nx = layout.shape
    plan = plan_tiles(
        layout.shape, memory_limit=memory_limit, halo=0, bytes_per_voxel=CONTINUUM_BYTES_PER_VOXEL
    )
    continuum = np.zeros((ny, nx), dtype=np.float32)
    valid = np.zeros((ny, nx), dtype=bool)
    reference = None
    for tile in tqdm(plan.tiles, desc="continuum", unit="tile", disable=not progress):
        ys, xs = tile.core
        part = _quiet_read(path, y=ys, x=xs, statistics=statistics)
        if part is None:
            continue
        view = masked_view(part, None if mask is None else mask[..., ys, xs])
        continuum[ys, xs] = estimate_continuum(view.data, usable_noise(view.noise))
        valid[ys, xs] = view.valid
        if reference is None:
            reference = _metadata_only(part, origin=(ys.start, xs.start))
    log.info("continuum of %s from %d tiles", path, len(plan))
    return continuum, valid, reference


def plane_noise(
    path, statistics, continuum, valid, reference, *, widths, mask=None, memory_limit, progress=False
):
    """The matched filter's plane noise of a whole FITS cube, a block of whole channels at a time.

    `~deepfocus.detection.matched_filter.filtered_plane_noise` over the channels in frequency
    order: the noise a single pass measures on every plane of every width.

    Parameters
    ----------
    path : str or path-like
        FITS cube.
    statistics : `~deepfocus.io.tiles.CubeStatistics`
        The whole cube's.
    continuum, valid : `numpy.ndarray`
        The whole cube's (`continuum_map`).
    reference : `~deepfocus.io.cube.PreparedCube`
        The cube's metadata (`continuum_map`).
    widths : sequence of int
        The detector's filter widths (channels).
    mask : `numpy.ndarray` of bool, optional
        The user's mask (input channel order).
    memory_limit : int
        Budget (bytes).
    progress : bool
        Show a progress bar over the channels.

    Returns
    -------
    plane_noise : `numpy.ndarray`
        ``(len(widths), n_chan)``, frequency-ascending channels.

    Raises
    ------
    InvalidInputError
        If the budget cannot hold the filter's window of whole images.
    """
    from tqdm.auto import tqdm

    from .candidates import filter_beam
    from .detector import masked_view
    from .matched_filter import filtered_plane_noise, usable_noise

    n_chan = reference.n_channels
    ny, nx = continuum.shape
    fixed = (4 * min(max(widths), n_chan) + 8 * len(widths)) * ny * nx
    per_channel = PLANE_BYTES_PER_VOXEL * ny * nx
    # Three channels a block at least: near-equal blocks then hold two or more (a prepared cube
    # is a spectral cube).
    if memory_limit < fixed + 3 * per_channel:
        raise InvalidInputError(
            f"memory limit {memory_limit / 2**20:.0f} MiB is too small for the matched filter's noise over "
            f"whole images of {ny} x {nx} pixels: it needs {(fixed + 3 * per_channel) / 2**20:.0f} MiB"
        )
    capacity = int((memory_limit - fixed) // per_channel)
    bounds = np.linspace(0, n_chan, math.ceil(n_chan / capacity) + 1).round().astype(int)
    noise = usable_noise(reference.noise.to_value(u.Jy / u.beam))
    major, minor, pa = filter_beam(reference)
    bar = tqdm(total=n_chan, desc="plane noise", unit="channel", disable=not progress)

    def blocks():
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            channels = slice(n_chan - b, n_chan - a) if reference.flipped else slice(a, b)
            part = _quiet_read(path, channels=channels, statistics=statistics)
            if part is None:
                yield np.full((b - a, ny, nx), np.nan, dtype=np.float32)
            else:
                yield masked_view(part, None if mask is None or mask.ndim == 2 else mask[channels]).data
            bar.update(b - a)

    with bar:
        out = filtered_plane_noise(
            blocks(),
            noise,
            valid,
            continuum,
            beam_major_pix=major,
            beam_minor_pix=minor,
            beam_pa_deg=pa,
            widths=widths,
        )
    log.info("plane noise of %s from %d blocks of <= %d channels", path, len(bounds) - 1, capacity)
    return out


def tiling_meta(plan):
    """The ``meta["tiling"]`` record of a `~deepfocus.io.tiles.TilePlan`."""
    return {
        "n_tiles": len(plan),
        "grid": list(plan.grid),
        "halo_pix": plan.halo,
        "memory_limit_bytes": plan.memory_limit,
        "tile_bytes_estimate": plan.tile_bytes,
        "max_in_flight": plan.max_in_flight,
        "channel_blocks": len(plan.channel_blocks),
        "channel_halo": plan.channel_halo,
    }


def _bounded(executor, jobs, limit):
    # Hand-written instead of executor.map: map submits every job at once (unbounded memory),
    # and dask's Client.map returns futures without a common way to wait for the first one.
    pending = deque()
    for job in jobs:
        pending.append(executor.submit(_process_tile, *job))
        if len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _process_tile(stages, path, tile, given, mask, image_shape, margin, psf=None):
    """Run the detector (and characterizer) on one tile; its detections near or in the core, in
    full-cube pixels, with the detector's positions (``_x_detect``, ``_y_detect``: the
    characterizer refines ``x_centroid``/``y_centroid``) for the sidelobe test.

    ``given``: the whole cube's statistics, its continuum over the tile and its plane noise;
    for a tile read in blocks of channels, also the whole cube's valid pixels over the tile, the
    cube's metadata with the tile's WCS and the blocks (`deepfocus.detection.channel_blocks`).
    ``psf``: the cube's PSF, for the characterizer's forward model only (read a plane at a time;
    the detector's sidelobe test runs on the stitched catalogue).
    Returns ``(tile.index, table or None, meta or None)``.
    """
    from . import channel_blocks

    detector, characterizer = stages
    statistics, continuum, noise = given[:3]
    if len(given) > 3:
        valid, frame, blocks = given[3:]
        tile_data = channel_blocks.TileData(
            path, tile, statistics, continuum, valid, noise, _usable(frame), frame, mask
        )
        table = channel_blocks.detect_in_blocks(detector, tile_data, blocks)
    else:
        prepared = read_tile(path, tile, statistics=statistics)
        if prepared is None:
            return tile.index, None, None
        table = detector(prepared, mask=mask, continuum=continuum, plane_noise=noise)
    if table is not None:
        table["_x_detect"] = table["x_centroid"].value
        table["_y_detect"] = table["y_centroid"].value
        if characterizer is not None and len(given) > 3:
            table = channel_blocks.characterize_in_blocks(characterizer, tile_data, table, psf=psf)
        elif characterizer is not None:
            table = _characterize(characterizer, prepared, table, psf)
    meta = dict(table.meta) if table is not None else None
    if table is None or len(table) == 0:
        return tile.index, None, meta
    y0, x0 = tile.origin
    for axis, offset in (("x", x0), ("y", y0)):
        table[f"{axis}_centroid"] = table[f"{axis}_centroid"] + offset * u.pix
        table[f"_{axis}_detect"] = table[f"_{axis}_detect"] + offset
    depth = tile.depth(table["x_centroid"].value, table["y_centroid"].value, image_shape)
    keep = depth > -margin
    table = table[keep]
    table["_depth"] = depth[keep]
    table["_tile"] = np.full(len(table), tile.index)
    return tile.index, table, meta


def _usable(prepared):
    """The usable noise of every channel of ``prepared`` (Jy/beam, frequency ascending)."""
    from .matched_filter import usable_noise

    return usable_noise(u.Quantity(prepared.noise, u.Jy / u.beam).value)


def _characterize(characterizer, prepared, table, psf):
    """``characterizer(prepared, table)`` with the PSF planes attached to the tile, if any; the
    sources among neighbours are measured again on the stitched catalogue (`_refit_crowded`)."""
    if psf is None:
        return characterizer(prepared, table, crowded=False)
    from ..io.psf import PSFPlanes

    with PSFPlanes.for_cube(psf, prepared) as planes:
        return characterizer(dataclasses.replace(prepared, psf=planes), table, crowded=False)


def _refit_crowded(catalog, characterizer, path, psf, reference, statistics, image_shape):
    """The characterizer's measurement among neighbours
    (`~deepfocus.characterization.crowding.refit_crowded`) on the stitched catalogue, as a
    single pass makes it on its whole catalogue: a column of all channels around each source
    with neighbours is read from the file."""
    if characterizer is None or catalog is None or len(catalog) < 2:
        return catalog
    from ..characterization.crowding import refit_crowded
    from ..io.psf import PSFPlanes

    ny, nx = image_shape
    n_chan = reference.n_channels

    def read(cx, cy, size):
        y0, x0 = cy - size // 2, cx - size // 2
        ys = slice(max(0, y0), min(ny, y0 + size))
        xs = slice(max(0, x0), min(nx, x0 + size))
        data = np.zeros((n_chan, size, size), dtype=np.float32)
        valid = np.zeros((n_chan, size, size), dtype=bool)
        inside = ys.stop > ys.start and xs.stop > xs.start
        part = _quiet_read(path, y=ys, x=xs, statistics=statistics) if inside else None
        if part is not None:
            box = (slice(None), slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
            data[box] = np.nan_to_num(part.data)
            valid[box] = part.valid
        return data, valid

    if psf is None:
        kernel = characterizer._kernel(reference)
        return catalog if kernel is None else refit_crowded(catalog, reference, kernel=kernel, read=read)
    with PSFPlanes.for_cube(psf, reference) as planes:
        frame = dataclasses.replace(reference, psf=planes)
        return refit_crowded(catalog, frame, kernel=characterizer._kernel(frame), read=read)


def _stitch(tables, beam_pix):
    """One catalogue from the tiles' tables: cross-tile duplicates dropped, sorted, renumbered.

    Detections of different tiles within half a beam (at least 1 pixel) whose lines overlap
    form groups (connected components); in a group, the rows of the tile in whose core the group
    lies deepest are kept (rows of one tile are distinct sources: the detector merged its own).
    """
    table = vstack(tables, metadata_conflicts="silent")
    x, y = table["x_centroid"].value, table["y_centroid"].value
    tile = np.asarray(table["_tile"])
    depth = np.asarray(table["_depth"])
    lo, hi = np.asarray(table["z_min"]), np.asarray(table["z_max"])
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(max(1.0, 0.5 * beam_pix), output_type="ndarray")
    keep = np.ones(len(table), dtype=bool)
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        same = (tile[i] != tile[j]) & (lo[i] <= hi[j]) & (lo[j] <= hi[i])
        i, j = i[same], j[same]
        graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(table), len(table)))
        _, label = connected_components(graph, directed=False)
        for group in np.unique(label[np.concatenate([i, j])]) if len(i) else []:
            members = np.flatnonzero(label == group)
            winner = tile[members[np.argmax(depth[members])]]
            keep[members[tile[members] != winner]] = False
    table = table[keep]
    key = "filter_snr" if "filter_snr" in table.colnames else "snr"
    table = table[np.argsort(-np.asarray(table[key], dtype=float), kind="stable")]
    table.remove_columns(["_depth", "_tile"])
    table["id"] = np.arange(1, len(table) + 1)
    return table


def _reject_sidelobes(catalog, psf, reference, detector, characterizer):
    """The stitched catalogue without the rows the detector's sidelobe test rejects.

    The test sees the rows as a single pass's detector sees its candidates (their positions,
    matched-filter S/N and line channels in frequency order), and the PSF of the input channel
    a single pass would use, read one plane at a time. The characterizer's blended-neighbour
    flag is then set again among the rows that remain, as a single pass sets it. Returns None
    when no row remains.
    """
    from ..io.psf import PSFPlanes
    from .candidates import filter_beam
    from .sidelobes import FilteredPSF

    rejected = np.zeros(len(catalog), dtype=bool)
    if psf is not None and detector.sidelobe_rejection and len(catalog) > 1:
        lo, hi = np.array(
            [reference.line_channels(a, b) for a, b in zip(catalog["z_min"], catalog["z_max"], strict=True)]
        ).T
        with PSFPlanes.for_cube(psf, reference) as planes:
            rejected = detector._sidelobes(
                np.asarray(catalog["_x_detect"]),
                np.asarray(catalog["_y_detect"]),
                np.asarray(catalog["filter_snr"]),
                lo,
                hi,
                filtered_psf=FilteredPSF(planes, reference.beams, reference.cell),
                beam_pix=filter_beam(reference)[0],
            )
        log.info(
            "sidelobe test on the stitched catalogue: %d of %d rows rejected", rejected.sum(), len(rejected)
        )
    catalog = catalog[~rejected]
    catalog.remove_columns(["_x_detect", "_y_detect"])
    if len(catalog) == 0:
        return None
    if rejected.any() and characterizer is not None and "flags" in catalog.colnames:
        from ..characterization.characterizer import _blended

        blended = _blended(catalog, filter_beam(reference)[0])
        catalog["flags"] = (np.asarray(catalog["flags"]) & ~2) | np.where(blended, 2, 0).astype(np.int32)
    catalog["id"] = np.arange(1, len(catalog) + 1)
    return catalog


def input_spectral_axis(path):
    """Channel frequencies (GHz) of a FITS cube in the file's channel order, from its header and
    one pixel's spectrum (for region files of a cube that is never loaded whole)."""
    from ..io import cube as _cube

    raw = _cube._read_fits(Path(path), region=(slice(None), slice(0, 1), slice(0, 1)))
    _, freqs, _ = _cube._to_frequency(raw.wcs, raw.data.shape[0], raw.label)
    return (freqs * u.Hz).to(u.GHz)


def detect_cube_tiled(
    cube,
    catalog,
    *,
    pipeline,
    regions=None,
    region_format=None,
    psf=None,
    pb=None,
    catalog_format=None,
    progress=True,
):
    """Run a `~deepfocus.DeepFocus` with a ``memory_limit`` on a FITS cube and write its outputs.

    The out-of-core counterpart of `deepfocus.batch.detect_cube` (which loads the cube): the
    catalogue (and regions) are written atomically, the catalogue last; no detection gives an
    empty catalogue with the run's ``meta``. No plot (it would need the whole cube).

    Parameters
    ----------
    cube : path-like
        FITS cube.
    catalog : path-like
        Catalogue file (format from the suffix unless ``catalog_format``).
    pipeline : `~deepfocus.DeepFocus`
        With ``memory_limit`` set.
    regions : path-like, optional
        Region file (DS9 or CRTF by suffix or ``region_format``).
    psf : path-like or array-like, optional
        The cube's PSF.
    pb : path-like or array-like, optional
        The cube's primary-beam gain: fluxes are divided by it.
    progress : bool
        Progress bars over the passes and the tiles.

    Returns
    -------
    catalog : `~astropy.table.QTable`
        What was written (possibly with no rows).
    """
    from ..batch import empty_catalog, record_settings
    from ..io.catalog import write_catalog
    from ..io.regions import write_regions
    from ..pipeline import with_primary_beam

    if getattr(pipeline, "memory_limit", None) is None:
        raise InvalidInputError("detect_cube_tiled needs a DeepFocus with a memory_limit")
    tiled = TiledPipeline(
        pipeline,
        memory_limit=pipeline.memory_limit,
        max_in_flight=pipeline.max_in_flight,
        executor=pipeline.executor,
        progress=progress,
    )
    plan = tiled.plan(cube)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        table = with_primary_beam(tiled(cube, psf=psf, plan=plan), pb, plan.shape)
    if table is None:
        # The run's settings, as a catalogue with sources records them (a batch's re-run
        # compares them).
        table = empty_catalog(primary_beam=pb is not None)
        table.meta.update(pipeline.detector._settings_meta())
        record_settings(table.meta, pipeline, psf=psf is not None, pb=pb is not None)
        table.meta["source"] = str(cube)
        table.meta["tiling"] = tiling_meta(plan)
    if regions is not None:
        write_regions(
            table, regions, format=region_format, overwrite=True, spectral_axis=input_spectral_axis(cube)
        )
    write_catalog(table, catalog, format=catalog_format, overwrite=True)
    return table
