"""The catalogue's spectral_centroid is in the kind of spectral axis the input cube has."""

import warnings
from importlib import resources

import astropy.units as u
import numpy as np
from astropy.io import fits

from deepfocus import DeepFocus

C_MS = 299792458.0


def test_velocity_cube_gives_radio_velocities(tmp_path):
    path = resources.files("deepfocus.data") / "example_dirty.fits"
    with fits.open(str(path)) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.copy()
        extra = [hdu.copy() for hdu in hdul[1:]]
    rest = header["RESTFRQ"]
    header["CTYPE3"], header["CUNIT3"] = "VRAD", "m/s"
    header["CRVAL3"] = C_MS * (1 - header["CRVAL3"] / rest)
    header["CDELT3"] = -C_MS * header["CDELT3"] / rest
    velocity_file = tmp_path / "velocity.fits"
    fits.HDUList([fits.PrimaryHDU(data, header), *extra]).writeto(velocity_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_frequency = DeepFocus(model=None)(str(path))
        by_velocity = DeepFocus(model=None)(velocity_file)
    assert by_frequency["spectral_centroid"].unit == u.GHz
    assert by_velocity["spectral_centroid"].unit == u.km / u.s
    expected = by_frequency["spectral_centroid"].to(u.km / u.s, equivalencies=u.doppler_radio(rest * u.Hz))
    np.testing.assert_allclose(by_velocity["spectral_centroid"].value, expected.value, atol=0.01)
