"""Apply an image-to-image function to large images in overlapping, smoothly blended tiles.

Memory stays bounded by the tile size whatever the image size. Tiles overlap by ``overlap``
pixels; in the overlaps each tile's output is weighted by a raised-cosine ramp that falls
towards the tile's inner edges (never at the image's own edges), and the weighted outputs are
averaged, so there are no seams. Written here because neither scipy nor astropy offers blended
tiling of a callable (``astropy.nddata.Cutout2D`` cuts, but does not blend).
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InvalidInputError

__all__ = ["tile_starts", "tile_weights", "apply_tiled"]


def tile_starts(length, tile_size, overlap):
    """First pixel of every tile along one axis.

    Parameters
    ----------
    length : int
        Pixels along the axis.
    tile_size : int
        Tile length (pixels); the whole axis is one tile if ``length <= tile_size``.
    overlap : int
        Minimum overlap between neighbouring tiles (pixels), ``0 <= overlap < tile_size``.

    Returns
    -------
    starts : list of int
        Ascending; the last tile ends at ``length``.
    """
    if length <= tile_size:
        return [0]
    step = tile_size - overlap
    starts = list(range(0, length - tile_size, step))
    starts.append(length - tile_size)
    return starts


def tile_weights(start, size, length, overlap):
    """1-D blending weight of a tile: 1 inside, a raised-cosine ramp over its inner overlaps.

    Parameters
    ----------
    start, size : int
        First pixel and length of the tile.
    length : int
        Length of the whole axis.
    overlap : int
        Ramp length (pixels).

    Returns
    -------
    weights : `numpy.ndarray`
        ``(size,)``, in (0, 1].
    """
    w = np.ones(size)
    if overlap <= 0:
        return w
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
    n = min(overlap, size)
    if start > 0:  # a neighbour on the low side
        w[:n] *= ramp[:n]
    if start + size < length:  # a neighbour on the high side
        w[size - n :] *= ramp[:n][::-1]
    return w


def apply_tiled(function, images, *, tile_size=256, overlap=64, batch_size=16):
    """Run ``function`` on a stack of images, tile by tile, and blend the tiles.

    Parameters
    ----------
    function : callable
        ``function(batch, jobs)`` maps a float32 array ``(m, h, w)`` to an array of the same
        shape (e.g. a network run on a batch); ``jobs`` lists, for every tile of the batch,
        ``(k, y, x, weight)``: the image index, the tile's first row and column, and its
        ``(h, w)`` blending weight normalised so that the weights of all tiles sum to 1 at
        every pixel.
    images : `numpy.ndarray`
        ``(n, ny, nx)`` stack of images (finite values).
    tile_size : int
        Tile side (pixels). Images no larger than this in both axes are processed whole.
    overlap : int
        Overlap of neighbouring tiles (pixels), ``0 <= overlap < tile_size``.
    batch_size : int
        Tiles passed to ``function`` at once.

    Returns
    -------
    out : `numpy.ndarray`
        ``(n, ny, nx)`` float32.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise InvalidInputError(f"apply_tiled needs a stack (n, ny, nx), got shape {images.shape}")
    if not 0 <= overlap < tile_size:
        raise InvalidInputError(f"overlap must be in [0, tile_size), got {overlap} for tile_size {tile_size}")
    n, ny, nx = images.shape
    th, tw = min(tile_size, ny), min(tile_size, nx)
    boxes = [(y, x) for y in tile_starts(ny, th, overlap) for x in tile_starts(nx, tw, overlap)]
    weights = {
        (y, x): np.outer(tile_weights(y, th, ny, overlap), tile_weights(x, tw, nx, overlap)) for y, x in boxes
    }
    total = np.zeros((ny, nx))
    for (y, x), w in weights.items():
        total[y : y + th, x : x + tw] += w
    for (y, x), w in weights.items():
        w /= total[y : y + th, x : x + tw]
    out = np.zeros(images.shape, dtype=np.float64)
    jobs = [(k, y, x) for k in range(n) for (y, x) in boxes]
    for i in range(0, len(jobs), batch_size):
        chunk = [(k, y, x, weights[y, x]) for k, y, x in jobs[i : i + batch_size]]
        batch = np.stack([images[k, y : y + th, x : x + tw] for k, y, x, _ in chunk])
        result = np.asarray(function(batch, chunk), dtype=np.float64)
        for (k, y, x, w), tile in zip(chunk, result, strict=True):
            out[k, y : y + th, x : x + tw] += w * tile
    return out.astype(np.float32)
