"""Training samples: shapes, units (flux scale kept), masks and characterizer targets."""

import dataclasses

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable

from deepfocus.exceptions import InvalidInputError
from deepfocus.simulation import Interferometer
from deepfocus.simulation.simulate import simulate
from deepfocus.training import samples as S
from deepfocus.training.data import (
    TASKS,
    read_cube_triplets,
    simulate_cubes,
    task_arrays,
    training_observations,
)

from .conftest import SMALL_OBSERVATION


def _near_radius(sim):
    return max(1.5, 0.5 * sim.beam_major_pix)


def _locate(sim, spectrum):
    """The (x, y) pixel whose dirty spectrum / noise is ``spectrum``."""
    norm = sim.dirty / sim.noise[:, None, None]
    match = np.all(np.isclose(norm, spectrum[:, None, None], rtol=1e-6, atol=1e-6), axis=0)
    ys, xs = np.nonzero(match)
    assert len(xs) == 1
    return int(xs[0]), int(ys[0])


def test_simulation_arrays(small_sims):
    for sim in small_sims:
        n_chan, ny, nx = sim.dirty.shape
        assert (n_chan, ny, nx) == (32, 64, 64)
        assert sim.sky.shape == sim.signal.shape == sim.dirty.shape
        assert sim.noise.shape == (n_chan,) and np.all(sim.noise > 0)
        assert len(sim.truth) >= 1
        assert 3 < sim.beam_major_pix < 8 and sim.dv > 0 and sim.cell_arcsec > 0
        assert np.all(np.isfinite(sim.signal))


def test_deconvolver_sample_keeps_flux_scale(small_sims):
    for sim in small_sims:
        x, y = S.deconvolver_sample(sim)
        assert x.shape == y.shape == (1, 64, 64)
        assert x.dtype == y.dtype == np.float32
        image, sigma = S.moment0(sim.dirty, sim.noise, sim.dv)
        assert sigma == pytest.approx(np.sqrt(np.sum(sim.noise.astype(float) ** 2)) * sim.dv, rel=1e-6)
        np.testing.assert_allclose(x[0] * sigma, image, rtol=1e-5, atol=1e-5 * np.abs(image).max())
        # target x noise = the sky's moment-0 (Jy/pixel km/s): the flux scale is kept.
        sky_total = float(sim.sky.astype(float).sum()) * sim.dv
        assert float(y.astype(float).sum()) * sigma == pytest.approx(sky_total, rel=1e-4)
        assert sky_total > 0


def test_spectral_masks_at_sources_and_background(small_sims):
    rng = np.random.default_rng(0)
    n_isolated = 0
    for sim in small_sims:
        truth = sim.truth
        xs, ys = truth["x_centroid"].value, truth["y_centroid"].value
        n_src = len(truth)
        x, y = S.spectral_samples(sim, rng, n_background=3, jitter=0)
        n_chan = sim.dirty.shape[0]
        assert x.shape[1:] == (1, n_chan) and y.shape[1:] == (2, n_chan)
        assert len(x) == len(y) and n_src < len(x) <= n_src + 3
        assert x.dtype == y.dtype == np.float32
        channels = np.arange(n_chan)
        for k, row in enumerate(truth):
            px, py = int(round(xs[k])), int(round(ys[k]))
            np.testing.assert_allclose(x[k, 0], sim.dirty[:, py, px] / sim.noise, rtol=1e-6)
            np.testing.assert_allclose(y[k, 1], sim.signal[:, py, px] / sim.noise, rtol=1e-6)
            own = (channels >= row["z_min"]) & (channels <= row["z_max"])
            mask = y[k, 0]
            assert set(np.unique(mask)) <= {0.0, 1.0}
            assert np.all(mask[own] == 1)
            near = np.hypot(xs - px, ys - py) <= _near_radius(sim)
            expected = np.zeros(n_chan, bool)
            for other in truth[near]:
                expected |= (channels >= other["z_min"]) & (channels <= other["z_max"])
            np.testing.assert_array_equal(mask, expected.astype(np.float32))
            if near.sum() == 1:  # isolated: 1 exactly in z_min..z_max
                n_isolated += 1
                np.testing.assert_array_equal(mask, own.astype(np.float32))
        for k in range(n_src, len(x)):  # background spectra: far from every source, no line
            assert np.all(y[k, 0] == 0)
            px, py = _locate(sim, x[k, 0])
            assert np.all(np.hypot(xs - px, ys - py) > 2 * sim.beam_major_pix)
            np.testing.assert_allclose(y[k, 1], sim.signal[:, py, px] / sim.noise, rtol=1e-6)
    assert n_isolated >= 1


def test_spectral_jitter_stays_within_range(small_sims):
    sim = small_sims[0]
    xs, ys = sim.truth["x_centroid"].value, sim.truth["y_centroid"].value
    x, _ = S.spectral_samples(sim, np.random.default_rng(1), n_background=0, jitter=1)
    assert len(x) == len(sim.truth)
    for k in range(len(x)):
        px, py = _locate(sim, x[k, 0])
        assert abs(px - round(xs[k])) <= 1 and abs(py - round(ys[k])) <= 1


def _inside(sim, size):
    half = size // 2
    ny, nx = sim.dirty.shape[1:]
    cx = np.round(sim.truth["x_centroid"].value).astype(int)
    cy = np.round(sim.truth["y_centroid"].value).astype(int)
    return (cx - half >= 0) & (cy - half >= 0) & (cx + half <= nx) & (cy + half <= ny)


def test_characterizer_targets(small_sims):
    size = 16
    for sim in small_sims:
        x, t, sigma = S.characterizer_samples(sim, np.random.default_rng(2), size=size, jitter_channels=0)
        kept = sim.truth[_inside(sim, size)]
        assert len(kept) >= 1
        assert x.shape == (len(kept), 1, size, size) and t.shape == (len(kept), 7)
        assert sigma.shape == (len(kept),) and np.all(sigma > 0)
        assert len(S.CHARACTERIZER_TARGETS) == 7
        dx, dy, major, minor, s2, c2, log_flux = t.T
        assert np.all(np.abs(dx) <= 0.5) and np.all(np.abs(dy) <= 0.5)
        np.testing.assert_allclose(
            dx, kept["x_centroid"].value - np.round(kept["x_centroid"].value), atol=1e-6
        )
        np.testing.assert_allclose(
            dy, kept["y_centroid"].value - np.round(kept["y_centroid"].value), atol=1e-6
        )
        # exp(log_flux) x noise gives the true line flux back.
        flux = kept["flux"].to_value(u.Jy * u.km / u.s)
        np.testing.assert_allclose(np.exp(log_flux.astype(float)) * sigma, flux, rtol=1e-5)
        beam_arcsec = sim.beam_major_pix * sim.cell_arcsec
        np.testing.assert_allclose(major, kept["fwhm_major"].to_value(u.arcsec) / beam_arcsec, rtol=1e-5)
        np.testing.assert_allclose(minor, kept["fwhm_minor"].to_value(u.arcsec) / beam_arcsec, rtol=1e-5)
        assert np.all(minor <= major + 1e-6)
        # Orientation terms: magnitude = ellipticity, zero for point (and round) sources.
        ellipticity = np.where(major > 0, 1 - minor / np.where(major > 0, major, 1), 0)
        np.testing.assert_allclose(np.hypot(s2, c2), ellipticity, atol=1e-6)
        point = kept["fwhm_major"].value == 0
        assert np.all(s2[point] == 0) and np.all(c2[point] == 0)
        # Inputs: the line-integrated cutout (z_min..z_max without jitter) / its noise, centred on
        # the source's nearest pixel, less a continuum where one is significant: the median of
        # the channels outside the lines of the sources within 2 beams, times the line's channels.
        for k, row in enumerate(kept):
            lo, hi = int(row["z_min"]), int(row["z_max"])
            image, expected_sigma = S.moment0(sim.dirty, sim.noise, sim.dv, slice(lo, hi + 1))
            assert sigma[k] == pytest.approx(expected_sigma, rel=1e-6)
            cx, cy = int(round(row["x_centroid"].value)), int(round(row["y_centroid"].value))
            cut = (slice(cy - size // 2, cy + size // 2), slice(cx - size // 2, cx + size // 2))
            near = (
                np.hypot(
                    sim.truth["x_centroid"].value - row["x_centroid"].value,
                    sim.truth["y_centroid"].value - row["y_centroid"].value,
                )
                <= 2 * sim.beam_major_pix
            )
            off = np.ones(sim.dirty.shape[0], bool)
            for first, last in zip(sim.truth["z_min"][near], sim.truth["z_max"][near], strict=True):
                off[first : last + 1] = False
            continuum = np.median(sim.dirty[(off, *cut)], axis=0) * (hi - lo + 1) * sim.dv
            line_only = np.isclose(
                x[k, 0] * sigma[k], image[cut] - continuum, rtol=1e-4, atol=1e-5 * np.abs(image).max()
            )
            if not line_only.all():
                np.testing.assert_allclose(
                    x[k, 0] * sigma[k], image[cut], rtol=1e-5, atol=1e-6 * np.abs(image).max()
                )


def test_characterizer_point_source_and_edges(small_sims):
    sim = small_sims[0]
    truth = sim.truth.copy()
    # Source 0: a point source in the middle; source 1: 3 pixels from the left edge.
    truth["x_centroid"][0] = 32.3 * u.pix
    truth["y_centroid"][0] = 31.6 * u.pix
    truth["fwhm_major"][0] = truth["fwhm_minor"][0] = 0 * u.arcsec
    truth["position_angle"][0] = 37 * u.deg
    if len(truth) > 1:
        truth["x_centroid"][1] = 3.0 * u.pix
    edited = dataclasses.replace(sim, truth=truth)
    x, t, sigma = S.characterizer_samples(edited, np.random.default_rng(0), size=32)
    inside = _inside(edited, 32)
    assert inside[0] and (len(truth) == 1 or not inside[1])
    assert len(x) == inside.sum()
    np.testing.assert_allclose(t[0, :2], [0.3, -0.4], atol=1e-5)
    assert t[0, 2] == t[0, 3] == t[0, 4] == t[0, 5] == 0
    # Channel jitter moves the window, so the noise changes, but exp(log_flux) x noise stays the flux.
    assert np.exp(float(t[0, 6])) * sigma[0] == pytest.approx(float(truth["flux"][0].value), rel=1e-5)
    # Every source at the edge: no samples, arrays of the right shapes.
    truth["x_centroid"] = 2.0 * u.pix
    x, t, sigma = S.characterizer_samples(dataclasses.replace(sim, truth=truth), np.random.default_rng(0))
    assert x.shape == (0, 1, 32, 32) and t.shape == (0, 7) and sigma.shape == (0,)


def test_task_arrays(small_sims):
    arrays = task_arrays(TASKS, small_sims, seed=4)
    assert set(arrays) == set(TASKS)
    assert arrays["deconvolver"]["inputs"].shape == (2, 1, 64, 64)
    assert arrays["spectral"]["inputs"].shape[1:] == (1, 32)
    assert arrays["spectral"]["targets"].shape[1:] == (2, 32)
    char = arrays["characterizer"]
    assert char["inputs"].shape[1:] == (1, 32, 32) and char["targets"].shape[1:] == (7,)
    assert len(char["noise"]) == len(char["inputs"]) == len(char["targets"])
    for task in TASKS:
        assert arrays[task]["inputs"].dtype == np.float32
        assert len(arrays[task]["inputs"]) == len(arrays[task]["targets"])
    # Each task draws its own random stream: the samples of one task do not depend on which
    # other tasks are cut in the same pass (so a single-task run reproduces an 'all' run).
    alone = task_arrays("spectral", small_sims, seed=4)
    np.testing.assert_array_equal(alone["inputs"], arrays["spectral"]["inputs"])
    np.testing.assert_array_equal(alone["targets"], arrays["spectral"]["targets"])
    alone = task_arrays(["characterizer"], small_sims, seed=4)["characterizer"]
    np.testing.assert_array_equal(alone["targets"], char["targets"])
    with pytest.raises(InvalidInputError, match="task must be one of"):
        task_arrays("imager", small_sims, seed=0)
    with pytest.raises(InvalidInputError, match="no cubes"):
        task_arrays("spectral", [], seed=0)


def test_simulations_are_seeded():
    a = next(simulate_cubes(1, seed=8, observations=[SMALL_OBSERVATION], progress=False))
    b = next(simulate_cubes(1, seed=8, observations=[SMALL_OBSERVATION], progress=False))
    c = next(simulate_cubes(1, seed=9, observations=[SMALL_OBSERVATION], progress=False))
    np.testing.assert_array_equal(a.dirty, b.dirty)
    assert not np.array_equal(a.dirty, c.dirty)


def test_training_observations():
    a = training_observations(4, seed=1, npix=64, n_channels=32)
    assert a == training_observations(4, seed=1, npix=64, n_channels=32)
    assert a != training_observations(4, seed=2, npix=64, n_channels=32)
    assert all(o.npix == 64 and o.n_channels == 32 for o in a)
    assert all(4 <= o.pixels_per_beam <= 6 and -70 <= o.dec.to_value(u.deg) <= 20 for o in a)


def test_read_cube_triplets(tmp_path):
    alma = Interferometer(SMALL_OBSERVATION)
    result = simulate(interferometer=alma, seed=[5, 0])
    result.write(tmp_path, "c0")
    (sim,) = read_cube_triplets(tmp_path, progress=False)
    np.testing.assert_array_equal(sim.dirty, result.dirty.unmasked_data[:].value)
    np.testing.assert_array_equal(sim.sky, result.sky.unmasked_data[:].value)
    assert sim.dv == pytest.approx(SMALL_OBSERVATION.channel_velocity_width.to_value(u.km / u.s), rel=1e-6)
    assert sim.cell_arcsec == pytest.approx(alma.cell.to_value(u.arcsec), rel=1e-6)
    assert sim.beam_major_pix == pytest.approx(float(alma.beam.major / alma.cell), rel=1e-4)
    # Robust noise estimate close to the simulator's thermal noise.
    np.testing.assert_allclose(sim.noise, alma.noise_rms.to_value(u.Jy / u.beam), rtol=0.25)
    assert len(sim.truth) == len(result.truth)
    x, y = S.deconvolver_sample(sim)
    assert x.shape == y.shape == (1, 64, 64) and np.all(np.isfinite(x))
    # Missing partner files (only those missing named) and empty folders are clear errors.
    (tmp_path / "c0_truth.ecsv").rename(tmp_path / "c0_truth.bak")
    with pytest.raises(InvalidInputError, match="^c0_dirty.fits has no matching c0_truth.ecsv$"):
        list(read_cube_triplets(tmp_path, progress=False))
    (tmp_path / "c0_truth.bak").rename(tmp_path / "c0_truth.ecsv")
    (tmp_path / "c0_sky.fits").unlink()
    with pytest.raises(InvalidInputError, match="^c0_dirty.fits has no matching c0_sky.fits$"):
        list(read_cube_triplets(tmp_path, progress=False))
    with pytest.raises(InvalidInputError, match="data folder .*nothing does not exist"):
        list(read_cube_triplets(tmp_path / "nothing", progress=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no \\*_dirty.fits"):
        list(read_cube_triplets(tmp_path / "empty", progress=False))


def test_unreadable_or_mismatched_files_are_named(edge_cubes, tmp_path):
    """A file that is not FITS (or ECSV), or a sky cube of another shape than its dirty cube,
    is a one-line error naming the file."""
    import shutil

    def refused(*needles):
        with pytest.raises(InvalidInputError) as error:
            list(read_cube_triplets(tmp_path, progress=False))
        message = str(error.value)
        assert "\n" not in message and all(needle in message for needle in needles), message

    for path in edge_cubes.glob("sim0_*"):
        shutil.copy(path, tmp_path)
    (tmp_path / "sim0_dirty.fits").rename(tmp_path / "sim0_dirty.bak")
    (tmp_path / "sim0_dirty.fits").write_text("not a FITS file")
    refused(f"cannot read {tmp_path / 'sim0_dirty.fits'}: ", "not appear to be a valid FITS file")
    (tmp_path / "sim0_dirty.bak").replace(tmp_path / "sim0_dirty.fits")
    truth = (tmp_path / "sim0_truth.ecsv").read_text()
    (tmp_path / "sim0_truth.ecsv").write_text("x y\n1 2\n")
    refused(f"cannot read {tmp_path / 'sim0_truth.ecsv'}: ", "ECSV")
    (tmp_path / "sim0_truth.ecsv").write_text(truth)
    alma = Interferometer(SMALL_OBSERVATION)
    simulate(interferometer=alma, seed=[5, 0]).write(tmp_path, "big")
    (tmp_path / "big_sky.fits").replace(tmp_path / "sim0_sky.fits")
    (tmp_path / "big_dirty.fits").unlink()
    refused("sim0_sky.fits has 32 channels of 64 x 64 pixels but sim0_dirty.fits 16 channels of 32 x 32")
    shutil.copy(edge_cubes / "sim0_sky.fits", tmp_path)
    original = (tmp_path / "sim0_dirty.fits").read_bytes()
    with fits.open(tmp_path / "sim0_dirty.fits") as hdul:  # no beam: no BMAJ/BMIN, no BEAMS table
        header = hdul[0].header.copy()
        for key in ("BMAJ", "BMIN", "BPA", "CASAMBM"):
            header.remove(key, ignore_missing=True)
        fits.PrimaryHDU(hdul[0].data, header).writeto(tmp_path / "sim0_dirty.fits", overwrite=True)
    refused("sim0_dirty.fits has no beam")
    (tmp_path / "sim0_dirty.fits").write_bytes(original)
    with fits.open(tmp_path / "sim0_dirty.fits", mode="update") as hdul:
        hdul[0].header.remove("RESTFRQ", ignore_missing=True)
        hdul[0].header.remove("RESTFREQ", ignore_missing=True)
    truth = QTable.read(tmp_path / "sim0_truth.ecsv")
    truth.meta.pop("restfreq_hz", None)
    truth.write(tmp_path / "sim0_truth.ecsv", overwrite=True)
    refused("sim0_dirty.fits has no rest frequency: RESTFRQ in its header or restfreq_hz in the meta of")


def test_task_arrays_refuse_cubes_of_different_sizes(small_sims):
    """Samples that cannot be stacked name two cubes and their shapes; the characterizer's
    fixed-size cutouts take cubes of any size."""
    sim = small_sims[0]
    smaller = dataclasses.replace(
        sim, dirty=sim.dirty[:, :48, :48], signal=sim.signal[:, :48, :48], sky=sim.sky[:, :48, :48]
    )
    cubes = [sim, small_sims[1], smaller]
    with pytest.raises(InvalidInputError) as error:
        task_arrays("deconvolver", cubes, seed=0, names=["a.fits", "b.fits", "c.fits"])
    assert str(error.value) == (
        "all cubes must share a size for task 'deconvolver': a.fits has 32 channels of 64 x 64 pixels, "
        "c.fits 32 channels of 48 x 48 pixels"
    )
    fewer = dataclasses.replace(
        sim, dirty=sim.dirty[:16], signal=sim.signal[:16], sky=sim.sky[:16], noise=sim.noise[:16]
    )
    with pytest.raises(
        InvalidInputError, match="for task 'spectral': cube 0 has 32 channels .*, cube 1 16 channels"
    ):
        task_arrays(["spectral"], [sim, fewer], seed=0)
    arrays = task_arrays("characterizer", cubes, seed=0)
    assert arrays["inputs"].shape[1:] == (1, 32, 32)


def test_characterizer_cutouts_lose_a_significant_continuum(small_sims):
    # As at work (`SourceCharacterizer`): a continuum under a source comes off its line image,
    # so the network learns line fluxes from images like those it measures. A noise cube with
    # one source's line in channels 10-14, with and without a 20-sigma continuum there.
    sim = small_sims[0]
    truth = sim.truth[:1].copy()
    truth["x_centroid"], truth["y_centroid"] = 32.2 * u.pix, 31.7 * u.pix
    truth["z_min"], truth["z_max"] = 10, 14
    noise_cube = np.random.default_rng(8).normal(size=sim.dirty.shape) * sim.noise[:, None, None]
    yy, xx = np.mgrid[: sim.dirty.shape[1], : sim.dirty.shape[2]]
    r2 = (xx - 32.2) ** 2 + (yy - 31.7) ** 2
    blob = 20 * np.median(sim.noise) * np.exp(-r2 / (2 * (sim.beam_major_pix / 2.355) ** 2))
    samples = [
        S.characterizer_samples(
            dataclasses.replace(sim, dirty=(noise_cube + c * blob[None]).astype(np.float32), truth=truth),
            np.random.default_rng(5),
            jitter_channels=0,
        )
        for c in (0, 1)
    ]
    (x0, t0, s0), (x1, t1, s1) = samples
    np.testing.assert_array_equal(t0, t1)
    np.testing.assert_array_equal(s0, s1)
    # Left in, the continuum would add 5 channels x 20 sigma x dv / sigma = 45 at the centre;
    # what stays is the noise of the median of 27 line-free channels (0.4 here).
    centre = (slice(15, 18),) * 2
    left_in = 5 * blob.max() * sim.dv / s0[0]
    assert left_in > 40
    assert np.abs(x1[0, 0][centre] - x0[0, 0][centre]).max() < 0.05 * left_in
