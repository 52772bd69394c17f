"""Detection and characterisation of cubes larger than memory, tile by tile.

`TiledPipeline` runs a `~deepfocus.DeepFocus` (or a `~deepfocus.CubeDetector`) on the spatial
tiles of a FITS cube planned by `~deepfocus.io.tiles.plan_tiles` and stitches their catalogues
into the one a single pass gives:

- every tile is read from the memory-mapped file with a halo around its core wide enough for
  the matched filter, the peak finding and the characterizer's cutouts, and normalised by the
  whole cube's per-channel noise (`~deepfocus.io.tiles.channel_noise`);
- a tile keeps the detections that lie in its core, or within a beam outside it (so that a
  source on a core edge that float rounding puts a hair on the wrong side is not lost); the
  same source reported by two tiles (within half a beam, overlapping lines) is kept once, from
  the tile it lies deepest inside;
- pixel coordinates are shifted to the full cube and the rows renumbered ``1..N``, brightest
  first.

Tiles may run concurrently on any ``concurrent.futures``-style executor (an object with
``submit`` returning futures with ``result()``): a `~concurrent.futures.ThreadPoolExecutor`, or a
``dask.distributed.Client`` whose workers can read the file. At most ``max_in_flight`` tiles are
submitted at once, which bounds memory.
"""

from __future__ import annotations

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

from ..exceptions import InvalidInputError, NoDetectionsWarning
from ..io.tiles import channel_noise, crop_psf, cube_layout, plan_tiles, read_tile

__all__ = ["TiledPipeline", "default_halo", "detect_cube_tiled", "input_spectral_axis"]

log = logging.getLogger(__name__)

#: Side of the characterizer's cutouts (pixels); kept equal to
#: `deepfocus.characterization.characterizer.CUTOUT_SIZE` (a test checks it).
_CUTOUT_SIZE = 32


def default_halo(pixels_per_beam, *, deconvolver=True):
    """Halo (pixels) that lets a tile measure its core sources as a single pass would.

    The largest spatial reach of the stages: the characterizer's cutout half-size plus the
    beam-matched filter's kernel half-size (3 sigma of the beam) plus two beams for the peak
    finding footprint and the blended-neighbour test; with the deconvolver, its cutout half-size
    (`~deepfocus.detection.detector.DECONVOLVER_CUTOUT`) plus the beam by which a kept detection
    may lie outside its tile's core, if that is more.

    Parameters
    ----------
    pixels_per_beam : float
        Beam major axis (FWHM) in pixels.
    deconvolver : bool
        Whether the detector judges candidates with the deconvolver network.
    """
    from .detector import DECONVOLVER_CUTOUT

    kernel_half = math.ceil(3 * pixels_per_beam / 2.3548)
    halo = _CUTOUT_SIZE // 2 + kernel_half + math.ceil(2 * pixels_per_beam)
    if deconvolver:
        halo = max(halo, DECONVOLVER_CUTOUT // 2 + math.ceil(max(1.0, pixels_per_beam)) + 1)
    return int(halo)


class TiledPipeline:
    """Run a detection pipeline over a large FITS cube in tiles, with bounded memory.

    Parameters
    ----------
    pipeline : callable
        ``pipeline(prepared_cube, mask=...)`` returning a catalogue `~astropy.table.QTable` or
        None: a `~deepfocus.DeepFocus` or a `~deepfocus.CubeDetector`.
    memory_limit : int or str
        Budget for the tiles in flight together (bytes, or a size such as ``"2 GiB"``). The
        process's fixed footprint (Python, torch, the networks: about 0.5 GiB) comes on top.
    halo : int, optional
        Halo width (pixels); default `default_halo` of the cube's beam.
    max_in_flight : int
        Tiles processed at once (threads, or tasks on ``executor``).
    executor : object, optional
        Anything with a ``concurrent.futures``-style ``submit(fn, *args)`` (a
        `~concurrent.futures.ThreadPoolExecutor`, a ``dask.distributed.Client``, ...). Default:
        the calling thread for one tile in flight, else a thread pool of ``max_in_flight``.
    progress : bool
        Show a progress bar over the tiles (tqdm).

    Examples
    --------
    >>> from deepfocus import DeepFocus
    >>> from deepfocus.detection.tiled import TiledPipeline
    >>> tiled = TiledPipeline(DeepFocus(), memory_limit="2 GiB", max_in_flight=2)  # doctest: +SKIP
    >>> catalog = tiled("big_cube.fits")  # doctest: +SKIP
    """

    def __init__(self, pipeline, *, memory_limit, halo=None, max_in_flight=1, executor=None, progress=True):
        from ..io.tiles import parse_memory

        if not callable(pipeline):
            raise TypeError(f"pipeline must be callable (a DeepFocus or CubeDetector), got {pipeline!r}")
        if isinstance(max_in_flight, bool) or int(max_in_flight) != max_in_flight or max_in_flight < 1:
            raise InvalidInputError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
        if halo is not None and (isinstance(halo, bool) or int(halo) != halo or halo < 0):
            raise InvalidInputError(f"halo must be a non-negative number of pixels, got {halo!r}")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise TypeError(f"executor must have a submit(fn, *args) method, got {executor!r}")
        self.pipeline = pipeline
        self.memory_limit = parse_memory(memory_limit)
        self.halo = None if halo is None else int(halo)
        self.max_in_flight = int(max_in_flight)
        self.executor = executor
        self.progress = bool(progress)

    def plan(self, path, layout=None):
        """The `~deepfocus.io.tiles.TilePlan` for the FITS cube at ``path`` (header only;
        ``layout``, its `~deepfocus.io.tiles.cube_layout`, if already read)."""
        layout = cube_layout(path) if layout is None else layout
        halo = self.halo
        if halo is None:
            detector = getattr(self.pipeline, "detector", self.pipeline)
            uses_deconvolver = getattr(detector, "_deconvolver", None) is not None
            halo = default_halo(layout.pixels_per_beam, deconvolver=uses_deconvolver)
        return plan_tiles(
            layout.shape, memory_limit=self.memory_limit, halo=halo, max_in_flight=self.max_in_flight
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
            The cube's PSF; each tile gets the part it needs.
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
            "%s: %d x %d x %d in %d tiles (%d x %d grid, halo %d pix, <= %.0f MiB each, %d in flight)",
            path,
            n_chan,
            ny,
            nx,
            len(plan),
            *plan.grid,
            plan.halo,
            plan.tile_bytes / 2**20,
            plan.max_in_flight,
        )
        # One tile is the whole cube: it measures the same noise itself, without a separate pass.
        noise = channel_noise(path, block_bytes=plan.memory_limit // 4) if len(plan) > 1 else None
        if psf is not None:
            largest = max(max(t.shape) for t in plan.tiles)
            psf = crop_psf(psf, largest, cell=layout.cell)
        margin = max(1.0, layout.pixels_per_beam)
        jobs = []
        for tile in plan.tiles:
            part = None if mask is None else mask[..., tile.outer[0], tile.outer[1]]
            jobs.append((self.pipeline, str(path), tile, noise, psf, part, (ny, nx), margin))
        tables, meta = [], None
        from tqdm.auto import tqdm

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
            warnings.warn(f"no sources detected in {path}", NoDetectionsWarning, stacklevel=2)
            return None
        catalog = _stitch(tables, layout.pixels_per_beam)
        catalog.meta.update(meta or {})
        catalog.meta["source"] = str(path)
        catalog.meta["tiling"] = tiling_meta(plan)
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


def tiling_meta(plan):
    """The ``meta["tiling"]`` record of a `~deepfocus.io.tiles.TilePlan`."""
    return {
        "n_tiles": len(plan),
        "grid": list(plan.grid),
        "halo_pix": plan.halo,
        "memory_limit_bytes": plan.memory_limit,
        "tile_bytes_estimate": plan.tile_bytes,
        "max_in_flight": plan.max_in_flight,
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


def _process_tile(pipeline, path, tile, noise, psf, mask, image_shape, margin):
    """Run ``pipeline`` on one tile; its detections near or in the core, in full-cube pixels.

    Returns ``(tile.index, table or None, meta or None)``.
    """
    prepared = read_tile(path, tile, noise=noise, psf=psf)
    if prepared is None:
        return tile.index, None, None
    table = pipeline(prepared, mask=mask)
    meta = dict(table.meta) if table is not None else None
    if table is None or len(table) == 0:
        return tile.index, None, meta
    y0, x0 = tile.origin
    table["x_centroid"] = table["x_centroid"] + x0 * u.pix
    table["y_centroid"] = table["y_centroid"] + y0 * u.pix
    depth = tile.depth(table["x_centroid"].value, table["y_centroid"].value, image_shape)
    keep = depth > -margin
    table = table[keep]
    table["_depth"] = depth[keep]
    table["_tile"] = np.full(len(table), tile.index)
    return tile.index, table, meta


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


def input_spectral_axis(path):
    """Channel frequencies (GHz) of a FITS cube in the file's channel order, from its header and
    one pixel's spectrum (for region files of a cube that is never loaded whole)."""
    from ..io import cube as _cube

    raw = _cube._read_fits(Path(path), region=(slice(None), slice(0, 1), slice(0, 1)))
    _, freqs, _ = _cube._to_frequency(raw.wcs, raw.data.shape[0], raw.label)
    return (freqs * u.Hz).to(u.GHz)


def detect_cube_tiled(
    cube, catalog, *, pipeline, regions=None, region_format=None, psf=None, catalog_format=None
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

    Returns
    -------
    catalog : `~astropy.table.QTable`
        What was written (possibly with no rows).
    """
    from ..batch import empty_catalog
    from ..io.catalog import write_catalog
    from ..io.regions import write_regions

    if getattr(pipeline, "memory_limit", None) is None:
        raise InvalidInputError("detect_cube_tiled needs a DeepFocus with a memory_limit")
    tiled = TiledPipeline(
        pipeline,
        memory_limit=pipeline.memory_limit,
        max_in_flight=pipeline.max_in_flight,
        executor=pipeline.executor,
    )
    plan = tiled.plan(cube)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        table = tiled(cube, psf=psf, plan=plan)
    if table is None:
        table = empty_catalog()
        table.meta["source"] = str(cube)
        table.meta["tiling"] = tiling_meta(plan)
    if regions is not None:
        write_regions(
            table, regions, format=region_format, overwrite=True, spectral_axis=input_spectral_axis(cube)
        )
    write_catalog(table, catalog, format=catalog_format, overwrite=True)
    return table
