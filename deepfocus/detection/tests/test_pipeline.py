"""`DeepFocus`, `CubeDetector` and `SourceCharacterizer` on whole cubes: the public contract."""

import os
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from deepfocus import CubeDetector, DeepFocus, SourceCharacterizer, __version__
from deepfocus.evaluation import evaluate, matched_table
from deepfocus.exceptions import InvalidInputError, NoDetectionsWarning
from deepfocus.io import validate_catalog
from deepfocus.io.cube import read_cube

from . import helpers

#: DESIGN section 4: column -> unit (None: a plain number column).
CONTRACT = {
    "id": None,
    "x_centroid": u.pix,
    "y_centroid": u.pix,
    "z_centroid": None,
    "sky_centroid": "SkyCoord",
    "spectral_centroid": u.GHz,
    "z_min": None,
    "z_max": None,
    "fwhm_major": u.arcsec,
    "fwhm_minor": u.arcsec,
    "position_angle": u.deg,
    "line_width": u.km / u.s,
    "flux": u.Jy * u.km / u.s,
    "continuum_flux": u.Jy,
    "snr": None,
    "flags": None,
}


def _measured_finite(catalog):
    for name in ("x_centroid", "y_centroid", "z_centroid", "fwhm_major", "fwhm_minor", "position_angle"):
        assert np.all(np.isfinite(np.asarray(catalog[name]))), name
    for name in ("spectral_centroid", "line_width", "flux", "continuum_flux", "snr"):
        assert np.all(np.isfinite(np.asarray(catalog[name]))), name
    assert np.all(np.isfinite(catalog["sky_centroid"].ra.deg))
    assert np.all(np.isfinite(catalog["sky_centroid"].dec.deg))


# -- the contract ------------------------------------------------------------------------------


def test_catalog_columns_and_units(classical_catalog):
    catalog = classical_catalog
    assert catalog.colnames[: len(CONTRACT)] == list(CONTRACT)
    validate_catalog(catalog)
    for name, unit in CONTRACT.items():
        column = catalog[name]
        if unit == "SkyCoord":
            assert isinstance(column, SkyCoord)
            assert column.frame.name == "icrs"
        elif unit is None:
            assert getattr(column, "unit", None) in (None, u.dimensionless_unscaled), name
        else:
            assert column.unit == unit, name
    assert list(catalog["id"]) == list(range(1, len(catalog) + 1))
    assert catalog["z_centroid"].dtype.kind == "f"
    for name in ("id", "z_min", "z_max", "flags"):
        assert catalog[name].dtype.kind == "i", name
    assert np.all(catalog["z_min"] <= catalog["z_centroid"])
    assert np.all(catalog["z_centroid"] <= catalog["z_max"])
    assert np.all(catalog["z_min"] >= 0) and np.all(catalog["z_max"] < helpers.N_CHANNELS)
    pa = catalog["position_angle"].to_value(u.deg)
    assert np.all((pa >= 0) & (pa < 180))
    assert np.all(catalog["fwhm_minor"] <= catalog["fwhm_major"])
    assert np.all(catalog["line_width"] > 0) and np.all(catalog["flux"] > 0)
    assert np.all(catalog["continuum_flux"] >= 0)
    _measured_finite(catalog)


def test_catalog_meta(classical_catalog):
    meta = classical_catalog.meta
    assert meta["version"] == __version__
    assert meta["date"][:2] == "20" and "T" in meta["date"]
    assert meta["parameters"]["snr_threshold"] == 6.0
    assert set(meta["models"]) == {"spectral", "deconvolver", "characterizer"}
    assert meta["models"]["spectral"] is None and meta["models"]["deconvolver"] is None
    assert meta["models"]["characterizer"] == {"name": "gaussian fit"}
    assert meta["velocity_convention"] == "radio"
    assert meta["beam_major_arcsec"] >= meta["beam_minor_arcsec"] > 0


def test_spectral_and_sky_columns_agree_with_the_wcs(classical_catalog, bright_files):
    cube = read_cube(bright_files["dirty"])
    catalog = classical_catalog
    expected = cube.channel_to_frequency(np.asarray(catalog["z_centroid"]))
    assert np.allclose(catalog["spectral_centroid"].to_value(u.GHz), expected.to_value(u.GHz), atol=1e-9)
    sky = cube.pixel_to_world(catalog["x_centroid"].value, catalog["y_centroid"].value)
    assert np.all(sky.separation(catalog["sky_centroid"]) < 1 * u.mas)


def test_bright_isolated_sources_are_found_and_measured(classical_catalog, bright_sim):
    truth, catalog = bright_sim.truth, classical_catalog
    metrics = evaluate(truth, catalog)
    assert metrics["completeness"] == 1.0
    assert metrics["purity"] == 1.0
    matched = matched_table(truth, catalog)
    assert len(matched) == len(truth) == len(catalog)
    assert np.all(matched["separation"].to_value(u.pix) < 0.3)
    assert np.all(np.abs(matched["z_offset"]) < 1.0)
    flux_ratio = (matched["det_flux"] / matched["true_flux"]).to_value(u.one)
    assert np.all(np.abs(flux_ratio - 1) < 0.2), flux_ratio
    width_ratio = (matched["det_line_width"] / matched["true_line_width"]).to_value(u.one)
    assert np.all(np.abs(width_ratio - 1) < 0.25), width_ratio
    # Sources without a continuum get exactly 0; the one with 3 mJy gets it within 25 %.
    continuum = matched["det_continuum_flux"].to_value(u.mJy)
    has_continuum = matched["true_continuum_flux"] > 0
    assert np.all(continuum[~has_continuum] == 0)
    assert np.allclose(continuum[has_continuum], 3.0, rtol=0.25)
    # Point sources come out unresolved (flag 8, sizes 0), resolved ones with their PA.
    point = matched["true_fwhm_major"] == 0
    assert np.all(matched["det_fwhm_major"][point] == 0)
    assert np.all(matched["det_flags"][point] & 8)
    resolved = ~point & (matched["true_fwhm_major"] > matched["true_fwhm_minor"] * 1.5)
    assert resolved.sum() >= 2
    dpa = (matched["det_position_angle"] - matched["true_position_angle"]).to_value(u.deg)
    dpa = (dpa + 90) % 180 - 90
    assert np.all(np.abs(dpa[resolved]) < 15), dpa[resolved]
    size_ratio = (matched["det_fwhm_major"][resolved] / matched["true_fwhm_major"][resolved]).to_value(u.one)
    assert np.all(np.abs(size_ratio - 1) < 0.3), size_ratio


def test_detector_alone_gives_position_and_spectral_columns(bright_files, classical_catalog):
    detected = CubeDetector(model=None)(bright_files["dirty"])
    assert len(detected) == len(classical_catalog)
    for name in ("id", "x_centroid", "y_centroid", "z_centroid", "sky_centroid", "spectral_centroid"):
        assert name in detected.colnames
    for name in ("z_min", "z_max", "line_width", "snr", "flags"):
        assert name in detected.colnames
    assert "flux" not in detected.colnames and "fwhm_major" not in detected.colnames
    # The characterizer fills the rest and keeps the spectral columns.
    measured = SourceCharacterizer(model=None)(bright_files["dirty"], detected)
    assert measured.colnames[: len(CONTRACT)] == list(CONTRACT)
    assert np.array_equal(measured["z_centroid"], detected["z_centroid"])
    assert np.array_equal(measured["line_width"], detected["line_width"])
    assert len(detected) == len(measured)
    assert "characterizer" not in detected.meta["models"]  # the input catalogue is not modified


def test_spectral_cube_and_path_inputs_agree(bright_sim, bright_files, classical_catalog):
    from_cube = DeepFocus(model=None)(bright_sim.dirty)
    assert from_cube.meta["source"] == "in-memory cube"
    assert classical_catalog.meta["source"] == str(bright_files["dirty"])
    for name in ("x_centroid", "y_centroid", "z_centroid", "flux"):
        assert np.allclose(np.asarray(from_cube[name]), np.asarray(classical_catalog[name]), rtol=1e-5)


# -- CASA cubes --------------------------------------------------------------------------------


def test_casa_style_cube_runs_unchanged(casa_file, classical_catalog, bright_sim):
    header = fits.getheader(casa_file)
    assert header["NAXIS"] == 4 and header["CDELT3"] < 0
    data = fits.getdata(casa_file)
    assert 0.25 < np.isnan(data).mean() < 0.35
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean CASA cube gives no warning (no All-NaN slice ...)
        catalog = DeepFocus(model=None)(casa_file)
    validate_catalog(catalog)
    ascending = classical_catalog
    assert len(catalog) == len(ascending)
    # Same sources: pair them by position.
    d = np.hypot(
        catalog["x_centroid"].value[:, None] - ascending["x_centroid"].value[None],
        catalog["y_centroid"].value[:, None] - ascending["y_centroid"].value[None],
    )
    pair = d.argmin(axis=1)
    assert sorted(pair) == list(range(len(ascending)))
    assert np.all(d.min(axis=1) < 0.1)
    n = helpers.N_CHANNELS
    # Channels count in the input's (descending) order.
    assert np.all(np.abs(catalog["z_centroid"] - (n - 1 - ascending["z_centroid"][pair])) < 1)
    assert np.all(np.abs(catalog["z_min"] - (n - 1 - ascending["z_max"][pair])) <= 1)
    assert np.all(np.abs(catalog["z_max"] - (n - 1 - ascending["z_min"][pair])) <= 1)
    assert np.all(catalog["z_min"] <= catalog["z_max"])
    # The line frequency is the same: the WCS of the descending cube gives it at z_centroid.
    dz = np.abs(catalog["spectral_centroid"] - ascending["spectral_centroid"][pair])
    assert np.all(dz < 15.625 * u.MHz)
    flux_ratio = (catalog["flux"] / ascending["flux"][pair]).to_value(u.one)
    assert np.all(np.abs(flux_ratio - 1) < 0.1), flux_ratio  # beams differ by < 3 % (BEAMS table)
    truth = bright_sim.truth.copy()  # in the descending cube's channels
    truth["z_centroid"] = n - 1 - truth["z_centroid"]
    truth["z_min"], truth["z_max"] = n - 1 - truth["z_max"], n - 1 - truth["z_min"]
    metrics = evaluate(truth, catalog)
    assert metrics["completeness"] == 1.0 and metrics["purity"] == 1.0
    # Sources whose 32-pixel cutout reaches the NaN border are flagged as near an edge (1).
    blank = np.isnan(data[0, 0])
    for row in catalog:
        x, y = int(round(row["x_centroid"].value)), int(round(row["y_centroid"].value))
        assert bool(row["flags"] & 1) == bool(blank[max(0, y - 16) : y + 16, max(0, x - 16) : x + 16].any())
    assert 0 < np.count_nonzero(catalog["flags"] & 1) < len(catalog)
    assert not np.any(ascending["flags"] & 1)


def test_input_file_is_unchanged(casa_file):
    before = casa_file.read_bytes()
    mtime = os.stat(casa_file).st_mtime_ns
    DeepFocus(model=None)(casa_file)
    CubeDetector(model=None)(casa_file, mask=np.zeros((helpers.NPIX, helpers.NPIX), bool))
    assert casa_file.read_bytes() == before
    assert os.stat(casa_file).st_mtime_ns == mtime


# -- lines ---------------------------------------------------------------------------------------


def test_two_lines_at_one_position_are_two_sources():
    rows = (
        (40.3, 50.6, 13.0, 0.0, 0.0, 0.0, 6.0, 20.0, 0.0),
        (40.3, 50.6, 33.0, 0.0, 0.0, 0.0, 6.0, 12.0, 0.0),
    )
    sim = helpers.simulation(rows, seed=2)
    catalog = DeepFocus(model=None)(sim.dirty)
    assert len(catalog) == 2
    assert np.allclose(catalog["x_centroid"].value, 40.3, atol=0.3)
    assert np.allclose(catalog["y_centroid"].value, 50.6, atol=0.3)
    assert np.allclose(sorted(catalog["z_centroid"]), [13.0, 33.0], atol=0.5)
    lower, upper = np.argsort(catalog["z_centroid"])
    assert catalog["z_max"][lower] < catalog["z_min"][upper]  # the lines do not overlap
    metrics = evaluate(sim.truth, catalog)
    assert metrics["completeness"] == 1.0 and metrics["purity"] == 1.0
    # The brighter line is the brighter source.
    assert catalog["snr"][lower] > catalog["snr"][upper]
    assert catalog["flux"][lower] > catalog["flux"][upper]


def test_each_of_two_lines_at_one_position_has_its_own_width_and_snr():
    # The example cube's bright line (S/N 31, channel 28) lies 20 channels from a fainter one
    # (S/N 9, channel 8) at the same position. The network finds both; fitted over twice the
    # run's length, the fainter line's fit reached the bright one and took its width and S/N.
    from importlib import resources

    from astropy.table import QTable

    data = resources.files("deepfocus.data")
    truth = QTable.read(data / "example_truth.ecsv")
    catalog = DeepFocus()(str(data / "example_dirty.fits"), psf=str(data / "example_psf.fits"))
    pairs = matched_table(truth, catalog)
    assert set(pairs["true_id"]) >= set(truth["id"][truth["snr"] >= 5])  # the S/N 3 one aside
    pair = pairs[
        np.hypot(pairs["true_x_centroid"].value - 48.96, pairs["true_y_centroid"].value - 47.72) < 0.5
    ]
    assert len(pair) == 2
    width = (pair["det_line_width"] / pair["true_line_width"]).to_value(u.one)
    snr = np.asarray(pair["det_snr"] / pair["true_snr"])
    assert np.all(np.abs(width - 1) < 0.15), width
    assert np.all(np.abs(snr - 1) < 0.2), snr


def test_blank_channels_at_the_band_edge_cut_the_line_window(tmp_path):
    # Channels 0-7 blank (as a cube cut to an atmospheric window is): the line at channel 9
    # ends at the first channel with data and is flagged as cut off; the other line is not.
    rows = (
        (30.0, 40.0, 9.0, 0.0, 0.0, 0.0, 6.0, 20.0, 0.0),
        (60.0, 50.0, 30.0, 0.0, 0.0, 0.0, 5.0, 20.0, 0.0),
    )
    sim = helpers.simulation(rows, seed=5)
    path = helpers.write_simulation(sim, tmp_path)["dirty"]
    with fits.open(path, mode="update") as hdul:
        hdul[0].data[:8] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        catalog = DeepFocus(model=None)(path)
    assert len(catalog) == 2
    cut, whole = np.argsort(catalog["z_centroid"])
    assert catalog["z_min"][cut] == 8 and catalog["flags"][cut] & 4
    assert not catalog["flags"][whole] & 4


def test_a_faint_line_at_the_position_of_a_bright_broad_one_is_found():
    # The bright line (peak S/N 40, FWHM 14 of 48 channels) must not raise the pixel's
    # continuum: taken off every channel, that ate the faint line (matched-filter S/N 7.5 now;
    # below the threshold of 6, and not found, with the continuum the bright line biased).
    rows = (
        (48.3, 47.6, 16.0, 0.0, 0.0, 0.0, 14.0, 40.0, 0.0),
        (48.3, 47.6, 38.0, 0.0, 0.0, 0.0, 3.0, 5.0, 0.0),
    )
    sim = helpers.simulation(rows, seed=3)
    catalog = CubeDetector(model=None)(sim.dirty)
    assert len(catalog) == 2
    np.testing.assert_allclose(sorted(catalog["z_centroid"]), [16.0, 38.0], atol=0.6)
    assert np.allclose(catalog["x_centroid"].value, 48.3, atol=0.5)


@pytest.mark.parametrize("width", [4.0, 8.0, 16.0])
def test_a_bright_line_s_width_is_not_broadened_by_its_own_sidelobes(width):
    # A line of peak S/N 40: its sidelobes fill the image in its channels and raise the noise
    # measured there by about 20 % at the peak, which flattens the S/N spectrum; fitted in
    # S/N units its FWHM came out 4-8 % too wide, fitted in flux units within 3 %.
    rows = ((48.0, 48.0, 24.0, 0.0, 0.0, 0.0, width, 40.0, 0.0),)
    ratios = []
    for seed in (1, 2, 3):
        sim = helpers.simulation(rows, seed=seed)
        catalog = CubeDetector(6.0, model=None)(sim.dirty)
        brightest = int(np.argmax(catalog["filter_snr"]))
        ratios.append((catalog["line_width"][brightest] / sim.truth["line_width"][0]).to_value(u.one))
    assert np.all(np.abs(np.array(ratios) - 1) < 0.035), ratios
    assert abs(np.mean(ratios) - 1) < 0.02, ratios


@pytest.mark.parametrize("model", [None, "default"])
def test_blended_pair_is_two_sources(model):
    # A fainter source 0.8 beam from a brighter one, its line 9 channels away: the wide filters
    # of the bright line cover it (no peak of its own in the best S/N over widths).
    rows = (
        (40.0, 48.0, 28.0, 0.0, 0.0, 0.0, 10.0, 10.0, 0.0),
        (44.0, 45.5, 19.0, 0.0, 0.0, 0.0, 6.0, 8.5, 0.0),
    )
    sim = helpers.simulation(rows, seed=1)
    catalog = DeepFocus(model=model)(sim.dirty)
    metrics = evaluate(sim.truth, catalog)
    assert metrics["n_matched"] == 2 and metrics["purity"] == 1.0


def test_blended_pair_with_overlapping_lines_is_two_sources():
    # Half a beam apart, lines 8.5 channels (1.25 FWHMs) apart: the spectral network marks both
    # lines as one run with no valley; the candidate stage keeps both peaks, and the shared run
    # is cut between them (before, the fainter source's line was dropped as a repeat).
    beam = 5.0  # pixels
    rows = (
        (40.0, 48.0, 20.0, 0.0, 0.0, 0.0, 6.8, 12.8, 0.0),
        (40.0 + 0.4 * beam, 48.0 + 0.3 * beam, 28.5, 0.0, 0.0, 0.0, 6.8, 8.2, 0.0),
    )
    sim = helpers.simulation(rows, seed=5)
    catalog = DeepFocus()(sim.dirty)
    metrics = evaluate(sim.truth, catalog)
    assert metrics["n_matched"] == 2 and metrics["purity"] == 1.0
    # Each line within 1.5 channels (a quarter of its FWHM): the cut takes from each piece the
    # wing towards the other line, which moves its centre away a little.
    np.testing.assert_allclose(sorted(catalog["z_centroid"]), [20.0, 28.5], atol=1.5)


# -- nothing found -----------------------------------------------------------------------------


def test_pure_noise_gives_none_and_a_warning():
    sim = helpers.simulation((), seed=5)
    for finder in (DeepFocus(50, model=None), CubeDetector(50, model=None)):
        with pytest.warns(NoDetectionsWarning, match="no sources detected"):
            assert finder(sim.dirty) is None


def test_characterizer_refuses_an_empty_catalog(bright_files):
    with pytest.raises(InvalidInputError, match="empty"):
        SourceCharacterizer(model=None)(bright_files["dirty"], None)


# -- determinism -------------------------------------------------------------------------------


def test_same_cube_same_catalog(casa_file, classical_catalog, bright_files):
    helpers.assert_same_catalog(DeepFocus(model=None)(bright_files["dirty"]), classical_catalog)
    helpers.assert_same_catalog(DeepFocus(model=None)(casa_file), DeepFocus(model=None)(casa_file))


def test_same_cube_same_catalog_with_networks(bright_files, tiny_weights):
    first = DeepFocus(model=tiny_weights)(bright_files["dirty"])
    second = DeepFocus(model=tiny_weights)(bright_files["dirty"])
    assert first is not None
    helpers.assert_same_catalog(first, second)


# -- the networks --------------------------------------------------------------------------------


def test_network_path_end_to_end(bright_files, casa_file, tiny_weights):
    for cube in (bright_files["dirty"], casa_file):
        catalog = DeepFocus(model=tiny_weights)(cube)
        assert catalog is not None and len(catalog) >= 1
        validate_catalog(catalog)
        _measured_finite(catalog)
        pa = catalog["position_angle"].to_value(u.deg)
        assert np.all((pa >= 0) & (pa < 180))
        assert np.all(catalog["flux"] > 0)
        assert np.all(
            (catalog["z_min"] <= catalog["z_centroid"]) & (catalog["z_centroid"] <= catalog["z_max"])
        )
    models = catalog.meta["models"]
    for task in ("spectral", "deconvolver", "characterizer"):
        assert models[task]["name"].endswith(f"{task}-default.safetensors")
        assert len(models[task]["sha256"]) == 64


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="spectral-default"):
        CubeDetector(model=tmp_path)  # a folder without weights


def test_psf_file_is_accepted(bright_sim, classical_catalog, tmp_path):
    paths = bright_sim.write(tmp_path, "p", psf=True)
    catalog = DeepFocus(model=None)(paths["dirty"], psf=paths["psf"])
    metrics = evaluate(bright_sim.truth, catalog)
    assert metrics["completeness"] == 1.0 and metrics["purity"] == 1.0
    # Without the forward model the PSF serves the sidelobe test only; with it (the default),
    # it is the kernel of the characterizer's fits and the fluxes change.
    plain = DeepFocus(model=None, forward_fit=None)(paths["dirty"], psf=paths["psf"])
    assert np.allclose(plain["flux"].value, classical_catalog["flux"].value, rtol=1e-6)
    assert not np.allclose(catalog["flux"].value, classical_catalog["flux"].value, rtol=1e-3)
    with pytest.raises(InvalidInputError, match="PSF"):
        DeepFocus(model=None)(paths["dirty"], psf=np.ones((3, 8, 8)))  # 3 channels, not 48


@pytest.mark.parametrize("forward_fit", ["auto", "beam"])  # 'beam': the fits among neighbours too
def test_position_angles_of_a_galactic_cube_are_east_of_icrs_north(tmp_path, forward_fit):
    # The example cube's data on a galactic grid: every measurement on the grid is the same, and
    # the angles are turned from galactic north (up on the grid) to ICRS north, as sky_centroid
    # is ICRS. Before, they were galactic angles (up to 63 deg off here) next to ICRS positions.
    from importlib import resources

    from astropy.coordinates import SkyCoord

    example = resources.files("deepfocus.data") / "example_dirty.fits"
    with fits.open(example) as hdul:
        header = hdul[0].header
        centre = SkyCoord(header["CRVAL1"] * u.deg, header["CRVAL2"] * u.deg, frame="icrs").galactic
        header.update(CTYPE1="GLON-SIN", CTYPE2="GLAT-SIN", CRVAL1=centre.l.deg, CRVAL2=centre.b.deg)
        for key in ("RADESYS", "EQUINOX"):
            header.remove(key, ignore_missing=True)
        hdul.writeto(tmp_path / "galactic.fits")
    equatorial = DeepFocus(forward_fit=forward_fit)(str(example))
    galactic = DeepFocus(forward_fit=forward_fit)(str(tmp_path / "galactic.fits"))
    assert len(galactic) == len(equatorial)
    resolved = np.asarray(equatorial["fwhm_major"] > 0)
    assert resolved.sum() >= 3
    sky = galactic["sky_centroid"].galactic
    north = sky.icrs.position_angle(SkyCoord(sky.l, sky.b + 1 * u.arcsec, frame="galactic").icrs)
    expected = (equatorial["position_angle"] + north) % (180 * u.deg)
    difference = (galactic["position_angle"] - expected + 90 * u.deg) % (180 * u.deg) - 90 * u.deg
    assert np.all(np.abs(difference[resolved]) < 0.05 * u.deg), difference
    assert np.all(np.abs(north - 0 * u.deg) > 10 * u.deg)  # a test that could fail


@pytest.mark.parametrize(("fwhm_channels", "fills"), [(8, False), (14, True)])
def test_a_line_that_fills_the_band_is_flagged(fwhm_channels, fills):
    # A bright line of FWHM 14 channels in a 32-channel band leaves no channel free of its wings
    # for the continuum under it: measured, it lost 0.44 of its flux. It is flagged as cut off by
    # the band's edges (4); one of 8 channels (10.3 is the limit at the band's centre) is not.
    from astropy.table import QTable

    from deepfocus.simulation import Interferometer, Observation, simulate

    obs = Observation(npix=64, n_channels=32)
    catalog = QTable(
        {
            "x_centroid": [32.0] * u.pix,
            "y_centroid": [32.0] * u.pix,
            "z_centroid": [15.5],
            "fwhm_major": [0.0] * u.arcsec,
            "fwhm_minor": [0.0] * u.arcsec,
            "position_angle": [0.0] * u.deg,
            "line_width": [fwhm_channels] * obs.channel_velocity_width,
            "flux": [5.0] * u.Jy * u.km / u.s,
            "continuum_flux": [0.0] * u.Jy,
        }
    )
    sim = simulate(interferometer=Interferometer(obs), catalog=catalog, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = CubeDetector()(sim.dirty, psf=sim.psf)
    brightest = np.argmax(found["filter_snr"])
    assert found["z_min"][brightest] > 0 and found["z_max"][brightest] < 31  # the window alone: not cut
    assert bool(found["flags"][brightest] & 4) == fills
