"""Random source catalogues for training and test cubes.

Two recipes:

``"wide"`` (default)
    1-8 sources anywhere in the field (at least one beam from the edges), per-channel peak S/N
    log-uniform in 2-50, sizes from point-like (30 %) to 3 beams, axis ratios 0.3-1, any
    position angle, line FWHM 3-20 channels, a continuum on 20 % of sources.
``"paper"``
    Delli Veneri et al. (2022): a bright source (S/N 20-50) near the centre with 2-5 fainter
    ones (S/N 3-15), among them a spatially blended pair (0.5-1.5 beams apart) and a pair at one
    position with different line centres.
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.table import QTable
from radio_beam import Beam

from ..exceptions import DeepFocusWarning, InvalidInputError

__all__ = [
    "random_catalog",
    "RECIPES",
    "peak_snr",
    "flux_for_snr",
    "WIDE_SNR_RANGE",
    "WIDE_MAJOR_BEAMS",
    "WIDE_LINE_WIDTH_CHANNELS",
    "PAPER_LINE_WIDTH_CHANNELS",
    "check_line_widths",
]

RECIPES = ("wide", "paper")
#: Per-channel peak S/N range of the ``wide`` recipe (the ``paper`` recipe's lies within it).
WIDE_SNR_RANGE = (2.0, 50.0)
#: Intrinsic major axes of the ``wide`` recipe's extended sources (beam major axes); the
#: ``paper`` recipe's lie within it.
WIDE_MAJOR_BEAMS = (0.2, 3.0)
#: Line FWHMs of the ``wide`` recipe (channels); the ``paper`` recipe's lie within it.
WIDE_LINE_WIDTH_CHANNELS = (3.0, 20.0)
#: Line FWHMs of the ``paper`` recipe (channels).
PAPER_LINE_WIDTH_CHANNELS = (3.0, 12.0)
_RECIPE_LINE_WIDTH_CHANNELS = {"wide": WIDE_LINE_WIDTH_CHANNELS, "paper": PAPER_LINE_WIDTH_CHANNELS}
# The band must hold every line's +-1 FWHM (98 % of a Gaussian line's flux): a line wider than
# half the band's velocity span loses more than 2 % of its flux to the edges even at the band
# centre, and the recipes can no longer place line centres one FWHM inside the band (they clip
# them towards the middle), so the truth flux and line_width overstate what the cube holds.
# The +-2 FWHM extent would be stricter than needed and would flag the default setup (64
# channels, FWHMs up to 20 channels), whose lines lose under 1 %.
_MAX_FWHM_PER_BAND = 0.5
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _beam_dilution(beam: Beam, fwhm_major, fwhm_minor, position_angle):
    """Peak brightness per unit flux density of a Gaussian source observed with ``beam``.

    Equals ``beam area / area of (source convolved with beam)``: 1 for a point source.
    """
    factors = []
    for fmaj, fmin, pa in zip(fwhm_major, fwhm_minor, position_angle, strict=False):
        if fmaj.value == 0:
            factors.append(1.0)
            continue
        source = Beam(major=fmaj, minor=max(fmin, 1e-6 * u.arcsec), pa=pa)
        factors.append(float(beam.sr / beam.convolve(source).sr))
    return np.array(factors)


def _peak_fraction(z_centroid, line_width_chan, n_chan):
    """Largest fraction of a Gaussian line's flux that falls in one channel."""
    from scipy.special import erf

    edges = np.arange(n_chan + 1) - 0.5
    sig = line_width_chan * _FWHM_TO_SIGMA
    cdf = 0.5 * (1 + erf((edges[None, :] - z_centroid[:, None]) / (np.sqrt(2) * sig[:, None])))
    return np.diff(cdf, axis=1).max(axis=1)


def peak_snr(table, *, beam, noise_rms, channel_velocity_width, n_channels):
    """Per-channel peak S/N of each source's line (continuum excluded).

    Parameters
    ----------
    table : `~astropy.table.QTable`
        Sources with ``z_centroid``, ``fwhm_major``, ``fwhm_minor``, ``position_angle``,
        ``line_width`` and ``flux``.
    beam : `radio_beam.Beam`
        Restoring beam.
    noise_rms : `~astropy.units.Quantity`
        Per-channel noise (Jy/beam), scalar.
    channel_velocity_width : `~astropy.units.Quantity`
        Channel width in km/s.
    n_channels : int
        Channels in the cube.
    """
    dv = channel_velocity_width.to_value(u.km / u.s)
    width_chan = table["line_width"].to_value(u.km / u.s) / dv
    frac = _peak_fraction(np.asarray(table["z_centroid"], dtype=float), width_chan, n_channels)
    peak_jy = table["flux"].to_value(u.Jy * u.km / u.s) * frac / dv
    dil = _beam_dilution(beam, table["fwhm_major"], table["fwhm_minor"], table["position_angle"])
    return peak_jy * dil / u.Quantity(noise_rms, u.Jy / u.beam).value


def flux_for_snr(snr, table, **kwargs):
    """Line flux (Jy km/s) that gives each source of ``table`` the per-channel peak S/N ``snr``."""
    unit_flux = table.copy()
    unit_flux["flux"] = np.ones(len(table)) * u.Jy * u.km / u.s
    return np.asarray(snr) / peak_snr(unit_flux, **kwargs) * u.Jy * u.km / u.s


def check_line_widths(
    *, n_channels, channel_velocity_width, line_width=None, recipe="wide", stacklevel=2
) -> bool:
    """Warn if lines are too wide for the band: FWHM over half its velocity span.

    Such lines are cut by the band edges (more than 2 % of their flux lies outside the band
    even for a line at its centre), so the truth catalogue's ``flux`` and ``line_width`` no
    longer describe what the cube holds.

    Parameters
    ----------
    n_channels : int
        Channels in the band.
    channel_velocity_width : `~astropy.units.Quantity`
        Width of one channel (km/s).
    line_width : `~astropy.units.Quantity`, optional
        Line FWHMs (km/s) of a given catalogue; if None, the widest line of ``recipe``.
    recipe : {'wide', 'paper'}
        Recipe of a random catalogue (its FWHMs are set in channels), when ``line_width`` is None.
    stacklevel : int
        Passed to `warnings.warn` (2: the caller of this function).

    Returns
    -------
    too_wide : bool
        True if the warning (`~deepfocus.exceptions.DeepFocusWarning`) was issued.
    """
    dv = u.Quantity(channel_velocity_width, u.km / u.s).value
    span = n_channels * dv  # band edge to band edge, km/s
    if line_width is None:
        if recipe not in RECIPES:
            raise InvalidInputError(f"recipe must be one of {RECIPES}, got {recipe!r}")
        fwhm_chan = _RECIPE_LINE_WIDTH_CHANNELS[recipe][1]
        fwhm = fwhm_chan * dv
        source = f"the {recipe!r} recipe draws line FWHMs up to {fwhm_chan:g} channels ({fwhm:.4g} km/s)"
        # FWHMs in channels: wider channels widen the lines too, only more channels help.
        n_needed = int(np.ceil(fwhm_chan / _MAX_FWHM_PER_BAND))
        change = f"simulate at least {n_needed} channels (n_channels, --channels)"
    else:
        widths = u.Quantity(line_width, u.km / u.s).value
        if widths.size == 0:
            return False
        fwhm = float(np.max(widths))
        fwhm_chan = fwhm / dv
        source = f"the catalogue has line FWHMs up to {fwhm:.4g} km/s ({fwhm_chan:.3g} channels)"
        n_needed = int(np.ceil(fwhm_chan / _MAX_FWHM_PER_BAND))
        change = f"simulate at least {n_needed} channels (n_channels), wider channels or narrower lines"
    if fwhm_chan <= _MAX_FWHM_PER_BAND * n_channels:  # in channels: exact for the recipes
        return False
    warnings.warn(
        f"{source}, more than half the band's velocity span of {span:.4g} km/s ({n_channels} channels "
        f"of {dv:.4g} km/s): the band edges cut these lines, so the truth catalogue's flux and "
        f"line_width overstate what the cube holds; {change}",
        DeepFocusWarning,
        stacklevel=stacklevel,
    )
    return True


def random_catalog(
    rng,
    *,
    shape,
    cell,
    beam,
    noise_rms,
    channel_velocity_width,
    recipe="wide",
    n_sources=None,
    snr_range=WIDE_SNR_RANGE,
    continuum_fraction=0.2,
):
    """Draw a random source catalogue for a cube.

    Parameters
    ----------
    rng : `numpy.random.Generator` or int
        Random generator or seed.
    shape : tuple of int
        Cube shape ``(n_chan, ny, nx)``.
    cell : `~astropy.units.Quantity`
        Pixel size.
    beam : `radio_beam.Beam`
        Restoring beam (sizes and S/N are set relative to it).
    noise_rms : `~astropy.units.Quantity`
        Per-channel noise rms (Jy/beam) that S/N refers to.
    channel_velocity_width : `~astropy.units.Quantity`
        Channel width in km/s.
    recipe : {'wide', 'paper'}
        Parameter ranges (see the module docstring).
    n_sources : int, optional
        Number of sources (``wide``: default random 1-8; ``paper``: 3-6).
    snr_range : tuple of float
        Per-channel peak S/N range of the ``wide`` recipe (log-uniform).
    continuum_fraction : float
        Fraction of sources given a continuum (``wide``).

    Returns
    -------
    catalog : `~astropy.table.QTable`
        Columns ``x_centroid``, ``y_centroid`` (pix), ``z_centroid``, ``fwhm_major``,
        ``fwhm_minor`` (arcsec), ``position_angle`` (deg), ``line_width`` (km/s), ``flux``
        (Jy km/s), ``continuum_flux`` (Jy), ``snr``.
    """
    rng = np.random.default_rng(rng)
    if recipe not in RECIPES:
        raise InvalidInputError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    n_chan, ny, nx = shape
    cell_as = u.Quantity(cell, u.arcsec).value
    beam_pix = beam.major.to_value(u.arcsec) / cell_as
    dv = u.Quantity(channel_velocity_width, u.km / u.s).value
    margin = min(max(beam_pix, 2.0), min(nx, ny) / 4)

    if recipe == "wide":
        n = int(rng.integers(1, 9)) if n_sources is None else int(n_sources)
        snr = np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]), n))
        x = rng.uniform(margin, nx - 1 - margin, n)
        y = rng.uniform(margin, ny - 1 - margin, n)
        point = rng.random(n) < 0.3
        fmaj = np.where(point, 0.0, rng.uniform(*WIDE_MAJOR_BEAMS, n)) * beam.major.to_value(u.arcsec)
        ratio = rng.uniform(0.3, 1.0, n)
        width_chan = rng.uniform(*WIDE_LINE_WIDTH_CHANNELS, n)
        has_cont = rng.random(n) < continuum_fraction
    else:
        n = int(rng.integers(3, 7)) if n_sources is None else int(n_sources)
        if n < 3:
            raise InvalidInputError("the 'paper' recipe needs at least 3 sources")
        snr = np.concatenate([[rng.uniform(20, 50)], rng.uniform(3, 15, n - 1)])
        centre = np.array([nx, ny]) / 2 + rng.normal(0, beam_pix / 2, 2)
        x = np.empty(n)
        y = np.empty(n)
        x[0], y[0] = centre
        x[1:] = rng.uniform(margin, nx - 1 - margin, n - 1)
        y[1:] = rng.uniform(margin, ny - 1 - margin, n - 1)
        # A blended pair: source 2 within 0.5-1.5 beams of source 1.
        sep = rng.uniform(0.5, 1.5) * beam_pix
        ang = rng.uniform(0, 2 * np.pi)
        x[2] = np.clip(x[1] + sep * np.cos(ang), margin, nx - 1 - margin)
        y[2] = np.clip(y[1] + sep * np.sin(ang), margin, ny - 1 - margin)
        point = rng.random(n) < 0.2
        fmaj = np.where(point, 0.0, rng.uniform(0.3, 2.0, n)) * beam.major.to_value(u.arcsec)
        ratio = rng.uniform(0.4, 1.0, n)
        width_chan = rng.uniform(*PAPER_LINE_WIDTH_CHANNELS, n)
        has_cont = np.zeros(n, dtype=bool)

    z = rng.uniform(0, 1, n)
    lo = np.minimum(width_chan, (n_chan - 1) / 2)
    z = lo + z * np.maximum(n_chan - 1 - 2 * lo, 0)
    if recipe == "paper" and n >= 4:
        # A pair at one position with different line centres: source 3 sits on source 0.
        x[3], y[3] = x[0], y[0]
        gap = min(2.5 * max(width_chan[0], width_chan[3]), n_chan / 2)
        z[3] = z[0] + gap if z[0] + gap <= n_chan - 1 else z[0] - gap
        z[3] = np.clip(z[3], 0, n_chan - 1)

    table = QTable()
    table["x_centroid"] = x * u.pix
    table["y_centroid"] = y * u.pix
    table["z_centroid"] = z * u.one
    table["fwhm_major"] = fmaj * u.arcsec
    table["fwhm_minor"] = fmaj * ratio * u.arcsec
    table["position_angle"] = rng.uniform(0, 180, n) * u.deg
    table["line_width"] = width_chan * dv * u.km / u.s
    kwargs = dict(
        beam=beam,
        noise_rms=noise_rms,
        channel_velocity_width=channel_velocity_width,
        n_channels=n_chan,
    )
    table["flux"] = flux_for_snr(snr, table, **kwargs)
    cont_snr = rng.uniform(0.5, 5.0, n)
    cont_peak = cont_snr * u.Quantity(noise_rms, u.Jy / u.beam).value
    dil = _beam_dilution(beam, table["fwhm_major"], table["fwhm_minor"], table["position_angle"])
    table["continuum_flux"] = np.where(has_cont, cont_peak / dil, 0.0) * u.Jy
    table["snr"] = peak_snr(table, **kwargs)
    return table
