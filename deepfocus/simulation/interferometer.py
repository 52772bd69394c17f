"""The fast simulation engine: sky model -> dirty cube, the way ALMA and ``tclean`` make it."""

from __future__ import annotations

from functools import cached_property

import astropy.units as u
import numpy as np
import scipy.fft
from radio_beam import Beam, Beams

from ..exceptions import InvalidInputError
from .antennas import AntennaConfiguration
from .beam import fit_beam
from .imaging import _round_down, imaging_weights, max_cell, psf_from_uv
from .noise import NoiseModel
from .observation import Observation
from .skymodel import SkyModel
from .uvcoverage import uv_tracks

__all__ = ["Interferometer"]

#: Channels share a PSF while their frequencies differ by less than this fraction.
PSF_FREQUENCY_TOLERANCE = 2e-3
#: Channels processed at once (bounds memory: ~ chunk x (2 npix)^2 complex numbers).
_CHUNK = 16


def _shown_above(cell, limit, digits):
    """``cell`` (arcsec) written with ``digits`` or more significant figures, enough to exceed ``limit``."""
    for n in range(digits, 10):
        text = f"{cell.to_value(u.arcsec):.{n}g}"
        if float(text) > limit:
            break
    return f"{text} arcsec"


class Interferometer:
    """Observe sky models with an antenna array and image them as ``tclean`` would (``niter=0``).

    The visibilities of the sky are multiplied by the weighted, gridded uv sampling of each
    channel (equivalently, the sky is convolved with that channel's PSF), and thermal noise is
    drawn per visibility from the radiometer equation and imaged with the same weights, so the
    image noise has the correlation of a real dirty cube.

    Parameters
    ----------
    observation : `Observation`
        The settings.
    psf : `numpy.ndarray` or str or path-like, optional
        An external PSF used instead of the simulated one (the simulated uv coverage still sets
        the noise): a cube ``(n_chan, ny, nx)`` or image ``(ny, nx)`` with peak 1 at pixel
        ``(ny // 2, nx // 2)``, or the path of a FITS file such as the ``.psf`` that ``tclean``
        writes (exported with ``exportfits``). Its pixel size must be the observation's cell; a
        FITS file's cell is taken as the observation's when ``observation.cell`` is None.

    Examples
    --------
    >>> import astropy.units as u
    >>> from deepfocus.simulation import Interferometer, Observation
    >>> alma = Interferometer(Observation(configuration="C-3", npix=64, n_channels=4))
    >>> alma.beams[0].major.to(u.arcsec)
    <Quantity 0.67600819 arcsec>
    """

    def __init__(self, observation: Observation | None = None, *, psf=None):
        observation = observation if observation is not None else Observation()
        # Where the cell comes from decides what an error about it tells the user to change.
        self._cell_source = "automatic" if observation.cell is None else "given"
        if psf is not None and not isinstance(psf, np.ndarray):
            from ..io.psf import read_psf

            psf, psf_cell = read_psf(psf)
            if observation.cell is None:
                observation = observation.replace(cell=psf_cell)
                self._cell_source = "psf"
            elif not np.isclose(observation.cell.to_value(u.arcsec), psf_cell.to_value(u.arcsec), rtol=1e-4):
                raise InvalidInputError(
                    f"the PSF file's pixel size {psf_cell:.5g} differs from the observation's cell "
                    f"{observation.cell:.5g}"
                )
        self.observation = observation
        self.configuration = AntennaConfiguration.from_name(self.observation.configuration)
        obs = self.observation
        self.coverage = uv_tracks(
            self.configuration,
            obs.dec,
            total_time=obs.total_time,
            integration=obs.integration,
            hour_angle_centre=obs.hour_angle,
            ra=obs.ra,
            date=obs.date,
        )
        self.noise_model = NoiseModel(obs, self.configuration)
        self._external_psf = None if psf is None else self._check_psf(psf)

    # -- geometry ----------------------------------------------------------------------------
    @cached_property
    def cell(self) -> u.Quantity:
        """Pixel size: ``observation.cell``, or the beam major axis over ``pixels_per_beam``."""
        obs = self.observation
        if obs.cell is not None:
            return obs.cell
        freq = obs.centre_frequency
        wavelength = (freq.to(u.m, equivalencies=u.spectral())).value
        longest = np.max(np.hypot(self.coverage.uvw[..., 0], self.coverage.uvw[..., 1]))
        uu, vv = self.coverage.uv_wavelengths(freq)
        # First guess from the longest projected baseline, refined by fits to the PSF main lobe
        # (CASA users pick the cell the same way: a quick image, then beam / 5). The beam
        # depends a little on the cell through the weighting grid, so iterate to agreement.
        cell = 1.2 * wavelength / longest / obs.pixels_per_beam
        beam = None
        for _ in range(4):
            if cell > self._automatic_cell_limit.to_value(u.rad):
                raise self._cell_error(cell * u.rad, beam=beam)
            w = self._weights(uu, vv, freq, npix=obs.npix, cell=cell)
            psf = psf_from_uv(uu, vv, w, npix=obs.npix, cell=cell)
            beam = fit_beam(psf, (cell * u.rad).to(u.arcsec))
            major = beam.major.to_value(u.rad)
            new = float(f"{np.degrees(major / obs.pixels_per_beam) * 3600:.3g}") / 3600 * np.pi / 180
            if abs(new / cell - 1) < 0.01:
                break
            cell = new
        return (new * u.rad).to(u.arcsec)

    @cached_property
    def _largest_cell(self) -> u.Quantity:
        """The largest cell whose uv grids hold the longest baseline of every channel."""
        # The PSFs are made on twice the image at the anchor frequencies (`_anchor_products`).
        uu, vv = self.coverage.uv_wavelengths(self.anchor_frequencies.max())
        return (max_cell(uu, vv, npix=2 * self.observation.npix) * u.rad).to(u.arcsec)

    @cached_property
    def _automatic_cell_limit(self) -> u.Quantity:
        """The largest cell `cell` can try: its PSFs are made on the image grid at the centre frequency."""
        uu, vv = self.coverage.uv_wavelengths(self.observation.centre_frequency)
        return (max_cell(uu, vv, npix=self.observation.npix) * u.rad).to(u.arcsec)

    def _cell_error(self, cell, beam=None) -> InvalidInputError:
        """The error for a cell too large for the longest baseline, saying what to change.

        ``beam`` is the beam fitted while choosing the cell automatically, when there is one.
        The limit quoted works as a given cell and lies below the cell refused.
        """
        cell = u.Quantity(cell, u.arcsec)
        largest = self._largest_cell
        if self._cell_source == "automatic":
            # Either check can refuse an automatic cell: quote the stricter limit.
            largest = min(largest, self._automatic_cell_limit)
        # Rounded down, so that the value quoted works.
        quoted = _round_down(largest.to_value(u.arcsec))
        limit = f"{quoted:.3g} arcsec"
        # The cell refused, written as it was (3 or 4 figures) or with more, so it reads above the limit.
        shown = _shown_above(cell, quoted, 3 if self._cell_source == "automatic" else 4)
        if self._cell_source == "automatic":
            # Far from the zenith the beam is elongated, and its major axis / 5 is too coarse.
            of_beam = (
                ""
                if beam is None
                else f" of the {beam.major.to_value(u.arcsec):.3g} x {beam.minor.to(u.arcsec):.3g} beam"
            )
            return InvalidInputError(
                f"the automatic cell {shown} (major axis{of_beam} / pixels_per_beam "
                f"{self.observation.pixels_per_beam:g}) is too large for the longest baseline: set a "
                f"cell of at most {limit}, or raise pixels_per_beam"
            )
        if self._cell_source == "psf":
            return InvalidInputError(
                f"the PSF file's pixel size {shown} is too large for the longest baseline: use a "
                f"PSF with pixels of at most {limit}"
            )
        return InvalidInputError(
            f"cell {shown} is too large for the longest baseline: choose a cell of at most {limit}"
        )

    @cached_property
    def anchor_of_channel(self) -> np.ndarray:
        """Index into `anchor_frequencies` of the PSF each channel uses."""
        freqs = self.observation.frequencies.to_value(u.Hz)
        anchors, index = [freqs[0]], np.zeros(len(freqs), dtype=int)
        for k, f in enumerate(freqs):
            if abs(f / anchors[-1] - 1) > PSF_FREQUENCY_TOLERANCE:
                anchors.append(f)
            index[k] = len(anchors) - 1
        self._anchor_freqs = np.array(anchors) * u.Hz
        return index

    @property
    def anchor_frequencies(self) -> u.Quantity:
        """Frequencies at which PSFs are computed (one per group of nearby channels)."""
        _ = self.anchor_of_channel
        return self._anchor_freqs

    def _weights(self, uu, vv, freq, *, npix, cell):
        natural = 1.0 / self.noise_model.visibility_sigma(freq, self.coverage) ** 2
        return imaging_weights(
            uu,
            vv,
            natural.ravel(),
            npix=npix,
            cell=cell,
            weighting=self.observation.weighting,
            robust=self.observation.robust,
            specmode=self.observation.specmode,
        )

    # -- PSFs and beams ----------------------------------------------------------------------
    def _check_psf(self, psf):
        psf = np.asarray(psf, dtype=float)
        psf = psf.reshape((-1,) + psf.shape[-2:]) if psf.ndim >= 2 else psf
        n = self.observation.npix
        if psf.ndim != 3 or psf.shape[0] not in (1, self.observation.n_channels):
            raise InvalidInputError(
                f"external PSF must have 1 or {self.observation.n_channels} planes, got shape {psf.shape}"
            )
        if psf.shape[1] < n or psf.shape[2] < n:
            raise InvalidInputError(
                f"external PSF of {psf.shape[1]}x{psf.shape[2]} pixels is smaller than the {n}x{n} image"
            )
        peaks = psf[:, psf.shape[1] // 2, psf.shape[2] // 2]
        if not np.all(np.isfinite(psf)) or np.any(np.abs(peaks - 1) > 1e-3):
            raise InvalidInputError("external PSF must be finite with peak 1 at its centre pixel")
        return psf

    @cached_property
    def _anchor_products(self):
        """PSFs on the doubled grid, their transfer functions and noise grids, per anchor."""
        obs = self.observation
        n = obs.npix
        if self.cell > self._largest_cell:
            raise self._cell_error(self.cell)
        cell = self.cell.to_value(u.rad)
        products = []
        for freq in self.anchor_frequencies:
            uu, vv = self.coverage.uv_wavelengths(freq)
            sigma = self.noise_model.visibility_sigma(freq, self.coverage).ravel()
            w = imaging_weights(
                uu,
                vv,
                1.0 / sigma**2,
                npix=n,
                cell=cell,
                weighting=obs.weighting,
                robust=obs.robust,
                specmode=obs.specmode,
            )
            psf2 = psf_from_uv(uu, vv, w, npix=2 * n, cell=cell)
            transfer = scipy.fft.rfft2(np.fft.ifftshift(psf2))
            noise_var, noise_norm = _noise_grid(uu, vv, w, sigma, n=n, cell=cell)
            products.append(
                {
                    "psf": psf2[n // 2 : n // 2 + n, n // 2 : n // 2 + n],
                    "transfer": transfer.astype(np.complex64),
                    "noise_amplitude": np.sqrt(noise_var).astype(np.float32),
                    "noise_norm": noise_norm,
                    "noise_rms": float(np.sqrt(noise_var.sum()) / noise_norm),
                }
            )
        return products

    def psf(self, channel: int = 0) -> np.ndarray:
        """The PSF of a channel, ``(npix, npix)``, peak 1 at pixel ``(npix // 2, npix // 2)``."""
        if self._external_psf is not None:
            plane = self._external_psf[min(channel, len(self._external_psf) - 1)]
            n, (ny, nx) = self.observation.npix, plane.shape
            return plane[ny // 2 - n // 2 : ny // 2 - n // 2 + n, nx // 2 - n // 2 : nx // 2 - n // 2 + n]
        return self._anchor_products[self.anchor_of_channel[channel]]["psf"]

    @cached_property
    def beams(self) -> Beams:
        """Restoring beam of every channel, fitted to the PSF main lobe."""
        fitted = {}
        beams = []
        for k in range(self.observation.n_channels):
            key = (
                k
                if self._external_psf is not None and len(self._external_psf) > 1
                else (self.anchor_of_channel[k])
            )
            if key not in fitted:
                fitted[key] = fit_beam(self.psf(k), self.cell)
            beams.append(fitted[key])
        return Beams(
            major=u.Quantity([b.major for b in beams]),
            minor=u.Quantity([b.minor for b in beams]),
            pa=u.Quantity([b.pa for b in beams]),
        )

    @property
    def beam(self) -> Beam:
        """The beam of the middle channel."""
        return self.beams[self.observation.n_channels // 2]

    @cached_property
    def noise_rms(self) -> u.Quantity:
        """Thermal noise rms of each channel of the dirty cube (Jy/beam).

        The noise the observation has, or would have with ``noise=False`` (S/N values of
        noise-free simulations refer to it).
        """
        rms = [self._anchor_products[a]["noise_rms"] for a in self.anchor_of_channel]
        return np.array(rms) * u.Jy / u.beam

    # -- observing -----------------------------------------------------------------------------
    def primary_beam_gain(self, sky: SkyModel) -> np.ndarray:
        """Gaussian primary-beam gain of each source per channel, ``(n_sources, n_chan)``."""
        obs = self.observation
        n_src = len(sky)
        if not obs.primary_beam or n_src == 0:
            return np.ones((n_src, obs.n_channels))
        wavelength = obs.frequencies.to_value(u.m, equivalencies=u.spectral())
        fwhm = 1.13 * wavelength / self.coverage.dish_diameter * u.rad
        cols = sky._cols
        centre = obs.npix // 2
        r = np.hypot(cols["x_centroid"].value - centre, cols["y_centroid"].value - centre) * self.cell
        return np.exp(-4 * np.log(2) * (r[:, None] / fwhm[None, :]).to_value(u.one) ** 2)

    def dirty_signal(self, sky: SkyModel) -> np.ndarray:
        """Noise-free dirty cube ``(n_chan, npix, npix)`` of a sky model, in Jy/beam."""
        obs = self.observation
        n = obs.npix
        if sky.shape != (obs.n_channels, n, n):
            raise InvalidInputError(f"sky model shape {sky.shape} does not match the observation")
        out = np.zeros(sky.shape, dtype=np.float32)
        if len(sky) == 0:
            return out
        amplitudes = sky.spectra() * self.primary_beam_gain(sky)  # (n_src, n_chan), Jy
        profiles = sky.fourier_profiles(2 * n).astype(np.complex64)  # (n_src, 2n, n + 1)
        flat = profiles.reshape(len(sky), -1)
        for start in range(0, obs.n_channels, _CHUNK):
            chans = np.arange(start, min(start + _CHUNK, obs.n_channels))
            vis = (amplitudes[:, chans].T.astype(np.complex64) @ flat).reshape(len(chans), 2 * n, n + 1)
            vis *= np.stack([self._transfer(k) for k in chans])
            out[chans] = scipy.fft.irfft2(vis, s=(2 * n, 2 * n), workers=-1)[:, :n, :n]
        return out

    def _transfer(self, channel):
        if self._external_psf is not None:
            if not hasattr(self, "_external_transfer"):
                n = self.observation.npix
                self._external_transfer = [
                    scipy.fft.rfft2(np.fft.ifftshift(_pad_psf(p, 2 * n))).astype(np.complex64)
                    for p in self._external_psf
                ]
            return self._external_transfer[min(channel, len(self._external_transfer) - 1)]
        return self._anchor_products[self.anchor_of_channel[channel]]["transfer"]

    def noise(self, rng: np.random.Generator) -> np.ndarray:
        """A thermal-noise cube ``(n_chan, npix, npix)`` in Jy/beam, imaged with the weights."""
        obs = self.observation
        n = obs.npix
        out = np.zeros((obs.n_channels, n, n), dtype=np.float32)
        if not obs.noise:
            return out
        for start in range(0, obs.n_channels, _CHUNK):
            chans = np.arange(start, min(start + _CHUNK, obs.n_channels))
            products = [self._anchor_products[self.anchor_of_channel[k]] for k in chans]
            amp = np.stack([p["noise_amplitude"] for p in products])
            z = rng.standard_normal((len(chans), n, n), dtype=np.float32) + 1j * rng.standard_normal(
                (len(chans), n, n), dtype=np.float32
            )
            image = scipy.fft.ifft2(np.fft.ifftshift(amp * z, axes=(1, 2)), workers=-1).real * n * n
            norms = np.array([p["noise_norm"] for p in products], dtype=np.float32)
            out[chans] = image / norms[:, None, None]
        return out

    def observe(self, sky: SkyModel, *, seed=None) -> np.ndarray:
        """Dirty cube of a sky model: signal convolved with the PSFs plus thermal noise (Jy/beam).

        Parameters
        ----------
        sky : `SkyModel`
            Sources on this observation's grid.
        seed : int or `numpy.random.Generator`, optional
            Seed of the thermal noise.
        """
        rng = np.random.default_rng(seed)
        return self.dirty_signal(sky) + self.noise(rng)


def _pad_psf(psf, size):
    """Embed a PSF (peak at its centre) in a ``size`` x ``size`` array, peak at ``size // 2``."""
    out = np.zeros((size, size))
    ny, nx = psf.shape
    ny, nx = min(ny, size), min(nx, size)
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    part = psf[cy - ny // 2 : cy - ny // 2 + ny, cx - nx // 2 : cx - nx // 2 + nx]
    out[
        size // 2 - ny // 2 : size // 2 - ny // 2 + ny,
        size // 2 - nx // 2 : size // 2 - nx // 2 + nx,
    ] = part
    return out


def _noise_grid(uu, vv, weights, sigma, *, n, cell):
    """Per-cell variance of the weighted visibility noise on the image's uv grid.

    Each visibility adds ``(w sigma)^2`` at its own cell (nearest-cell gridding; the noise is
    stationary, so the grid's periodicity does no harm). The real part of the transform of
    complex Gaussian cells with these variances per component has the covariance of the
    imaged noise, ``sum_i (w_i sigma_i)^2 cos(2 pi u_i . dx) / (sum_i w_i)^2``.

    Returns
    -------
    variance : `numpy.ndarray`
        ``(n, n)`` variance grid, origin at ``n // 2``.
    norm : float
        Sum of the weights, the image normalisation.
    """
    du = 1.0 / (n * cell)
    iu = np.rint(-uu / du).astype(np.int64) % n
    iv = np.rint(vv / du).astype(np.int64) % n
    grid = np.bincount(iv * n + iu, weights=(weights * sigma) ** 2, minlength=n * n).reshape(n, n)
    # bincount indexed with origin at 0: move it to n // 2 to match the layout of the PSF grids.
    return np.fft.fftshift(grid), float(np.sum(weights))
