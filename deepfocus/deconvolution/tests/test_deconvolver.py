"""Deconvolver, HogbomClean, their products and the ``deepfocus deconvolve`` command."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from radio_beam import Beam
from spectral_cube import Projection, SpectralCube

from deepfocus.cli import main
from deepfocus.deconvolution import DeconvolutionResult, HogbomClean
from deepfocus.deconvolution.products import convolve_centred
from deepfocus.exceptions import InvalidInputError

torch = pytest.importorskip("torch")

from deepfocus.deconvolution import Deconvolver  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def sim():
    from deepfocus.simulation import Observation, simulate

    return simulate(Observation(npix=96, n_channels=16), seed=2)


@pytest.fixture(scope="module")
def network():
    return Deconvolver()


def _psf(n, sigma=2.0):
    """A Gaussian PSF (FWHM 2.355 sigma pixels) with ripples, peak 1 at pixel (n // 2, n // 2)."""
    yy, xx = np.mgrid[:n, :n] - n // 2
    psf = np.exp(-0.5 * (xx**2 + yy**2) / sigma**2)
    psf += 0.1 * np.cos(xx / 2.0) * np.exp(-0.5 * (xx**2 + yy**2) / (4 * sigma) ** 2) * (np.hypot(xx, yy) > 3)
    return psf / psf[n // 2, n // 2]


def _cube(data, *, descending=False, beam=True):
    """A SpectralCube in Jy/beam on 0.2 arcsec pixels with a 0.94 arcsec beam."""
    n_chan, ny, nx = data.shape
    w = WCS(naxis=3)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ"]
    w.wcs.cunit = ["deg", "deg", "Hz"]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600, -1e6 if descending else 1e6]
    w.wcs.crpix = [nx // 2 + 1, ny // 2 + 1, 1]
    w.wcs.crval = [150.0, -30.0, 230e9]
    w.wcs.restfrq = 230e9
    beam = Beam(major=0.94 * u.arcsec, minor=0.94 * u.arcsec, pa=0 * u.deg) if beam else None
    return SpectralCube(data=data * u.Jy / u.beam, wcs=w, beam=beam, meta={"BUNIT": "Jy/beam"})


def _point_source_cube(n=48, n_chan=4, flux=2.5, x=20, y=27, noise=1e-8, descending=False):
    psf = _psf(n)
    rng = np.random.default_rng(0)
    data = rng.normal(0, noise, (n_chan, n, n))
    # A point source in channel 1 only: its dirty image is the PSF centred on (y, x).
    point = np.zeros((1, n, n))
    point[0, y, x] = flux
    data[1] += convolve_centred(point, psf)[0]
    return _cube(data.astype(np.float32), descending=descending), psf


def test_clean_recovers_a_noiseless_point_source_exactly():
    cube, psf = _point_source_cube()
    # The robust noise of the source's channel is set by its sidelobes (~2e-4 Jy/beam): a
    # threshold of 0.01 of it stops CLEAN once the residual is below ~2e-6 Jy/beam.
    result = HogbomClean(mode="cube", gain=0.5, threshold=0.01, max_iter=500)(cube, psf=psf)
    sky = result.sky.filled_data[:].to_value(u.Jy / u.pix)
    assert result.sky.unit == u.Jy / u.pix
    assert sky[1].sum() == pytest.approx(2.5, rel=1e-5)
    assert np.unravel_index(np.argmax(sky[1]), sky[1].shape) == (27, 20)
    assert np.count_nonzero(sky[1]) == 1
    assert result.meta["method"] == "hogbom" and result.meta["iterations"][1] > 0


def test_channel_order_and_wcs_of_a_descending_cube():
    cube, psf = _point_source_cube(descending=True)
    result = HogbomClean(mode="cube", gain=0.5, threshold=0.01)(cube, psf=psf, residual=True, restored=True)
    sky = result.sky.filled_data[:].value
    # The source stays in input channel 1, and the output's spectral axis is the input's.
    assert sky[1].sum() == pytest.approx(2.5, rel=1e-5)
    assert np.unravel_index(np.argmax(sky[1]), sky[1].shape) == (27, 20)
    assert np.allclose(result.sky.spectral_axis.to_value(u.Hz), cube.spectral_axis.to_value(u.Hz))
    assert result.restored.unit == u.Jy / u.beam
    # Restored: the CLEAN component through the restoring beam (peak 1) plus the residual.
    restored = result.restored.filled_data[:].value
    assert restored[1, 27, 20] == pytest.approx(2.5, rel=1e-3)
    assert np.abs(result.residual.filled_data[:].value[1]).max() < 1e-5


def test_network_image_units_wcs_and_products(sim, network):
    result = network(sim.dirty, psf=sim.psf, residual=True, restored=True)
    assert isinstance(result, DeconvolutionResult)
    assert isinstance(result.sky, Projection) and isinstance(result.dirty, Projection)
    assert result.meta["model"] == "deconvolver-default" and result.meta["seconds"] > 0
    assert result.sky.unit == u.Jy * u.km / u.s / u.pix
    assert result.residual.unit == u.Jy * u.km / u.s / u.beam
    assert result.sky.wcs.wcs.compare(sim.dirty.wcs.celestial.wcs, tolerance=1e-10)
    assert result.sky.shape == sim.dirty.shape[1:]
    # residual = dirty moment-0 - sky (x) PSF: the dirty image is recovered from the two.
    from deepfocus.io.cube import read_cube

    prepared = read_cube(sim.dirty)
    dirty = np.nansum(prepared.data, axis=0) * prepared.channel_velocity_width.to_value(u.km / u.s)
    model = convolve_centred(result.sky.value[None], sim.psf.mean(axis=0))[0]
    assert np.allclose(result.residual.value + model, dirty, atol=1e-4 * np.abs(dirty).max())


def test_network_conserves_flux_on_simulated_cubes(network):
    """Total flux of the integrated sky estimate within 25 % of the truth (the benchmark's
    median error is a few per cent; 25 % bounds every cube of these seeds)."""
    from deepfocus.simulation import Observation, simulate

    for seed in (21, 22, 23):
        s = simulate(Observation(npix=96, n_channels=16), seed=seed, n_sources=3)
        result = network(s.dirty)
        from deepfocus.io.cube import read_cube

        dv = read_cube(s.dirty).channel_velocity_width.to_value(u.km / u.s)
        truth = s.sky.unmasked_data[:].value.sum() * dv
        assert np.nansum(result.sky.value) == pytest.approx(truth, rel=0.25)


def test_tiled_equals_untiled_away_from_edges(sim):
    whole = Deconvolver(tile_size=512)(sim.dirty).sky.value
    tiled = Deconvolver(tile_size=64, overlap=32)(sim.dirty).sky.value
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(tiled - whole)[inner].max() < 0.02 * np.abs(whole).max()
    assert tiled.sum() == pytest.approx(whole.sum(), rel=0.01)


def test_image_wide_norm_calibrates_every_layer_once(network):
    from deepfocus.deconvolution.normstats import ImageWideNorm

    norm = ImageWideNorm(network.network, 1)
    flat = [i for group in norm.levels for i in group]
    assert sorted(flat) == sorted(norm.order) == list(range(len(norm.norms)))
    # Layers fed by the same tensor (a residual block's shortcut and body) share a pass.
    assert len(norm.levels) < len(norm.order)


def test_cube_mode_keeps_channels_and_units(sim, network):
    cube = Deconvolver(mode="cube")(sim.dirty)
    assert isinstance(cube.sky, SpectralCube)
    assert cube.sky.shape == sim.dirty.shape and cube.sky.unit == u.Jy / u.pix
    assert np.allclose(cube.sky.spectral_axis.to_value(u.Hz), sim.dirty.spectral_axis.to_value(u.Hz))


def test_cube_mode_conserves_the_image_flux_and_follows_the_spectra(network):
    from deepfocus.io.cube import read_cube
    from deepfocus.simulation import Observation, simulate

    s = simulate(Observation(npix=96, n_channels=64), seed=47, n_sources=2)
    dv = read_cube(s.dirty).channel_velocity_width.to_value(u.km / u.s)
    image = network(s.dirty).sky.value
    cube = Deconvolver(mode="cube")(s.dirty).sky.unmasked_data[:].value
    truth = s.sky.unmasked_data[:].value
    # The cube's total is the band image's (the flux is shared out, not created).
    assert np.nansum(cube) * dv == pytest.approx(np.nansum(image), rel=1e-4)
    # Around the sources, the spectrum of the estimate follows the true one (lines and the
    # continuum of one of them) and its total is close to the truth's.
    yy, xx = np.mgrid[: cube.shape[1], : cube.shape[2]]
    close = np.zeros(cube.shape[1:], dtype=bool)
    for row in s.truth:
        close |= np.hypot(xx - row["x_centroid"].value, yy - row["y_centroid"].value) < 10
    spectrum, true_spectrum = cube[:, close].sum(axis=1), truth[:, close].sum(axis=1)
    assert np.corrcoef(spectrum, true_spectrum)[0, 1] > 0.9
    assert spectrum.sum() == pytest.approx(true_spectrum.sum(), rel=0.4)


def test_bad_input(sim, network):
    with pytest.raises(InvalidInputError, match="need the PSF"):
        network(sim.dirty, residual=True)
    with pytest.raises(InvalidInputError, match="CLEAN needs the PSF"):
        HogbomClean()(sim.dirty)
    with pytest.raises(InvalidInputError, match="PSF planes are"):
        HogbomClean()(sim.dirty, psf=np.ones((16, 2, 96)))
    with pytest.raises(InvalidInputError, match="peaks? at its centre"):
        HogbomClean()(sim.dirty, psf=np.roll(sim.psf, 5, axis=2))
    with pytest.raises(InvalidInputError, match="channels"):
        HogbomClean()(sim.dirty, psf=sim.psf[:3])
    with pytest.raises(InvalidInputError, match="no beam"):
        network(_cube(np.ones((4, 16, 16), np.float32), beam=False))
    with pytest.raises(InvalidInputError, match="mode"):
        Deconvolver(mode="3d")
    with pytest.raises(InvalidInputError, match="overlap"):
        Deconvolver(tile_size=64, overlap=64)
    with pytest.raises(InvalidInputError, match="gain"):
        HogbomClean(gain=0)
    for threads in (0, -1, 1.5, True):  # torch would take 0 as its default, silently
        with pytest.raises(InvalidInputError, match="threads must be a positive integer"):
            Deconvolver(threads=threads)


@pytest.mark.parametrize("threshold", [np.nan, np.inf, -np.inf, -1.0])
def test_clean_threshold_must_be_finite_and_not_negative(threshold):
    with pytest.raises(InvalidInputError, match=r"threshold must be a finite number >= 0 \(noise units\)"):
        HogbomClean(threshold=threshold)


def test_cli_writes_fits_with_wcs_and_units(tmp_path, sim, capsys):
    cube_path = tmp_path / "cube.fits"
    sim.dirty.write(cube_path)
    psf_path = tmp_path / "cube.psf.fits"
    fits.PrimaryHDU(sim.psf, header=sim.dirty.wcs.to_header()).writeto(psf_path)
    out, res, rest = tmp_path / "sky.fits", tmp_path / "res.fits", tmp_path / "rest.fits"
    argv = [
        "deconvolve", str(cube_path), "--output", str(out), "--psf", str(psf_path),
        "--residual", str(res), "--restored", str(rest), "--quiet", "--threads", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    header = fits.getheader(out)
    assert u.Unit(header["BUNIT"]) == u.Jy * u.km / u.s / u.pix
    assert WCS(header).wcs.compare(sim.dirty.wcs.celestial.wcs, tolerance=1e-10)
    assert u.Unit(fits.getheader(res)["BUNIT"]) == u.Jy * u.km / u.s / u.beam
    assert fits.getheader(rest)["BMAJ"] > 0
    # Existing outputs are refused without --overwrite; cube mode writes Jy/pixel per channel.
    assert main(argv) == 1
    assert (
        f"output exists: --output {out}, --residual {res}, --restored {rest} (use --overwrite)"
        in capsys.readouterr().err
    )
    out_cube = tmp_path / "sky_cube.fits"
    argv = ["deconvolve", str(cube_path), "--output", str(out_cube), "--mode", "cube", "--method", "clean"]
    png = tmp_path / "sky.png"
    assert main([*argv, "--psf", str(psf_path), "--quiet", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with fits.open(out_cube) as hdul:
        assert hdul[0].data.shape == sim.dirty.shape
        assert u.Unit(hdul[0].header["BUNIT"]) == u.Jy / u.pix
        assert WCS(hdul[0].header).wcs.spec == 2
    # CLEAN without a PSF: one line, no traceback.
    assert main([*argv, "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "--method clean needs the PSF: give --psf" in err and "Traceback" not in err
    # The residual without a PSF: refused before any work, naming the option to give.
    sky, res = tmp_path / "x.fits", tmp_path / "r.fits"
    argv = ["deconvolve", str(cube_path), "--output", str(sky), "--residual", str(res)]
    assert main(argv) == 1
    assert "--residual and --restored need the PSF: give --psf" in capsys.readouterr().err
    assert not sky.exists()
    # No output may be an input, even with --overwrite.
    psf_before = psf_path.read_bytes()
    argv = ["deconvolve", str(cube_path), "--output", str(psf_path), "--psf", str(psf_path), "--overwrite"]
    assert main(argv) == 1
    assert "--output" in (err := capsys.readouterr().err) and "is the input --psf" in err
    assert psf_path.read_bytes() == psf_before
    # CLEAN's settings without CLEAN: refused, not silently ignored.
    argv = ["deconvolve", str(cube_path), "--output", str(sky), "--gain", "0.2", "--niter", "5"]
    assert main(argv) == 1
    assert "--gain, --niter set CLEAN: give --method clean too" in capsys.readouterr().err
    assert not sky.exists()


def _small_cube_files(folder):
    """An 8-channel 48x48 cube with a point source, and its PSF, as FITS files."""
    cube, psf = _point_source_cube(n_chan=8)
    cube.write(folder / "cube.fits")
    planes = np.repeat(psf[None].astype(np.float32), cube.shape[0], axis=0)
    fits.PrimaryHDU(planes, header=cube.wcs.to_header()).writeto(folder / "cube.psf.fits")
    return folder / "cube.fits", folder / "cube.psf.fits"


def test_cli_refuses_bad_cube_and_output_names_before_any_work(tmp_path, capsys):
    cube, psf = _small_cube_files(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()

    def error(*args):
        assert main(["deconvolve", *map(str, args)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("deepfocus deconvolve: error: ") and len(err.strip().splitlines()) == 1
        return err

    # A folder as the cube: said to be one, not "no such file".
    assert f"CUBE {folder} is a folder, not a FITS file" in error(folder, "--output", tmp_path / "a.fits")
    # FITS under another name: refused, naming the option, and nothing written.
    for option in ("--output", "--residual", "--restored"):
        outputs = {"--output": tmp_path / "sky.fits", option: tmp_path / "image.png"}
        argv = [a for item in outputs.items() for a in item]
        err = error(cube, *argv, "--psf", psf)
        assert f"{option} {tmp_path / 'image.png'}: not a FITS file name (use .fits, .fit, .fts" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.fits", "cube.psf.fits", "folder"]
    # A NaN or infinite CLEAN threshold: refused, not a run of --niter components per plane.
    for value in ("nan", "inf"):
        err = error(
            cube, "--output", tmp_path / "k.fits", "--method", "clean", "--psf", psf, "--threshold", value
        )
        assert f"threshold must be a finite number >= 0 (noise units), got {value}" in err
    assert not (tmp_path / "k.fits").exists()
    # The FITS suffixes, any case, optionally compressed, are accepted.
    for name in ("k.FITS", "k.fit", "k.fts.gz", "k.fits.bz2"):
        argv = [cube, "--output", tmp_path / name, "--method", "clean", "--psf", psf, "--quiet"]
        assert main(["deconvolve", *map(str, argv)]) == 0
        assert fits.getdata(tmp_path / name).shape == (48, 48)


@pytest.fixture(scope="module")
def casa_style_files(tmp_path_factory):
    """A bright simulated cube as CASA writes it (Stokes axis, per-channel beams, descending
    frequency, NaN border) and its PSF (file channel order), as FITS files."""
    from deepfocus.detection.tests import helpers

    folder = tmp_path_factory.mktemp("ooc")
    bright = helpers.simulation()
    cube_path = helpers.casa_style(helpers.write_simulation(bright, folder)["dirty"], folder / "cube.fits")
    psf_path = folder / "cube.psf.fits"
    header = bright.dirty.wcs.to_header()
    spectral = {key: fits.getheader(cube_path)[key] for key in ("CRVAL3", "CDELT3", "CRPIX3")}
    header.update(spectral)  # descending, as the cube's
    fits.PrimaryHDU(bright.psf[::-1].astype(np.float32), header=header).writeto(psf_path)
    return cube_path, psf_path


@pytest.mark.parametrize("method", ["network", "clean"])
def test_memory_limit_reads_the_cube_in_parts_with_the_same_result(
    casa_style_files, network, method, monkeypatch
):
    from deepfocus.deconvolution import out_of_core

    cube_path, psf_path = casa_style_files
    parts = []
    real = out_of_core.plan_tiles
    monkeypatch.setattr(out_of_core, "plan_tiles", lambda *a, **k: parts.append(real(*a, **k)) or parts[-1])
    make = (
        (lambda **k: Deconvolver(**k))
        if method == "network"
        else (lambda **k: HogbomClean(threshold=1.0, **k))
    )
    whole = (network if method == "network" else make())(
        cube_path, psf=psf_path, residual=True, restored=True
    )
    limit = 32 * 48 * 96 * 30  # parts of about 30 rows of all 48 channels
    in_parts = make(memory_limit=limit)(cube_path, psf=psf_path, residual=True, restored=True)
    assert len(parts) == 1 and len(parts[0]) > 2
    for name in ("dirty", "sky", "residual", "restored"):
        a, b = getattr(whole, name), getattr(in_parts, name)
        assert a.unit == b.unit and a.wcs.wcs.compare(b.wcs.wcs, tolerance=1e-12), name
        np.testing.assert_array_equal(np.isnan(a.value), np.isnan(b.value))
        np.testing.assert_allclose(b.value, a.value, rtol=1e-5, atol=1e-6 * np.nanmax(np.abs(a.value)))
    assert in_parts.restored.beam == whole.restored.beam
    # The PSF is read plane by plane there, and checked as a whole cube's: a PSF whose channels
    # run the other way from the cube's is refused.
    with fits.open(psf_path) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data
    header["CRVAL3"] += (data.shape[0] - 1) * header["CDELT3"]
    header["CDELT3"] *= -1
    reversed_psf = psf_path.parent / f"reversed_{method}.psf.fits"
    fits.writeto(reversed_psf, data, header, overwrite=True)
    with pytest.raises(InvalidInputError, match="the cube's the other way"):
        make(memory_limit=limit)(cube_path, psf=reversed_psf)
    with pytest.raises(InvalidInputError, match="mode='image' only"):
        Deconvolver(mode="cube", memory_limit="1 GiB")


def test_cli_memory_limit(casa_style_files, tmp_path, capsys):
    cube_path, _ = casa_style_files
    out = tmp_path / "sky.fits"
    argv = ["deconvolve", str(cube_path), "--output", str(out), "--quiet", "--threads", "1"]
    assert main([*argv, "--memory-limit", "2MiB"]) == 0
    reference = tmp_path / "ref.fits"
    assert main([*argv[:2], "--output", str(reference), *argv[4:]]) == 0
    np.testing.assert_allclose(fits.getdata(out), fits.getdata(reference), rtol=1e-5, atol=1e-9)
    assert main([*argv, "--memory-limit", "1GiB", "--mode", "cube", "--overwrite"]) == 1
    assert main([*argv, "--memory-limit", "100KiB", "--overwrite"]) == 1
    assert "too small" in capsys.readouterr().err


def _example(name):
    """Path of a file of the bundled example (``deepfocus detect --example``)."""
    from importlib import resources

    return str(resources.files("deepfocus.data") / name)


@pytest.mark.parametrize("tile_size", [1024, 64])
def test_nan_border_leaves_the_flux(network, tmp_path, tile_size):
    """Blank border rows (CASA's NaN outside the primary-beam cutoff) are left out of the
    network's normalisation statistics, which set its flux scale. With 5 blank rows of the
    example cube the flux near the sources moved by +2.1 % and the total over the common area
    by +5.0 % when they counted as zeros; now by 0.0 % and +2.6 % (leaving those rows' real
    data out of the statistics alone moves the total over the common area by +2.0 %: the
    network's own dependence on the pixels it sees). Tiled (64-pixel tiles) and whole give the
    same."""
    from astropy.table import Table

    example = _example("example_dirty.fits")
    blank = tmp_path / "blank_border.fits"
    with fits.open(example) as hdul:
        hdul[0].data[:, :5] = np.nan  # no source within 40 pixels of these rows
        hdul.writeto(blank)
    method = network if tile_size == 1024 else Deconvolver(tile_size=tile_size, overlap=32)
    whole = method(example).sky.value
    sky = method(blank).sky.value
    # Still NaN where the input has no data, and only there.
    assert np.isnan(sky[:5]).all() and np.isfinite(sky[5:]).all()
    yy, xx = np.mgrid[: sky.shape[0], : sky.shape[1]]
    near = np.zeros(sky.shape, dtype=bool)
    for row in Table.read(_example("example_truth.ecsv")):
        near |= np.hypot(xx - row["x_centroid"], yy - row["y_centroid"]) < 6
    assert sky[near].sum() == pytest.approx(whole[near].sum(), rel=0.005)
    assert sky[5:].sum() == pytest.approx(whole[5:].sum(), rel=0.035)
    assert np.abs(sky - whole)[5:].max() < 0.015 * whole.max()


def test_valid_pixel_norm_is_the_network_on_a_full_image(network):
    from deepfocus.deconvolution.normstats import ValidPixelNorm

    x = torch.randn((2, 1, 48, 40), generator=torch.Generator().manual_seed(3))
    x[:, :, 20:24, 18:22] += 30
    with torch.no_grad():
        plain = network.network(x)
        with ValidPixelNorm(network.network) as norm:
            norm.set_weights(np.ones((2, 48, 40)))
            masked = network.network(x)
    assert torch.allclose(masked, plain, rtol=1e-4, atol=1e-4 * float(plain.abs().max()))


def test_image_mode_fits_name_the_integrated_band(network, tmp_path):
    """The 2-D products (sky, residual, restored) say which frequencies they integrate: the
    edges, centre and width of the channels summed (CASA ``imcollapse`` puts the centre and the
    full width on a degenerate axis; here keywords keep the image 2-D as spectral-cube's
    ``moment0().write`` does), with ``SPECSYS``, ``RESTFRQ``, ``BUNIT`` and the beam."""
    example, psf = _example("example_dirty.fits"), _example("example_psf.fits")
    # CASA flags a channel by writing it as 0: the first one is then not integrated.
    flagged = tmp_path / "flagged.fits"
    with fits.open(example) as hdul:
        hdul[0].data[0] = 0.0
        hdul.writeto(flagged)
        input_header = hdul[0].header.copy()
    with pytest.warns(Warning, match="channel"):
        result = network(flagged, psf=psf, residual=True, restored=True)
    paths = {name: tmp_path / f"{name}.fits" for name in ("sky", "residual", "restored")}
    result.write(paths["sky"], residual=paths["residual"], restored=paths["restored"])
    cube = SpectralCube.read(example)
    width = 15.625e6  # Hz, CDELT3 of the example
    low, high = 230e9 + width / 2, 230e9 + 39.5 * width  # channels 1-39 of 0-39
    beam = cube.beams[cube.shape[0] // 2] if hasattr(cube, "beams") else cube.beam
    units = {"sky": u.Jy * u.km / u.s / u.pix, "residual": u.Jy * u.km / u.s / u.beam}
    units["restored"] = units["residual"]
    for name, path in paths.items():
        header = fits.getheader(path)
        assert header["FREQMIN"] == pytest.approx(low, rel=1e-12), name
        assert header["FREQMAX"] == pytest.approx(high, rel=1e-12)
        assert header["FREQCEN"] == pytest.approx(0.5 * (low + high), rel=1e-12)
        assert header["BANDWID"] == pytest.approx(39 * width, rel=1e-9)
        assert header["NCHAN"] == 39
        assert header["CHANVWID"] == pytest.approx(
            width / input_header["RESTFRQ"] * 299792.458, rel=1e-6
        )  # km/s, the radio-velocity width the sum is multiplied by
        assert header["SPECSYS"] == "LSRK" and header["RESTFRQ"] == input_header["RESTFRQ"]
        assert u.Unit(header["BUNIT"]) == units[name]
        # Still a 2-D image with the input's celestial WCS (astropy, spectral-cube read it).
        assert header["NAXIS"] == 2 and WCS(header).naxis == 2
        assert WCS(header).wcs.compare(cube.wcs.celestial.wcs, tolerance=1e-10)
        assert Projection.from_hdu(fits.open(path)[0]).shape == cube.shape[1:]
        if name != "sky":  # the restoring beam of the middle channel
            assert header["BMAJ"] == pytest.approx(beam.major.to_value(u.deg), rel=1e-6)
            assert header["BMIN"] == pytest.approx(beam.minor.to_value(u.deg), rel=1e-6)
            assert header["BPA"] == pytest.approx(beam.pa.to_value(u.deg), abs=1e-4)
    # The in-memory products carry the same keywords.
    assert result.sky.header["BANDWID"] == pytest.approx(39 * width, rel=1e-9)


def test_band_keywords_of_a_descending_cube_read_in_parts(casa_style_files, network):
    """A CASA-style cube (descending frequency, NaN border): the band is the file's, whether the
    cube is read whole or in parts."""
    cube_path, _ = casa_style_files
    whole = network(cube_path).sky.header
    in_parts = Deconvolver(memory_limit=32 * 48 * 96 * 30)(cube_path).sky.header
    header = fits.getheader(cube_path)
    n, crpix, crval, cdelt = header["NAXIS3"], header["CRPIX3"], header["CRVAL3"], header["CDELT3"]
    assert cdelt < 0
    edges = crval + (np.array([0.5, n + 0.5]) - crpix) * cdelt
    for h in (whole, in_parts):
        assert h["FREQMIN"] == pytest.approx(edges.min(), rel=1e-12)
        assert h["FREQMAX"] == pytest.approx(edges.max(), rel=1e-12)
        assert h["NCHAN"] == n


@pytest.mark.parametrize("shape", [(90, 92), (97, 100), (33, 33)])
def test_valid_pixel_norm_is_the_network_on_a_padded_image(network, shape):
    """With every pixel valid, `ValidPixelNorm` is the plain network also where the network pads
    its input (sides not a multiple of its size multiple, 8): the padding, the edge pixels
    repeated, is weighted as those pixels are."""
    from deepfocus.deconvolution.normstats import ValidPixelNorm

    x = torch.randn((1, 1, *shape), generator=torch.Generator().manual_seed(5))
    x[:, :, 10:14, 12:16] += 30
    with torch.no_grad():
        plain = network.network(x)
        with ValidPixelNorm(network.network) as norm:
            norm.set_weights(np.ones((1, *shape)))
            masked = network.network(x)
    assert torch.allclose(masked, plain, rtol=1e-4, atol=1e-4 * float(plain.abs().max()))


def test_pool_weights_follows_the_network_downsampling():
    """A 33 x 33 input is padded to 40 x 40 (the edge repeated) and pooled by 2, 4 and 8: the
    deepest 5 x 5 map averages blocks of 8 x 8 padded pixels (not 7 x 7)."""
    from deepfocus.deconvolution.normstats import pad_weights, pool_weights

    weights = np.zeros((33, 33), np.float32)
    weights[:, 24:32] = 1  # the last column (32, repeated into the padding) has no data
    padded = np.pad(weights, ((0, 7), (0, 7)), mode="edge")
    tensor = torch.from_numpy(weights)[None, None]
    for factor in (1, 2, 4, 8):
        n = 40 // factor
        expected = padded.reshape(n, factor, n, factor).mean(axis=(1, 3))
        np.testing.assert_allclose(pool_weights(tensor, (n, n), multiple=8)[0, 0], expected, atol=1e-6)
        np.testing.assert_allclose(pool_weights(pad_weights(tensor, 8), (n, n))[0, 0], expected, atol=1e-6)
    # Unpadded (a network pooling by 2 with ceil_mode): the last of 5 pixels holds input pixel 32.
    np.testing.assert_allclose(pool_weights(tensor, (5, 5))[0, 0, 0], [0, 0, 0, 1, 0], atol=1e-6)
    # All pixels with data: every pooled weight is 1, at every level.
    ones = torch.ones((1, 1, 33, 33))
    for n in (40, 20, 10, 5):
        np.testing.assert_allclose(pool_weights(ones, (n, n), multiple=8), 1.0, atol=1e-6)
    np.testing.assert_allclose(pool_weights(ones, (5, 5)), 1.0, atol=1e-6)


@pytest.mark.parametrize(("corner", "rel"), [((0, 0), 0.005), ((-1, -1), 0.01)])
def test_one_blank_pixel_leaves_the_flux_of_a_cropped_cube(network, tmp_path, corner, rel):
    """On a 92 x 92 crop of the example cube (not a multiple of 8: the network pads it) one
    blank corner pixel must not change the flux scale: it moved the total by -3.2 % when the
    plain network counted the padding and the valid-pixel statistics did not. Now by 0.0 %, and
    by -0.6 % for the last pixel, which the padding repeats 24 times (-0.4 % with the plain
    network and a 0 there: the network's own sensitivity to it)."""
    example = _example("example_dirty.fits")
    crop, blank = tmp_path / "crop.fits", tmp_path / "crop_blank.fits"
    with fits.open(example) as hdul:
        hdul[0].data = hdul[0].data[:, :92, :92].copy()
        hdul.writeto(crop)
        hdul[0].data[:, corner[0], corner[1]] = np.nan
        hdul.writeto(blank)
    whole = network(crop).sky.value
    sky = network(blank).sky.value
    ok = np.isfinite(sky)
    assert ok.sum() == 92 * 92 - 1
    assert sky[ok].sum() == pytest.approx(whole[ok].sum(), rel=rel)
    assert np.abs(sky - whole)[ok].max() < 0.005 * whole.max()


@pytest.mark.parametrize(("tile_size", "overlap"), [(64, 32), (60, 24)])
def test_tiled_equals_untiled_on_a_size_the_network_pads(network, tmp_path, tile_size, overlap):
    """On a 92 x 92 crop of the example cube, which the network pads to 96 when it sees it
    whole, the tiles (of sides and starts rounded to multiples of 8, on the image padded as the
    network pads it) give the same flux scale as the whole image: the total moved by -5.1 % with
    64-pixel tiles, which the network does not pad, and by -2.9 % with 60-pixel ones."""
    crop = tmp_path / "crop.fits"
    with fits.open(_example("example_dirty.fits")) as hdul:
        hdul[0].data = hdul[0].data[:, :92, :92].copy()
        hdul.writeto(crop)
    whole = network(crop).sky.value
    tiled = Deconvolver(tile_size=tile_size, overlap=overlap)(crop).sky.value
    assert tiled.shape == whole.shape
    assert tiled.sum() == pytest.approx(whole.sum(), rel=0.005)
    assert np.abs(tiled - whole).max() < 0.02 * np.abs(whole).max()
