"""Settings of a simulated ALMA observation."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace

import astropy.units as u
import numpy as np

from ..exceptions import DeepFocusWarning, InvalidInputError
from .uvcoverage import TRACK_TOLERANCE, _n_integrations

__all__ = ["Observation"]


def _q(value, unit, name, *, positive=True):
    try:
        q = u.Quantity(value, unit)
    except (u.UnitsError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a quantity convertible to {unit}, got {value!r}") from exc
    if not np.isfinite(q.value):
        raise InvalidInputError(f"{name} must be finite, got {value!r}")
    if positive and q.value <= 0:
        raise InvalidInputError(f"{name} must be positive, got {value!r}")
    return q


@dataclass(frozen=True)
class Observation:
    """What an observation looks like: array, field, spectral setup, image and noise.

    Parameters
    ----------
    configuration : str
        Antenna configuration: a shipped name (`available_configurations`), ``"C-3"``-style
        shorthand, or a path to a CASA ``.cfg`` file.
    ra, dec : `~astropy.units.Quantity`
        Field centre (ICRS).
    total_time, integration : `~astropy.units.Quantity`
        Track length and integration time, centred on ``hour_angle`` (positive; the
        integration at most the track length). Both engines observe whole integrations, as CASA
        ``simobserve`` does: ``total_time`` rounded up to a whole number of them, with the
        radiometer noise of that time (e.g. 1802.3 s for 1800 s in the ALMA's 6.048 s); a
        track more than 1 % longer than ``total_time`` is warned about.
    hour_angle : `~astropy.units.Quantity`
        Hour angle of the middle of the track (0 = transit).
    date : str
        Observing date (ISO, e.g. ``"2024-06-01"``); the track is placed as CASA ``simobserve``
        places it for ``refdate=date`` and ``hourangle=hour_angle``. ``None`` centres the track
        exactly on ``hour_angle`` and ignores precession.
    frequency : `~astropy.units.Quantity`
        Frequency of the first channel (channel 0).
    channel_width : `~astropy.units.Quantity`
        Channel width in frequency (positive: simulated cubes have ascending frequency).
    n_channels : int
        Number of channels.
    npix : int
        Image size (square) in pixels.
    cell : `~astropy.units.Quantity` or None
        Pixel size; ``None`` chooses ``beam major axis / pixels_per_beam`` from the PSF.
    pixels_per_beam : float
        Pixels across the beam major axis when ``cell`` is None (CASA users take 3-8).
    weighting : {'natural', 'uniform', 'briggs'}
        Imaging weights.
    robust : float
        The Briggs robustness (``weighting='briggs'``), -2 (uniform) to 2 (natural), as in
        ``tclean``.
    specmode : {'cube', 'mfs'}
        Which ``tclean`` imaging mode the weights follow (``cube``: the spectral cubes CASA
        users make; ``mfs``: continuum images, as the shipped reference PSFs).
    rest_frequency : `~astropy.units.Quantity` or None
        ``RESTFRQ`` of the cube; ``None`` uses the centre frequency.
    pwv : `~astropy.units.Quantity`
        Precipitable water vapour for the atmospheric system temperature.
    tsys : `~astropy.units.Quantity` or None
        A fixed system temperature, which overrides the atmospheric model.
    noise : bool
        Add thermal noise.
    primary_beam : bool
        Attenuate sources by a Gaussian primary beam (FWHM 1.13 lambda / D).
    """

    configuration: str = "alma.cycle10.3"
    ra: u.Quantity = field(default_factory=lambda: 150.0 * u.deg)
    dec: u.Quantity = field(default_factory=lambda: -23.0 * u.deg)
    total_time: u.Quantity = field(default_factory=lambda: 1800.0 * u.s)
    integration: u.Quantity = field(default_factory=lambda: 10.0 * u.s)
    hour_angle: u.Quantity = field(default_factory=lambda: 0.0 * u.hourangle)
    date: str | None = "2024-06-01"
    frequency: u.Quantity = field(default_factory=lambda: 230.0 * u.GHz)
    channel_width: u.Quantity = field(default_factory=lambda: 15.625 * u.MHz)
    n_channels: int = 64
    npix: int = 128
    cell: u.Quantity | None = None
    pixels_per_beam: float = 5.0
    weighting: str = "briggs"
    robust: float = 0.5
    specmode: str = "cube"
    rest_frequency: u.Quantity | None = None
    pwv: u.Quantity = field(default_factory=lambda: 1.0 * u.mm)
    tsys: u.Quantity | None = None
    noise: bool = True
    primary_beam: bool = False

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "ra", _q(self.ra, u.deg, "ra", positive=False))
        set_(self, "dec", _q(self.dec, u.deg, "dec", positive=False))
        if not -90 <= self.dec.value <= 90:
            raise InvalidInputError(f"dec must lie in [-90, 90] deg, got {self.dec}")
        set_(self, "total_time", _q(self.total_time, u.s, "total_time"))
        set_(self, "integration", _q(self.integration, u.s, "integration"))
        if self.integration > self.total_time:
            raise InvalidInputError(
                f"integration {self.integration} is longer than total_time {self.total_time}"
            )
        observed = _n_integrations(self.total_time, self.integration) * self.integration
        if observed > (1 + TRACK_TOLERANCE) * self.total_time:
            warnings.warn(
                f"total_time {self.total_time:g} is not a whole number of {self.integration:g} "
                f"integrations: the track observes {observed:.6g} (as simobserve does), and its noise "
                "is that of this time",
                DeepFocusWarning,
                stacklevel=3,
            )
        set_(self, "hour_angle", _q(self.hour_angle, u.hourangle, "hour_angle", positive=False))
        if self.date is not None:
            try:
                from astropy.time import Time

                Time(self.date)
            except ValueError as exc:
                raise InvalidInputError(
                    f"date must be an ISO date such as 2024-06-01, got {self.date!r}"
                ) from exc
        set_(self, "frequency", _q(self.frequency, u.GHz, "frequency"))
        set_(self, "channel_width", _q(self.channel_width, u.MHz, "channel_width"))
        if int(self.n_channels) < 1 or int(self.npix) < 16:
            raise InvalidInputError(
                f"n_channels must be >= 1 and npix >= 16, got {self.n_channels} and {self.npix}"
            )
        set_(self, "n_channels", int(self.n_channels))
        set_(self, "npix", int(self.npix))
        if self.cell is not None:
            set_(self, "cell", _q(self.cell, u.arcsec, "cell"))
        if not self.pixels_per_beam > 1:
            raise InvalidInputError(f"pixels_per_beam must exceed 1, got {self.pixels_per_beam}")
        if self.weighting not in ("natural", "uniform", "briggs"):
            raise InvalidInputError(
                f"weighting must be 'natural', 'uniform' or 'briggs', got {self.weighting!r}"
            )
        if self.specmode not in ("cube", "mfs"):
            raise InvalidInputError(f"specmode must be 'cube' or 'mfs', got {self.specmode!r}")
        if self.rest_frequency is not None:
            set_(self, "rest_frequency", _q(self.rest_frequency, u.GHz, "rest_frequency"))
        set_(self, "pwv", _q(self.pwv, u.mm, "pwv", positive=False))
        if self.pwv.value < 0:
            raise InvalidInputError(f"pwv must be non-negative, got {self.pwv}")
        if self.tsys is not None:
            set_(self, "tsys", _q(self.tsys, u.K, "tsys"))

    @property
    def frequencies(self) -> u.Quantity:
        """Centre frequency of every channel."""
        return self.frequency + np.arange(self.n_channels) * self.channel_width

    @property
    def centre_frequency(self) -> u.Quantity:
        """Mean of the channel frequencies."""
        return self.frequencies.mean()

    @property
    def restfreq(self) -> u.Quantity:
        """The rest frequency used for velocities (radio convention)."""
        return self.rest_frequency if self.rest_frequency is not None else self.centre_frequency

    @property
    def channel_velocity_width(self) -> u.Quantity:
        """Width of one channel in radio velocity at the rest frequency (positive, km/s)."""
        return (abs(self.channel_width) / self.restfreq * 299792.458 * u.km / u.s).to(u.km / u.s)

    def replace(self, **changes) -> Observation:
        """A copy with some settings changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Settings as JSON-friendly values (quantities as strings)."""
        return {k: (str(v) if isinstance(v, u.Quantity) else v) for k, v in asdict(self).items()}
