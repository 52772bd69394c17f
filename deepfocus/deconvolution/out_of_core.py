"""The band-integrated image of a FITS cube larger than memory, and its PSF, read in parts.

Image-mode deconvolution needs only the moment-0 image of the cube (a 2-D array) and, for the
residual and restored images or CLEAN, the mean of the channels' PSFs. Both are built here
without holding the cube: the moment-0 image over spatial tiles of all channels (each pixel's
sum over its own spectrum, so it equals the in-memory image bit for bit), the PSF a plane at a
time (`~deepfocus.io.PSFPlanes`).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np

from ..io.psf import PSFPlanes
from ..io.tiles import cube_layout, cube_statistics, parse_memory, plan_tiles
from ..training.samples import moment0
from .products import JY_PER_BEAM, KMS

__all__ = ["MOMENT_BYTES_PER_VOXEL", "band_image", "mean_psf_planes"]

#: Working memory per voxel of a part read for the moment-0 image (bytes): the float32 read,
#: its prepared copy and the float64 sum's input.
MOMENT_BYTES_PER_VOXEL = 32


def band_image(path, *, memory_limit, progress=False):
    """The moment-0 image of a FITS cube over the channels with a noise, read in spatial tiles.

    Parameters
    ----------
    path : str or path-like
        FITS cube.
    memory_limit : int or str
        Budget for one part (bytes, or a size such as ``"2 GiB"``).
    progress : bool
        Show a progress bar over the parts.

    Returns
    -------
    image : `numpy.ndarray`
        ``(ny, nx)`` float64, Jy/beam km/s (0 where no channel has data).
    sigma : float
        Noise of the image (Jy/beam km/s; channels independent).
    valid : `numpy.ndarray`
        ``(ny, nx)`` bool: pixels with data in some channel.
    reference : `~deepfocus.io.cube.PreparedCube`
        The cube's metadata (beams, channel order, WCS of the whole image, noise) on one pixel.
    """
    from tqdm.auto import tqdm

    from ..detection.tiled import _metadata_only, _quiet_read
    from ..exceptions import InvalidInputError

    layout = cube_layout(path)
    limit = parse_memory(memory_limit)
    statistics = cube_statistics(path, block_bytes=max(limit // 4, 4 * layout.shape[1] * layout.shape[2]))
    plan = plan_tiles(layout.shape, memory_limit=limit, halo=0, bytes_per_voxel=MOMENT_BYTES_PER_VOXEL)
    _, ny, nx = layout.shape
    image = np.zeros((ny, nx))
    valid = np.zeros((ny, nx), dtype=bool)
    reference = sigma = None
    for tile in tqdm(plan.tiles, desc="band image", unit="tile", disable=not progress):
        ys, xs = tile.core
        part = _quiet_read(path, y=ys, x=xs, statistics=statistics)
        if part is None:
            continue
        noise = part.noise.to_value(JY_PER_BEAM).astype(float)
        dv = part.channel_velocity_width.to_value(KMS)
        data = np.nan_to_num(part.data.astype(np.float64), nan=0.0)
        image[ys, xs], sigma = moment0(data, noise, dv, channels=np.isfinite(noise))
        valid[ys, xs] = part.valid.any(axis=0)
        if reference is None:
            reference = _whole_image_metadata(_metadata_only(part), ys.start, xs.start)
    if reference is None:
        raise InvalidInputError(f"{path}: every pixel is NaN")
    return image, sigma, valid, reference


def _whole_image_metadata(part, y0, x0):
    """``part`` (metadata of a part at pixel ``(y0, x0)``) with the WCS of the whole image."""
    wcs = part.wcs.deepcopy()
    wcs.wcs.crpix = wcs.wcs.crpix + np.array([x0, y0, 0], dtype=float)
    wcs.wcs.set()
    return dataclasses.replace(part, wcs=wcs)


def mean_psf_planes(psf, reference, image_shape):
    """The mean of the channels' PSFs (channels with a noise), read one plane at a time.

    Each plane is scaled to 1 at its centre pixel first, as for a cube in memory.

    Parameters
    ----------
    psf : str, path-like or array-like
        As `~deepfocus.Deconvolver` takes it.
    reference : `~deepfocus.io.cube.PreparedCube`
        The cube's metadata (`band_image`).
    image_shape : tuple of int
        ``(ny, nx)`` of the cube.

    Returns
    -------
    psf : `numpy.ndarray`
        ``(1, py, px)`` float64, 1 at the centre pixel, checked as an in-memory PSF is.
    """
    from .base import _check_psf

    good = np.flatnonzero(np.isfinite(reference.noise.value))
    with PSFPlanes.for_cube(psf, reference) as planes:
        py, px = planes.shape
        total, used = np.zeros((py, px)), 0
        for channel in good:
            plane = np.nan_to_num(np.asarray(planes[channel], dtype=np.float64), nan=0.0)
            centre = plane[py // 2, px // 2]
            if centre != 0:
                total += plane / centre
                used += 1
    mean = total / max(used, 1)
    return _check_psf(SimpleNamespace(psf=mean[None], shape=(1, *image_shape)))
