"""Hand-made truth and detected catalogues in the DESIGN section 4 columns."""

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable

#: Matching settings of `make_catalog` tables: beam 0.5 arcsec = 5 pixels, so 2.5 pixels
#: position tolerance; 10 km/s channels.
META = {"cell_arcsec": 0.1, "beam_major_arcsec": 0.5, "channel_velocity_width_kms": 10.0}

DEFAULTS = {
    "z": 10.0,
    "snr": 10.0,
    "fwhm_major": 0.8,
    "fwhm_minor": 0.4,
    "position_angle": 30.0,
    "line_width": 30.0,  # 3 channels
    "flux": 1.0,
}


def make_catalog(rows, *, meta=META):
    """A catalogue from a list of dicts with keys ``x``, ``y`` and optionally those of `DEFAULTS`."""
    rows = [{**DEFAULTS, **row} for row in rows]
    n = len(rows)

    def col(key):
        return np.array([row[key] for row in rows], dtype=float)

    t = QTable(meta=dict(meta or {}))
    t["id"] = np.arange(1, n + 1)
    t["x_centroid"] = col("x") * u.pix
    t["y_centroid"] = col("y") * u.pix
    t["z_centroid"] = col("z")
    t["sky_centroid"] = SkyCoord(150 + col("x") * 1e-4, 2 + col("y") * 1e-4, unit="deg")
    t["z_min"] = np.floor(col("z") - 3).astype(int)
    t["z_max"] = np.ceil(col("z") + 3).astype(int)
    t["fwhm_major"] = col("fwhm_major") * u.arcsec
    t["fwhm_minor"] = col("fwhm_minor") * u.arcsec
    t["position_angle"] = col("position_angle") * u.deg
    t["line_width"] = col("line_width") * u.km / u.s
    t["flux"] = col("flux") * u.Jy * u.km / u.s
    t["continuum_flux"] = np.zeros(n) * u.Jy
    t["snr"] = col("snr")
    t["flags"] = np.zeros(n, dtype=np.int32)
    return t
