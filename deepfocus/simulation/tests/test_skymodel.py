import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from deepfocus.exceptions import InvalidInputError
from deepfocus.simulation import SkyModel


def sources(**overrides):
    cols = dict(
        x_centroid=[20.3, 40.0] * u.pix,
        y_centroid=[30.7, 22.0] * u.pix,
        z_centroid=[15.2, 30.0] * u.one,
        fwhm_major=[0.0, 1.2] * u.arcsec,
        fwhm_minor=[0.0, 0.5] * u.arcsec,
        position_angle=[0.0, 35.0] * u.deg,
        line_width=[60.0, 150.0] * u.km / u.s,
        flux=[0.8, 2.5] * u.Jy * u.km / u.s,
    )
    cols.update(overrides)
    return QTable(cols)


SHAPE = (48, 64, 64)
DV = 20.0 * u.km / u.s


def test_cube_conserves_line_flux():
    sky = SkyModel(sources(), SHAPE, cell=0.15 * u.arcsec, channel_velocity_width=DV)
    cube = sky.cube()
    assert cube.dtype == np.float32
    # Sum over pixels and channels times the channel width = line flux (lines inside the band).
    assert cube.sum() * DV.value == pytest.approx(0.8 + 2.5, rel=1e-4)
    per_source = sky.line_profiles().sum(axis=1) * DV.value
    np.testing.assert_allclose(per_source, [0.8, 2.5], rtol=1e-6)
    np.testing.assert_allclose(sky.spatial_profiles().sum(axis=(1, 2)), 1, rtol=1e-4)


def test_continuum_adds_flat_spectrum():
    table = sources()
    table["continuum_flux"] = [0.0, 0.01] * u.Jy
    sky = SkyModel(table, SHAPE, cell=0.15 * u.arcsec, channel_velocity_width=DV)
    spectra = sky.spectra()
    np.testing.assert_allclose(spectra[1, :3], 0.01, rtol=1e-6)  # line-free channels
    assert spectra[0, :3].max() < 1e-12


def test_position_angle_convention():
    # PA 0: elongated north-south (along y); PA 90: east-west (along x).
    for pa, axis in ((0.0, 0), (90.0, 1)):
        table = sources(position_angle=[0.0, pa] * u.deg, fwhm_major=[0, 3.0] * u.arcsec)
        img = SkyModel(table, SHAPE, cell=0.15 * u.arcsec, channel_velocity_width=DV).spatial_profiles()[1]
        spread = [
            np.sum(
                img.sum(axis=1 - a)
                * (np.arange(64) - np.average(np.arange(64), weights=img.sum(axis=1 - a))) ** 2
            )
            for a in (0, 1)
        ]
        assert spread[axis] > 3 * spread[1 - axis]
    # PA 45 puts the major axis towards north-east: east is -x, so up and to the left.
    table = sources(position_angle=[0.0, 45.0] * u.deg, fwhm_major=[0, 3.0] * u.arcsec)
    img = SkyModel(table, SHAPE, cell=0.15 * u.arcsec, channel_velocity_width=DV).spatial_profiles()[1]
    yy, xx = np.mgrid[:64, :64]
    cov_xy = np.sum(img * (xx - 40.0) * (yy - 22.0))
    assert cov_xy < 0


def test_fourier_profile_is_transform_of_image():
    sky = SkyModel(
        sources(fwhm_major=[0.6, 1.2] * u.arcsec, fwhm_minor=[0.6, 0.5] * u.arcsec),
        SHAPE,
        cell=0.15 * u.arcsec,
        channel_velocity_width=DV,
    )
    image = np.fft.irfft2(sky.fourier_profiles(64), s=(64, 64))
    np.testing.assert_allclose(image, sky.spatial_profiles(oversample=9), atol=2e-3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flux": [-1.0, 2.5] * u.Jy * u.km / u.s}, "'flux' must be finite and non-negative"),
        ({"fwhm_major": [-0.1, 1.2] * u.arcsec}, "'fwhm_major' must be finite"),
        ({"fwhm_minor": [0.0, 2.0] * u.arcsec}, "must not exceed fwhm_major"),
        ({"line_width": [0.0, 100.0] * u.km / u.s}, "line_width must be positive"),
        ({"x_centroid": [80.0, 40.0] * u.pix}, "outside the cube"),
        ({"z_centroid": [15.0, -3.0] * u.one}, "outside the cube"),
        ({"flux": [1.0, 2.0] * u.Jy}, "unit Jy, expected"),
    ],
)
def test_bad_sources(change, message):
    with pytest.raises(InvalidInputError, match=message):
        SkyModel(sources(**change), SHAPE, cell=0.15 * u.arcsec, channel_velocity_width=DV)


def test_bad_grid():
    with pytest.raises(InvalidInputError, match="must be positive"):
        SkyModel(sources(), SHAPE, cell=-0.1 * u.arcsec, channel_velocity_width=DV)
    with pytest.raises(InvalidInputError, match="lacks column"):
        SkyModel(
            QTable({"x_centroid": [1.0] * u.pix}),
            SHAPE,
            cell=0.1 * u.arcsec,
            channel_velocity_width=DV,
        )
