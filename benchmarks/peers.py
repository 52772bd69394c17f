"""Classical source finders run on the same cubes as deepfocus (for benchmarks/detection.py).

Each takes a `~deepfocus.io.cube.PreparedCube` and returns a QTable with ``x_centroid``,
``y_centroid`` (pix) and ``z_centroid`` (channel), the columns the matching needs.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.stats import mad_std
from astropy.table import QTable
from scipy import ndimage

__all__ = ["photutils_moment0", "smooth_and_clip", "pybdsf_moment0", "moment0_snr"]


def moment0_snr(cube):
    """Full-band moment-0 image in S/N units (noise from the per-channel noise)."""
    noise = np.asarray(u.Quantity(cube.noise, u.Jy / u.beam).value)
    data = np.nan_to_num(cube.data)
    image = data.sum(axis=0)
    sigma = np.sqrt(np.nansum(noise**2))
    valid = cube.valid.any(axis=0)
    return np.where(valid, image / sigma, 0.0), valid


def _line_channel(cube, x, y, beam_pix):
    """Channel of the brightest beam-averaged spectral peak at each position (moment-0 finders)."""
    data = np.nan_to_num(cube.data)
    smoothed = ndimage.uniform_filter1d(
        ndimage.gaussian_filter(data, (0, beam_pix / 2.35, beam_pix / 2.35)), 3, axis=0
    )
    ny, nx = data.shape[1:]
    ix = np.clip(np.rint(x).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(y).astype(int), 0, ny - 1)
    return np.argmax(smoothed[:, iy, ix], axis=0).astype(float)


def _table(x, y, z):
    t = QTable()
    t["x_centroid"] = np.asarray(x, float) * u.pix
    t["y_centroid"] = np.asarray(y, float) * u.pix
    t["z_centroid"] = np.asarray(z, float)
    return t


def photutils_moment0(cube, threshold):
    """photutils segmentation (with deblending) of the dirty moment-0 image at ``threshold`` sigma."""
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources

    image, valid = moment0_snr(cube)
    beam_pix = (cube.beams[len(cube.beams) // 2].major / cube.cell).to_value(u.one)
    segments = detect_sources(image, threshold, n_pixels=max(5, int(0.5 * beam_pix**2)), mask=~valid)
    if segments is None:
        return _table([], [], [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segments = deblend_sources(
            image, segments, n_pixels=max(5, int(0.5 * beam_pix**2)), progress_bar=False
        )
    catalog = SourceCatalog(image, segments)
    x, y = np.asarray(catalog.x_centroid), np.asarray(catalog.y_centroid)
    return _table(x, y, _line_channel(cube, x, y, beam_pix))


def smooth_and_clip(cube, threshold=4.0, *, spatial=(0.0, 1.0, 2.0), spectral=(1, 3, 7, 15), min_voxels=10):
    """A 3-D smooth-and-clip finder in the style of SoFiA-2.

    The cube (per-channel S/N) is smoothed by Gaussians of ``spatial`` beam FWHMs and boxcars of
    ``spectral`` channels; voxels above ``threshold`` times the robust noise of any smoothed
    version are kept; the union mask is labelled in 3-D (26-connectivity) and objects of at
    least ``min_voxels`` voxels are sources, at their flux-weighted centroids.
    """
    noise = np.asarray(u.Quantity(cube.noise, u.Jy / u.beam).value)
    data = np.nan_to_num(cube.data / noise[:, None, None])
    beam_pix = (cube.beams[len(cube.beams) // 2].major / cube.cell).to_value(u.one)
    mask = np.zeros(data.shape, dtype=bool)
    for s in spatial:
        smooth = ndimage.gaussian_filter(data, (0, s * beam_pix / 2.355, s * beam_pix / 2.355)) if s else data
        for w in spectral:
            version = ndimage.uniform_filter1d(smooth, w, axis=0) if w > 1 else smooth
            sigma = mad_std(version[:, ::2, ::2])
            mask |= version > threshold * sigma
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n == 0:
        return _table([], [], [])
    sizes = ndimage.sum(np.ones_like(data), labels, index=np.arange(1, n + 1))
    keep = np.nonzero(sizes >= min_voxels)[0] + 1
    weights = np.clip(data, 0, None)
    centres = ndimage.center_of_mass(weights, labels, keep)
    centres = np.array(centres).reshape(-1, 3)
    return _table(centres[:, 2], centres[:, 1], centres[:, 0])


def pybdsf_moment0(cube, thresh_isl=3.0, thresh_pix=5.0):
    """PyBDSF on the dirty moment-0 image (None when bdsf is not installed)."""
    try:
        import bdsf
    except ImportError:
        return None
    image, valid = moment0_snr(cube)
    beam = cube.beams[len(cube.beams) // 2]
    header = cube.wcs.celestial.to_header()
    header["BUNIT"] = "Jy/beam"
    header["BMAJ"] = beam.major.to_value(u.deg)
    header["BMIN"] = beam.minor.to_value(u.deg)
    header["BPA"] = beam.pa.to_value(u.deg)
    frequency = cube.spectral_axis[len(cube.spectral_axis) // 2].to_value(u.Hz)
    beam_pix = (beam.major / cube.cell).to_value(u.one)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mom0.fits")
        fits.PrimaryHDU(np.where(valid, image, np.nan).astype(np.float32), header=header).writeto(path)
        try:
            result = bdsf.process_image(
                path,
                thresh_isl=thresh_isl,
                thresh_pix=thresh_pix,
                quiet=True,
                frequency=frequency,
                rms_map=False,
                mean_map="zero",
            )
        except Exception:
            return _table([], [], [])
        sources = result.sources
        if not sources:
            return _table([], [], [])
        radec = np.array([s.posn_sky_centroid for s in sources])
        x, y = cube.wcs.celestial.world_to_pixel_values(radec[:, 0], radec[:, 1])
    return _table(x, y, _line_channel(cube, x, y, beam_pix))
