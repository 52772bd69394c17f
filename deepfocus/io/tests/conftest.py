"""A hand-made catalogue in the DESIGN section 4 columns, shared by the io tests."""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import QTable


def make_catalog():
    """Three sources: two resolved (one elongated north-east) and one unresolved (FWHM 0)."""
    table = QTable()
    table["id"] = np.array([1, 2, 3])
    table["x_centroid"] = [10.25, 40.5, 63.0] * u.pix
    table["y_centroid"] = [20.75, 33.0, 5.5] * u.pix
    table["z_centroid"] = np.array([12.4, 30.0, 47.9])
    table["sky_centroid"] = SkyCoord(
        [150.1, 150.1012345678, 149.99876543] * u.deg, [2.2, 2.2004321, 2.1998765] * u.deg, frame="icrs"
    )
    table["spectral_centroid"] = [230.5381, 230.4012, 230.2210] * u.GHz
    table["z_min"] = np.array([9, 27, 45])
    table["z_max"] = np.array([16, 33, 50])
    table["fwhm_major"] = [1.2, 0.45, 0.0] * u.arcsec
    table["fwhm_minor"] = [0.4, 0.3, 0.0] * u.arcsec
    table["position_angle"] = [30.0, 135.0, 0.0] * u.deg
    table["line_width"] = [150.0, 80.0, 220.0] * u.km / u.s
    table["flux"] = [1.5, 0.3, 0.05] * u.Jy * u.km / u.s
    table["continuum_flux"] = [0.0, 1.2e-3, 0.0] * u.Jy
    table["snr"] = np.array([25.3, 8.1, 4.2])
    table["flags"] = np.array([0, 2, 8 | 1], dtype=np.int32)
    table.meta["version"] = "0.1.dev"
    table.meta["date"] = "2026-11-25T09:00:00"
    table.meta["parameters"] = {"snr_threshold": 5.0, "tile": [64, 64], "merge": {"window": 3}}
    table.meta["models"] = {"deconvolver": "deconvolver-v1.safetensors"}
    table.meta["beam_major_arcsec"] = 0.62
    table.meta["beam_minor_arcsec"] = 0.48
    table.meta["beam_pa_deg"] = -75.0
    table.meta["restfrq_ghz"] = 230.538
    return table


@pytest.fixture
def catalog():
    return make_catalog()
