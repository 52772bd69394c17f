"""Thermal noise of an ALMA observation from the radiometer equation.

The system temperature follows the model CASA's ``simobserve(thermalnoise='tsys-atm')`` uses:
receiver temperature of the ALMA band, the atmosphere's emission and transmission at the elevation
of each integration for a given precipitable water vapour (from a table made with CASA's ATM model
by ``scripts/make_atmosphere_table.py``, shipped in ``deepfocus/data``), spill-over onto a ground at
269 K, and the cosmic background: ``Tsys = exp(tau A) [0.95 J(T_sky, A) + 0.05 J(T_ground) + T_rx]``
with ``J`` the Planck brightness temperature and ``A`` the airmass. Efficiencies are CASA's ALMA
values (Ruze surface loss for 25 micron rms, spill-over 0.95, blockage, taper 0.72, correlator
0.845).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import astropy.constants as const
import astropy.units as u
import numpy as np

from ..exceptions import InvalidInputError

__all__ = ["NoiseModel", "receiver_temperature", "atmosphere"]

T_GROUND = 269.0  # K, CASA simobserve default
T_CMB = 2.725  # K
SPILLOVER_EFFICIENCY = 0.95
TAPER_EFFICIENCY = 0.72
#: Sub-reflector diameter (m), dish surface rms (micron) and correlator efficiency by dish size.
_DISH = {12.0: (0.75, 25.0, 0.845), 7.0: (0.75, 20.0, 0.88)}

# ALMA receiver temperatures (K) by band lower edge (GHz), as in CASA's simutil.noisetemp.
_RX_EDGES = np.array([35, 50, 84, 116, 162, 211, 275, 373, 500, 720, 950.0])
_RX_TEMPS = np.array([28, 30, 40, 42, 50, 50, 72, 135, 105, 230.0])


def receiver_temperature(frequency) -> u.Quantity:
    """ALMA receiver temperature at a frequency (35-950 GHz)."""
    f = u.Quantity(frequency, u.GHz).value
    if np.any((f < _RX_EDGES[0]) | (f > _RX_EDGES[-1])):
        raise InvalidInputError(f"frequency {frequency} is outside ALMA's bands (35-950 GHz)")
    index = np.clip(np.searchsorted(_RX_EDGES, f, side="right") - 1, 0, len(_RX_TEMPS) - 1)
    return _RX_TEMPS[index] * u.K


_ATMOSPHERE_COLUMNS = ["frequency", "pwv", "tau_zenith", "tebb_zenith"]


@lru_cache(maxsize=1)
def _atmosphere_table():
    path = resources.files("deepfocus.data") / "atmosphere_alma.ecsv"
    text = path.read_text()
    # The ECSV header documents the table; the numbers are read with numpy, which is ~50 times
    # faster than astropy's ECSV reader for this 15,000-row grid.
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    if lines[0].split() != _ATMOSPHERE_COLUMNS:
        raise RuntimeError(f"unexpected columns in {path}: {lines[0]}")
    data = np.loadtxt(lines[1:])
    freqs = np.unique(data[:, 0])
    pwvs = np.unique(data[:, 1])
    order = np.lexsort((data[:, 0], data[:, 1]))
    shape = (len(pwvs), len(freqs))
    return freqs, pwvs, data[order, 2].reshape(shape), data[order, 3].reshape(shape)


def atmosphere(frequency, pwv):
    """Zenith opacity and sky brightness temperature at the ALMA site.

    Interpolated (linearly in frequency and in PWV) in a table computed with CASA's ATM model
    for the ALMA site (5000 m, 560 mbar, 269 K ground, 20 % humidity, 2 km water scale height).

    Parameters
    ----------
    frequency : `~astropy.units.Quantity`
        Frequency or frequencies.
    pwv : `~astropy.units.Quantity`
        Precipitable water vapour.

    Returns
    -------
    tau : `numpy.ndarray`
        Zenith opacity.
    tebb : `~astropy.units.Quantity`
        Zenith equivalent black-body temperature of the sky (with the CMB).
    """
    freqs, pwvs, tau, tebb = _atmosphere_table()
    f = np.atleast_1d(u.Quantity(frequency, u.GHz).value)
    w = float(u.Quantity(pwv, u.mm).value)
    if f.min() < freqs[0] or f.max() > freqs[-1]:
        raise InvalidInputError(f"frequency outside the atmosphere table ({freqs[0]}-{freqs[-1]} GHz)")
    if not pwvs[0] <= w <= pwvs[-1]:
        raise InvalidInputError(f"pwv {pwv} outside the atmosphere table ({pwvs[0]}-{pwvs[-1]} mm)")
    j = int(np.clip(np.searchsorted(pwvs, w) - 1, 0, len(pwvs) - 2))
    t = (w - pwvs[j]) / (pwvs[j + 1] - pwvs[j])
    tau_f = (1 - t) * np.interp(f, freqs, tau[j]) + t * np.interp(f, freqs, tau[j + 1])
    tebb_f = (1 - t) * np.interp(f, freqs, tebb[j]) + t * np.interp(f, freqs, tebb[j + 1])
    return tau_f, tebb_f * u.K


class NoiseModel:
    """System temperature and per-visibility noise of an observation.

    Parameters
    ----------
    observation : `~deepfocus.simulation.Observation`
        Uses ``pwv``, ``tsys`` (a fixed value overrides the atmosphere), ``channel_width`` and
        ``integration``.
    configuration : `~deepfocus.simulation.AntennaConfiguration`
        Dish diameters.
    """

    def __init__(self, observation, configuration):
        self.observation = observation
        self.diameter = float(np.mean(configuration.diameter))
        sub, self.surface_rms, self.correlator_efficiency = _DISH.get(
            round(self.diameter), (0.75, 25.0, 0.845)
        )
        self.blockage_efficiency = 1 - (sub / self.diameter) ** 2

    def aperture_efficiency(self, frequency) -> float:
        """Antenna aperture efficiency (Ruze x spill-over x blockage x taper)."""
        f = u.Quantity(frequency, u.GHz).value
        ruze = np.exp(-((4 * np.pi * self.surface_rms * f / 2.99792458e5) ** 2))
        return ruze * SPILLOVER_EFFICIENCY * self.blockage_efficiency * TAPER_EFFICIENCY

    def system_temperature(self, frequency, elevation) -> u.Quantity:
        """System temperature referred to outside the atmosphere, per elevation.

        Parameters
        ----------
        frequency : `~astropy.units.Quantity`
            One frequency.
        elevation : array-like
            Elevations in radians.
        """
        if self.observation.tsys is not None:
            return np.full(np.shape(elevation), self.observation.tsys.to_value(u.K)) * u.K
        airmass = 1.0 / np.sin(np.clip(np.asarray(elevation, dtype=float), np.radians(3), None))
        tau, tebb = atmosphere(frequency, self.observation.pwv)
        tau = float(tau[0])
        h_nu_k = (const.h * u.Quantity(frequency, u.Hz) / const.k_B).to_value(u.K)

        def brightness(t):  # Planck brightness temperature ("J") of a black body at t (K)
            return h_nu_k / np.expm1(h_nu_k / t)

        # The atmosphere as one isothermal layer: its brightness at any airmass follows from the
        # zenith opacity and sky temperature of the ATM table.
        j_cmb = brightness(T_CMB)
        j_zenith = brightness(tebb.to_value(u.K)[0])
        j_layer = (j_zenith - j_cmb * np.exp(-tau)) / max(-np.expm1(-tau), 1e-12)
        transmission = np.exp(-tau * airmass)
        j_sky = j_layer * (1 - transmission) + j_cmb * transmission
        # As CASA's tsys-atm: the feed sees sky and ground in the spill-over ratio (in radiance),
        # Tsys = exp(tau airmass) (J_seen + T_rx).
        j_seen = SPILLOVER_EFFICIENCY * j_sky + (1 - SPILLOVER_EFFICIENCY) * brightness(T_GROUND)
        t_rx = receiver_temperature(frequency).to_value(u.K)
        return (j_seen + t_rx) / transmission * u.K

    def visibility_sigma(self, frequency, coverage) -> np.ndarray:
        """Noise of the real (and of the imaginary) part of each Stokes I visibility, in Jy.

        Radiometer equation for a baseline of two identical dishes, two polarisations:
        ``sigma = 2 k Tsys / (eta_a eta_q A sqrt(2 dnu t)) / sqrt(2)``.

        Returns
        -------
        sigma : `numpy.ndarray`
            ``(n_times, n_baselines)`` in Jy.
        """
        obs = self.observation
        tsys = self.system_temperature(frequency, coverage.elevation).to_value(u.K)
        area = np.pi * (self.diameter / 2) ** 2
        eta = self.aperture_efficiency(frequency) * self.correlator_efficiency
        bandwidth = abs(obs.channel_width.to_value(u.Hz))
        dt = obs.integration.to_value(u.s)
        sigma_pol = 2 * const.k_B.value * tsys / (eta * area * np.sqrt(2 * bandwidth * dt)) / 1e-26
        sigma = sigma_pol / np.sqrt(2)
        n_baselines = coverage.uvw.shape[1]
        return np.repeat(sigma[:, None], n_baselines, axis=1)
