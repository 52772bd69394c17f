"""The catalogue's spectral_centroid is in the kind of spectral axis the input cube has."""

import warnings
from importlib import resources

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

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


@pytest.fixture(scope="module")
def example_axes(tmp_path_factory):
    """The example cube, its catalogue on its frequency axis and a writer of the same cube with
    another spectral axis (rest frequency 233 GHz: velocities of about 3400 km/s, where the
    conventions differ by a channel)."""
    path = resources.files("deepfocus.data") / "example_dirty.fits"
    with fits.open(str(path)) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.copy()
        extra = [hdu.copy() for hdu in hdul[1:]]
    header["RESTFRQ"] = 233e9
    folder = tmp_path_factory.mktemp("axes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_frequency = DeepFocus(model=None)(str(path))

    def write(ctype, translation, unit, **cards):
        """The cube with CTYPE3 ``ctype`` in ``unit``, its reference value and increment those of
        wcslib's ``translation`` of the frequency axis."""
        wcs = WCS(header)
        wcs.wcs.sptr(translation, 2)
        h = header.copy()
        scale = u.Unit(wcs.wcs.cunit[2]).to(unit)
        h["CTYPE3"], h["CUNIT3"] = ctype, unit
        h["CRVAL3"], h["CDELT3"] = wcs.wcs.crval[2] * scale, wcs.wcs.cdelt[2] * scale
        h.update(cards)
        out = folder / f"{ctype}.fits"
        fits.HDUList([fits.PrimaryHDU(data, h), *extra]).writeto(out, overwrite=True)
        return out

    return by_frequency, write


@pytest.mark.parametrize(
    ("ctype", "translation", "unit", "cards", "convention"),
    [
        ("VELO-F2V", "VELO-F2V", "m/s", {}, "relativistic"),  # spectral_cube's relativistic velocity
        ("VOPT", "VOPT-F2W", "km/s", {}, "optical"),  # CASA's optical velocity, linear
        ("FELO-HEL", "VOPT-F2W", "m/s", {}, "optical"),  # AIPS: astropy reads VOPT-F2W
        ("VELO-LSR", "VRAD", "m/s", {"VELREF": 257}, "radio"),  # AIPS radio: astropy reads VRAD
        ("AWAV", "AWAV-F2A", "mm", {}, "radio"),  # air wavelength, linear (no velocity: line_width's)
        ("WAVE", "WAVE-F2W", "um", {}, "radio"),
    ],
    ids=["VELO-F2V", "VOPT", "FELO-HEL", "VELO-LSR", "AWAV", "WAVE"],
)
def test_spectral_centroid_is_the_axis_value(example_axes, ctype, translation, unit, cards, convention):
    # Each axis gives its own kind of value at the line centre: the file's WCS at z_centroid.
    by_frequency, write = example_axes
    path = write(ctype, translation, unit, **cards)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        catalog = DeepFocus(model=None)(path)
        spectral = WCS(fits.getheader(path)).spectral
    np.testing.assert_allclose(catalog["z_centroid"], by_frequency["z_centroid"], atol=1e-6)
    centre = catalog["spectral_centroid"]
    axis_unit = u.Unit(spectral.wcs.cunit[0])  # SI
    expected = spectral.pixel_to_world_values(catalog["z_centroid"]) * axis_unit
    step = np.abs(np.diff(spectral.pixel_to_world_values([0, 1])))[0] * axis_unit
    assert centre.unit == (u.km / u.s if axis_unit == u.m / u.s else u.Unit(unit))
    np.testing.assert_allclose(((centre - expected) / step).to_value(u.one), 0, atol=1e-3)
    assert catalog.meta["velocity_convention"] == convention
    if ctype == "VELO-F2V":  # the frequency axis exactly, in the relativistic convention
        rest = u.doppler_relativistic(233 * u.GHz)
        expected = by_frequency["spectral_centroid"].to_value(u.km / u.s, equivalencies=rest)
        np.testing.assert_allclose(centre.to_value(u.km / u.s), expected)
    if ctype == "AWAV":  # not the vacuum wavelength: about 4 channels away
        vacuum = by_frequency["spectral_centroid"].to(u.mm, equivalencies=u.spectral())
        assert np.all(np.abs(((centre - vacuum) / step).to_value(u.one)) > 2)


def test_a_row_without_a_line_centre_leaves_the_others_in_the_axis_units():
    from spectral_cube import SpectralCube

    from deepfocus.detection.detector import _in_input_units
    from deepfocus.io.cube import read_cube

    path = resources.files("deepfocus.data") / "example_dirty.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cube = SpectralCube.read(str(path)).with_spectral_unit(u.km / u.s, velocity_convention="optical")
        prepared = read_cube(cube)
    frequencies = prepared.spectral_axis[[3, 10]]
    both = _in_input_units(prepared, frequencies)
    one = _in_input_units(prepared, u.Quantity([frequencies[0].value, np.nan], frequencies.unit))
    assert both.unit == u.km / u.s and one.unit == u.km / u.s
    assert one[0] == both[0] and np.isnan(one[1])
