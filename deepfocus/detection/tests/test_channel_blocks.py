"""Tiles read a block of channels at a time: the plan, and the single pass's catalogue (lines on
block edges found once, two lines of one position in different blocks, a descending CASA-style
cube with a 3-D mask, the shipped networks)."""

import numpy as np
import pytest

from deepfocus import DeepFocus
from deepfocus.detection.channel_blocks import channel_halo, column_half
from deepfocus.detection.matched_filter import DEFAULT_WIDTHS
from deepfocus.detection.tests.helpers import assert_same_rows, casa_style, write_rows_cube
from deepfocus.detection.tiled import TiledPipeline
from deepfocus.evaluation import match_catalogs
from deepfocus.exceptions import InvalidInputError
from deepfocus.io.tiles import BYTES_PER_VOXEL, MIN_BLOCK, plan_tiles

NPIX, N_CHANNELS, BLOCKS = 128, 160, 4  # block cores [0, 40), [40, 80), [80, 120), [120, 160)

#: (x, y, z, major / beam, minor / beam, PA, line FWHM channels, peak S/N): lines centred on
#: block edges (z = 40, 80, 120), a broad one across an edge, two lines at one position in
#: different blocks, one at the band's edge.
SOURCES = (
    (30.0, 30.0, 40.0, 0.0, 0.0, 0.0, 6.0, 12.0),
    (95.0, 32.0, 79.5, 1.0, 0.6, 30.0, 16.0, 10.0),
    (64.0, 64.0, 20.0, 0.0, 0.0, 0.0, 6.0, 15.0),
    (64.0, 64.0, 100.0, 0.0, 0.0, 0.0, 6.0, 15.0),
    (30.0, 98.0, 120.0, 0.8, 0.5, 120.0, 8.0, 14.0),
    (98.0, 98.0, 2.0, 0.0, 0.0, 0.0, 5.0, 20.0),
    (64.0, 20.0, 140.0, 0.0, 0.0, 0.0, 5.0, 8.0),
)


@pytest.fixture(scope="module")
def long_cube(tmp_path_factory):
    """A 128 x 128 x 160 simulated cube with `SOURCES`: its path, truth and PSF path."""
    folder = tmp_path_factory.mktemp("long")
    paths, truth = write_rows_cube(
        folder, SOURCES, 5, npix=NPIX, n_channels=N_CHANNELS, name="long", psf=True
    )
    return paths["dirty"], truth, paths["psf"]


@pytest.fixture(scope="module")
def classical():
    return DeepFocus(model=None)


def _blocked(pipeline, path, blocks=BLOCKS, **kwargs):
    tiled = TiledPipeline(pipeline, memory_limit="4 GiB", progress=False, channel_blocks=blocks)
    return tiled(path, **kwargs)


def test_blocks_find_every_line_once_as_a_single_pass(long_cube, classical):
    path, truth, _ = long_cube
    single = classical(path)
    out = _blocked(classical, path)
    assert out.meta["tiling"]["channel_blocks"] == BLOCKS
    assert out.meta["tiling"]["channel_halo"] == channel_halo(DEFAULT_WIDTHS) == 48
    match = match_catalogs(truth, out)
    assert len(match.truth_index) == len(SOURCES)  # none lost, both lines of (64, 64)
    for x, y, z, *_ in SOURCES:  # none twice
        near = np.hypot(out["x_centroid"].value - x, out["y_centroid"].value - y) < 2
        assert np.sum(near & (np.abs(out["z_centroid"] - z) < 6)) == 1
    assert (out["flags"][np.argmin(out["z_centroid"])] & 4) == 4  # the band-edge line
    assert_same_rows(single, out)


def test_blocks_of_a_casa_style_cube_with_a_3d_mask(long_cube, classical, tmp_path):
    path = casa_style(long_cube[0], tmp_path / "casa.fits", nan_fraction=0.2)
    mask = np.zeros((N_CHANNELS, NPIX, NPIX), dtype=bool)
    mask[50:70, 80:110, 10:50] = True  # input (descending) channels 50-69: the line at z = 100
    single = classical(path, mask=mask)
    out = _blocked(classical, path, blocks=5, mask=mask)
    assert out.meta["tiling"]["channel_blocks"] == 5
    assert_same_rows(single, out)


def test_blocks_with_the_shipped_networks_and_the_psf(long_cube):
    # The PSF: the characterizer's forward model in each source's column, the sidelobe test on
    # the stitched catalogue.
    path, _, psf = long_cube
    pipeline = DeepFocus()
    single = pipeline(path, psf=psf)
    out = _blocked(pipeline, path, psf=psf)
    assert_same_rows(single, out)


def test_plan_cuts_the_band_only_when_tiles_of_all_channels_do_not_fit():
    shape, halo = (4000, 512, 512), 39
    column = 24 * 4000 * 41 * 41
    options = dict(halo=halo, tile_overhead=96 * 2**20, channel_halo=48, column_bytes=column)
    with pytest.raises(InvalidInputError, match="too small"):  # a 94 x 94 tile of 4000 channels: 1.7 GiB
        plan_tiles(shape, memory_limit="1 GiB", halo=halo, tile_overhead=96 * 2**20)
    plan = plan_tiles(shape, memory_limit="1 GiB", **options)
    assert len(plan.channel_blocks) > 1 and plan.channel_halo == 48
    assert plan.tile_bytes <= 2**30
    cores = [b.core for b in plan.channel_blocks]
    assert cores[0].start == 0 and cores[-1].stop == 4000
    assert all(a.stop == b.start for a, b in zip(cores[:-1], cores[1:], strict=True))
    assert all(c.stop - c.start >= MIN_BLOCK for c in cores)
    for block in plan.channel_blocks:
        assert block.outer.start == max(0, block.core.start - 48)
        assert block.outer.stop == min(4000, block.core.stop + 48)
    # A cube whose tiles of all channels fit comfortably keeps them.
    assert plan_tiles((128, 512, 512), memory_limit="1 GiB", **options).channel_blocks == ()
    # Too small even for blocks: the message names both needs.
    with pytest.raises(InvalidInputError, match="blocks of channels need"):
        plan_tiles(shape, memory_limit="200 MiB", **options)
    with pytest.raises(InvalidInputError, match="channel_parts"):
        plan_tiles(shape, memory_limit="1 GiB", halo=halo, channel_parts=3)


def test_budget_below_a_tile_of_all_channels_runs_in_blocks(long_cube, classical):
    path = long_cube[0]
    tiled = TiledPipeline(classical, memory_limit="1 GiB", progress=False)
    halo = tiled.plan(path).halo
    smallest = BYTES_PER_VOXEL * N_CHANNELS * (16 + 2 * halo) ** 2
    budget = int(0.9 * smallest)
    plan = TiledPipeline(classical, memory_limit=budget, progress=False).plan(path)
    assert plan.channel_blocks and plan.tile_bytes <= budget
    out = TiledPipeline(classical, memory_limit=budget, progress=False)(path)
    assert out.meta["tiling"]["channel_blocks"] == len(plan.channel_blocks)
    assert_same_rows(classical(path), out)


def test_deepfocus_runs_a_single_tile_in_blocks(long_cube, classical, monkeypatch):
    # A plan of one tile read in blocks of channels (a long band) is not a single pass.
    path = long_cube[0]
    forced = TiledPipeline(classical, memory_limit="4 GiB", channel_blocks=BLOCKS).plan(path)
    assert len(forced) == 1 and len(forced.channel_blocks) == BLOCKS
    monkeypatch.setattr(TiledPipeline, "plan", lambda self, cube, layout=None: forced)
    out = DeepFocus(model=None, memory_limit="4 GiB")(path)
    assert out.meta["tiling"]["channel_blocks"] == BLOCKS


def test_column_covers_the_characterizer_cutout():
    from deepfocus.characterization.characterizer import CUTOUT_SIZE

    assert column_half(5.0) >= CUTOUT_SIZE // 2
    assert column_half(12.0) > column_half(5.0)


def test_bad_channel_blocks(classical):
    for bad in (0, -2, 1.5, True, "3"):
        with pytest.raises((InvalidInputError, TypeError, ValueError)):
            TiledPipeline(classical, memory_limit="1 GiB", channel_blocks=bad)
