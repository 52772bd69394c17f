import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable
from spectral_cube import SpectralCube

from deepfocus.exceptions import DeepFocusWarning, InvalidInputError
from deepfocus.simulation import Observation
from deepfocus.simulation.catalog import random_catalog
from deepfocus.simulation.simulate import TRUTH_COLUMNS, simulate, warn_line_widths

UNITS = {
    "x_centroid": u.pix,
    "y_centroid": u.pix,
    "spectral_centroid": u.GHz,
    "fwhm_major": u.arcsec,
    "fwhm_minor": u.arcsec,
    "position_angle": u.deg,
    "line_width": u.km / u.s,
    "flux": u.Jy * u.km / u.s,
    "continuum_flux": u.Jy,
}


@pytest.fixture(scope="module")
def result(small_interferometer):
    return simulate(interferometer=small_interferometer, seed=11, n_sources=4)


def test_truth_columns_and_units(result):
    truth = result.truth
    assert tuple(truth.colnames) == TRUTH_COLUMNS
    for name, unit in UNITS.items():
        assert truth[name].unit == unit, name
    assert list(truth["id"]) == [1, 2, 3, 4]
    assert np.all((truth["position_angle"] >= 0 * u.deg) & (truth["position_angle"] < 180 * u.deg))
    assert np.all(truth["z_min"] <= truth["z_centroid"]) and np.all(truth["z_centroid"] <= truth["z_max"])
    assert truth.meta["noise_rms_jy_per_beam"] > 0


def test_truth_positions_round_trip_through_wcs(result):
    truth = result.truth
    x, y = result.dirty.wcs.celestial.world_to_pixel(truth["sky_centroid"])
    np.testing.assert_allclose(x, truth["x_centroid"].value, atol=1e-6)
    np.testing.assert_allclose(y, truth["y_centroid"].value, atol=1e-6)
    z = result.dirty.wcs.spectral.world_to_pixel(truth["spectral_centroid"])
    np.testing.assert_allclose(z, truth["z_centroid"], atol=1e-6)


def test_sky_cube_sums_to_truth_fluxes(result):
    from scipy.stats import norm

    sky = result.sky.unmasked_data[:].value
    dv = result.observation.channel_velocity_width.to_value(u.km / u.s)
    # Lines wider than the 16-channel test band are cut by the band edges.
    truth = result.truth
    sigma = truth["line_width"].to_value(u.km / u.s) / dv / 2.3548
    inside = norm.cdf(sky.shape[0] - 0.5, truth["z_centroid"], sigma) - norm.cdf(
        -0.5, truth["z_centroid"], sigma
    )
    line = np.sum(truth["flux"].to_value(u.Jy * u.km / u.s) * inside)
    continuum = result.truth["continuum_flux"].to_value(u.Jy).sum() * sky.shape[0] * dv
    assert sky.sum() * dv == pytest.approx(line + continuum, rel=0.02)


def test_write_and_read_back(result, tmp_path):
    paths = result.write(tmp_path, "cube", psf=True)
    dirty = SpectralCube.read(paths["dirty"])
    assert dirty.unit == u.Jy / u.beam
    beams = dirty.beams if hasattr(dirty, "beams") else [dirty.beam]
    assert beams[0].major > 0 * u.arcsec
    assert dirty.header["RESTFRQ"] > 0
    assert dirty.wcs.wcs.ctype[2] == "FREQ"
    np.testing.assert_allclose(dirty.unmasked_data[:].value, result.dirty.unmasked_data[:].value)
    sky = SpectralCube.read(paths["sky"])
    assert sky.unit == u.Jy / u.pix
    truth = QTable.read(paths["truth"])
    assert truth["flux"].unit == u.Jy * u.km / u.s
    np.testing.assert_allclose(truth["sky_centroid"].ra.deg, result.truth["sky_centroid"].ra.deg)
    with pytest.raises(FileExistsError, match="output exists"):
        result.write(tmp_path, "cube")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cube_dirty.fits",
        "cube_psf.fits",
        "cube_sky.fits",
        "cube_truth.ecsv",
    ]


def test_overwrite_removes_an_earlier_psf(result, tmp_path):
    # `--psf auto` takes NAME_psf.fits: one left by an earlier simulation under the name would
    # be used for this one's cube (a C-3 PSF for a C-4 cube halved the fluxes).
    result.write(tmp_path, "cube", psf=True)
    for kind in ("dirty", "sky"):
        (tmp_path / f"cube_{kind}.fits").unlink()
    (tmp_path / "cube_truth.ecsv").unlink()
    with pytest.raises(FileExistsError, match="cube_psf.fits"):
        result.write(tmp_path, "cube")  # without overwrite, the PSF counts as an output
    result.write(tmp_path, "cube", overwrite=True)
    expected = ["cube_dirty.fits", "cube_sky.fits", "cube_truth.ecsv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == expected


def test_write_primary_beam(result, tmp_path):
    from dataclasses import replace

    from astropy.io import fits

    assert result.primary_beam is None  # the fast engine applies none by default
    assert "pb" not in result.write(tmp_path / "none", "cube", pb=True)
    gain = np.linspace(0.2, 1.0, result.psf.size, dtype=np.float32).reshape(result.psf.shape)
    paths = replace(result, primary_beam=gain).write(tmp_path / "pb", "cube", pb=True)
    np.testing.assert_array_equal(fits.getdata(paths["pb"]), gain)


def test_same_seed_same_cube(small_interferometer):
    a = simulate(interferometer=small_interferometer, seed=5)
    b = simulate(interferometer=small_interferometer, seed=5)
    c = simulate(interferometer=small_interferometer, seed=6)
    np.testing.assert_array_equal(a.dirty.unmasked_data[:].value, b.dirty.unmasked_data[:].value)
    assert len(a.truth) == len(b.truth) and np.all(a.truth["flux"] == b.truth["flux"])
    assert not np.array_equal(a.dirty.unmasked_data[:].value, c.dirty.unmasked_data[:].value)


@pytest.mark.parametrize("seed", [-1, [3, -1], 1.5, True, [1, 2.5], "7"])
def test_bad_seed_is_refused(small_interferometer, seed):
    # numpy's SeedSequence refuses some with a bare ValueError or TypeError, and takes True.
    with pytest.raises(InvalidInputError, match="^seed must be a non-negative integer or a sequence of them"):
        simulate(interferometer=small_interferometer, seed=seed)


@pytest.mark.filterwarnings("ignore:the 'wide' recipe draws line FWHMs")
def test_numpy_integer_seeds_are_plain_ints_in_the_truth(small_interferometer):
    a = simulate(interferometer=small_interferometer, seed=[np.int64(5), 1])
    b = simulate(interferometer=small_interferometer, seed=(5, 1))
    np.testing.assert_array_equal(a.dirty.unmasked_data[:].value, b.dirty.unmasked_data[:].value)
    assert a.truth.meta["seed"] == [5, 1] and all(type(s) is int for s in a.truth.meta["seed"])


def test_requested_snr_is_met_in_the_dirty_cube(small_interferometer):
    # A bright point source at S/N 40: the noise-free dirty peak / noise equals the truth snr.
    alma = small_interferometer
    obs = alma.observation
    table = random_catalog(
        np.random.default_rng(0),
        shape=(obs.n_channels, obs.npix, obs.npix),
        cell=alma.cell,
        beam=alma.beam,
        noise_rms=alma.noise_rms[8],
        channel_velocity_width=obs.channel_velocity_width,
        n_sources=1,
        snr_range=(40, 40),
    )
    table["fwhm_major"] = table["fwhm_minor"] = [0.0] * u.arcsec
    table["x_centroid"], table["y_centroid"] = [32.0] * u.pix, [32.0] * u.pix
    table["continuum_flux"] = [0.0] * u.Jy
    quiet = simulate(obs.replace(noise=False), table, seed=0)
    peak = quiet.dirty.unmasked_data[:].value.max()
    assert peak / alma.noise_rms.mean().value == pytest.approx(40, rel=0.03)
    assert quiet.truth["snr"][0] == pytest.approx(40, rel=1e-6)


@pytest.mark.parametrize("recipe", ["wide", "paper"])
def test_catalogue_recipes(small_interferometer, recipe):
    alma = small_interferometer
    obs = alma.observation
    kwargs = dict(
        shape=(obs.n_channels, obs.npix, obs.npix),
        cell=alma.cell,
        beam=alma.beam,
        noise_rms=alma.noise_rms[8],
        channel_velocity_width=obs.channel_velocity_width,
        recipe=recipe,
    )
    tables = [random_catalog(np.random.default_rng(s), **kwargs) for s in range(40)]
    snr = np.concatenate([t["snr"] for t in tables])
    width = np.concatenate([t["line_width"].value for t in tables]) / obs.channel_velocity_width.value
    if recipe == "wide":
        assert snr.min() >= 2 - 1e-6 and snr.max() <= 50 + 1e-6
        assert np.percentile(snr, 10) < 4 and np.percentile(snr, 90) > 20
        assert width.min() >= 3 and width.max() <= 20
        sizes = np.concatenate([t["fwhm_major"] for t in tables]) / alma.beam.major
        assert np.mean(sizes == 0) > 0.1 and sizes.max() > 2
        assert any(np.any(t["continuum_flux"] > 0) for t in tables)
    else:
        for t in tables:
            assert 3 <= len(t) <= 6
            assert t["snr"][0] >= 20
            sep = np.hypot(t["x_centroid"][2] - t["x_centroid"][1], t["y_centroid"][2] - t["y_centroid"][1])
            assert sep.value <= 1.5 * (alma.beam.major / alma.cell).to_value(u.one) + 1e-6
            if len(t) >= 4:
                assert t["x_centroid"][3] == t["x_centroid"][0]
                assert abs(t["z_centroid"][3] - t["z_centroid"][0]) > 1


def _line_width_warnings(record):
    return [w for w in record if issubclass(w.category, DeepFocusWarning) and "line FWHMs" in str(w.message)]


def test_lines_wider_than_half_the_band_warn_once(small_interferometer):
    # The wide recipe's FWHMs reach 20 channels: more than half of the 16-channel test band.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        simulate(interferometer=small_interferometer, seed=1, n_sources=2)
    (warning,) = _line_width_warnings(record)
    message = str(warning.message)
    span = 16 * small_interferometer.observation.channel_velocity_width.to_value(u.km / u.s)
    assert "'wide' recipe draws line FWHMs up to 20 channels" in message
    assert f"velocity span of {span:.4g} km/s (16 channels" in message
    assert "flux and line_width" in message and "at least 40 channels (n_channels, --channels)" in message
    assert warning.filename == __file__  # points at the call of simulate


def _one_source(line_width):
    return QTable(
        {
            "x_centroid": [32.0] * u.pix,
            "y_centroid": [32.0] * u.pix,
            "z_centroid": [7.5] * u.one,
            "fwhm_major": [0.0] * u.arcsec,
            "fwhm_minor": [0.0] * u.arcsec,
            "position_angle": [0.0] * u.deg,
            "line_width": [line_width] * u.km / u.s,
            "flux": [1.0] * u.Jy * u.km / u.s,
        }
    )


def test_catalogue_lines_wider_than_half_the_band_warn(small_interferometer):
    dv = small_interferometer.observation.channel_velocity_width.to_value(u.km / u.s)
    with pytest.warns(DeepFocusWarning, match=r"the catalogue has line FWHMs up to 900 km/s") as record:
        simulate(interferometer=small_interferometer, catalog=_one_source(900.0))
    assert f"at least {int(np.ceil(2 * 900 / dv))} channels (n_channels)" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepFocusWarning)
        simulate(interferometer=small_interferometer, catalog=_one_source(7 * dv))  # 7 of 16 channels


@pytest.mark.parametrize("recipe", ["wide", "paper"])
def test_default_band_holds_the_recipes_lines(recipe):
    # 64 channels: the widest lines (20 channels in 'wide') stay under half the band.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepFocusWarning)
        assert not warn_line_widths(Observation(), recipe=recipe)
        # The bound: 2 FWHM channels hold the widest line, one fewer does not.
        widest = {"wide": 20, "paper": 12}[recipe]
        assert not warn_line_widths(Observation(n_channels=2 * widest), recipe=recipe)
    with pytest.warns(DeepFocusWarning, match=f"at least {2 * widest} channels"):
        assert warn_line_widths(Observation(n_channels=2 * widest - 1), recipe=recipe)
