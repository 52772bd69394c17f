"""Tests of out-of-core cube access: tile plans, parts read from disk, whole-cube statistics,
PSF planes read one at a time."""

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from deepfocus.detection.tests import helpers
from deepfocus.exceptions import DeepFocusWarning, InvalidInputError
from deepfocus.io.cube import read_cube
from deepfocus.io.psf import PSFPlanes
from deepfocus.io.tiles import (
    BYTES_PER_VOXEL,
    Tile,
    channel_noise,
    cube_layout,
    cube_statistics,
    parse_memory,
    plan_tiles,
    read_part,
    read_tile,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The bright 96 x 96 x 48 simulation as written, and as CASA writes it (Stokes axis, BEAMS
    table, NaN border, descending frequency)."""
    folder = tmp_path_factory.mktemp("tiles")
    paths = helpers.write_simulation(helpers.simulation(), folder)
    casa = helpers.casa_style(paths["dirty"], folder / "casa.fits")
    return {"plain": paths["dirty"], "casa": casa}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2 GiB", 2 * 2**30), ("2GiB", 2 * 2**30), ("500MB", 500 * 10**6), (1024, 1024), (1.5e9, 1_500_000_000)],
)
def test_parse_memory(value, expected):
    assert parse_memory(value) == expected


@pytest.mark.parametrize("value", ["lots", "", -5, 0, True, "2 parsecs"])
def test_parse_memory_refuses(value):
    with pytest.raises(InvalidInputError, match="memory limit"):
        parse_memory(value)


@pytest.mark.parametrize("in_flight", [1, 3])
def test_plan_cores_partition_the_image_and_respect_the_budget(in_flight):
    shape = (64, 300, 500)
    limit = 80 * 2**20
    plan = plan_tiles(shape, memory_limit=limit, halo=20, max_in_flight=in_flight)
    assert len(plan) > 1
    owner = np.zeros(shape[1:], dtype=int)
    for tile in plan:
        owner[tile.core] += 1
        # The outer box is the core plus the halo, clipped to the image.
        for core, outer, n in zip(tile.core, tile.outer, shape[1:], strict=True):
            assert outer.start == max(0, core.start - 20) and outer.stop == min(n, core.stop + 20)
        assert BYTES_PER_VOXEL * shape[0] * np.prod(tile.shape) <= limit / in_flight
    assert np.all(owner == 1)  # every pixel in exactly one core
    assert plan.tile_bytes <= limit / in_flight


def test_plan_more_tiles_in_flight_means_smaller_tiles():
    shape = (64, 400, 400)
    one = plan_tiles(shape, memory_limit="64 MiB", halo=16)
    four = plan_tiles(shape, memory_limit="64 MiB", halo=16, max_in_flight=4)
    assert len(four) > len(one)


def test_plan_whole_cube_when_it_fits():
    plan = plan_tiles((32, 100, 100), memory_limit="1 GiB", halo=30)
    assert len(plan) == 1
    assert plan.tiles[0].core == plan.tiles[0].outer == (slice(0, 100), slice(0, 100))


def test_plan_budget_too_small():
    with pytest.raises(InvalidInputError, match="too small.*needs"):
        plan_tiles((512, 1024, 1024), memory_limit="10 MiB", halo=32)
    with pytest.raises(InvalidInputError, match="max_in_flight"):
        plan_tiles((8, 100, 100), memory_limit="1 MiB", halo=4, max_in_flight=0)
    with pytest.raises(InvalidInputError, match="memory limit 100 bytes is too small"):  # not "0 KiB"
        plan_tiles((8, 100, 100), memory_limit=100, halo=4)


def test_tile_depth_ignores_image_borders():
    tile = Tile(0, (slice(0, 50), slice(50, 100)), (slice(0, 60), slice(40, 100)))
    image = (100, 100)
    # Near the image's top-right corner only the inner edges count.
    assert tile.depth(99.0, 0.0, image) == pytest.approx(49.5)
    # On the core edge bordering the tile at x < 50 (pixel edge 49.5).
    assert tile.depth(49.5, 20.0, image) == pytest.approx(0.0)
    assert tile.depth(47.5, 20.0, image) == pytest.approx(-2.0)
    assert tile.depth(70.0, 49.5, image) == pytest.approx(0.0)


@pytest.mark.parametrize("which", ["plain", "casa"])
def test_channel_noise_is_the_whole_cube_estimate(files, which):
    whole = read_cube(files[which])
    noise = channel_noise(files[which], block_bytes=5 * 4 * 96 * 96)  # blocks of 5 channels
    expected = whole.noise.value[::-1] if whole.flipped else whole.noise.value
    np.testing.assert_allclose(noise, expected, rtol=1e-6)


@pytest.mark.parametrize("which", ["plain", "casa"])
def test_read_tile_matches_the_whole_cube(files, which):
    whole = read_cube(files[which])
    layout = cube_layout(files[which])
    assert layout.shape == whole.shape
    assert layout.pixels_per_beam == pytest.approx(whole.pixels_per_beam, rel=1e-3)
    statistics = cube_statistics(files[which])
    tile = Tile(0, (slice(30, 60), slice(20, 50)), (slice(10, 80), slice(5, 70)))
    part = read_tile(files[which], tile, statistics=statistics)
    ys, xs = tile.outer
    np.testing.assert_array_equal(part.data, whole.data[:, ys, xs])
    np.testing.assert_array_equal(part.valid, whole.valid[:, ys, xs])
    np.testing.assert_allclose(part.noise.value, whole.noise.value, rtol=1e-6)
    assert part.flipped == whole.flipped
    np.testing.assert_allclose(part.spectral_axis.value, whole.spectral_axis.value)
    np.testing.assert_allclose(part.beams.major.value, whole.beams.major.value)
    # The tile's WCS is the cube's shifted to the tile.
    sky_tile = part.pixel_to_world(np.array([0.0, 12.3]), np.array([0.0, 40.7]))
    sky_whole = whole.pixel_to_world(np.array([5.0, 17.3]), np.array([10.0, 50.7]))
    assert np.all(sky_tile.separation(sky_whole).arcsec < 1e-6)


@pytest.mark.parametrize("which", ["plain", "casa"])
def test_read_part_of_channels_matches_the_whole_cube(files, which):
    whole = read_cube(files[which])
    statistics = cube_statistics(files[which])
    part = read_part(files[which], channels=slice(5, 17), statistics=statistics)
    # File channels 5..16 are prepared channels 31..42 of the descending (CASA) file.
    prepared = slice(31, 43) if whole.flipped else slice(5, 17)
    np.testing.assert_array_equal(part.data, whole.data[prepared])
    np.testing.assert_array_equal(part.noise.value, whole.noise.value[prepared])
    np.testing.assert_allclose(part.spectral_axis.value, whole.spectral_axis.value[prepared])


@pytest.fixture(scope="module")
def flagged_file(files, tmp_path_factory):
    """The plain file with channel 7 exactly 0 everywhere (flagged) and channel 20 exactly 0 in
    the left half only (not flagged: the right half holds data)."""
    path = tmp_path_factory.mktemp("flagged") / "flagged.fits"
    with fits.open(files["plain"]) as hdul:
        hdul[0].data[..., 7, :, :] = 0
        hdul[0].data[..., 20, :, :48] = 0
        hdul.writeto(path)
    return path


def test_flagged_channels_are_the_whole_cubes(flagged_file):
    with pytest.warns(DeepFocusWarning, match=r"input channels \[7\] are exactly 0"):
        statistics = cube_statistics(flagged_file, block_bytes=4 * 4 * 96 * 96)  # blocks of 4 channels
    np.testing.assert_array_equal(np.flatnonzero(statistics.flagged), [7])
    with pytest.warns(DeepFocusWarning, match="exactly 0"):
        whole = read_cube(flagged_file)
    np.testing.assert_allclose(statistics.noise, whole.noise.value, rtol=1e-6, equal_nan=True)
    left = Tile(0, (slice(0, 96), slice(0, 40)), (slice(0, 96), slice(0, 44)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepFocusWarning)  # the statistics' pass warned already
        part = read_tile(flagged_file, left, statistics=statistics)
    # Channel 20 is 0 throughout the tile but not flagged: the tile keeps its zeros, as the whole cube.
    np.testing.assert_array_equal(part.data, whole.data[:, :, :44])
    assert np.all(part.data[20] == 0) and np.all(np.isnan(part.data[7]))
    with pytest.warns(DeepFocusWarning, match=r"channels \[7, 20\]"):
        alone = read_tile(flagged_file, left)  # without them, the tile decides for itself
    assert np.all(np.isnan(alone.data[20]))


def test_cube_statistics_refuses_an_empty_cube(files, tmp_path):
    with fits.open(files["plain"]) as hdul:
        hdul[0].data[...] = np.nan
        hdul.writeto(tmp_path / "nan.fits")
    with pytest.raises(InvalidInputError, match="no valid pixel"):
        cube_statistics(tmp_path / "nan.fits")


def test_cube_statistics_refuses_a_cube_without_noise(files, tmp_path):
    with fits.open(files["plain"]) as hdul:
        hdul[0].data[...] = 1.0
        hdul.writeto(tmp_path / "constant.fits")
    with pytest.raises(InvalidInputError, match="constant.fits: no channel has a measurable noise"):
        cube_statistics(tmp_path / "constant.fits", block_bytes=4096)  # in blocks of channels


def test_read_tile_outside_the_valid_area(files):
    statistics = cube_statistics(files["casa"])
    corner = Tile(0, (slice(0, 8), slice(0, 8)), (slice(0, 8), slice(0, 8)))
    assert read_tile(files["casa"], corner, statistics=statistics) is None
    assert read_part(files["casa"], y=slice(0, 8), x=slice(0, 8), statistics=statistics) is None


def test_read_tile_of_zeros_is_empty(files, tmp_path):
    # Some tools fill the area outside the primary beam with 0 rather than NaN.
    with fits.open(files["plain"]) as hdul:
        hdul[0].data[..., :40, :40] = 0
        hdul.writeto(tmp_path / "zeros.fits")
    statistics = cube_statistics(tmp_path / "zeros.fits")
    corner = Tile(0, (slice(0, 32), slice(0, 32)), (slice(0, 40), slice(0, 40)))
    assert read_tile(tmp_path / "zeros.fits", corner, statistics=statistics) is None
    # read_part keeps the zeros (valid pixels: they count in the whole image's statistics).
    part = read_part(tmp_path / "zeros.fits", y=slice(0, 40), x=slice(0, 40), statistics=statistics)
    assert part.valid.all() and np.all(part.data == 0)


#: The spectral axis of the PSF files written here: the channels of ``helpers.simulation()``'s
#: cube (a PSF file's channels must be its cube's).
PSF_SPECTRAL = {
    "CTYPE": "FREQ",
    "CRVAL": helpers.OBSERVATION.frequency.to_value(u.Hz),
    "CDELT": helpers.OBSERVATION.channel_width.to_value(u.Hz),
    "CRPIX": 1.0,
}


def _psf_file(psf, path):
    """Write ``psf`` (n_chan, ny, nx) with a Stokes axis, as exportfits does."""
    header = fits.Header()
    header.update(CTYPE1="RA---SIN", CTYPE2="DEC--SIN", CTYPE4="STOKES", CDELT1=-1e-5, CDELT2=1e-5)
    header.update(CRPIX1=21, CRPIX2=21, CRVAL1=10.0, CRVAL2=-30.0, CDELT4=1.0)
    header.update({f"{key}3": value for key, value in PSF_SPECTRAL.items()})
    fits.PrimaryHDU(psf[None], header).writeto(path)
    return path


@pytest.mark.parametrize("flipped", [False, True])
def test_psf_planes_are_read_cubes_psf(files, tmp_path, flipped):
    rng = np.random.default_rng(1)
    psf = rng.normal(size=(48, 41, 41)).astype(np.float32)
    psf[:, 20, 20] = 6.0 + np.arange(48)  # the peak, as in a PSF
    path = _psf_file(psf, tmp_path / "psf.fits")
    cube = read_cube(files["casa" if flipped else "plain"], psf=psf)
    planes = PSFPlanes(psf, 48, cube.cell, flipped=flipped)
    assert len(planes) == 48 and planes.shape == (41, 41)
    for z in (0, 13, 47):
        np.testing.assert_array_equal(planes[z], cube.psf[z])
    # From a file (a Stokes axis, as exportfits writes it), normalised as read_psf does.
    with PSFPlanes(path, 48, 0.036 * u.arcsec, flipped=flipped) as from_file:
        expected = psf[47 - 13 if flipped else 13] / psf[47 - 13 if flipped else 13][20, 20]
        np.testing.assert_array_equal(from_file[13], expected.astype(np.float32))
    # One plane serves every channel.
    single = PSFPlanes(psf[0], 48, cube.cell)
    np.testing.assert_allclose(single[30], psf[0] / psf[0, 20, 20], rtol=1e-6)


def test_psf_planes_refuse_bad_psfs(tmp_path):
    psf = np.ones((3, 41, 41), dtype=np.float32)
    path = _psf_file(psf, tmp_path / "psf.fits")
    with pytest.raises(InvalidInputError, match="pixels"):
        PSFPlanes(path, 3, 0.1 * u.arcsec)
    with pytest.raises(InvalidInputError, match="3 channels but the cube has 48"):
        PSFPlanes(psf, 48, 0.036 * u.arcsec)
    # The channels of the file must be the cube's.
    frequencies = (PSF_SPECTRAL["CRVAL"] + PSF_SPECTRAL["CDELT"] * np.arange(3)) * u.Hz
    PSFPlanes(path, 3, 0.036 * u.arcsec, frequencies=frequencies).close()
    with pytest.raises(InvalidInputError, match="the cube's the other way"):
        PSFPlanes(path, 3, 0.036 * u.arcsec, frequencies=frequencies, flipped=True)
    with pytest.raises(InvalidInputError, match="are not the cube's"):
        PSFPlanes(path, 3, 0.036 * u.arcsec, frequencies=frequencies + PSF_SPECTRAL["CDELT"] * u.Hz)
    psf[1, 20, 20] = -1
    with pytest.raises(InvalidInputError, match="plane 1 of the PSF is not positive at its centre"):
        PSFPlanes(_psf_file(psf, tmp_path / "negative.fits"), 3, 0.036 * u.arcsec)
    psf[:] = 0
    with pytest.raises(InvalidInputError, match="in every plane"):
        PSFPlanes(_psf_file(psf, tmp_path / "zero.fits"), 3, 0.036 * u.arcsec)


@pytest.mark.parametrize("blank", [0.0, np.nan])
def test_blank_psf_planes_take_the_nearest_valid_plane(tmp_path, blank):
    # tclean leaves the PSF of a channel it flagged blank: files, arrays and read_psf agree.
    from deepfocus.io.psf import read_psf

    psf = np.zeros((5, 41, 41), dtype=np.float32)
    psf[:, 20, 20] = [2.0, 3.0, 4.0, 5.0, 6.0]
    psf[:, 20, 21] = [0.2, 0.3, 0.4, 0.5, 0.6]
    psf[[1, 4]] = blank
    path = _psf_file(psf, tmp_path / "blank.fits")
    expected = [0, 0, 2, 3, 3]  # plane 1 -> 0 (the first of two at the same distance), 4 -> 3
    filled, _ = read_psf(path)
    with PSFPlanes(path, 5, 0.036 * u.arcsec) as from_file:
        in_memory = PSFPlanes(psf, 5, 0.036 * u.arcsec)
        for z, source in enumerate(expected):
            assert filled[z, 20, 20] == 1.0 and filled[z, 20, 21] == pytest.approx(0.1)
            np.testing.assert_allclose(filled[z], psf[source] / psf[source, 20, 20])
            np.testing.assert_array_equal(from_file[z], filled[z].astype(np.float32))
            np.testing.assert_array_equal(in_memory[z], filled[z].astype(np.float32))


def _stokes_psf_file(psf, path, stokes, *, stokes_first, cdelt=1e-5):
    """Write ``psf`` (n_chan, ny, nx) as the Stokes I planes of a PSF of the Stokes parameters
    ``stokes`` (FITS codes, evenly spaced), the Stokes axis third (``exportfits`` with
    ``stokeslast=False``) or last, pixels of ``cdelt`` deg; the other parameters' planes are
    -0.5 times I's."""
    planes = np.stack([psf if code == 1 else -0.5 * psf for code in stokes])
    header = fits.Header()
    header.update(CTYPE1="RA---SIN", CTYPE2="DEC--SIN", CDELT1=-cdelt, CDELT2=cdelt, CRPIX1=21, CRPIX2=21)
    header.update(CRVAL1=10.0, CRVAL2=-30.0)
    step = stokes[1] - stokes[0] if len(stokes) > 1 else 1
    polar = {"CTYPE": "STOKES", "CRVAL": float(stokes[0]), "CDELT": float(step), "CRPIX": 1.0}
    spectral = PSF_SPECTRAL
    for n, axis in ((3, polar if stokes_first else spectral), (4, spectral if stokes_first else polar)):
        header.update({f"{key}{n}": value for key, value in axis.items()})
    fits.PrimaryHDU(planes.swapaxes(0, 1) if stokes_first else planes, header).writeto(path)
    return path


@pytest.mark.parametrize(
    ("stokes", "stokes_first", "n_chan"),
    [([1, 4], True, 48), ([1, 2, 3, 4], False, 48), ([4, 1], False, 48), ([1, 2, 3, 4], False, 1)],
    ids=["IV-third", "IQUV-last", "VI-last", "IQUV-one-channel"],
)
def test_psf_of_several_stokes_is_read_in_stokes_i(files, tmp_path, stokes, stokes_first, n_chan):
    # tclean's PSF of a full-Stokes image, as exportfits writes it: its Stokes I planes are read.
    from deepfocus.io.psf import read_psf

    rng = np.random.default_rng(2)
    psf = (0.1 * rng.normal(size=(n_chan, 41, 41))).astype(np.float32)
    psf[:, 20, 20] = 1.0 + 0.01 * np.arange(n_chan)
    cdelt = fits.getheader(files["plain"])["CDELT2"]  # the cube's pixels
    path = _stokes_psf_file(psf, tmp_path / "psf.fits", stokes, stokes_first=stokes_first, cdelt=cdelt)
    array, cell = read_psf(path)
    assert array.shape == (n_chan, 41, 41)
    np.testing.assert_allclose(array, psf / psf[:, 20:21, 20:21], rtol=1e-6)
    with PSFPlanes(path, 48, cell) as planes:
        for z in (0, 13, 47):
            np.testing.assert_array_equal(planes[z], array[min(z, n_chan - 1)].astype(np.float32))
    cube = read_cube(files["plain"], psf=path)
    np.testing.assert_array_equal(cube.psf, np.broadcast_to(array, (48, 41, 41)).astype(np.float32))


def test_psf_without_stokes_i_is_refused(tmp_path):
    from deepfocus.io.psf import read_psf

    psf = np.ones((3, 41, 41), dtype=np.float32)
    path = _stokes_psf_file(psf, tmp_path / "qu.fits", [2, 3], stokes_first=False)
    with pytest.raises(InvalidInputError, match="the PSF holds Stokes Q, U but no Stokes I") as info:
        read_psf(path)
    assert str(path) in str(info.value)
    with pytest.raises(InvalidInputError, match="the PSF holds Stokes Q, U but no Stokes I"):
        PSFPlanes(path, 3, 0.036 * u.arcsec)
    # A single Stokes plane, whatever its code says (a hand-made header without CRPIX reads as
    # Q): the beam does not depend on it, so it is the PSF.
    path = _stokes_psf_file(-2 * psf, tmp_path / "q.fits", [2], stokes_first=False)  # planes of psf
    np.testing.assert_allclose(read_psf(path)[0], psf)


def test_an_image_that_does_not_peak_at_its_centre_is_no_psf(files, tmp_path):
    # A dirty image given as the PSF: its brightest pixel is a source, not the centre.
    psf = np.zeros((48, 41, 41), dtype=np.float32)
    psf[:, 20, 20] = 1.0
    psf[30, 5, 9] = 1.5
    path = _psf_file(psf, tmp_path / "dirty_as_psf.fits")
    with pytest.raises(InvalidInputError, match="plane 30 peaks at 1.5 times its centre pixel"):
        read_cube(files["plain"], psf=path)
    with pytest.raises(InvalidInputError, match="plane 30 peaks at 1.5 times"):
        read_cube(files["plain"], psf=psf)
    with PSFPlanes(path, 48, 0.036 * u.arcsec) as planes:  # out of core: checked as each plane is read
        assert planes[29][20, 20] == 1
        with pytest.raises(InvalidInputError, match="plane 30 peaks"):
            planes[30]
    psf[30, 5, 9] = 1.005  # within rounding of the peak
    assert read_cube(files["plain"], psf=psf).psf.shape == (48, 41, 41)
    # Blank planes (flagged channels) take the nearest valid plane, in memory and out of core alike.
    psf[7] = np.nan
    np.testing.assert_array_equal(read_cube(files["plain"], psf=psf).psf[7], psf[6])
    np.testing.assert_array_equal(PSFPlanes(psf, 48, 0.036 * u.arcsec)[7], psf[6])
    psf[7] = 0
    psf[7, 20, 20] = -1.0  # but a negative centre is no PSF
    with pytest.raises(InvalidInputError, match="not positive at its centre"):
        read_cube(files["plain"], psf=psf)


def test_layout_takes_the_nearest_valid_beam_to_the_middle(files, tmp_path):
    # A BEAMS row of NaN in the middle channel (read_cube replaces it by the nearest valid one).
    with fits.open(files["casa"]) as hdul:
        beams = hdul["BEAMS"].data
        middle = len(beams) // 2
        unit = u.Unit(hdul["BEAMS"].columns["BMAJ"].unit)
        neighbours = np.asarray(beams["BMAJ"][[middle - 1, middle + 1]], dtype=float) * unit
        neighbours = neighbours.to_value(u.arcsec)
        beams["BMAJ"][middle] = np.nan
        hdul.writeto(tmp_path / "bad_beam.fits")
    layout = cube_layout(tmp_path / "bad_beam.fits")
    assert np.isclose(layout.beam_major.to_value(u.arcsec), neighbours, rtol=1e-6).any()
    with fits.open(files["casa"]) as hdul:
        hdul["BEAMS"].data["BMAJ"][:] = 0.0
        hdul.writeto(tmp_path / "no_beam.fits")
    with pytest.raises(InvalidInputError, match="no valid beam"):
        cube_layout(tmp_path / "no_beam.fits")


def test_layout_of_a_truncated_file_says_so(files, tmp_path):
    # Tiled runs read the layout first: a cut file lost its BEAMS table, which read "no beam".
    data = files["casa"].read_bytes()
    (tmp_path / "cut.fits").write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one message, not astropy's warning as well
        with pytest.raises(InvalidInputError, match="truncated or corrupt"):
            cube_layout(tmp_path / "cut.fits")
