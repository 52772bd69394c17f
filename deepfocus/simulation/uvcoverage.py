"""Earth-rotation uv coverage of an array observing one field."""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np

from ..exceptions import InvalidInputError
from .antennas import ALMA_SITE, AntennaConfiguration

__all__ = ["UVCoverage", "uv_tracks", "casa_track_geometry", "SIDEREAL_DAY"]

#: Length of the sidereal day in SI seconds: hour angle advances 2 pi in this time.
SIDEREAL_DAY = 86164.0905


@dataclass(frozen=True)
class UVCoverage:
    """Baseline coordinates of an observation, in metres.

    Attributes
    ----------
    uvw : `numpy.ndarray`
        ``(n_times, n_baselines, 3)`` baseline coordinates u, v, w in metres (u towards east,
        v towards north in the plane of the sky).
    hour_angle : `numpy.ndarray`
        ``(n_times,)`` hour angle of the field centre in radians at each integration midpoint.
    elevation : `numpy.ndarray`
        ``(n_times,)`` elevation of the field centre in radians.
    integration : float
        Integration time in seconds.
    antenna_pairs : `numpy.ndarray`
        ``(n_baselines, 2)`` indices of the antennas of each baseline.
    dish_diameter : float
        Mean dish diameter in metres.
    """

    uvw: np.ndarray
    hour_angle: np.ndarray
    elevation: np.ndarray
    integration: float
    antenna_pairs: np.ndarray
    dish_diameter: float

    @property
    def n_visibilities(self) -> int:
        """Number of visibilities per channel (times x baselines)."""
        return self.uvw.shape[0] * self.uvw.shape[1]

    def uv_wavelengths(self, frequency) -> tuple[np.ndarray, np.ndarray]:
        """Flattened u and v in wavelengths at ``frequency``.

        Parameters
        ----------
        frequency : `~astropy.units.Quantity`
            Observing frequency.
        """
        scale = frequency.to_value(u.Hz, equivalencies=u.spectral()) / 299792458.0
        return self.uvw[..., 0].ravel() * scale, self.uvw[..., 1].ravel() * scale


def casa_track_geometry(ra, dec, date, hour_angle=0 * u.hourangle):
    """Hour angle, apparent declination and frame rotation of a ``simobserve`` track.

    ``simobserve`` converts the hour angle of the field at 0h UTC of ``refdate`` to a time offset
    as if hour angle ran at the solar rate, stamps the integrations in TAI and computes uvw as if
    that were UT1, in the J2000 frame. The middle of its "transit" track is therefore a little
    off transit (typically tens of seconds); reproducing that makes short snapshots match CASA's
    PSF exactly.

    Parameters
    ----------
    ra, dec : `~astropy.units.Quantity`
        J2000 field centre.
    date : str
        Observing date (``refdate``), e.g. ``"2024-06-01"``.
    hour_angle : `~astropy.units.Quantity`
        Requested hour angle of the middle of the track (``simobserve``'s ``hourangle``).

    Returns
    -------
    mid_hour_angle : `~astropy.units.Quantity`
        Apparent hour angle at the middle of the track.
    apparent_dec : `~astropy.units.Quantity`
        Declination of date.
    rotation : `~astropy.units.Quantity`
        Angle from the north of date to the J2000 north at the field, by which uv rotate.
    """
    import erfa
    from astropy.coordinates import FK5, SkyCoord
    from astropy.time import Time

    t0 = Time(f"{date} 00:00:00", scale="utc")
    field = SkyCoord(ra, dec, frame="fk5", equinox="J2000")
    of_date = FK5(equinox=t0)
    apparent = field.transform_to(of_date)
    # Apparent sidereal time with UT1 taken as UTC (< 1 s off), so that no Earth-orientation
    # table is needed offline.
    gast = erfa.gst06a(t0.utc.jd1, t0.utc.jd2, t0.tt.jd1, t0.tt.jd2) * u.rad
    last = gast + ALMA_SITE["lon_deg"] * u.deg
    ha0 = (last - apparent.ra).to(u.hourangle)
    ha0 = (ha0 + 12 * u.hourangle) % (24 * u.hourangle) - 12 * u.hourangle
    north = field.directional_offset_by(0 * u.deg, 1 * u.arcmin).transform_to(of_date)
    rotation = apparent.position_angle(north).wrap_at(180 * u.deg)
    # The time offset applied is (hour_angle - ha0) in solar hours; 37 s is TAI - UTC.
    requested = u.Quantity(hour_angle, u.hourangle)
    solar_to_sidereal = 86400.0 / SIDEREAL_DAY
    tai_minus_utc = (37 * u.s).to_value(u.h) * u.hourangle
    mid = ha0 + (requested - ha0 + tai_minus_utc) * solar_to_sidereal
    return mid.to(u.hourangle), apparent.dec.to(u.deg), rotation.to(u.deg)


def _n_integrations(total_time, integration) -> int:
    """The number of integrations a track of ``total_time`` observes, as CASA ``simobserve``
    counts them: one after another while the time observed is below ``total_time``
    (``ceil(total_time / integration)``, to 1 part in a million), so the track observes
    ``n * integration``, at least ``total_time``.

    Parameters
    ----------
    total_time, integration : `~astropy.units.Quantity`
        Track and integration lengths (time units, positive).
    """
    ratio = u.Quantity(total_time, u.s).value / u.Quantity(integration, u.s).value
    return max(1, int(np.ceil(ratio * (1 - 1e-6))))


#: A track whose whole integrations observe more than this fraction longer than ``total_time``
#: is warned about.
TRACK_TOLERANCE = 0.01


def uv_tracks(
    configuration: AntennaConfiguration,
    declination,
    *,
    total_time=1800 * u.s,
    integration=10 * u.s,
    hour_angle_centre=0 * u.hourangle,
    latitude=ALMA_SITE["lat_deg"] * u.deg,
    ra=None,
    date=None,
) -> UVCoverage:
    """Compute the uv tracks of an Earth-rotation synthesis observation.

    Integrations are centred on ``hour_angle_centre`` (0: transit), one every ``integration``
    seconds, timestamps at the middle of each integration; hour angle advances at the sidereal
    rate. The track holds whole integrations, as CASA ``simobserve`` observes it
    (`_n_integrations`: ``total_time`` rounded up to a whole number of them). Given ``ra`` and
    ``date``, the track is placed as CASA ``simobserve`` places it for ``refdate=date,
    hourangle=hour_angle_centre``, and uvw are in the J2000 frame (see `casa_track_geometry`).

    Parameters
    ----------
    configuration : `AntennaConfiguration`
        Antenna positions (local east/north/up).
    declination : `~astropy.units.Quantity`
        Declination of the field centre (J2000).
    total_time, integration : `~astropy.units.Quantity`
        Length of the track and of one integration (time units).
    hour_angle_centre : `~astropy.units.Quantity`
        Hour angle at the middle of the track (angle or hour-angle units).
    latitude : `~astropy.units.Quantity`
        Geodetic latitude of the array (default: ALMA).
    ra : `~astropy.units.Quantity`, optional
        Right ascension (J2000) of the field centre; needed with ``date``.
    date : str, optional
        Observing date, e.g. ``"2024-06-01"``.

    Returns
    -------
    coverage : `UVCoverage`
    """
    total = u.Quantity(total_time, u.s).value
    dt = u.Quantity(integration, u.s).value
    if not (dt > 0 and total > 0):
        raise InvalidInputError("total_time and integration must be positive")
    n_times = _n_integrations(total_time, integration)
    dec = u.Quantity(declination, u.deg).to_value(u.rad)
    if not -np.pi / 2 <= dec <= np.pi / 2:
        raise InvalidInputError(f"declination {declination} is outside [-90, 90] deg")
    lat = u.Quantity(latitude, u.deg).to_value(u.rad)
    rotation = 0.0
    ha_mid = u.Quantity(hour_angle_centre, u.hourangle)
    if date is not None:
        if ra is None:
            raise InvalidInputError("uv_tracks needs ra together with date")
        ha_mid, app_dec, rot = casa_track_geometry(
            u.Quantity(ra, u.deg), u.Quantity(declination, u.deg), date, ha_mid
        )
        dec = app_dec.to_value(u.rad)
        rotation = rot.to_value(u.rad)
    times = (np.arange(n_times) - (n_times - 1) / 2) * dt
    ha = ha_mid.to_value(u.rad) + 2 * np.pi * times / SIDEREAL_DAY

    east, north, up = configuration.baselines.T
    # Local horizon frame -> equatorial frame (X towards the meridian on the equator, Y east, Z pole).
    x = -np.sin(lat) * north + np.cos(lat) * up
    y = east
    z = np.cos(lat) * north + np.sin(lat) * up
    sh, ch = np.sin(ha)[:, None], np.cos(ha)[:, None]
    sd, cd = np.sin(dec), np.cos(dec)
    uu = sh * x + ch * y
    vv = -sd * ch * x + sd * sh * y + cd * z
    ww = cd * ch * x - cd * sh * y + sd * z
    if rotation:
        uu, vv = (
            uu * np.cos(rotation) - vv * np.sin(rotation),
            uu * np.sin(rotation) + vv * np.cos(rotation),
        )
    elevation = np.arcsin(np.sin(lat) * sd + np.cos(lat) * cd * np.cos(ha))
    if np.all(elevation <= 0):
        raise InvalidInputError(
            f"the field at declination {declination} never rises above the horizon during the track"
        )
    i, j = np.triu_indices(configuration.n_antennas, k=1)
    return UVCoverage(
        uvw=np.stack([uu, vv, ww], axis=-1),
        hour_angle=ha,
        elevation=elevation,
        integration=dt,
        antenna_pairs=np.column_stack([i, j]),
        dish_diameter=float(np.mean(configuration.diameter)),
    )
