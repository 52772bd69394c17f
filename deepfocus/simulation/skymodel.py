"""Sky models: a source table in the catalogue columns -> sky cube in Jy/pixel.

Each source is an elliptical Gaussian in space (``fwhm_major``, ``fwhm_minor``,
``position_angle``; zero sizes make a point source) times a Gaussian line in velocity
(``line_width`` FWHM, integrated ``flux``), plus an optional flat continuum
(``continuum_flux``). Lines are integrated over each channel and sources over each pixel, so the
cube sums to the catalogue fluxes.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable
from scipy.special import erf

from ..exceptions import InvalidInputError

__all__ = ["SkyModel", "REQUIRED_COLUMNS"]

#: Columns a source table must have to make a sky model (with their units).
REQUIRED_COLUMNS = {
    "x_centroid": u.pix,
    "y_centroid": u.pix,
    "z_centroid": u.dimensionless_unscaled,
    "fwhm_major": u.arcsec,
    "fwhm_minor": u.arcsec,
    "position_angle": u.deg,
    "line_width": u.km / u.s,
    "flux": u.Jy * u.km / u.s,
}

_SIGMA_PER_FWHM = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Point-like sources are drawn with at least this Gaussian sigma (pixels) in the sky image.
_MIN_SIGMA_PIX = 0.25


def _as_quantity(column, unit, name):
    q = u.Quantity(column)
    if q.unit == u.dimensionless_unscaled and unit != u.dimensionless_unscaled:
        q = q * unit
    try:
        return q.to(unit)
    except u.UnitConversionError as exc:
        raise InvalidInputError(f"column {name!r} has unit {q.unit}, expected {unit}") from exc


class SkyModel:
    """A set of line sources on a pixel and channel grid.

    Parameters
    ----------
    sources : `~astropy.table.QTable`
        One row per source with the columns of `REQUIRED_COLUMNS`; ``continuum_flux`` (Jy) is
        optional. Positions are 0-based pixels and channels.
    shape : tuple of int
        Cube shape ``(n_chan, ny, nx)``.
    cell : `~astropy.units.Quantity`
        Pixel size (angle).
    channel_velocity_width : `~astropy.units.Quantity`
        Width of one channel in velocity (km/s, radio convention), positive.
    """

    def __init__(self, sources: QTable, shape, *, cell, channel_velocity_width):
        if len(shape) != 3 or min(shape) < 1:
            raise InvalidInputError(f"cube shape must be (n_chan, ny, nx) with positive sizes, got {shape}")
        self.shape = tuple(int(s) for s in shape)
        self.cell = u.Quantity(cell, u.arcsec)
        self.channel_velocity_width = u.Quantity(channel_velocity_width, u.km / u.s)
        if self.cell <= 0 or self.channel_velocity_width <= 0:
            raise InvalidInputError("cell and channel width must be positive")
        missing = [c for c in REQUIRED_COLUMNS if c not in sources.colnames]
        if missing:
            raise InvalidInputError(f"source table lacks column(s) {', '.join(missing)}")
        self.sources = sources
        cols = {name: _as_quantity(sources[name], unit, name) for name, unit in REQUIRED_COLUMNS.items()}
        cont = sources["continuum_flux"] if "continuum_flux" in sources.colnames else np.zeros(len(sources))
        cols["continuum_flux"] = _as_quantity(cont, u.Jy, "continuum_flux")
        for name in ("fwhm_major", "fwhm_minor", "line_width", "flux", "continuum_flux"):
            values = cols[name].value
            if np.any(~np.isfinite(values)) or np.any(values < 0):
                raise InvalidInputError(f"column {name!r} must be finite and non-negative")
        if np.any(cols["line_width"].value <= 0):
            raise InvalidInputError("line_width must be positive")
        if np.any(cols["fwhm_minor"] > cols["fwhm_major"]):
            raise InvalidInputError("fwhm_minor must not exceed fwhm_major")
        n_chan, ny, nx = self.shape
        x, y, z = cols["x_centroid"].value, cols["y_centroid"].value, cols["z_centroid"].value
        outside = (x < -0.5) | (x > nx - 0.5) | (y < -0.5) | (y > ny - 0.5) | (z < -0.5) | (z > n_chan - 0.5)
        if np.any(outside):
            ids = np.nonzero(outside)[0].tolist()
            raise InvalidInputError(f"source(s) at row(s) {ids} lie outside the cube of shape {self.shape}")
        self._cols = cols

    def __len__(self):
        return len(self.sources)

    # -- spectral part ---------------------------------------------------------------------
    def line_profiles(self) -> np.ndarray:
        """Per-channel line flux density of each source, ``(n_sources, n_chan)`` in Jy.

        The Gaussian line is integrated over each channel, so that the sum over channels times
        the channel velocity width equals the line flux for lines inside the band.
        """
        n_chan = self.shape[0]
        dv = self.channel_velocity_width.value
        sigma_chan = self._cols["line_width"].value * _SIGMA_PER_FWHM / dv
        z = self._cols["z_centroid"].value
        edges = np.arange(n_chan + 1) - 0.5
        cdf = 0.5 * (1 + erf((edges[None, :] - z[:, None]) / (np.sqrt(2) * sigma_chan[:, None])))
        fraction = np.diff(cdf, axis=1)
        return self._cols["flux"].value[:, None] * fraction / dv

    def spectra(self) -> np.ndarray:
        """Line plus continuum flux density of each source per channel, ``(n_sources, n_chan)`` in Jy."""
        return self.line_profiles() + self._cols["continuum_flux"].value[:, None]

    # -- spatial part ----------------------------------------------------------------------
    def _sigmas_pix(self):
        cell = self.cell.value
        smaj = self._cols["fwhm_major"].value * _SIGMA_PER_FWHM / cell
        smin = self._cols["fwhm_minor"].value * _SIGMA_PER_FWHM / cell
        pa = self._cols["position_angle"].to_value(u.rad)
        return smaj, smin, pa

    def spatial_profiles(self, *, oversample: int = 5) -> np.ndarray:
        """Pixel-integrated image of each source normalised to a total of 1, ``(n_sources, ny, nx)``.

        Point-like sources are drawn with a Gaussian sigma of at least 0.25 pixel so that they
        can be integrated over pixels; the profile is normalised to its analytic total, so a
        source cut by the image edge loses the flux beyond it.
        """
        _, ny, nx = self.shape
        smaj, smin, pa = self._sigmas_pix()
        smaj = np.maximum(smaj, _MIN_SIGMA_PIX)
        smin = np.maximum(smin, _MIN_SIGMA_PIX)
        offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
        out = np.zeros((len(self), ny, nx))
        x0, y0 = self._cols["x_centroid"].value, self._cols["y_centroid"].value
        for k in range(len(self)):
            # Only a box of +-6 sigma around the source is evaluated.
            half = int(np.ceil(6 * smaj[k])) + 1
            xs = np.arange(max(0, int(x0[k]) - half), min(nx, int(x0[k]) + half + 2))
            ys = np.arange(max(0, int(y0[k]) - half), min(ny, int(y0[k]) + half + 2))
            sub_x = (xs[:, None] + offsets[None, :]).ravel() - x0[k]
            sub_y = (ys[:, None] + offsets[None, :]).ravel() - y0[k]
            dx, dy = np.meshgrid(sub_x, sub_y)
            # PA is east of north; x increases to the west, so east is -x.
            along = -dx * np.sin(pa[k]) + dy * np.cos(pa[k])
            across = -dx * np.cos(pa[k]) - dy * np.sin(pa[k])
            g = np.exp(-0.5 * ((along / smaj[k]) ** 2 + (across / smin[k]) ** 2))
            g /= 2 * np.pi * smaj[k] * smin[k] * oversample**2
            g = g.reshape(len(ys), oversample, len(xs), oversample).sum(axis=(1, 3))
            out[k, ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1] = g
        return out

    def fourier_profiles(self, n_fft: int) -> np.ndarray:
        """Analytic Fourier transform of each source's unit-flux profile on an ``n_fft`` grid.

        Returns ``(n_sources, n_fft, n_fft // 2 + 1)`` complex values in the layout of
        `numpy.fft.rfft2` for an image whose pixel (0, 0) is the array origin. Point sources are
        exact deltas here, so that dirty images of point sources are exactly shifted PSFs.
        """
        smaj, smin, pa = self._sigmas_pix()
        ky = np.fft.fftfreq(n_fft)[:, None]
        kx = np.fft.rfftfreq(n_fft)[None, :]
        x0, y0 = self._cols["x_centroid"].value, self._cols["y_centroid"].value
        out = np.empty((len(self), n_fft, n_fft // 2 + 1), dtype=np.complex128)
        for k in range(len(self)):
            k_along = -kx * np.sin(pa[k]) + ky * np.cos(pa[k])
            k_across = -kx * np.cos(pa[k]) - ky * np.sin(pa[k])
            envelope = np.exp(-2 * np.pi**2 * ((smaj[k] * k_along) ** 2 + (smin[k] * k_across) ** 2))
            out[k] = envelope * np.exp(-2j * np.pi * (kx * x0[k] + ky * y0[k]))
        return out

    def cube(self) -> np.ndarray:
        """The sky cube ``(n_chan, ny, nx)`` in Jy/pixel (float32)."""
        spatial = self.spatial_profiles()
        spectra = self.spectra()
        return np.einsum("sc,syx->cyx", spectra, spatial, optimize=True).astype(np.float32)
