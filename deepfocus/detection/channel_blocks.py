"""Detection and characterisation of one tile read a block of channels at a time.

A tile of a cube with many channels (`~deepfocus.io.tiles.plan_tiles` with blocks of
channels) does not fit in memory with all its channels. Its sources are found and measured in
three steps, none of which holds more than a block of the tile or the channels around one
source:

1. **Candidates, block by block.** Each block is read with ``channel_halo`` channels on either
   side and searched as a single pass searches the whole tile (the whole cube's continuum,
   plane noise, channel noise and beam-matched filter are given); peaks may lie only where
   every filter's window fits in the block, and a block keeps the candidates of its core
   channels. Deblending against a brighter peak therefore sees the peaks within the halo, less
   half the widest filter, of the core: a line's peaks lie within its width, which the halo
   (twice the widest filter) covers.
2. **Lines.** The spectra of the candidates' pixels over all channels are gathered block by
   block (the normalisation is per voxel: the values are a single pass's) and the lines found
   as a single pass finds them (spectral network, repeated lines).
3. **Measurements around each source.** The deconvolver's line image reads the line's channels
   of the square around the source; the characterizer reads all channels of a small column
   around the source (`column_half`), for its continuum (a median over the line-free
   channels) and its cutouts; the blended-neighbour flag is set among the tile's rows.

The result is the table a single pass over the tile gives, in the tile's pixels, up to three
approximations: a peak may be merged into a brighter one further than the halo along the
spectral axis in a single pass only; the characterizer's channels without data are judged over
its column, not over the tile; and its forward fit sees the pixels within `column_half` of the
source (sources up to `COLUMN_SOURCE_BEAMS` beams are fitted over the same pixels).
"""

from __future__ import annotations

import dataclasses
import math

import astropy.units as u
import numpy as np
from astropy.table import QTable, vstack

from .matched_filter import blank_as_nan
from .tiled import _characterize as characterize_part
from .tiled import _quiet_read

__all__ = [
    "COLUMN_BYTES_PER_VOXEL",
    "COLUMN_SOURCE_BEAMS",
    "TileData",
    "channel_halo",
    "characterize_in_blocks",
    "column_half",
    "detect_in_blocks",
]

#: Peak working memory of step 3 per voxel of a source's column of all channels (bytes): the
#: prepared column (data and valid pixels), the characterizer's copy of it and its cutouts, plus
#: a margin.
COLUMN_BYTES_PER_VOXEL = 24

#: Sources up to this many beams (intrinsic FWHM) are forward-fitted over the pixels a single
#: pass uses; larger ones over the column only.
COLUMN_SOURCE_BEAMS = 2.0


def channel_halo(widths):
    """Channels a block needs on either side of its core: twice the widest filter."""
    return 2 * int(max(widths))


def _window_margin(widths):
    """Channels between a peak and a block's edge for every filter's window to fit in the block
    (and the peak test's neighbouring channel)."""
    w = int(max(widths))
    return max(w // 2, w - 1 - w // 2) + 1


def column_half(pixels_per_beam):
    """Half-side (pixels) of the column of all channels read around a source: the
    characterizer's cutout, and the forward fit's pixels for a source of `COLUMN_SOURCE_BEAMS`
    beams (`~deepfocus.characterization.forward.FIT_RADIUS` observed FWHMs, plus 3)."""
    from ..characterization.characterizer import _native_size, _zoom
    from ..characterization.forward import FIT_RADIUS

    native = _native_size(_zoom(pixels_per_beam)) // 2
    observed = math.hypot(COLUMN_SOURCE_BEAMS, 1.0) * pixels_per_beam
    return int(max(native, math.ceil(FIT_RADIUS * observed) + 3))


@dataclasses.dataclass
class TileData:
    """What the steps need of the tile and the whole cube (pixels of the tile's outer box)."""

    path: str
    tile: object  # `~deepfocus.io.tiles.Tile`
    statistics: object  # the whole cube's `~deepfocus.io.tiles.CubeStatistics`
    continuum: np.ndarray  # (ny, nx) Jy/beam
    valid: np.ndarray  # (ny, nx) bool, the user's mask applied
    plane_noise: np.ndarray  # (len(widths), n_chan), frequency ascending
    noise: np.ndarray  # (n_chan,) usable channel noise (Jy/beam), frequency ascending
    frame: object  # a PreparedCube of all channels with the tile's WCS (one pixel)
    mask: np.ndarray | None  # the user's mask over the tile (input channel order)

    @property
    def n_chan(self):
        return self.frame.n_channels

    def other_order(self, part):
        """The file channels of the frequency-ascending channels ``part`` (a slice), or the
        other way round: the same channels reversed when the file's frequencies descend."""
        return slice(self.n_chan - part.stop, self.n_chan - part.start) if self.frame.flipped else part

    def read(self, channels, ys=None, xs=None):
        """Frequency-ascending ``channels`` of the box ``ys``, ``xs`` (tile pixels; default the
        whole tile) as the detector sees them: ``(data, noise)`` with the user's 3-D mask
        blanked, or None when the box holds no finite value."""
        ys = slice(0, self.continuum.shape[0]) if ys is None else ys
        xs = slice(0, self.continuum.shape[1]) if xs is None else xs
        y0, x0 = self.tile.origin
        file_channels = self.other_order(channels)
        part = _quiet_read(
            self.path,
            channels=file_channels,
            y=slice(y0 + ys.start, y0 + ys.stop),
            x=slice(x0 + xs.start, x0 + xs.stop),
            statistics=self.statistics,
        )
        if part is None:
            return None
        data = part.data
        if self.mask is not None and self.mask.ndim == 3:
            blank = self.mask[file_channels, ys, xs]
            blank = blank[::-1] if self.frame.flipped else blank
            if blank.any():
                data = np.where(blank, np.float32(np.nan), data)
        return data, self.noise[channels]


def detect_in_blocks(detector, tile_data, blocks):
    """Detect the sources of one tile read a block of channels at a time (steps 1 and 2, and the
    deconvolver of step 3).

    Parameters
    ----------
    detector : `~deepfocus.CubeDetector`
    tile_data : `TileData`
        The tile, its file and the whole cube's measurements over it.
    blocks : sequence of `~deepfocus.io.tiles.ChannelBlock`
        File channels: each block's core and the channels read.

    Returns
    -------
    table : `~astropy.table.QTable` or None
        What ``detector`` gives on the whole tile (without a PSF), in the tile's pixels.
    """
    candidates = _candidates(detector, tile_data, blocks)
    if candidates is None:
        return None
    spectra = _spectra(tile_data, candidates, blocks)
    frame = tile_data.frame
    noise = blank_as_nan(u.Quantity(frame.noise, u.Jy / u.beam).value)
    beam_pix = detector.min_separation * frame.pixels_per_beam
    rows, _ = detector._find_lines(spectra, candidates, beam_pix, noise)
    scores = _deconvolved_scores(detector, tile_data, rows, candidates)
    rows = [r for r, score in zip(rows, scores, strict=True) if score >= detector.deconvolved_fraction]
    return detector._catalog(frame, candidates, rows, None)


def _candidates(detector, tile_data, blocks):
    """The candidates of every block's core channels, brightest first (all channels' indices)."""
    from .candidates import filter_beam, find_candidates

    n_chan = tile_data.n_chan
    beam = filter_beam(tile_data.frame)
    margin = _window_margin(detector.widths)
    found = []
    for block in blocks:
        outer, core = tile_data.other_order(block.outer), tile_data.other_order(block.core)
        read = tile_data.read(outer)
        if read is None:
            continue
        data, noise = read
        view = _BlockView(data, noise, tile_data.valid)
        # Peaks where every filter's window lies in the block (or ends with the band).
        first = 0 if outer.start == 0 else margin
        last = outer.stop - outer.start - (0 if outer.stop == n_chan else margin)
        table, _ = find_candidates(
            view,
            threshold=detector.snr_threshold,
            widths=detector.widths,
            beam_scale=detector.min_separation,
            continuum=tile_data.continuum,
            plane_noise=tile_data.plane_noise[:, outer],
            beam=beam,
            peak_channels=slice(first, last),
        )
        z = np.asarray(table["z_centroid"]) + outer.start
        table = table[(z >= core.start) & (z < core.stop)]
        for name in ("z_centroid", "z_min", "z_max"):
            table[name] = table[name] + outer.start
        if len(table):
            found.append(table)
        del view, data
    if not found:
        return None
    table = vstack(found) if len(found) > 1 else found[0]
    return table[np.argsort(-np.asarray(table["filter_snr"]), kind="stable")]


class _BlockView:
    """A block of channels of the tile as `~deepfocus.detection.candidates.find_candidates`
    reads a prepared cube: ``data``, ``noise`` (the whole cube's) and ``valid`` (the tile's
    pixels with data in any channel, as a single pass sees them)."""

    def __init__(self, data, noise, valid):
        self.data, self.noise, self.valid = data, noise, valid


def _spectra(tile_data, candidates, blocks):
    """``(n, n_chan)`` spectra of ``channel_snr`` at the candidates' pixels, block by block."""
    from .detector import candidate_pixels
    from .matched_filter import normalised_channels

    py, px = candidate_pixels(candidates, tile_data.continuum.shape)
    spectra = np.zeros((len(candidates), tile_data.n_chan), dtype=np.float32)
    for block in blocks:
        core = tile_data.other_order(block.core)
        read = tile_data.read(core)
        if read is not None:
            data, noise = read
            spectra[:, core] = normalised_channels(
                data[:, py, px], noise, tile_data.valid[py, px], tile_data.continuum[py, px]
            ).T
    return spectra


def _deconvolved_scores(detector, tile_data, rows, candidates):
    """The deconvolver's scores of ``rows``, each from the line's channels of the square around
    its candidate (clipped to the tile, as a single pass over the tile clips it)."""
    from .detector import DECONVOLVER_CUTOUT, _LineImage, deconvolver_corner, deconvolver_input
    from .matched_filter import normalised_channels

    if detector._deconvolver is None:
        return np.full(len(rows), np.inf)
    frame = tile_data.frame
    beam_pix = (frame.beams[len(frame.beams) // 2].major / frame.cell).to_value(u.one)
    ny, nx = tile_data.continuum.shape
    inputs = np.zeros((len(rows), 1, DECONVOLVER_CUTOUT, DECONVOLVER_CUTOUT), dtype=np.float32)
    ok = np.zeros((len(rows), DECONVOLVER_CUTOUT, DECONVOLVER_CUTOUT), dtype=bool)
    centres = np.empty((len(rows), 2))
    for i, (k, _zc, lo, hi, _fwhm, _peak) in enumerate(rows):
        cx, cy = candidates["x_centroid"][k].value, candidates["y_centroid"][k].value
        y0, x0 = deconvolver_corner(cx, cy)
        centres[i] = cy - y0, cx - x0
        ys = slice(max(0, y0), min(ny, y0 + DECONVOLVER_CUTOUT))
        xs = slice(max(0, x0), min(nx, x0 + DECONVOLVER_CUTOUT))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        valid = tile_data.valid[ys, xs]
        read = tile_data.read(slice(lo, hi + 1), ys, xs)
        if read is None:
            channel_snr = np.zeros((hi - lo + 1, ys.stop - ys.start, xs.stop - xs.start), np.float32)
        else:
            data, noise = read
            channel_snr = normalised_channels(data, noise, valid, tile_data.continuum[ys, xs])
        image = _LineImage(channel_snr, 0, hi - lo)
        inputs[i, 0], ok[i] = deconvolver_input(image, valid, y0 - ys.start, x0 - xs.start)
    return detector._scores(inputs, ok, centres, beam_pix)


def characterize_in_blocks(characterizer, tile_data, table, *, psf=None):
    """The characterizer on each row's column of all channels (step 3); the blended-neighbour
    flag set among the rows, as the characterizer sets it over a table.

    Parameters
    ----------
    characterizer : `~deepfocus.SourceCharacterizer`
    tile_data : `TileData`
    table : `~astropy.table.QTable`
        `detect_in_blocks`'s rows (tile pixels).
    psf : str, path-like or array-like, optional
        The cube's PSF, for the forward model.

    Returns
    -------
    table : `~astropy.table.QTable`
        What ``characterizer`` gives on the whole tile.
    """
    from ..characterization.characterizer import _blended, _rows_nearby
    from ..characterization.crowding import LINE_FREE_RADIUS

    frame = tile_data.frame
    half = column_half(frame.pixels_per_beam)
    ny, nx = tile_data.continuum.shape
    y0, x0 = tile_data.tile.origin
    # Each row goes in with the rows whose lines its continuum leaves out (within
    # LINE_FREE_RADIUS beams, inside its column), as over a whole tile; only its own is kept.
    nearby = _rows_nearby(table, LINE_FREE_RADIUS * frame.pixels_per_beam)
    out = []
    for row in range(len(table)):
        one = table[[row] + [j for j in nearby[row] if j != row]]
        cx, cy = (int(round(float(one[f"{a}_centroid"][0].value))) for a in "xy")
        ys = slice(max(0, cy - half), min(ny, cy + half + 1))
        xs = slice(max(0, cx - half), min(nx, cx + half + 1))
        column = _quiet_read(
            tile_data.path,
            y=slice(y0 + ys.start, y0 + ys.stop),
            x=slice(x0 + xs.start, x0 + xs.stop),
            statistics=tile_data.statistics,
        )
        if column is None:  # not reached: a candidate's pixel has data
            continue
        # As over a whole tile, the characterizer sees the data without the user's mask.
        one = QTable(one, copy=True)
        one["x_centroid"] = one["x_centroid"] - xs.start * u.pix
        one["y_centroid"] = one["y_centroid"] - ys.start * u.pix
        one = characterize_part(characterizer, column, one, psf)[:1]
        one["x_centroid"] = one["x_centroid"] + xs.start * u.pix
        one["y_centroid"] = one["y_centroid"] + ys.start * u.pix
        out.append(one)
        del column
    table = vstack(out, metadata_conflicts="silent") if len(out) > 1 else out[0]
    beam = frame.beams[frame.n_channels // 2]
    blended = _blended(table, (beam.major / frame.cell).to_value(u.one))
    table["flags"] = (np.asarray(table["flags"]) & ~2) | np.where(blended, 2, 0).astype(np.int32)
    table["id"] = np.arange(1, len(table) + 1)
    return table
