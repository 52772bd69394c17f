"""Primary-beam correction of catalogue fluxes (`deepfocus.characterization.primary_beam`)."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable

from deepfocus import DeepFocus
from deepfocus.characterization.primary_beam import primary_beam_correct, primary_beam_gain
from deepfocus.exceptions import DeepFocusWarning, InvalidInputError
from deepfocus.io.catalog import SourceFlag

SHAPE = (6, 20, 30)


def _gain():
    """A gain that differs in every pixel and channel, blank (NaN) in one corner."""
    z, y, x = np.indices(SHAPE)
    gain = (1.0 - 0.01 * x - 0.02 * y - 0.03 * z).astype(np.float32)
    gain[:, :3, :3] = np.nan
    return gain


def _catalog():
    return QTable(
        {
            "x_centroid": [10.2, 25.0, 1.0, 29.6] * u.pix,
            "y_centroid": [4.7, 15.0, 1.0, 19.4] * u.pix,
            "z_centroid": [2.0, 4.6, 1.0, 0.0],
            "flux": [1.0, 2.0, 3.0, 4.0] * u.Jy * u.km / u.s,
            "continuum_flux": [0.5, 0.0, 0.1, 0.2] * u.Jy,
            "flags": np.array([0, 2, 0, 0], dtype=np.int32),
        }
    )


def test_fluxes_divided_by_the_gain_at_each_source():
    catalog, gain = _catalog(), _gain()
    corrected = primary_beam_correct(catalog, gain, shape=SHAPE)
    expected = np.array([gain[2, 5, 10], gain[5, 15, 25], np.nan, gain[0, 19, 29]])
    assert np.allclose(corrected["primary_beam_gain"], expected, equal_nan=True)
    usable = [0, 1, 3]
    assert np.allclose(corrected["flux"].value[usable], catalog["flux"].value[usable] / expected[usable])
    assert np.allclose(
        corrected["continuum_flux"].value[usable], catalog["continuum_flux"].value[usable] / expected[usable]
    )
    # Blank gain (beyond CASA's pblimit): flux as measured, flagged at the edge.
    assert corrected["flux"][2] == catalog["flux"][2]
    assert list(corrected["flags"]) == [0, 2, int(SourceFlag.EDGE), 0]
    assert corrected.meta["primary_beam_corrected"] is True
    assert corrected["flux"].unit == u.Jy * u.km / u.s
    assert "primary_beam_gain" not in catalog.colnames  # the input is not modified


def test_gains_below_the_limit_are_not_applied():
    gain = np.full(SHAPE, 0.1, dtype=np.float32)
    with pytest.warns(DeepFocusWarning, match="every source lies where the primary-beam gain is below 0.2"):
        corrected = primary_beam_correct(_catalog(), gain, shape=SHAPE, min_gain=0.2)
    assert np.allclose(corrected["flux"].value, _catalog()["flux"].value)
    assert np.all(corrected["flags"] & int(SourceFlag.EDGE))
    with pytest.raises(InvalidInputError, match="min_gain"):
        primary_beam_correct(_catalog(), gain, shape=SHAPE, min_gain=0)


def test_one_plane_serves_every_channel(tmp_path):
    plane = _gain()[0]
    corrected = primary_beam_correct(_catalog(), plane, shape=SHAPE)
    assert corrected["primary_beam_gain"][1] == pytest.approx(plane[15, 25])
    # An mfs .pb as exportfits writes it: (stokes, one channel, dec, ra).
    path = tmp_path / "mfs.pb.fits"
    fits.PrimaryHDU(plane[None, None]).writeto(path)
    from_file = primary_beam_correct(_catalog(), path, shape=SHAPE)
    assert np.allclose(from_file["primary_beam_gain"], corrected["primary_beam_gain"], equal_nan=True)


def test_a_fits_file_with_a_stokes_axis_gives_the_same_gains(tmp_path):
    path = tmp_path / "cube.pb.fits"
    fits.PrimaryHDU(_gain()[None]).writeto(path)  # (stokes, freq, dec, ra), as exportfits writes it
    before = path.read_bytes()
    x, y, z = [10.2, 25.0, 1.0], [4.7, 15.0, 1.0], [2.0, 4.6, 1.0]
    from_file = primary_beam_gain(path, x, y, z, shape=SHAPE)
    assert np.allclose(from_file, primary_beam_gain(_gain(), x, y, z, shape=SHAPE), equal_nan=True)
    assert path.read_bytes() == before


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_mismatched_or_unreadable_gains_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match=r"shape \(6, 20, 31\)"):
        primary_beam_correct(_catalog(), np.ones((6, 20, 31)), shape=SHAPE)
    path = tmp_path / "wrong.fits"
    fits.PrimaryHDU(np.ones((5, 20, 30), np.float32)).writeto(path)
    with pytest.raises(InvalidInputError, match="wrong.fits has shape"):
        primary_beam_correct(_catalog(), path, shape=SHAPE)
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(_gain()).writeto(good)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:4000])
    with pytest.raises(InvalidInputError, match="primary beam"):
        primary_beam_correct(_catalog(), truncated, shape=SHAPE)
    with pytest.raises(InvalidInputError, match="primary beam"):
        primary_beam_correct(_catalog(), tmp_path / "missing.fits", shape=SHAPE)


def test_deepfocus_restores_the_fluxes_of_an_attenuated_cube(bright_files, classical_catalog, tmp_path):
    """A cube attenuated by a gain of 0.5 everywhere (noise too: S/N unchanged) gives, with that
    gain as ``pb``, the fluxes of the cube itself."""
    with fits.open(bright_files["dirty"]) as hdul:
        hdul[0].data = hdul[0].data * np.float32(0.5)
        hdul.writeto(tmp_path / "attenuated.fits")
    shape = hdul[0].data.shape
    catalog = DeepFocus(model=None)(tmp_path / "attenuated.fits", pb=np.full(shape, 0.5, np.float32))
    assert len(catalog) == len(classical_catalog)
    assert np.allclose(catalog["flux"].value, classical_catalog["flux"].value, rtol=1e-4)
    assert np.allclose(catalog["primary_beam_gain"], 0.5)
    uncorrected = DeepFocus(model=None)(tmp_path / "attenuated.fits")
    assert np.allclose(uncorrected["flux"].value, 0.5 * classical_catalog["flux"].value, rtol=1e-4)


def test_a_pbcor_file_with_a_primary_beam_is_refused(bright_files, tmp_path):
    # tclean's .image.pbcor is already divided by the gain: a pb would divide it again.
    import shutil

    cube = tmp_path / "obs.image.pbcor.fits"
    shutil.copy(bright_files["dirty"], cube)
    with pytest.raises(InvalidInputError, match="already primary-beam corrected"):
        DeepFocus(model=None)(cube, pb=np.ones(fits.getdata(cube).shape, np.float32))


def test_gains_above_one_are_not_a_primary_beam():
    # A dirty cube given as the .pb: its values are no gains.
    gain = _gain() * 3.0
    with pytest.raises(InvalidInputError, match=r"a gain lies in \[0, 1\]"):
        primary_beam_correct(_catalog(), gain, shape=SHAPE)
    with pytest.raises(InvalidInputError, match=r"a gain lies in \[0, 1\]"):
        primary_beam_correct(_catalog(), -_gain(), shape=SHAPE)
