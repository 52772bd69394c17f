import re
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from deepfocus.exceptions import DeepFocusWarning, InvalidInputError
from deepfocus.simulation import Interferometer, Observation, SkyModel, fit_beam


def point_source(x, y, z=8.0, flux=1.0, width=100.0):
    return QTable(
        dict(
            x_centroid=[x] * u.pix,
            y_centroid=[y] * u.pix,
            z_centroid=[z] * u.one,
            fwhm_major=[0.0] * u.arcsec,
            fwhm_minor=[0.0] * u.arcsec,
            position_angle=[0.0] * u.deg,
            line_width=[width] * u.km / u.s,
            flux=[flux] * u.Jy * u.km / u.s,
        )
    )


def sky_for(interferometer, table):
    obs = interferometer.observation
    return SkyModel(
        table,
        (obs.n_channels, obs.npix, obs.npix),
        cell=interferometer.cell,
        channel_velocity_width=obs.channel_velocity_width,
    )


def test_psf_peak_one_at_phase_centre(small_interferometer):
    psf = small_interferometer.psf(0)
    assert psf.shape == (64, 64)
    assert psf[32, 32] == pytest.approx(1.0, abs=1e-6)
    assert np.unravel_index(np.argmax(psf), psf.shape) == (32, 32)


def test_cell_gives_requested_pixels_per_beam(small_interferometer):
    beam = small_interferometer.beam
    ratio = (beam.major / small_interferometer.cell).to_value(u.one)
    assert ratio == pytest.approx(5.0, rel=0.03)
    assert len(small_interferometer.beams) == 16


def test_point_source_dirty_image_is_shifted_psf(small_interferometer):
    alma = small_interferometer
    sky = sky_for(alma, point_source(32.0, 32.0))
    dirty = alma.dirty_signal(sky)
    spectrum = sky.spectra()[0]
    # Peak brightness in Jy/beam equals the point source's flux density in Jy.
    np.testing.assert_allclose(dirty[:, 32, 32], spectrum, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(dirty[8] / spectrum[8], alma.psf(8), atol=1e-4)
    # An offset source gives the PSF shifted by the offset.
    off = alma.dirty_signal(sky_for(alma, point_source(20.0, 41.0)))
    np.testing.assert_allclose(off[8, 41, 20], spectrum[8], rtol=1e-4)
    np.testing.assert_allclose(
        off[8, 41 - 5 : 41 + 6, 20 - 5 : 20 + 6] / spectrum[8], alma.psf(8)[27:38, 27:38], atol=1e-4
    )


def test_noise_level_and_correlation(small_interferometer):
    alma = small_interferometer
    noise = alma.noise(np.random.default_rng(3))
    expected = alma.noise_rms.to_value(u.Jy / u.beam)
    assert np.all(expected > 0)
    measured = noise.std(axis=(1, 2))
    np.testing.assert_allclose(measured.mean(), expected.mean(), rtol=0.05)
    # Image noise is correlated on the scale of the beam, as in a real dirty cube.
    plane = noise[0]
    power = np.abs(np.fft.fft2(plane)) ** 2
    autocorr = np.fft.fftshift(np.fft.ifft2(power).real)
    noise_beam = fit_beam(autocorr / autocorr.max(), alma.cell)
    assert 0.5 < (noise_beam.major / alma.beam.major).to_value(u.one) < 1.2


def test_noise_rms_scales_with_tsys_and_time(small_observation):
    base = Interferometer(small_observation).noise_rms.mean()
    hotter = Interferometer(small_observation.replace(tsys=160 * u.K)).noise_rms.mean()
    longer = Interferometer(small_observation.replace(total_time=2400 * u.s)).noise_rms.mean()
    assert (hotter / base).to_value(u.one) == pytest.approx(2.0, rel=1e-3)
    assert (longer / base).to_value(u.one) == pytest.approx(0.5, rel=0.05)


def test_observe_is_deterministic(small_interferometer):
    sky = sky_for(small_interferometer, point_source(30.0, 33.0, flux=0.5))
    a = small_interferometer.observe(sky, seed=7)
    b = small_interferometer.observe(sky, seed=7)
    c = small_interferometer.observe(sky, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_primary_beam_attenuates_offset_sources(small_observation):
    alma = Interferometer(small_observation.replace(primary_beam=True, cell=2.0 * u.arcsec, npix=64))
    sky = sky_for(alma, QTable(np_vstack_rows()))
    gain = alma.primary_beam_gain(sky)[:, 0]
    assert gain[0] == pytest.approx(1.0)
    # 12.5" from the centre at 230 GHz with a 12-m dish (FWHM 25.3") is close to half power.
    assert 0.45 < gain[1] < 0.55


def np_vstack_rows():
    return dict(
        x_centroid=[32.0, 32.0 + 6.25] * u.pix,
        y_centroid=[32.0, 32.0] * u.pix,
        z_centroid=[8.0, 8.0] * u.one,
        fwhm_major=[0.0, 0.0] * u.arcsec,
        fwhm_minor=[0.0, 0.0] * u.arcsec,
        position_angle=[0.0, 0.0] * u.deg,
        line_width=[100.0, 100.0] * u.km / u.s,
        flux=[1.0, 1.0] * u.Jy * u.km / u.s,
    )


def test_external_psf_is_used(small_observation):
    n = small_observation.npix
    yy, xx = np.mgrid[: 2 * n, : 2 * n] - n
    gaussian = np.exp(-0.5 * (xx**2 + yy**2) / 2.0**2)
    alma = Interferometer(small_observation.replace(cell=0.15 * u.arcsec), psf=gaussian)
    np.testing.assert_allclose(alma.psf(3), gaussian[n // 2 : n // 2 + n, n // 2 : n // 2 + n])
    beam = alma.beams[0]
    assert beam.major.to_value(u.arcsec) == pytest.approx(2.0 * 2.3548 * 0.15, rel=0.02)
    dirty = alma.dirty_signal(sky_for(alma, point_source(32.0, 32.0)))
    np.testing.assert_allclose(dirty[8, 30:35, 32] / dirty[8, 32, 32], gaussian[n - 2 : n + 3, n], atol=1e-4)


def test_bad_external_psf(small_observation):
    with pytest.raises(InvalidInputError, match="smaller than"):
        Interferometer(small_observation, psf=np.ones((10, 10)))
    bad = np.zeros((3, 64, 64))
    bad[:, 32, 32] = 1
    with pytest.raises(InvalidInputError, match="1 or 16 planes"):
        Interferometer(small_observation, psf=bad)
    with pytest.raises(InvalidInputError, match="peak 1"):
        Interferometer(small_observation, psf=np.zeros((64, 64)))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"configuration": "nope"}, "unknown antenna configuration"),
        ({"channel_width": 0 * u.MHz}, "channel_width must be positive"),
        ({"channel_width": -1 * u.MHz}, "channel_width must be positive"),
        ({"npix": 4}, "npix >= 16"),
        ({"cell": -0.1 * u.arcsec}, "cell must be positive"),
        ({"dec": 95 * u.deg}, "dec must lie in"),
        ({"frequency": 5 * u.km}, "frequency must be a quantity convertible to GHz"),
        ({"weighting": "superuniform"}, "weighting must be"),
        ({"date": "yesterday"}, "date must be an ISO date"),
        ({"integration": 2 * u.hour}, "integration 7200.0 s is longer than total_time 1800.0 s"),
    ],
)
def test_bad_observation(settings, message):
    with pytest.raises(InvalidInputError, match=message):
        Interferometer(Observation(**settings))


def test_integration_may_last_the_whole_track():
    assert Observation(total_time=60 * u.s, integration=60 * u.s).integration == 60 * u.s


def test_track_and_noise_are_those_of_its_whole_integrations():
    # As simobserve: whole integrations while under total_time. 300 s in 200 s integrations
    # observes 400 s, warned about, with the noise of 400 s; 1800 s in ALMA's 6.048 s observes
    # 298 of them (1802.3 s, 0.13 % more), silently.
    with pytest.warns(DeepFocusWarning, match=r"total_time 300 s .* the track observes 400 s"):
        long = Observation(npix=32, n_channels=1, tsys=80 * u.K, weighting="natural", total_time=300 * u.s,
                           integration=200 * u.s)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepFocusWarning)
        Observation(integration=6.048 * u.s)
    # With natural weights and a fixed Tsys, the noise is that of the time observed.
    obs = long.replace(total_time=400 * u.s)
    rms = {}
    for dt in (200, 10):
        alma = Interferometer(obs.replace(integration=dt * u.s))
        assert alma.coverage.uvw.shape[0] * dt == 400
        rms[dt] = alma.noise_rms[0]
    shorter = Interferometer(obs.replace(total_time=300 * u.s, integration=10 * u.s)).noise_rms[0]
    assert (rms[200] / rms[10]).to_value(u.one) == pytest.approx(1.0, rel=1e-6)
    assert (shorter / rms[10]).to_value(u.one) == pytest.approx(np.sqrt(400 / 300), rel=1e-6)
    assert Interferometer(long).noise_rms[0] == rms[200]


def _quoted_cell(message):
    return float(re.search(r"at most ([0-9.]+) arcsec", message).group(1)) * u.arcsec


def test_automatic_cell_too_large_says_what_to_change():
    # Far north the beam is elongated (about 4.6" x 0.65"): its major axis / 5 is too coarse
    # for the longest baselines. The user set no cell, so the message must not only say "cell".
    obs = Observation(dec=60 * u.deg, npix=32, n_channels=1, tsys=50 * u.K)
    with pytest.raises(InvalidInputError, match="automatic cell .* raise pixels_per_beam") as error:
        _ = Interferometer(obs).cell
    assert re.search(r"major axis of the 4\.\d+ x 0\.\d+ arcsec beam", str(error.value))
    # The cell it quotes works.
    alma = Interferometer(obs.replace(cell=_quoted_cell(str(error.value))))
    assert np.isfinite(alma.noise_rms).all()


@pytest.mark.parametrize(("dec", "pixels_per_beam"), [(45, 5), (35, 3.5)])
def test_automatic_cell_refused_quotes_a_smaller_cell_that_works(dec, pixels_per_beam):
    # These automatic cells fail the check on the image grid at the centre frequency but are
    # below the limit of the doubled PSF grid: the quote must be the stricter limit.
    obs = Observation(dec=dec * u.deg, npix=64, n_channels=1, tsys=50 * u.K, pixels_per_beam=pixels_per_beam)
    alma = Interferometer(obs)
    with pytest.raises(InvalidInputError, match="automatic cell") as error:
        _ = alma.cell
    message = str(error.value)
    refused = float(re.search(r"automatic cell ([0-9.]+) arcsec", message).group(1)) * u.arcsec
    limit = _quoted_cell(message)
    assert refused < alma._largest_cell  # the gap the quote used to fall in
    assert limit < refused
    assert np.isfinite(Interferometer(obs.replace(cell=limit)).noise_rms).all()


def test_given_cell_too_large_quotes_the_largest_one(tmp_path):
    obs = Observation(npix=32, n_channels=1, tsys=50 * u.K, cell=100 * u.arcsec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0 / 0 RuntimeWarning from the weights first
        with pytest.raises(InvalidInputError, match="^cell 100 arcsec is too large") as error:
            _ = Interferometer(obs).noise_rms
    limit = _quoted_cell(str(error.value))
    assert np.isfinite(Interferometer(obs.replace(cell=limit)).noise_rms).all()
    with pytest.raises(InvalidInputError, match="too large"):
        _ = Interferometer(obs.replace(cell=limit * 1.01)).noise_rms
    # A cell taken from a PSF file: the file is what to change.
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.cdelt = [-100 / 3600, 100 / 3600]
    wcs.wcs.crpix = [17, 17]
    wcs.wcs.crval = [150, -23]
    psf = np.zeros((32, 32))
    psf[16, 16] = 1
    fits.PrimaryHDU(psf, header=wcs.to_header()).writeto(tmp_path / "psf.fits")
    with pytest.raises(InvalidInputError, match="PSF file's pixel size 100 arcsec is too large"):
        _ = Interferometer(obs.replace(cell=None), psf=tmp_path / "psf.fits").noise_rms


def test_field_that_never_rises():
    with pytest.raises(InvalidInputError, match="never rises"):
        Interferometer(Observation(dec=80 * u.deg, npix=32, n_channels=1, tsys=50 * u.K))


def test_external_psf_from_a_casa_fits_file(tmp_path):
    from astropy.io import fits

    from deepfocus.simulation.tests.test_reference_psfs import CASES

    if not CASES:
        pytest.skip("no CASA reference PSFs beside the repository")
    case = CASES[0]
    obs = Observation(npix=128, n_channels=2, tsys=60 * u.K, frequency=100 * u.GHz)
    alma = Interferometer(obs, psf=case.with_suffix(".fits"))
    reference = fits.getdata(case.with_suffix(".fits")).squeeze()
    assert alma.cell.to_value(u.arcsec) == pytest.approx(
        abs(fits.getheader(case.with_suffix(".fits"))["CDELT1"]) * 3600
    )
    np.testing.assert_allclose(alma.psf(1), reference[64:192, 64:192], atol=1e-6)
    with pytest.raises(InvalidInputError, match="differs from the observation's cell"):
        Interferometer(obs.replace(cell=0.1 * u.arcsec), psf=case.with_suffix(".fits"))
    broken = tmp_path / "broken.fits"
    broken.write_bytes(case.with_suffix(".fits").read_bytes()[:5000])
    with pytest.raises(InvalidInputError, match="cannot read PSF FITS file"):
        Interferometer(obs, psf=broken)
