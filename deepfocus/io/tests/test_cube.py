"""Tests of `deepfocus.io.cube.read_cube` on the layouts CASA tclean/exportfits writes, and bad input."""

import hashlib
import os
import time
import warnings

import astropy.constants as const
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.stats import mad_std, sigma_clip
from radio_beam import Beam

from deepfocus.detection.detector import prepare
from deepfocus.exceptions import DeepFocusWarning, InvalidInputError
from deepfocus.io.cube import PreparedCube, read_cube, robust_channel_noise
from deepfocus.simulation import Observation, simulate

C_MS = const.c.to_value(u.m / u.s)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small simulated dirty cube (one faint source) written as FITS, with its arrays."""
    folder = tmp_path_factory.mktemp("cube")
    sim = simulate(Observation(npix=48, n_channels=12, tsys=60 * u.K, total_time=300 * u.s), seed=1)
    paths = sim.write(folder, "c", psf=True)
    with fits.open(paths["dirty"]) as hdul:
        header = hdul[0].header.copy()
        data = np.array(hdul[0].data, dtype=np.float32)
    n = data.shape[0]
    freqs = header["CRVAL3"] + header["CDELT3"] * (np.arange(n) + 1 - header["CRPIX3"])
    # Per-channel beams that differ enough to tell a flipped order from the right one.
    major = header["BMAJ"] * 3600 * (1 + 0.02 * np.arange(n))
    minor = header["BMIN"] * 3600 * (1 + 0.01 * np.arange(n))
    pa = header["BPA"] + np.linspace(-5, 5, n)
    return {
        "sim": sim,
        "path": paths["dirty"],
        "psf_path": paths["psf"],
        "data": data,
        "header": header,
        "freqs": freqs,
        "beams": (major, minor, pa),
        "folder": folder,
    }


def _casa_header(header, *, stokes=1.0):
    """A 3-D header turned into exportfits' 4-D layout: RA, DEC, FREQ, STOKES; beams in a table."""
    h = header.copy()
    for key in ("WCSAXES", "BEAM", "BMAJ", "BMIN", "BPA"):
        h.remove(key, ignore_missing=True)
    h["BUNIT"] = "Jy/beam"
    h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"], h["CUNIT4"] = "STOKES", stokes, 1.0, 1.0, ""
    h["CASAMBM"] = True
    return h


def _write(path, data, header, beams=None, *, n_pol=1):
    """Write a primary image, and a CASA-style BEAMS table if ``beams`` (major, minor, pa) given."""
    hdus = [fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header)]
    if beams is not None:
        major, minor, pa = (np.tile(np.asarray(b, dtype=float), n_pol) for b in beams)
        n = len(beams[0])
        cols = [
            fits.Column(name="BMAJ", format="1E", unit="arcsec", array=major),
            fits.Column(name="BMIN", format="1E", unit="arcsec", array=minor),
            fits.Column(name="BPA", format="1E", unit="deg", array=pa),
            fits.Column(name="CHAN", format="1J", array=np.tile(np.arange(n), n_pol)),
            fits.Column(name="POL", format="1J", array=np.repeat(np.arange(n_pol), n)),
        ]
        table = fits.BinTableHDU.from_columns(cols, name="BEAMS")
        table.header["NCHAN"], table.header["NPOL"] = n, n_pol
        hdus.append(table)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def _casa_cube(base, path, *, data=None, beams=None):
    data = base["data"] if data is None else data
    beams = base["beams"] if beams is None else beams
    return _write(path, data[None], _casa_header(base["header"]), beams)


def _descending(base, path, *, casa=True):
    """The same cube with the channels stored from high to low frequency."""
    h = _casa_header(base["header"]) if casa else base["header"].copy()
    h["CRVAL3"], h["CDELT3"] = base["freqs"][-1], -base["header"]["CDELT3"]
    data = base["data"][::-1]
    beams = tuple(b[::-1] for b in base["beams"])
    return _write(path, data[None] if casa else data, h, beams if casa else None)


# --------------------------------------------------------------------------------------------
# layouts


def test_plain_single_beam(base):
    cube = read_cube(base["path"])
    assert isinstance(cube, PreparedCube)
    assert cube.data.dtype == np.float32 and cube.data.shape == base["data"].shape
    np.testing.assert_array_equal(cube.data, base["data"])
    assert cube.wcs.naxis == 3 and cube.wcs.wcs.ctype[2] == "FREQ"
    assert cube.spectral_axis.unit == u.GHz
    np.testing.assert_allclose(cube.spectral_axis.to_value(u.Hz), base["freqs"], rtol=0, atol=1)
    assert not cube.flipped and cube.rest_frequency_from_header
    assert cube.rest_frequency.to_value(u.Hz) == pytest.approx(base["header"]["RESTFRQ"])
    assert len(cube.beams) == cube.n_channels
    assert np.all(cube.beams.major.to_value(u.deg) == pytest.approx(base["header"]["BMAJ"]))
    assert cube.cell.to_value(u.arcsec) == pytest.approx(abs(base["header"]["CDELT2"]) * 3600)
    assert cube.pixels_per_beam == pytest.approx(base["header"]["BMAJ"] / abs(base["header"]["CDELT2"]))
    obs = base["sim"].observation
    assert cube.channel_velocity_width.to_value(u.km / u.s) == pytest.approx(
        obs.channel_velocity_width.to_value(u.km / u.s), rel=1e-6
    )
    assert cube.valid.all() and cube.source_path == base["path"] and cube.psf is None
    assert cube.noise.unit == u.Jy / u.beam and np.all(np.isfinite(cube.noise))
    assert "PreparedCube 12 x 48 x 48" in repr(cube)


def test_casa_4d_stokes_and_beams_table(base, tmp_path):
    path = _casa_cube(base, tmp_path / "casa.fits")
    assert fits.getdata(path).shape == (1,) + base["data"].shape
    cube = read_cube(path)
    np.testing.assert_array_equal(cube.data, base["data"])
    np.testing.assert_allclose(cube.beams.major.to_value(u.arcsec), base["beams"][0], rtol=1e-6)
    np.testing.assert_allclose(cube.beams.pa.to_value(u.deg), base["beams"][2], rtol=1e-6)
    assert cube.wcs.naxis == 3 and cube.header["NAXIS"] == 4
    mid = cube.n_channels // 2
    assert cube.pixels_per_beam == pytest.approx(base["beams"][0][mid] / cube.cell.to_value(u.arcsec))
    # The same cube as a 3-D file with a single beam gives the same data and noise.
    plain = read_cube(base["path"])
    np.testing.assert_allclose(cube.noise, plain.noise)


def test_several_stokes_takes_i(base, tmp_path):
    data = np.stack([base["data"], base["data"] * 0.1, -base["data"], np.zeros_like(base["data"])])
    path = _write(tmp_path / "iquv.fits", data, _casa_header(base["header"]), base["beams"], n_pol=4)
    with pytest.warns(DeepFocusWarning, match="using Stokes I"):
        cube = read_cube(path)
    np.testing.assert_array_equal(cube.data, base["data"])


def test_descending_frequency(base, tmp_path):
    asc = read_cube(_casa_cube(base, tmp_path / "asc.fits"))
    desc = read_cube(_descending(base, tmp_path / "desc.fits"))
    assert desc.flipped and not asc.flipped
    np.testing.assert_array_equal(desc.data, asc.data)
    np.testing.assert_allclose(desc.spectral_axis.to_value(u.Hz), asc.spectral_axis.to_value(u.Hz), atol=1)
    np.testing.assert_allclose(desc.beams.major, asc.beams.major)
    np.testing.assert_allclose(desc.beams.pa, asc.beams.pa)
    np.testing.assert_allclose(desc.noise, asc.noise)
    # The WCS describes the reordered data.
    world = desc.wcs.spectral.pixel_to_world_values(np.arange(desc.n_channels))
    np.testing.assert_allclose(world, asc.spectral_axis.to_value(u.Hz), rtol=0, atol=1)
    assert desc.wcs.wcs.cdelt[2] > 0
    # Channel indices map back to the input cube.
    n = desc.n_channels
    np.testing.assert_array_equal(desc.channel_order, np.arange(n)[::-1])
    assert desc.to_input_channel(0) == n - 1
    np.testing.assert_allclose(desc.to_input_channel([0.5, 3.25]), [n - 1.5, n - 4.25])
    assert asc.to_input_channel(2.5) == 2.5
    stored = fits.getdata(tmp_path / "desc.fits")[0]
    np.testing.assert_array_equal(stored[desc.to_input_channel(4)], desc.data[4])


@pytest.mark.parametrize("unit,descending", [("m/s", False), ("km/s", True)])
def test_velocity_axis(base, tmp_path, unit, descending):
    h = _casa_header(base["header"])
    rest = h["RESTFRQ"]
    f = base["freqs"][::-1] if descending else base["freqs"]
    scale = u.Unit(unit).to(u.m / u.s)
    velocity = C_MS * (1 - f / rest) / scale  # radio convention
    h["CTYPE3"], h["CUNIT3"], h["CRVAL3"] = "VRAD", unit, velocity[0]
    h["CDELT3"] = velocity[1] - velocity[0]
    data = base["data"][::-1] if descending else base["data"]
    beams = tuple(b[::-1] for b in base["beams"]) if descending else base["beams"]
    cube = read_cube(_write(tmp_path / "vel.fits", data[None], h, beams))
    # Radio velocity decreases as frequency increases: a file whose velocity ascends is flipped.
    assert cube.flipped is descending
    np.testing.assert_allclose(cube.spectral_axis.to_value(u.Hz), base["freqs"], rtol=0, atol=1e3)
    np.testing.assert_array_equal(cube.data, base["data"])
    np.testing.assert_allclose(cube.beams.major.to_value(u.arcsec), base["beams"][0], rtol=1e-6)
    assert cube.wcs.wcs.ctype[2].startswith("FREQ")


def test_wavelength_axis(base, tmp_path):
    h = base["header"].copy()
    lam0 = C_MS / base["freqs"][0] * 1e3  # mm
    h["CTYPE3"], h["CUNIT3"], h["CRVAL3"], h["CRPIX3"], h["CDELT3"] = "WAVE", "mm", lam0, 1.0, 1e-4
    cube = read_cube(_write(tmp_path / "wave.fits", base["data"], h))
    lam = (lam0 + 1e-4 * np.arange(cube.n_channels)) * 1e-3
    assert cube.flipped  # wavelength ascending = frequency descending
    np.testing.assert_allclose(cube.spectral_axis.to_value(u.Hz), np.sort(C_MS / lam), rtol=1e-9)
    np.testing.assert_array_equal(cube.data, base["data"][::-1])


@pytest.mark.parametrize("bunit", ["Jy/beam", "JY/BEAM", "Jy/Beam", "Jy beam-1", "jy/beam "])
def test_jy_per_beam_spellings(base, tmp_path, bunit):
    h = base["header"].copy()
    h["BUNIT"] = bunit
    cube = read_cube(_write(tmp_path / "u.fits", base["data"], h))
    np.testing.assert_array_equal(cube.data, base["data"])


def test_integers_scaled_by_bscale_bzero_and_blank(base, tmp_path):
    # A memory map of scaled integers is refused by astropy: whole cubes and tiles read them.
    from deepfocus.io.tiles import cube_layout, read_part

    data = base["data"].copy()
    data[0, :2] = np.nan
    hdu = fits.PrimaryHDU(data.astype(np.float64), header=base["header"].copy())
    scale = float(np.nanmax(np.abs(data))) / 30000
    hdu.scale("int16", bscale=scale, bzero=0.0)
    hdu.header["BLANK"] = -32768
    hdu.data = np.where(np.isnan(data), -32768, np.round(data / scale)).astype(np.int16)
    path = tmp_path / "int16.fits"
    hdu.writeto(path)
    cube = read_cube(path)
    np.testing.assert_allclose(cube.data, data, atol=scale, equal_nan=True)
    part = read_part(path, y=slice(0, 8), x=slice(0, 8))
    np.testing.assert_allclose(part.data, cube.data[:, :8, :8], atol=scale, equal_nan=True)
    assert cube_layout(path).shape == data.shape


def _mirror_x(header, data):
    header["CDELT1"], header["CRPIX1"] = -header["CDELT1"], header["NAXIS1"] + 1 - header["CRPIX1"]
    return data[..., ::-1]


def _mirror_y(header, data):
    header["CDELT2"], header["CRPIX2"] = -header["CDELT2"], header["NAXIS2"] + 1 - header["CRPIX2"]
    return data[..., ::-1, :]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_mirror_x, "mirrored"),
        (_mirror_y, "mirrored"),
        (lambda h, d: (h.update(CROTA2=30.0), d)[1], "rotated by 30 deg"),
        (lambda h, d: (h.update(PC1_1=0.866, PC1_2=-0.5, PC2_1=0.5, PC2_2=0.866), d)[1], "rotated by 30 deg"),
    ],
)
def test_mirrored_or_rotated_grids_are_refused(base, tmp_path, change, message):
    # Beam kernels, forward fits and position angles assume north up and east to the left:
    # the same sky on a mirrored grid came out with other angles, sizes and fluxes.
    header = base["header"].copy()
    header["NAXIS1"], header["NAXIS2"] = base["data"].shape[2], base["data"].shape[1]
    data = change(header, base["data"])
    with pytest.raises(InvalidInputError, match=message):
        read_cube(_write(tmp_path / "grid.fits", data, header))
    header = base["header"].copy()
    header["CROTA2"] = 0.01  # rounding: taken for none
    read_cube(_write(tmp_path / "tiny.fits", base["data"], header))


def test_north_angle_of_a_galactic_grid(base, tmp_path):
    # A galactic grid points to galactic north: at l = 30, b = 0.5 that is 63 deg west of ICRS
    # north (from SkyCoord's own frame transformation); an ICRS grid points to ICRS north.
    from astropy.coordinates import SkyCoord

    header = base["header"].copy()
    header.update(CTYPE1="GLON-SIN", CTYPE2="GLAT-SIN", CRVAL1=30.0, CRVAL2=0.5)
    for key in ("RADESYS", "EQUINOX"):
        header.remove(key, ignore_missing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepFocusWarning)
        galactic = read_cube(_write(tmp_path / "galactic.fits", base["data"], header))
    here = SkyCoord(30.0 * u.deg, 0.5 * u.deg, frame="galactic")
    above = SkyCoord(30.0 * u.deg, 0.5 * u.deg + 1 * u.arcsec, frame="galactic")
    expected = (here.icrs.position_angle(above.icrs).to_value(u.deg) + 180) % 360 - 180
    x, y = galactic.wcs.celestial.wcs.crpix - 1
    assert galactic.north_angle(x, y) == pytest.approx(expected, abs=1e-3)
    assert -70 < expected < -55
    icrs = read_cube(base["path"])
    assert abs(icrs.north_angle(*(icrs.wcs.celestial.wcs.crpix - 1))) < 1e-6


def test_coarse_pixels_and_few_channels_warn(base, tmp_path):
    header = base["header"].copy()
    pixels_per_beam = header["BMAJ"] / abs(header["CDELT2"])
    header["BMAJ"] = header["BMIN"] = 2.5 * abs(header["CDELT2"])  # 2.5 pixels across the beam
    with pytest.warns(DeepFocusWarning, match="the beam spans 2.5 pixels"):
        read_cube(_write(tmp_path / "coarse.fits", base["data"], header))
    assert pixels_per_beam >= 3  # the cube as simulated does not warn:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepFocusWarning)
        read_cube(base["path"])
    with pytest.warns(DeepFocusWarning, match="only 5 channels"):
        read_cube(_write(tmp_path / "few.fits", base["data"][:5], base["header"].copy()))


def test_jy_per_steradian(base, tmp_path):
    h = base["header"].copy()
    h["BUNIT"] = "MJy/sr"
    beam = Beam(h["BMAJ"] * u.deg, h["BMIN"] * u.deg, h["BPA"] * u.deg)
    per_sr = base["data"] / beam.sr.to_value(u.sr) / 1e6
    cube = read_cube(_write(tmp_path / "sr.fits", per_sr, h))
    np.testing.assert_allclose(cube.data, base["data"], rtol=1e-5, atol=1e-6 * np.max(np.abs(base["data"])))


def test_mjy_per_beam(base, tmp_path):
    h = base["header"].copy()
    h["BUNIT"] = "mJy/beam"
    cube = read_cube(_write(tmp_path / "mjy.fits", base["data"] * 1e3, h))
    np.testing.assert_allclose(cube.data, base["data"], rtol=1e-6, atol=1e-9)


def test_kelvin_converted_through_beam(base, tmp_path):
    major, minor, pa = base["beams"]
    jtok = np.array(
        [
            Beam(a * u.arcsec, b * u.arcsec, c * u.deg).jtok(f * u.Hz).value
            for a, b, c, f in zip(major, minor, pa, base["freqs"], strict=True)
        ]
    )
    kelvin = base["data"] * jtok[:, None, None]
    h = _casa_header(base["header"])
    h["BUNIT"] = "K"
    cube = read_cube(_write(tmp_path / "k.fits", kelvin[None], h, base["beams"]))
    scale = np.max(np.abs(base["data"]))
    np.testing.assert_allclose(cube.data, base["data"], rtol=1e-5, atol=1e-6 * scale)


def test_nan_border(base, tmp_path):
    data = base["data"].copy()
    data[:, :4], data[:, -4:], data[:, :, :4], data[:, :, -4:] = np.nan, np.nan, np.nan, np.nan
    assert 0.29 < np.isnan(data).mean() < 0.32
    cube = read_cube(_write(tmp_path / "nan.fits", data, base["header"]))
    np.testing.assert_array_equal(cube.valid, np.isfinite(data))
    assert np.isnan(cube.data[:, 0, 0]).all()
    assert np.all(np.isfinite(cube.noise))
    for k in range(cube.n_channels):
        finite = data[k][np.isfinite(data[k])]
        expected = mad_std(sigma_clip(finite, sigma=3, maxiters=5, stdfunc="mad_std", masked=False))
        assert cube.noise[k].value == pytest.approx(expected, rel=1e-3)  # same definition
    full = read_cube(base["path"])
    assert np.median(cube.noise.value) == pytest.approx(np.median(full.noise.value), rel=0.1)


def test_all_nan_channel_allowed(base, tmp_path):
    data = base["data"].copy()
    data[3] = np.nan
    data[5, :, :] = np.nan
    data[5, 0, :5] = 1e-3  # 5 valid pixels: too few for a noise estimate
    data[7] = 0.0  # how CASA can leave a fully flagged channel
    with pytest.warns(DeepFocusWarning, match=r"input channels \[7\] are exactly 0"):
        cube = read_cube(_write(tmp_path / "chan.fits", data, base["header"]))
    assert np.isnan(cube.noise[[3, 5, 7]].value).all() and not cube.valid[7].any()
    assert np.isfinite(np.delete(cube.noise.value, [3, 5, 7])).all()


def test_channels_without_measurable_noise_are_named(base, tmp_path):
    # A border written as zeros instead of NaN, over most of the image in three channels: their
    # robust noise is 0, so they are blank to the detector; the warning names them.
    data = base["data"].copy()
    n_chan, ny, nx = data.shape
    yy, xx = np.mgrid[:ny, :nx]
    border = np.hypot(yy - ny / 2, xx - nx / 2) > 0.3 * nx
    assert border.mean() > 0.5
    for k in (2, 3, 4):
        data[k][border] = 0.0
    with pytest.warns(DeepFocusWarning, match=r"input channels \[2, 3, 4\] have no measurable noise"):
        cube = read_cube(_write(tmp_path / "zeros.fits", data, base["header"]))
    assert np.isnan(cube.noise[[2, 3, 4]].value).all()
    header = base["header"].copy()  # the same file with a descending frequency axis
    header["CRVAL3"] += (n_chan - 1) * header["CDELT3"]
    header["CDELT3"] = -header["CDELT3"]
    with pytest.warns(
        DeepFocusWarning, match=rf"input channels \[{n_chan - 5}, {n_chan - 4}, {n_chan - 3}\] have"
    ):
        read_cube(_write(tmp_path / "desc.fits", data[::-1], header))


def test_noise_matches_simulator(base):
    cube = read_cube(base["path"])
    truth = base["sim"].truth
    assert len(truth) <= 2  # source-sparse
    expected = truth.meta["noise_rms_jy_per_beam"]
    assert np.median(cube.noise.to_value(u.Jy / u.beam)) == pytest.approx(expected, rel=0.1)


def test_robust_channel_noise_clips_sources():
    rng = np.random.default_rng(3)
    data = rng.normal(0, 2.0, (3, 64, 64))
    data[:, 10:14, 10:14] += 100.0  # a bright source
    data[1, :20] = np.nan
    noise = robust_channel_noise(data)
    np.testing.assert_allclose(noise, 2.0, rtol=0.05)


def test_infinite_values_warn(base, tmp_path):
    data = base["data"].copy()
    data[2, 10, 10], data[4, 0, 0] = np.inf, -np.inf
    with pytest.warns(DeepFocusWarning, match="2 infinite values"):
        cube = read_cube(_write(tmp_path / "inf.fits", data, base["header"]))
    assert np.isnan(cube.data[2, 10, 10]) and not cube.valid[4, 0, 0]
    assert cube.valid.sum() == cube.valid.size - 2


def test_missing_padding_only_warns(base, tmp_path):
    raw = base["path"].read_bytes()
    assert len(raw) % 2880 == 0 and (base["data"].nbytes % 2880) > 0
    path = tmp_path / "short.fits"
    path.write_bytes(raw[:-100])  # the data are complete, only the FITS block padding is cut
    with pytest.warns(DeepFocusWarning, match="truncated"):
        cube = read_cube(path)
    np.testing.assert_array_equal(cube.data, base["data"])


def test_input_file_unchanged(base, tmp_path):
    path = _descending(base, tmp_path / "keep.fits")
    old = time.time() - 3600
    os.utime(path, (old, old))
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    cube = read_cube(path)
    cube.data[:] = 0  # the prepared data are a copy, not a view of the file
    del cube
    after = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    assert before == after


def test_spectral_cube_input_and_view(base):
    from_file = read_cube(base["path"])
    in_memory = read_cube(base["sim"].dirty)
    assert in_memory.source_path is None
    np.testing.assert_allclose(in_memory.data, from_file.data, rtol=1e-6)
    np.testing.assert_allclose(in_memory.spectral_axis, from_file.spectral_axis)
    view = from_file.spectral_cube()
    assert view.unit == u.Jy / u.beam and view.shape == from_file.shape
    again = read_cube(view)
    np.testing.assert_array_equal(again.data, from_file.data)
    np.testing.assert_allclose(again.beams.major, from_file.beams.major)


def test_spectral_cube_velocity_input(base):
    velocity = base["sim"].dirty.with_spectral_unit(u.km / u.s, velocity_convention="radio")
    cube = read_cube(velocity)
    assert not cube.flipped  # same channel order: velocity descending, frequency ascending
    np.testing.assert_allclose(cube.spectral_axis.to_value(u.Hz), base["freqs"], rtol=0, atol=1e3)
    np.testing.assert_allclose(cube.data, base["data"], rtol=1e-6)


def test_varying_resolution_view_round_trip(base, tmp_path):
    cube = read_cube(_descending(base, tmp_path / "d.fits"))
    view = cube.spectral_cube()
    assert hasattr(view, "beams")
    np.testing.assert_allclose(view.spectral_axis.to_value(u.Hz), cube.spectral_axis.to_value(u.Hz))
    again = read_cube(view)
    assert not again.flipped
    np.testing.assert_array_equal(again.data, cube.data)
    np.testing.assert_allclose(again.beams.major, cube.beams.major)


def test_coordinates(base):
    cube = read_cube(base["path"])
    coord = cube.pixel_to_world(24.0, 24.0)
    assert isinstance(coord, SkyCoord) and coord.frame.name == "icrs"
    h = base["header"]
    assert coord.ra.deg == pytest.approx(h["CRVAL1"], abs=1e-9)
    assert coord.dec.deg == pytest.approx(h["CRVAL2"], abs=1e-9)
    f = cube.spectral_axis.to_value(u.GHz)
    assert cube.channel_to_frequency(2).to_value(u.GHz) == pytest.approx(f[2])
    np.testing.assert_allclose(
        cube.channel_to_frequency([0.5, -1.0, cube.n_channels]).to_value(u.GHz),
        [0.5 * (f[0] + f[1]), 2 * f[0] - f[1], 2 * f[-1] - f[-2]],
    )


def test_rest_frequency_default(base, tmp_path):
    h = base["header"].copy()
    del h["RESTFRQ"]
    cube = read_cube(_write(tmp_path / "norest.fits", base["data"], h))
    assert not cube.rest_frequency_from_header
    f = cube.spectral_axis
    assert cube.rest_frequency.to_value(u.GHz) == pytest.approx(0.5 * (f[0] + f[-1]).to_value(u.GHz))


def test_psf(base, tmp_path):
    cube = read_cube(base["path"], psf=base["psf_path"])
    assert cube.psf.shape == cube.shape and cube.psf.dtype == np.float32
    expected = base["sim"].psf / base["sim"].psf[:, 24:25, 24:25]
    np.testing.assert_allclose(cube.psf, expected, rtol=1e-5, atol=1e-6)
    # Descending cube and PSF: both reordered.
    with fits.open(base["psf_path"]) as hdul:
        h, psf = hdul[0].header.copy(), hdul[0].data[::-1]
    h["CRVAL3"], h["CDELT3"] = base["freqs"][-1], -h["CDELT3"]
    psf_desc = _write(tmp_path / "psf_desc.fits", psf, h)
    desc = read_cube(_descending(base, tmp_path / "desc.fits"), psf=psf_desc)
    np.testing.assert_allclose(desc.psf, cube.psf, rtol=1e-6)
    # A PSF whose channels run the other way from the cube's, or lie elsewhere, is refused: its
    # planes would be paired with the wrong channels.
    with pytest.raises(InvalidInputError, match="the cube's the other way"):
        read_cube(base["path"], psf=psf_desc)
    with pytest.raises(InvalidInputError, match="the cube's the other way"):
        prepare(read_cube(base["path"]), psf=psf_desc)  # a PSF attached to a prepared cube
    h_other = h.copy()
    h_other["CRVAL3"] = 0.5 * base["freqs"][-1]
    with pytest.raises(InvalidInputError, match=r"PSF's channels \(.* GHz\) are not the cube's"):
        read_cube(
            _descending(base, tmp_path / "desc2.fits"), psf=_write(tmp_path / "psf_other.fits", psf, h_other)
        )
    with pytest.raises(InvalidInputError, match="3 channels but the cube has 12"):
        read_cube(base["path"], psf=np.ones((3, 48, 48)))
    with fits.open(base["psf_path"]) as hdul:
        h, psf = hdul[0].header.copy(), hdul[0].data
    h["CDELT1"], h["CDELT2"] = 2 * h["CDELT1"], 2 * h["CDELT2"]
    coarse = _write(tmp_path / "psf_coarse.fits", psf, h)
    with pytest.raises(InvalidInputError, match="PSF's pixels"):
        read_cube(base["path"], psf=coarse)


# --------------------------------------------------------------------------------------------
# bad input


def _two_d(base, path):
    h = base["header"].copy()
    for key in ("CTYPE3", "CRVAL3", "CDELT3", "CRPIX3", "CUNIT3", "WCSAXES"):
        h.remove(key, ignore_missing=True)
    return _write(path, base["data"][0], h)


def _one_channel(base, path):
    return _write(path, base["data"][:1], base["header"])


def _no_wcs(base, path):
    h = base["header"].copy()
    for i in (1, 2, 3):
        del h[f"CTYPE{i}"]
    return _write(path, base["data"], h)


def _no_spectral(base, path):
    h = base["header"].copy()
    h["CTYPE3"], h["CUNIT3"] = "TIME", "s"
    return _write(path, base["data"], h)


def _no_beam(base, path):
    h = _casa_header(base["header"])  # BMAJ removed, and no BEAMS table written
    return _write(path, base["data"][None], h)


def _bunit(value):
    def make(base, path):
        h = base["header"].copy()
        h["BUNIT"] = value
        return _write(path, base["data"], h)

    return make


def _all_nan(base, path):
    return _write(path, np.full_like(base["data"], np.nan), base["header"])


def _truncated(base, path):
    raw = base["path"].read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _velocity_no_rest(base, path):
    h = base["header"].copy()
    del h["RESTFRQ"]
    h["CTYPE3"], h["CUNIT3"], h["CRVAL3"], h["CDELT3"] = "VRAD", "km/s", 100.0, -20.0
    return _write(path, base["data"], h)


def _non_square(base, path):
    h = base["header"].copy()
    h["CDELT2"] *= 1.5
    return _write(path, base["data"], h)


def _zero_size(base, path):
    h = base["header"].copy()
    return _write(path, np.zeros((0, 48, 48), np.float32), h)


def _q_only(base, path):
    return _write(path, base["data"][None], _casa_header(base["header"], stokes=2.0), base["beams"])


def _extra_axis(base, path):
    h = _casa_header(base["header"])
    h["CTYPE4"] = "LINEAR"
    return _write(path, np.stack([base["data"]] * 2), h, base["beams"])


def _empty(base, path):
    fits.PrimaryHDU(header=base["header"]).writeto(path)
    return path


def _directory(base, path):
    path.mkdir()
    return path


def _missing(base, path):
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (_two_d, "deepfocus needs a spectral cube \\(3-D\\); got a 2-D image"),
        (_one_channel, "got a 2-D image \\(a single channel\\)"),
        (_no_wcs, "no celestial WCS"),
        (_no_spectral, "no spectral axis"),
        (_no_beam, "no beam"),
        (_bunit("Jy/pixel"), "flux density per pixel"),
        (_bunit("erg/s"), "unsupported brightness unit BUNIT = 'erg / s'"),
        (_bunit("furlongs"), "unknown brightness unit BUNIT = 'furlongs'"),
        (_all_nan, "all NaN"),
        (_truncated, "truncated or corrupt"),
        (_velocity_no_rest, "RESTFRQ"),
        (_non_square, "non-square pixels"),
        (_zero_size, "zero-length axis"),
        (_q_only, "Stokes Q but no Stokes I"),
        (_extra_axis, "unexpected axis 4 \\(CTYPE4 = 'LINEAR'\\) of length 2"),
        (_empty, "no image data"),
        (_directory, "is a directory"),
        (_missing, "no such file"),
    ],
)
def test_bad_input(base, tmp_path, make, message):
    path = make(base, tmp_path / "bad.fits")
    with pytest.raises(InvalidInputError, match=message) as info:
        read_cube(path)
    assert str(path) in str(info.value)


def test_bad_type():
    with pytest.raises(TypeError, match="FITS path or a SpectralCube"):
        read_cube(np.zeros((3, 4, 4)))
