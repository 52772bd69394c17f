"""The network deconvolver: dirty cube in, sky estimate in physical units out."""

from __future__ import annotations

import os
import warnings

import numpy as np

from .._validation import check_positive_int
from ..exceptions import DeepFocusWarning, InvalidInputError
from ..training.samples import TRAINING_PIXELS_PER_BEAM, moment0
from .base import BaseDeconvolver
from .normstats import ImageWideNorm, ValidPixelNorm
from .tiling import apply_tiled

__all__ = ["Deconvolver"]

#: At most this many pixels go through the network in one call (about 0.9 GB of activations
#: for the shipped deconvolver, measured on a 1024 x 1024 image).
MAX_BATCH_PIXELS = 1 << 20

#: In cube mode, channels whose beam-smoothed dirty spectrum exceeds this many times its noise
#: share a pixel's deconvolved flux.
SPECTRAL_SNR = 2.0

#: Pixels per beam (major axis) the shipped deconvolver was trained on.
TRAINED_PIXELS_PER_BEAM = TRAINING_PIXELS_PER_BEAM


def _load_network(model):
    """``(network, name, sha256)`` for ``model``: a shipped name, a weights file or folder, or a
    module (`~deepfocus.models.load_task_model`)."""
    from ..models.registry import load_task_model

    network, info = load_task_model(model, "deconvolver")
    return network, info["name"], info.get("sha256")


class Deconvolver(BaseDeconvolver):
    """Deconvolve a spectral cube with the shipped (or a user's) network.

    The network maps a dirty image in units of its noise to the sky in the same units; the
    noise is kept and multiplied back, so the output is in physical units: Jy/pixel km/s for
    the integrated image (``mode="image"``: the band's moment-0 image, whose noise is the
    channels' robust noise added in quadrature times the channel width), Jy/pixel per channel
    (``mode="cube"``: the band image deconvolved and each pixel's flux shared among the
    channels where its beam-smoothed dirty spectrum is significant, so that the cube's total
    is the image's; the network, trained on band images, adds flux to empty channels when
    run channel by channel). The network needs no
    PSF; give one (``psf=``) for the residual and restored images.

    Blank (NaN) pixels go in as 0 and are left out of the network's normalisation statistics,
    which alone set its flux scale (`~deepfocus.deconvolution.normstats.ValidPixelNorm`); the
    sky estimate is NaN there.

    Images larger than ``tile_size`` are processed in overlapping tiles blended with a smooth
    window; the network's group normalisation then uses statistics of the whole image
    (`~deepfocus.deconvolution.normstats.ImageWideNorm`), so the tiled result equals the
    untiled one away from the edges (within 2 % of the peak in the tests), at the price of one
    partial pass per group of normalisation layers.

    Parameters
    ----------
    model : str, path-like or `torch.nn.Module`
        ``"default"`` (the shipped ``deconvolver-default``), another shipped name, a
        ``.safetensors`` file with its model card, a folder written by ``deepfocus train``,
        or a loaded network.
    mode : {'image', 'cube'}
        Integrated line image or every channel.
    tile_size : int
        Tile side in pixels; images up to this size are processed whole (about 0.9 GB and 4 s
        per 1024 x 1024 image on one CPU thread). Larger images are tiled, which costs more:
        about 40 times one pass for a 600 x 600 image in 512-pixel tiles. Tiles are cut on the
        network's pooling grid: their side is rounded down to a multiple of the network's size
        multiple (8 for the shipped one).
    overlap : int
        Overlap of neighbouring tiles in pixels (at least the network's reach: 64 or more),
        rounded up to a multiple of the size multiple (at most the tile side less one).
    batch_size : int
        Images (or tiles) per network call, at most ``MAX_BATCH_PIXELS`` (2**20) pixels in all;
        bounds memory.
    threads : int, optional
        Torch threads to use (default: torch's setting).
    memory_limit : int or str, optional
        Read a FITS cube in parts of at most this size (``mode='image'`` only; see
        `deepfocus.deconvolution.out_of_core`).

    Examples
    --------
    >>> from importlib.resources import files
    >>> from deepfocus import Deconvolver
    >>> cube = files("deepfocus.data") / "example_dirty.fits"  # the example cube shipped with deepfocus
    >>> result = Deconvolver(mode="image")(cube)
    >>> result.sky.unit
    Unit("Jy km / (pix s)")
    >>> result.sky.shape
    (96, 96)
    >>> result.write("sky.fits")  # doctest: +SKIP
    """

    method = "network"

    def __init__(
        self,
        model="default",
        *,
        mode="image",
        tile_size=1024,
        overlap=128,
        batch_size=8,
        threads=None,
        memory_limit=None,
    ):
        super().__init__(mode=mode, memory_limit=memory_limit)
        for name, value, low in (
            ("tile_size", tile_size, 16),
            ("overlap", overlap, 0),
            ("batch_size", batch_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
        if overlap >= tile_size:
            raise InvalidInputError(f"overlap ({overlap}) must be smaller than tile_size ({tile_size})")
        self.tile_size = int(tile_size)
        self.overlap = int(overlap)
        self.batch_size = int(batch_size)
        self.threads = None if threads is None else check_positive_int(threads, "threads")
        self.network, self.model_name, self.model_sha256 = _load_network(model)
        self.network.eval()

    def _parameters(self):
        return {"mode": self.mode, "tile_size": self.tile_size, "overlap": self.overlap}

    def _deconvolve(self, planes, sigma, psf, *, pixels_per_beam=None, valid=None):
        if self.mode == "cube":
            return self._deconvolve_cube(planes, sigma, pixels_per_beam, valid)
        return self._deconvolve_planes(planes, sigma, valid)

    def _deconvolve_cube(self, planes, sigma, pixels_per_beam, valid=None):
        """Sky cube (Jy/pixel): the band image deconvolved once, spread over the channels.

        The network was trained on band-integrated images; run on single channels it puts
        flux into channels without emission (the cube total came out 1.7 to 2.7 times too
        large in ``benchmarks/deconvolution.py``). Instead the band image is deconvolved and
        each pixel's flux is shared among the channels in proportion to its dirty spectrum
        where that is significant (beam-smoothed, over 3 channels, above `SPECTRAL_SNR`), so
        the cube's total equals the image's.
        """
        from scipy.ndimage import gaussian_filter, uniform_filter1d

        from ..detection.matched_filter import robust_plane_noise

        good = np.isfinite(sigma) & (sigma > 0)
        image, image_sigma = moment0(planes, sigma, 1.0, channels=good)  # per channel width
        valid_image = None if valid is None else np.any(valid, axis=0)[None]
        sky_image, extra = self._deconvolve_planes(image[None], np.array([image_sigma]), valid_image)
        smooth = 0.5 * (pixels_per_beam or 5.0) / np.sqrt(2 * np.log(2))  # half the beam's sigma
        spectra = gaussian_filter(np.where(good[:, None, None], planes, 0.0), (0, smooth, smooth))
        spectra = uniform_filter1d(spectra, 3, axis=0)
        # The noise of the smoothed spectra, per channel (robust, over the image).
        noise = robust_plane_noise(spectra, np.ones(planes.shape[1:], dtype=bool))
        weights = np.where(
            spectra > SPECTRAL_SNR * np.nan_to_num(noise, nan=np.inf)[:, None, None], spectra, 0.0
        )
        total = weights.sum(axis=0)
        # Pixels with no significant channel keep their (small) flux spread evenly over the band.
        flat = np.where(good, 1.0 / max(good.sum(), 1), 0.0)[:, None, None]
        weights = np.where(total > 0, weights / np.where(total > 0, total, 1.0), flat)
        return sky_image[0][None] * weights, extra

    def _deconvolve_planes(self, planes, sigma, valid=None):
        """Sky of every plane (same units as ``planes`` per beam, per pixel) and ``meta``.

        ``valid`` (bool, the shape of ``planes``) marks the pixels with data; the others (set
        to 0) are left out of the network's normalisation statistics.
        """
        import torch

        scale = np.where(np.isfinite(sigma) & (sigma > 0), sigma, 1.0)
        x = (planes / scale[:, None, None]).astype(np.float32)
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            with torch.no_grad():
                out = self._run(x, torch, valid)
        finally:
            torch.set_num_threads(previous)
        return out * scale[:, None, None], {"model": self.model_name, "model_sha256": self.model_sha256}

    def _run(self, x, torch, valid=None):
        n, ny, nx = x.shape
        tile_pixels = min(ny, self.tile_size) * min(nx, self.tile_size)
        batch_size = max(1, min(self.batch_size, MAX_BATCH_PIXELS // tile_pixels))
        kwargs = dict(tile_size=self.tile_size, overlap=self.overlap, batch_size=batch_size)
        # Blank pixels (0 here) must not enter the normalisation statistics, which alone set the
        # network's flux scale (normstats); a cube without any keeps the plain network.
        mask = None if valid is None or np.all(valid) else np.asarray(valid, dtype=np.float32)

        def tile_masks(batch, jobs):
            h, w = batch.shape[1:]
            return [mask[k, y : y + h, x0 : x0 + w] for k, y, x0, _ in jobs]

        if max(ny, nx) <= self.tile_size:
            if mask is None:
                return apply_tiled(
                    lambda b, _jobs: self.network(torch.from_numpy(b[:, None]))[:, 0].numpy(), x, **kwargs
                )
            with ValidPixelNorm(self.network) as norm:

                def run_valid(batch, jobs):
                    norm.set_weights(tile_masks(batch, jobs))
                    return self.network(torch.from_numpy(batch[:, None]))[:, 0].numpy()

                return apply_tiled(run_valid, x, **kwargs)
        with ImageWideNorm(self.network, n) as norm:
            # The network pads a whole image at its ends to a multiple of its size multiple,
            # repeating the edge pixels, and counts that padding in its statistics; its pooling
            # grid starts at the image's first pixel. Padded here the same way (the valid-pixel
            # map too) and cut into tiles whose sides and starts are multiples of it, the tiles
            # cover the image the network sees whole, on the same grid, and need no padding of
            # their own (ImageWideNorm.set_batch would weight it 0).
            multiple = norm.multiple
            pad = ((0, 0), (0, (-ny) % multiple), (0, (-nx) % multiple))
            x = np.pad(x, pad, mode="edge")
            if mask is not None:
                mask = np.pad(mask, pad, mode="edge")
            tile = max(multiple, self.tile_size - self.tile_size % multiple)
            overlap = min(-(-self.overlap // multiple) * multiple, tile - multiple)
            kwargs.update(tile_size=tile, overlap=overlap)

            def run(batch, jobs):
                weights = [j[3] for j in jobs]
                if mask is not None:
                    weights = [w * m for w, m in zip(weights, tile_masks(batch, jobs), strict=True)]
                norm.set_batch([j[0] for j in jobs], weights)
                out = norm.forward(torch.from_numpy(batch[:, None]))
                return np.zeros_like(batch) if out is None else out[:, 0].numpy()

            for group in norm.levels:
                norm.calibrate(group)
                apply_tiled(run, x, **kwargs)
                norm.end_pass()
            return apply_tiled(run, x, **kwargs)[:, :ny, :nx]

    def __call__(self, cube, *, psf=None, residual=False, restored=False):  # noqa: D102 - see base
        from ..detection.detector import prepare

        if self.memory_limit is not None and isinstance(cube, (str, os.PathLike)):
            from ..io.tiles import cube_layout

            pixels_per_beam = cube_layout(cube).pixels_per_beam  # from the header: read in parts later
        else:
            cube = prepare(cube, psf=psf)
            pixels_per_beam = cube.pixels_per_beam
        low, high = TRAINED_PIXELS_PER_BEAM
        if not 0.75 * low <= pixels_per_beam <= 1.5 * high:
            warnings.warn(
                f"the cube has {pixels_per_beam:.2g} pixels per beam; the shipped deconvolver "
                f"was trained on {low:g}-{high:g}: expect a less accurate sky estimate",
                DeepFocusWarning,
                stacklevel=2,
            )
        return super().__call__(cube, psf=psf, residual=residual, restored=restored)

    __call__.__doc__ = BaseDeconvolver.__call__.__doc__
