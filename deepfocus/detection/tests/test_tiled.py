"""Tiled (out-of-core) detection: sources on tile edges found exactly once, same catalogue as
a single pass (also where tile-local statistics would differ: uneven noise, sidelobes from beyond
the halo), the passes over the whole cube, bounded concurrency, the DeepFocus switch."""

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable

from deepfocus import DeepFocus
from deepfocus.characterization.characterizer import CUTOUT_SIZE
from deepfocus.detection import matched_filter
from deepfocus.detection import sidelobes as sidelobes_module
from deepfocus.detection import tiled as tiled_module
from deepfocus.detection.detector import masked_view, prepare
from deepfocus.detection.tests.helpers import assert_same_rows, simulate_rows, write_rows_cube
from deepfocus.detection.tiled import TiledPipeline, continuum_map, default_halo, plane_noise
from deepfocus.evaluation import match_catalogs
from deepfocus.exceptions import InvalidInputError, NoDetectionsWarning
from deepfocus.io.tiles import BYTES_PER_VOXEL, cube_statistics
from deepfocus.simulation import Interferometer, Observation

NPIX, N_CHANNELS = 192, 48
#: The default halo of the test cube (about 4.8 pixels per beam), fixed so the plans are known.
HALO = 38
#: A budget for 2 x 2 tiles of 96-pixel cores (+ halo): core edges at pixel 95.5 in x and y.
LIMIT_2X2 = int(BYTES_PER_VOXEL * N_CHANNELS * (96 + HALO) ** 2 * 1.01)
#: The same with the shipped networks (their batches come on top of each tile's voxels).
LIMIT_2X2_NETWORKS = LIMIT_2X2 + tiled_module.network_bytes(N_CHANNELS)

#: (x, y, z, major / beam, minor / beam, PA, line FWHM channels, peak S/N): sources exactly on
#: the core edges (x or y = 95.5), a bright extended one on the corner of all four tiles, one
#: a pixel off an edge, and two well inside cores.
SOURCES = (
    (95.5, 40.0, 12.0, 0.0, 0.0, 0.0, 6.0, 15.0),
    (40.0, 95.5, 30.0, 0.8, 0.5, 40.0, 6.0, 15.0),
    (95.5, 95.5, 22.0, 1.5, 1.0, 120.0, 8.0, 30.0),
    (96.0, 150.0, 20.0, 0.0, 0.0, 0.0, 5.0, 12.0),
    (150.0, 95.0, 35.0, 0.0, 0.0, 0.0, 7.0, 12.0),
    (140.0, 140.0, 16.0, 0.5, 0.5, 0.0, 6.0, 20.0),
    (50.0, 150.0, 25.0, 0.0, 0.0, 0.0, 6.0, 10.0),
)


@pytest.fixture(scope="module")
def edge_cube(tmp_path_factory):
    """A 192 x 192 x 48 simulated cube with `SOURCES`; its dirty FITS path and truth."""
    folder = tmp_path_factory.mktemp("edges")
    paths, truth = write_rows_cube(folder, SOURCES, 3, npix=NPIX, n_channels=N_CHANNELS, name="edge")
    return paths["dirty"], truth


@pytest.fixture(scope="module")
def classical():
    return DeepFocus(model=None)


@pytest.fixture(scope="module")
def single(edge_cube, classical):
    return classical(edge_cube[0])


@pytest.fixture(scope="module")
def tiled(edge_cube, classical):
    return TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO, progress=False)(edge_cube[0])


def test_plan_puts_sources_on_core_edges(edge_cube, classical):
    plan = TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO).plan(edge_cube[0])
    assert plan.grid == (2, 2)
    assert {t.core[1].start for t in plan.tiles} == {0, 96}
    assert {t.core[0].start for t in plan.tiles} == {0, 96}


def test_edge_sources_found_exactly_once(edge_cube, tiled):
    _, truth = edge_cube
    match = match_catalogs(truth, tiled)
    assert len(match.truth_index) == len(SOURCES)  # none lost
    assert len(match.unmatched_catalog) == 0  # none twice (a duplicate would be unmatched)
    assert len(tiled) == len(SOURCES)
    np.testing.assert_array_equal(tiled["id"], np.arange(1, len(tiled) + 1))
    assert tiled.meta["tiling"]["n_tiles"] == 4


def test_tiled_catalogue_equals_single_pass(single, tiled):
    assert len(tiled) == len(single)
    match = match_catalogs(single, tiled)
    assert len(match.truth_index) == len(single)
    a, b = single[match.truth_index], tiled[match.catalog_index]
    for column in ("x_centroid", "y_centroid"):
        np.testing.assert_allclose(b[column].value, a[column].value, atol=1e-3)
    np.testing.assert_allclose(b["z_centroid"], a["z_centroid"], atol=1e-3)
    np.testing.assert_allclose(b["flux"].value, a["flux"].value, rtol=1e-4)
    np.testing.assert_allclose(b["fwhm_major"].value, a["fwhm_major"].value, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(b["flags"], a["flags"])
    assert np.all(b["sky_centroid"].separation(a["sky_centroid"]).arcsec < 1e-3)


def test_threads_and_custom_executors_give_the_same_catalogue(edge_cube, classical, tiled):
    class CountingExecutor:
        """A thread pool that records how many tiles were pending at once."""

        def __init__(self):
            self.pool = ThreadPoolExecutor(4)
            self.pending = 0
            self.most = 0
            self.lock = threading.Lock()

        def submit(self, fn, *args):
            with self.lock:
                self.pending += 1
                self.most = max(self.most, self.pending)
            future = self.pool.submit(fn, *args)
            future.add_done_callback(self._done)
            return future

        def _done(self, _):
            with self.lock:
                self.pending -= 1

    executor = CountingExecutor()
    limit = 2 * LIMIT_2X2
    out = TiledPipeline(
        classical, memory_limit=limit, halo=HALO, max_in_flight=2, executor=executor, progress=False
    )(edge_cube[0])
    executor.pool.shutdown()
    assert executor.most <= 2
    np.testing.assert_allclose(out["x_centroid"].value, tiled["x_centroid"].value, atol=1e-6)
    np.testing.assert_allclose(out["flux"].value, tiled["flux"].value, rtol=1e-6)


def test_deepfocus_switches_to_tiles_above_the_budget(edge_cube, single):
    big = DeepFocus(model=None, memory_limit=LIMIT_2X2)(edge_cube[0])
    assert big.meta["tiling"]["n_tiles"] == 4
    assert len(big) == len(single)
    small = DeepFocus(model=None, memory_limit="4 GiB")(edge_cube[0])
    assert "tiling" not in small.meta
    assert len(small) == len(single)
    # A primary beam corrects the stitched catalogue's fluxes as it does a single pass's.
    from astropy.io import fits

    shape = fits.getdata(edge_cube[0]).squeeze().shape
    gain = np.linspace(0.5, 1.0, shape[-1], dtype=np.float32)[None, None, :] * np.ones(shape, np.float32)
    corrected = DeepFocus(model=None, memory_limit=LIMIT_2X2)(edge_cube[0], pb=gain)
    x = np.rint(big["x_centroid"].value).astype(int)
    np.testing.assert_allclose(corrected["flux"].value, big["flux"].value / gain[0, 0, x], rtol=1e-6)


@pytest.mark.slow
def test_shipped_networks_tiled_equal_single_pass(edge_cube):
    pipeline = DeepFocus()
    one = pipeline(edge_cube[0])
    out = TiledPipeline(pipeline, memory_limit=LIMIT_2X2_NETWORKS, halo=HALO, progress=False)(edge_cube[0])
    match = match_catalogs(one, out)
    assert len(out) == len(one) == len(match.truth_index)
    a, b = one[match.truth_index], out[match.catalog_index]
    np.testing.assert_allclose(b["x_centroid"].value, a["x_centroid"].value, atol=1e-3)
    np.testing.assert_allclose(b["flux"].value, a["flux"].value, rtol=1e-3)


def test_empty_cube_warns_once(edge_cube, classical):
    strict = DeepFocus(500.0, model=None)
    with pytest.warns(NoDetectionsWarning) as record:
        out = TiledPipeline(strict, memory_limit=LIMIT_2X2, halo=HALO, progress=False)(edge_cube[0])
    assert out is None
    assert len([w for w in record if issubclass(w.category, NoDetectionsWarning)]) == 1


def test_budget_too_small_and_bad_options(edge_cube, classical):
    with pytest.raises(InvalidInputError, match="too small"):
        TiledPipeline(classical, memory_limit="1 MiB").plan(edge_cube[0])
    with pytest.raises(InvalidInputError, match="max_in_flight"):
        TiledPipeline(classical, memory_limit="1 GiB", max_in_flight=0)
    with pytest.raises(InvalidInputError, match="memory limit"):
        TiledPipeline(classical, memory_limit="plenty")
    with pytest.raises(TypeError, match="submit"):
        TiledPipeline(classical, memory_limit="1 GiB", executor=object())
    with pytest.raises(TypeError, match="FITS file"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TiledPipeline(classical, memory_limit="1 GiB")(np.zeros((4, 4, 4)))


def test_stitch_keeps_the_deepest_copy():
    def table(x, tile, depth):
        t = QTable()
        t["id"] = [1]
        t["x_centroid"] = [x] * u.pix
        t["y_centroid"] = [50.0] * u.pix
        t["z_min"], t["z_max"] = [10], [14]
        t["snr"] = [10.0]
        t["_tile"], t["_depth"] = [tile], [depth]
        return t

    # The same source from two tiles (a hair apart), and a distinct one far away.
    out = tiled_module._stitch(
        [table(95.49, 0, 0.01), table(95.5, 1, -0.01), table(20.0, 0, 40.0)], beam_pix=5.0
    )
    assert len(out) == 2
    assert sorted(out["x_centroid"].value.round(2)) == [20.0, 95.49]
    assert "_tile" not in out.colnames


def test_halo_is_the_default_of_the_test_cube(edge_cube):
    from deepfocus.io.tiles import cube_layout

    assert default_halo(cube_layout(edge_cube[0]).pixels_per_beam) == HALO


def test_halo_covers_the_characterizer_and_deconvolver_cutouts():
    from deepfocus.characterization.characterizer import fit_half_limit
    from deepfocus.detection.detector import DECONVOLVER_CUTOUT

    assert default_halo(5.0) >= fit_half_limit(5.0)
    # A detection kept up to a beam outside the core still has its whole deconvolver cutout.
    assert default_halo(5.0) >= DECONVOLVER_CUTOUT // 2 + 5
    assert default_halo(5.0) >= CUTOUT_SIZE // 2 + 2 * 5
    # At 20 pixels per beam the 32-pixel floor no longer decides: the beam terms must.
    assert default_halo(20.0) >= CUTOUT_SIZE // 2 + 2 * 20
    # The deblending saddle test reaches DEFAULT_REACH beams from a detection a beam outside
    # the core, to a peak whose half-beam footprint must be in the tile.
    from deepfocus.detection.peaks import DEFAULT_REACH

    assert default_halo(20.0, deconvolver=False) >= 26 + (DEFAULT_REACH + 1.5) * 20
    assert default_halo(20.0) > default_halo(5.0)
    # Without the deconvolver only the characterizer's and the filters' reach count.
    assert default_halo(5.0, deconvolver=False) == CUTOUT_SIZE // 2 + 7 + 10


def test_networks_plan_room_for_their_batches(edge_cube, classical):
    networks = TiledPipeline(DeepFocus(), memory_limit=LIMIT_2X2_NETWORKS, halo=HALO).plan(edge_cube[0])
    assert networks.grid == (2, 2)
    assert networks.tile_bytes == TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO).plan(
        edge_cube[0]
    ).tile_bytes + tiled_module.network_bytes(N_CHANNELS)
    # Long spectra go through the spectral network in smaller batches: the allowance is bounded.
    assert tiled_module.network_bytes(40_000) == tiled_module.network_bytes(48)


def test_classical_pipeline_plans_the_smaller_halo(edge_cube, classical):
    from deepfocus.io.tiles import cube_layout

    ppb = cube_layout(edge_cube[0]).pixels_per_beam
    plan = TiledPipeline(classical, memory_limit=LIMIT_2X2).plan(edge_cube[0])
    assert plan.halo == default_halo(ppb, deconvolver=False) < default_halo(ppb)


# -- where tile-local statistics would differ ----------------------------------------------------

#: A bright source whose dirty-beam sidelobes reach other tiles, beyond the halo, and fainter
#: ones (same columns as `SOURCES`).
CONTRAST_SOURCES = (
    (40.0, 40.0, 24.0, 0.0, 0.0, 0.0, 8.0, 600.0),
    (150.0, 60.0, 10.0, 0.0, 0.0, 0.0, 5.0, 6.0),
    (60.0, 150.0, 35.0, 0.0, 0.0, 0.0, 6.0, 5.0),
    (140.0, 140.0, 20.0, 0.5, 0.5, 0.0, 4.0, 8.0),
)


@pytest.fixture(scope="module")
def contrast_cube(tmp_path_factory):
    """A 192 x 192 x 48 cube whose left half (x < 96) has twice the noise of the right half,
    with `CONTRAST_SOURCES`; the paths of the dirty cube and its PSF, and the PSF array."""
    itf = Interferometer(Observation(npix=NPIX, n_channels=N_CHANNELS, tsys=60 * u.K))
    sim = simulate_rows(CONTRAST_SOURCES, 3, itf)
    noise = simulate_rows((), 11, itf)  # independent noise with the same correlation (the PSF's)
    folder = tmp_path_factory.mktemp("contrast")
    paths = sim.write(folder, "contrast", psf=True)
    extra = np.zeros((N_CHANNELS, NPIX, NPIX), dtype=np.float32)
    extra[:, :, : NPIX // 2] = np.sqrt(3.0) * noise.dirty.unmasked_data[:].value[:, :, : NPIX // 2]
    with fits.open(paths["dirty"], mode="update") as hdul:
        hdul[0].data += extra
    return paths["dirty"], paths["psf"], sim.psf


def _plane_noise_of_the_single_pass(path, mask=None, psf=None):
    """The plane noise the single pass's matched filter measures (width by width)."""
    seen = []
    original = matched_filter.robust_plane_noise

    def recording(cube, valid):
        seen.append(original(cube, valid))
        return seen[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matched_filter, "robust_plane_noise", recording)
        from deepfocus import CubeDetector

        CubeDetector(model=None)(path, mask=mask, psf=psf)
    return np.array(seen, dtype=np.float32)


@pytest.fixture(scope="module")
def statistics(contrast_cube):
    return cube_statistics(contrast_cube[0])


def test_tile_local_statistics_would_differ(contrast_cube, contrast_single, statistics, classical):
    # The tiles run as before the passes over the whole cube: each measures its own continuum
    # and plane noise (the noisy half's tiles a higher one, the quiet half's a lower one).
    path = contrast_cube[0]
    plan = TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO).plan(path)
    stages = tiled_module._stages(classical)
    tables = []
    for tile in plan.tiles:
        _, table, _ = tiled_module._process_tile(
            stages, str(path), tile, (statistics, None, None), None, (NPIX, NPIX), 5.0
        )
        tables.append(table)
    local = tiled_module._stitch([t for t in tables if t is not None], 5.0)
    single = contrast_single["none"]
    assert len(match_catalogs(single, local).truth_index) < 0.8 * len(single)  # 11 of 38 when written


def test_continuum_pass_is_the_single_passs(contrast_cube, statistics):
    path = contrast_cube[0]
    mask = np.zeros((NPIX, NPIX), dtype=bool)
    mask[100:120, 10:50] = True
    budget = int(tiled_module.CONTINUUM_BYTES_PER_VOXEL * N_CHANNELS * 70 * 70)  # 3 x 3 tiles
    continuum, valid, reference = continuum_map(path, statistics, mask=mask, memory_limit=budget)
    prepared = prepare(path)
    view = masked_view(prepared, mask)
    expected = matched_filter.estimate_continuum(view.data, matched_filter.usable_noise(view.noise))
    np.testing.assert_array_equal(continuum, expected)
    np.testing.assert_array_equal(valid, view.valid)
    assert reference.n_channels == N_CHANNELS and reference.flipped == prepared.flipped


@pytest.mark.parametrize("which", ["plain", "casa"])
def test_plane_noise_pass_is_the_single_passs(contrast_cube, which, tmp_path):
    from deepfocus.detection.tests.helpers import casa_style

    path = contrast_cube[0] if which == "plain" else casa_style(contrast_cube[0], tmp_path / "casa.fits")
    mask = np.zeros((N_CHANNELS, NPIX, NPIX), dtype=bool)
    mask[30:40, 60:90, 60:90] = True  # a 3-D mask (input channel order)
    statistics = cube_statistics(path)
    continuum, valid, reference = continuum_map(path, statistics, mask=mask, memory_limit=2**30)
    budget = (4 * 24 + 8 * 5 + 7 * tiled_module.PLANE_BYTES_PER_VOXEL) * NPIX * NPIX  # blocks of 7 channels
    got = plane_noise(
        path,
        statistics,
        continuum,
        valid,
        reference,
        widths=(1, 3, 6, 12, 24),
        mask=mask,
        memory_limit=budget,
    )
    np.testing.assert_array_equal(got, _plane_noise_of_the_single_pass(path, mask=mask))
    with pytest.raises(InvalidInputError, match="too small for the matched filter's noise"):
        plane_noise(path, statistics, continuum, valid, reference, widths=(1, 24), memory_limit=2**20)


@pytest.fixture(scope="module")
def contrast_single(contrast_cube, classical):
    path, psf_path, _ = contrast_cube
    return {"psf": classical(path, psf=psf_path), "none": classical(path)}


def test_tiles_equal_single_pass_with_uneven_noise(contrast_cube, contrast_single, classical):
    out = TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO, progress=False)(contrast_cube[0])
    assert out.meta["tiling"]["n_tiles"] == 4
    assert_same_rows(contrast_single["none"], out)


@pytest.mark.parametrize("psf_kind", ["file", "array"])
def test_sidelobe_from_beyond_the_halo_is_rejected_as_in_a_single_pass(
    contrast_cube, contrast_single, classical, psf_kind
):
    path, psf_path, psf_array = contrast_cube
    single, without = contrast_single["psf"], contrast_single["none"]
    # The single pass rejects a sidelobe of the bright source (40, 40) that lies in another tile,
    # further from it than the halo: a tile-local test could not reject it.
    plan = TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO).plan(path)
    rejected = [row for row in without if not np.any(_near(single, row))]
    far = [
        row
        for row in rejected
        for tile in plan.tiles
        if tile.depth(row["x_centroid"].value, row["y_centroid"].value, (NPIX, NPIX)) >= 0
        and not (
            tile.outer[0].start <= 40 < tile.outer[0].stop and tile.outer[1].start <= 40 < tile.outer[1].stop
        )
    ]
    assert far, "the cube must hold a sidelobe beyond the halo of the bright source"
    psf = psf_path if psf_kind == "file" else psf_array
    out = TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO, progress=False)(path, psf=psf)
    for row in far:
        assert not np.any(_near(out, row))
    assert_same_rows(single, out)


def test_candidates_the_deconvolver_rejects_cast_no_sidelobes(contrast_cube, monkeypatch):
    from deepfocus import CubeDetector

    path, psf_path, _ = contrast_cube
    # Sidelobes the PSF predicts only (none taken as unknown beyond its reach).
    monkeypatch.setattr(sidelobes_module, "far_sidelobe_rms", lambda plane: 0.0)
    # The detector's positions throughout (the characterizer moves resolved sources).
    with_psf, without = CubeDetector(model=None)(path, psf=psf_path), CubeDetector(model=None)(path)
    sidelobes = [row for row in without if not np.any(_near(with_psf, row))]
    assert sidelobes

    def scores(self, cube, mf, rows, candidates):  # the deconvolver rejects the bright source
        x = candidates["x_centroid"].value[[r[0] for r in rows]]
        y = candidates["y_centroid"].value[[r[0] for r in rows]]
        return np.where(np.hypot(x - 40, y - 40) < 2, 0.0, np.inf)

    monkeypatch.setattr(CubeDetector, "_deconvolved_scores", scores)
    out = CubeDetector(model=None)(path, psf=psf_path)
    assert not np.any(np.hypot(out["x_centroid"].value - 40, out["y_centroid"].value - 40) < 2)
    for row in sidelobes:  # no longer explained by a source the catalogue does not hold
        assert np.any(_near(out, row))


def _near(table, row):
    return (
        np.hypot(
            table["x_centroid"].value - row["x_centroid"].value,
            table["y_centroid"].value - row["y_centroid"].value,
        )
        < 1.0
    )


def test_tiles_equal_single_pass_with_a_mask(contrast_cube, classical):
    path, psf_path, _ = contrast_cube
    mask = np.zeros((N_CHANNELS, NPIX, NPIX), dtype=bool)
    mask[:, 130:160, 130:160] = True
    mask[5:30, 50:70, 140:170] = True
    single = classical(path, mask=mask, psf=psf_path)
    out = TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO, progress=False)(
        path, mask=mask, psf=psf_path
    )
    assert_same_rows(single, out)


def test_shipped_networks_on_the_contrast_cube(contrast_cube):
    path, psf_path, _ = contrast_cube
    pipeline = DeepFocus()
    single = pipeline(path, psf=psf_path)
    tiled = TiledPipeline(pipeline, memory_limit=LIMIT_2X2_NETWORKS, halo=HALO, progress=False)
    out = tiled(path, psf=psf_path)
    assert out.meta["tiling"]["n_tiles"] == 4
    # Some rows lie outside the training range (flag 16, set again on the stitched catalogue).
    assert np.any(np.asarray(single["flags"]) & 16)
    assert_same_rows(single, out)


def test_tiled_run_warns_about_coarse_pixels(edge_cube, classical, tmp_path):
    # The tiles' reads do not warn: the whole cube's sampling is checked once.
    with fits.open(edge_cube[0]) as hdul:
        for key in ("CDELT1", "CDELT2"):
            hdul[0].header[key] *= 2  # 2.5 pixels across the beam
        hdul.writeto(tmp_path / "coarse.fits")
    pipeline = TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO, progress=False)
    assert len(pipeline.plan(tmp_path / "coarse.fits")) == 4
    with pytest.warns(Warning, match="the beam spans 2.5 pixels") as caught:
        pipeline(tmp_path / "coarse.fits")
    assert sum("the beam spans" in str(w.message) for w in caught) == 1


def test_compressed_cubes_are_laid_out(edge_cube, tmp_path):
    # A gzip or tile-compressed cube is not truncated: its offsets are in the uncompressed stream.
    import gzip

    from deepfocus.io.tiles import cube_layout

    data = open(edge_cube[0], "rb").read()
    (tmp_path / "c.fits.gz").write_bytes(gzip.compress(data))
    with fits.open(edge_cube[0]) as hdul:
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(hdul[0].data, hdul[0].header), *hdul[1:]]).writeto(
            tmp_path / "c.fits.fz"
        )
    expected = cube_layout(edge_cube[0])
    for name in ("c.fits.gz", "c.fits.fz"):
        assert cube_layout(tmp_path / name).shape == expected.shape


def test_tiled_run_refuses_a_psf_of_other_channels(contrast_cube, classical, tmp_path):
    # Tiles read the PSF plane by plane (`~deepfocus.io.psf.PSFPlanes`), as checked as a whole
    # cube's: a PSF of other channels would be paired with the cube's by order.
    path, psf_path, _ = contrast_cube
    with fits.open(psf_path) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data
    header["CRVAL3"] += 10 * header["CDELT3"]
    other = tmp_path / "other.psf.fits"
    fits.writeto(other, data, header)
    tiled = TiledPipeline(classical, memory_limit=LIMIT_2X2, halo=HALO, progress=False)
    with pytest.raises(InvalidInputError, match="PSF's channels .* are not the cube's"):
        tiled(path, psf=other)
