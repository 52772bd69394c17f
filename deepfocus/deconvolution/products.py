"""What a deconvolution returns: sky, residual and restored images with units and a WCS.

A `DeconvolutionResult` holds `~spectral_cube.SpectralCube` objects (cube mode) or 2-D
`~spectral_cube.Projection` objects (image mode, the integrated line image), in the input
cube's pixel grid and channel order, and writes them to FITS atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from scipy.signal import fftconvolve

__all__ = ["DeconvolutionResult", "write_fits", "convolve_centred", "SKY_BUNIT"]

JY_PER_PIXEL = u.Jy / u.pix
JY_PER_BEAM = u.Jy / u.beam
KMS = u.km / u.s

#: BUNIT written for the sky estimate of each mode (FITS-standard spellings astropy parses).
SKY_BUNIT = {"cube": "Jy/pixel", "image": "Jy km s-1 pixel-1"}
_BEAM_BUNIT = {"cube": "Jy/beam", "image": "Jy km s-1 beam-1"}


def convolve_centred(images, kernels):
    """Convolve each image with its kernel, the kernel's centre at pixel ``(ky // 2, kx // 2)``.

    ``scipy.signal.fftconvolve(..., mode="same")`` centres even-sized kernels half a pixel
    off (at ``(k - 1) // 2``); CASA's PSFs have even sizes with the peak at ``k // 2``, so the
    full convolution is cut here at the right place.

    Parameters
    ----------
    images : `numpy.ndarray`
        ``(n, ny, nx)``.
    kernels : `numpy.ndarray`
        ``(n, ky, kx)`` or ``(ky, kx)`` (one kernel for all images).

    Returns
    -------
    out : `numpy.ndarray`
        ``(n, ny, nx)`` float64.
    """
    images = np.asarray(images, dtype=float)
    kernels = np.asarray(kernels, dtype=float)
    if kernels.ndim == 2:
        kernels = np.broadcast_to(kernels, (images.shape[0],) + kernels.shape)
    ny, nx = images.shape[1:]
    cy, cx = kernels.shape[1] // 2, kernels.shape[2] // 2
    full = fftconvolve(images, kernels, mode="full", axes=(1, 2))
    return full[:, cy : cy + ny, cx : cx + nx]


@dataclass
class DeconvolutionResult:
    """The products of one deconvolution.

    Attributes
    ----------
    sky : `~spectral_cube.SpectralCube` or `~spectral_cube.Projection`
        The sky estimate: Jy/pixel per channel (cube mode) or Jy/pixel km/s (image mode:
        the line image integrated over the band). NaN outside the input's valid area. In image
        mode the header (and the FITS file) names the band integrated: ``FREQMIN``,
        ``FREQMAX``, ``FREQCEN``, ``BANDWID`` (Hz), ``NCHAN`` and ``CHANVWID`` (km/s), see
        `~deepfocus.deconvolution.base.band_header`.
    residual : same type, or None
        Input (dirty) minus the sky estimate convolved with the PSF: Jy/beam (cube) or
        Jy/beam km/s (image). Only when requested (needs the PSF).
    restored : same type, or None
        Sky estimate convolved with the restoring beam of the input (its ``BMAJ/BMIN/BPA``
        per channel), plus the residual: Jy/beam or Jy/beam km/s.
    mode : str
        ``"cube"`` or ``"image"``.
    dirty : same type, or None
        The dirty image that was deconvolved (Jy/beam, or Jy/beam km/s: the band-integrated
        image in image mode), for plots and comparisons.
    meta : dict
        Method, its parameters, the noise used to normalise, version and timing (s).
    """

    sky: object
    residual: object = None
    restored: object = None
    mode: str = "image"
    dirty: object = None
    meta: dict = field(default_factory=dict)

    def write(self, path, *, residual=None, restored=None, overwrite=False):
        """Write the sky estimate (and optionally the residual and restored images) to FITS.

        Parameters
        ----------
        path : str or path-like
            FITS file for the sky estimate.
        residual, restored : str or path-like, optional
            FITS files for those products (they must have been computed).
        overwrite : bool
            Replace existing files.
        """
        from ..exceptions import InvalidInputError

        for name, target in (("residual", residual), ("restored", restored)):
            if target is not None and getattr(self, name) is None:
                raise InvalidInputError(f"no {name} image was computed: call with {name}=True (and a psf)")
        write_fits(self.sky, path, bunit=SKY_BUNIT[self.mode], meta=self.meta, overwrite=overwrite)
        if residual is not None:
            write_fits(
                self.residual, residual, bunit=_BEAM_BUNIT[self.mode], meta=self.meta, overwrite=overwrite
            )
        if restored is not None:
            write_fits(
                self.restored, restored, bunit=_BEAM_BUNIT[self.mode], meta=self.meta, overwrite=overwrite
            )


def write_fits(product, path, *, bunit=None, meta=None, overwrite=False):
    """Write a `~spectral_cube.SpectralCube` or `~spectral_cube.Projection` atomically.

    Parameters
    ----------
    product : `~spectral_cube.SpectralCube` or `~spectral_cube.Projection`
    path : str or path-like
    bunit : str, optional
        ``BUNIT`` to write (default: the product's unit in FITS format).
    meta : dict, optional
        ``method`` and ``model`` are recorded as ``HISTORY``.
    overwrite : bool
        Replace an existing file; otherwise `FileExistsError`.
    """
    from astropy.io import fits

    from ..io.atomic import atomic_path
    from ..version import __version__

    hdulist = getattr(product, "hdulist", None)  # multi-beam cubes: a BEAMS table too
    hdul = fits.HDUList(list(hdulist)) if hdulist is not None else fits.HDUList([product.hdu])
    header = hdul[0].header
    if bunit is not None:
        header["BUNIT"] = bunit
    header["ORIGIN"] = f"deepfocus {__version__}"
    meta = meta or {}
    header["HISTORY"] = f"deepfocus deconvolution: method {meta.get('method', '?')}"
    if meta.get("model"):
        header["HISTORY"] = f"model {meta['model']}"
    with atomic_path(path, overwrite=overwrite) as tmp:
        hdul.writeto(tmp)
