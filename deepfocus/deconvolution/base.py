"""What every deconvolution method shares: reading the cube, the planes it works on, the PSF,
residual and restored images, and packaging the results with units and the input's WCS.

A method (`~deepfocus.Deconvolver`, `~deepfocus.deconvolution.HogbomClean`)
only implements ``_deconvolve(planes, sigma, psf, pixels_per_beam=, valid=)``: a stack of 2-D
dirty images in Jy/beam (or Jy/beam km/s; 0 where ``valid`` is False, the input's blank
pixels) with the noise of each, to the sky estimate in Jy/pixel (or Jy/pixel km/s) and a dict
of what to add to the result's ``meta``.
"""

from __future__ import annotations

import os
import time
import warnings

import astropy.units as u
import numpy as np

from ..exceptions import InvalidInputError
from ..training.samples import moment0
from ..version import __version__
from .products import JY_PER_BEAM, JY_PER_PIXEL, KMS, DeconvolutionResult, convolve_centred

__all__ = ["BaseDeconvolver", "MODES", "band_header"]

#: ``"image"``: one integrated (moment-0) image over the band; ``"cube"``: every channel.
MODES = ("image", "cube")


class BaseDeconvolver:
    """Shared call logic of the deconvolution methods (not used directly).

    Parameters
    ----------
    mode : {'image', 'cube'}
        Deconvolve the line image integrated over the band (a 2-D
        `~spectral_cube.Projection` in Jy/pixel km/s) or every channel (a
        `~spectral_cube.SpectralCube` in Jy/pixel).
    memory_limit : int or str, optional
        With ``mode='image'``: a FITS path is read in parts of at most this size (bytes, or a
        size such as ``"2 GiB"``) to build its band image, and its PSF a plane at a time
        (`~deepfocus.deconvolution.out_of_core`), so the cube is never held in memory. The
        deconvolution of the 2-D image then needs what it needs in memory (the network: about
        0.9 GB per 1024 x 1024 tile).
    """

    #: Whether the method itself needs the PSF (CLEAN does; the network does not).
    needs_psf = False
    method = "base"

    def __init__(self, *, mode="image", memory_limit=None):
        from ..io.tiles import parse_memory

        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
        if memory_limit is not None and mode != "image":
            raise InvalidInputError("memory_limit works with mode='image' only (the band image)")
        self.mode = mode
        self.memory_limit = None if memory_limit is None else parse_memory(memory_limit)

    def _deconvolve(self, planes, sigma, psf, *, pixels_per_beam=None, valid=None):
        """``(sky, meta)``: the sky estimate of every plane and extra ``meta`` entries.

        ``valid`` (bool, the shape of ``planes``) marks the pixels with data.
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def _parameters(self):
        return {"mode": self.mode}

    def __call__(self, cube, *, psf=None, residual=False, restored=False):
        """Deconvolve a cube.

        Parameters
        ----------
        cube : str, path-like, `~spectral_cube.SpectralCube` or `~deepfocus.io.cube.PreparedCube`
            A spectral cube in Jy/beam (or a unit convertible to it) with a beam per channel
            (``BMAJ``/``BMIN``/``BPA`` or a ``BEAMS`` table), as ``tclean`` writes it.
        psf : str, path-like or array-like, optional
            The PSF: a FITS file (``exportfits`` of ``tclean``'s ``.psf``) or an array
            ``(n_chan, ny, nx)`` or ``(ny, nx)``, peak 1 at the centre pixel
            ``(ny // 2, nx // 2)``, in the input's channel order. Needed by CLEAN and for the
            residual and restored images; never replaced by a Gaussian.
        residual : bool
            Also compute the residual image (input minus the sky convolved with the PSF).
        restored : bool
            Also compute the restored image (sky convolved with the restoring beam, plus the
            residual).

        Returns
        -------
        result : `~deepfocus.deconvolution.DeconvolutionResult`
            ``.sky`` (and ``.residual``, ``.restored`` when requested) in the input's pixel
            grid and channel order.

        Raises
        ------
        deepfocus.exceptions.InvalidInputError
            Unreadable cube, no beam, a PSF of the wrong shape or not peaked at its centre, or a
            PSF missing where it is needed.
        """
        start = time.perf_counter()
        want_psf = self.needs_psf or residual or restored
        if want_psf and psf is None and not _has_psf(cube):
            need = "CLEAN needs" if self.needs_psf else "the residual and restored images need"
            raise InvalidInputError(
                f"{need} the PSF: pass psf= (tclean's .psf exported to FITS, or an array); "
                "deepfocus does not substitute a Gaussian"
            )
        if self.memory_limit is not None and isinstance(cube, (str, os.PathLike)):
            prepared, planes, sigma, valid, unit, psf_planes = self._read_in_parts(cube, psf)
        else:
            prepared, planes, sigma, valid, unit, psf_planes = self._read_whole(cube, psf)
        sky, extra = self._deconvolve(
            planes, sigma, psf_planes, pixels_per_beam=prepared.pixels_per_beam, valid=valid
        )
        sky = np.asarray(sky, dtype=np.float64)
        sky[~np.isfinite(sigma)] = 0.0
        res = rest = None
        if residual or restored:
            res = planes - convolve_centred(sky, psf_planes)
        if restored:
            rest = convolve_centred(sky, self._beam_kernels(prepared)) + res
        seconds = time.perf_counter() - start
        meta = {
            "method": self.method,
            "parameters": self._parameters(),
            "noise": sigma.tolist() if self.mode == "image" else None,
            "version": __version__,
            "seconds": seconds,
            "source": str(prepared.source_path) if prepared.source_path else "in-memory cube",
        }
        meta.update(extra)
        pack = _Packer(prepared, self.mode, valid)
        return DeconvolutionResult(
            sky=pack(sky, JY_PER_PIXEL * unit, beams=False),
            residual=None if res is None else pack(res, JY_PER_BEAM * unit, beams=True),
            restored=None if rest is None else pack(rest, JY_PER_BEAM * unit, beams=True),
            mode=self.mode,
            dirty=pack(planes, JY_PER_BEAM * unit, beams=True),
            meta=meta,
        )

    def _read_whole(self, cube, psf):
        """``(prepared, planes, sigma, valid, unit, psf_planes)`` of a cube read whole."""
        from ..detection.detector import prepare

        prepared = prepare(cube, psf=psf)
        psf_cube = _check_psf(prepared) if prepared.psf is not None else None
        planes, sigma, valid, unit = self._planes(prepared)
        psf_planes = None
        if psf_cube is not None:
            psf_planes = psf_cube if self.mode == "cube" else _mean_psf(psf_cube, prepared)
        return prepared, planes, sigma, valid, unit, psf_planes

    def _read_in_parts(self, path, psf):
        """As `_read_whole` for the band image of a FITS cube read in parts (``memory_limit``)."""
        from .out_of_core import band_image, mean_psf_planes

        image, sigma, valid, reference = band_image(path, memory_limit=self.memory_limit)
        psf_planes = None if psf is None else mean_psf_planes(psf, reference, image.shape)
        return reference, image[None], np.array([sigma]), valid[None], KMS, psf_planes

    def _planes(self, prepared):
        """The 2-D dirty images to deconvolve (NaN set to 0), their noise and valid areas."""
        data = np.nan_to_num(prepared.data.astype(np.float64), nan=0.0)
        noise = prepared.noise.to_value(JY_PER_BEAM).astype(float)
        if self.mode == "cube":
            return data, noise, prepared.valid, u.one
        dv = prepared.channel_velocity_width.to_value(KMS)
        # The band image and its noise exactly as the network's training inputs are made.
        image, sigma = moment0(data, noise, dv, channels=np.isfinite(noise))
        return image[None], np.array([sigma]), prepared.valid.any(axis=0)[None], KMS

    def _beam_kernels(self, prepared):
        """Restoring-beam kernels (peak 1) of the planes: per channel, or the middle channel's."""
        cell = prepared.cell
        beams = prepared.beams if self.mode == "cube" else [prepared.beams[prepared.n_channels // 2]]
        kernels = [b.as_kernel(cell).array for b in beams]
        size = max(k.shape[0] for k in kernels) | 1
        out = np.zeros((len(kernels), size, size))
        for i, k in enumerate(kernels):
            oy, ox = (size - k.shape[0]) // 2, (size - k.shape[1]) // 2
            out[i, oy : oy + k.shape[0], ox : ox + k.shape[1]] = k / k.max()
        return out


def band_header(prepared):
    """FITS keywords naming the band that an image-mode (2-D) product integrates.

    The image keeps its 2-D celestial WCS, with ``RESTFRQ`` and ``SPECSYS``, as spectral-cube's
    ``moment0().write`` leaves it (a third WCS axis on a 2-D image would make astropy build a
    3-D WCS that ``Projection`` and 2-pixel ``pixel_to_world`` calls refuse). The band is given
    by keywords instead, with what CASA ``imcollapse`` puts on its degenerate spectral axis:
    ``FREQCEN`` (its reference value, the centre) and ``BANDWID`` (the full width).

    Parameters
    ----------
    prepared : `~deepfocus.io.cube.PreparedCube`
        The cube (or its metadata, for one read in parts); the channels with a noise estimate
        are the ones the band image sums (flagged channels are not).

    Returns
    -------
    header : `~astropy.io.fits.Header`
        ``FREQMIN``, ``FREQMAX`` (Hz: outer edges of the lowest and highest channels summed, in
        the cube's ``SPECSYS`` frame), ``FREQCEN`` and ``BANDWID`` (Hz), ``NCHAN`` (channels
        summed; fewer than the band holds when some are flagged) and ``CHANVWID`` (km/s: the
        radio-velocity channel width at ``RESTFRQ`` that the sum is multiplied by).
    """
    from astropy.io import fits
    from astropy.wcs import FITSFixedWarning

    used = np.flatnonzero(np.isfinite(prepared.noise.value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        spectral = prepared.wcs.spectral
        edges = spectral.pixel_to_world(np.arange(prepared.n_channels + 1) - 0.5).to_value(u.Hz)
    if used.size == 0:  # pragma: no cover - read_cube refuses a cube without a valid channel
        used = np.arange(prepared.n_channels)
    low = float(np.minimum(edges[used], edges[used + 1]).min())
    high = float(np.maximum(edges[used], edges[used + 1]).max())
    header = fits.Header()
    header["FREQMIN"] = (low, "[Hz] low edge of the integrated band")
    header["FREQMAX"] = (high, "[Hz] high edge of the integrated band")
    header["FREQCEN"] = (0.5 * (low + high), "[Hz] centre of the integrated band")
    header["BANDWID"] = (high - low, "[Hz] width of the integrated band")
    header["NCHAN"] = (int(used.size), "channels summed into the image")
    dv = float(prepared.channel_velocity_width.to_value(KMS))
    header["CHANVWID"] = (dv, "[km s-1] channel width (radio) of the sum")
    return header


def _has_psf(cube):
    """Whether an already prepared cube carries its PSF."""
    return getattr(cube, "psf", None) is not None


def _check_psf(prepared):
    """The PSF cube, checked against the image and normalised to 1 at each centre pixel."""
    from ..io.psf import check_psf_peaks, fill_blank_planes

    psf = np.asarray(prepared.psf, dtype=np.float64)
    n, ny, nx = prepared.shape
    py, px = psf.shape[1:]
    if py < 3 or px < 3 or py > 2 * ny + 1 or px > 2 * nx + 1:
        raise InvalidInputError(
            f"the PSF planes are {py} x {px} pixels; they must be between 3 x 3 and twice the "
            f"image ({ny} x {nx}), centred at pixel (ny // 2, nx // 2) as tclean writes them"
        )
    check_psf_peaks(psf, "the PSF", allow_blank=True)  # as read_cube checks it
    return fill_blank_planes(psf, "the PSF")  # blank channels: the nearest valid channel's PSF


def _mean_psf(psf_cube, prepared):
    """The PSF of the band-integrated image: the mean of the channels' PSFs (exact when the
    PSFs are equal; for a line narrower than the band it is the mean over the band)."""
    good = np.isfinite(prepared.noise.value)
    return psf_cube[good].mean(axis=0)[None]


class _Packer:
    """Arrays of the prepared cube's order to SpectralCube/Projection in the input's order."""

    def __init__(self, prepared, mode, valid):
        self.prepared = prepared
        self.mode = mode
        self.valid = valid

    def __call__(self, array, unit, *, beams):
        from astropy.wcs import FITSFixedWarning
        from spectral_cube import Projection, SpectralCube, VaryingResolutionSpectralCube
        from spectral_cube.masks import BooleanArrayMask

        prepared = self.prepared
        data = np.where(self.valid, array, np.nan).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            if self.mode == "image":
                beam = prepared.beams[prepared.n_channels // 2] if beams else None
                return Projection(
                    data[0], unit=unit, wcs=prepared.wcs.celestial, beam=beam, header=band_header(prepared)
                )
            wcs = prepared.wcs
            b = prepared.beams
            if prepared.flipped:
                from ..io.cube import _flip_spectral_wcs

                data = data[::-1].copy()
                wcs = _flip_spectral_wcs(wcs, prepared.n_channels)
                b = b[::-1]
            quantity = u.Quantity(data, unit, copy=False)
            mask = BooleanArrayMask(np.isfinite(data), wcs)
            meta = {"BUNIT": unit.to_string("fits")}
            if not beams:
                return SpectralCube(data=quantity, wcs=wcs, mask=mask, meta=meta)
            same = np.all(b.major == b.major[0]) and np.all(b.minor == b.minor[0]) and np.all(b.pa == b.pa[0])
            if same:
                return SpectralCube(data=quantity, wcs=wcs, mask=mask, meta=meta, beam=b[0])
            return VaryingResolutionSpectralCube(data=quantity, wcs=wcs, mask=mask, meta=meta, beams=b)
