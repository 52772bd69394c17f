"""`SourceCharacterizer`: measurements of known sources, flags, channel order, beams, errors."""

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import QTable

from deepfocus import DeepFocus, SourceCharacterizer
from deepfocus.detection.tests import helpers
from deepfocus.exceptions import InvalidInputError
from deepfocus.io.catalog import SourceFlag

MEASURED = ("fwhm_major", "fwhm_minor", "position_angle", "flux", "continuum_flux")


def _truth_positions(truth):
    """What the detector would hand over: positions and line channels of the truth."""
    return QTable(truth[["id", "x_centroid", "y_centroid", "z_centroid", "z_min", "z_max"]], copy=True)


@pytest.fixture(scope="module")
def measured_truth(bright_sim, bright_files):
    """The classical characterizer on the truth positions of the bright cube."""
    return SourceCharacterizer(model=None)(bright_files["dirty"], _truth_positions(bright_sim.truth))


def test_measures_known_sources(bright_sim, measured_truth):
    truth, table = bright_sim.truth, measured_truth
    assert len(table) == len(truth)
    for name in MEASURED + ("sky_centroid", "flags"):
        assert name in table.colnames
    offset = np.hypot(table["x_centroid"] - truth["x_centroid"], table["y_centroid"] - truth["y_centroid"])
    assert np.all(offset < 0.3 * u.pix)
    ratio = (table["flux"] / truth["flux"]).to_value(u.one)
    assert np.all(np.abs(ratio - 1) < 0.15), ratio
    resolved = truth["fwhm_major"] > 0
    size = (table["fwhm_major"][resolved] / truth["fwhm_major"][resolved]).to_value(u.one)
    assert np.all(np.abs(size - 1) < 0.3), size
    assert np.all(table["fwhm_major"][~resolved] == 0) and np.all(table["flags"][~resolved] & 8)
    assert np.all(table["position_angle"][~resolved] == 0)
    pa = table["position_angle"].to_value(u.deg)
    assert np.all((pa >= 0) & (pa < 180))


def test_flux_is_continuum_free_and_continuum_measured(bright_sim, measured_truth):
    truth, table = bright_sim.truth, measured_truth
    with_continuum = truth["continuum_flux"] > 0
    assert with_continuum.sum() == 1
    # The 3 mJy continuum over 11 line channels would add about 30 % to the line flux.
    ratio = (table["flux"][with_continuum] / truth["flux"][with_continuum]).to_value(u.one)
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
    assert np.allclose(table["continuum_flux"][with_continuum].to_value(u.mJy), 3.0, rtol=0.2)
    # Bright lines do not leak into the continuum estimate.
    assert np.all(table["continuum_flux"][~with_continuum] == 0)


def test_network_flux_is_continuum_free(bright_sim, bright_files):
    # The shipped network sees the line alone where a continuum is significant: left in, the
    # 3 mJy continuum under 11 line channels raised its flux by 46 %.
    truth = bright_sim.truth
    table = SourceCharacterizer(forward_fit=None)(bright_files["dirty"], _truth_positions(truth))
    with_continuum = truth["continuum_flux"] > 0
    ratio = (table["flux"] / truth["flux"]).to_value(u.one)
    assert np.all(np.abs(ratio[with_continuum] - 1) < 0.15), ratio


def test_input_catalog_is_not_modified(bright_sim, bright_files):
    catalog = _truth_positions(bright_sim.truth)
    catalog["extra"] = np.arange(len(catalog))
    catalog.meta["mine"] = 1
    before = catalog.copy()
    out = SourceCharacterizer(model=None)(bright_files["dirty"], catalog)
    assert catalog.colnames == before.colnames and catalog.meta == before.meta
    assert np.array_equal(catalog["x_centroid"], before["x_centroid"])
    assert out.colnames[-1] == "extra" and list(out["extra"]) == list(range(len(catalog)))
    assert out.meta["mine"] == 1 and out.meta["models"]["characterizer"] == {"name": "gaussian fit"}


def test_descending_cube_uses_input_channels(bright_sim, bright_files, casa_file, measured_truth):
    # The CASA-style cube counts channels from the top: the same lines are at n - 1 - z.
    n = helpers.N_CHANNELS
    catalog = _truth_positions(bright_sim.truth)
    catalog["z_min"], catalog["z_max"] = n - 1 - catalog["z_max"], n - 1 - catalog["z_min"]
    flipped = SourceCharacterizer(model=None)(casa_file, catalog)
    assert np.allclose(flipped["x_centroid"].value, measured_truth["x_centroid"].value, atol=0.02)
    assert np.allclose(flipped["y_centroid"].value, measured_truth["y_centroid"].value, atol=0.02)
    # The CASA-style BEAMS table widens the beam by up to 2.4 %: fluxes agree within 6 %.
    assert np.allclose(flipped["flux"].value, measured_truth["flux"].value, rtol=0.06)


def test_each_source_uses_the_beam_of_its_line(bright_sim, bright_files, measured_truth, tmp_path):
    # Channels 24.. get a beam 1.2 times larger (area 1.44): the same data then holds 1.44
    # times less flux for lines there, and the same flux for lines in channels 0-23.
    path = tmp_path / "beams.fits"
    with fits.open(bright_files["dirty"]) as hdul:
        hdul = fits.HDUList([hdu.copy() for hdu in hdul])
    beams = hdul["BEAMS"].data
    upper = np.arange(len(beams)) >= 24
    beams["BMAJ"][upper] *= 1.2
    beams["BMIN"][upper] *= 1.2
    hdul.writeto(path)
    out = SourceCharacterizer(model=None)(path, _truth_positions(bright_sim.truth))
    centre = (bright_sim.truth["z_min"] + bright_sim.truth["z_max"]) // 2
    ratio = (out["flux"] / measured_truth["flux"]).to_value(u.one)
    assert np.allclose(ratio[centre >= 24], 1 / 1.44, rtol=0.05), ratio
    assert np.allclose(ratio[centre < 24], 1.0, rtol=1e-6), ratio


def test_flags():
    rows = (
        (5.0, 48.0, 24.0, 0.0, 0.0, 0.0, 6.0, 20.0, 0.0),  # at the image edge
        (40.0, 28.0, 20.0, 0.0, 0.0, 0.0, 6.0, 20.0, 0.0),  # two sources 1.2 beams apart ...
        (46.0, 28.0, 22.0, 0.0, 0.0, 0.0, 6.0, 20.0, 0.0),  # ... with overlapping lines
        (60.0, 70.0, 1.0, 1.2, 0.8, 45.0, 5.0, 25.0, 0.0),  # resolved, its line at the band edge
    )
    sim = helpers.simulation(rows, seed=3)
    flags = np.asarray(SourceCharacterizer(model=None)(sim.dirty, _truth_positions(sim.truth))["flags"])
    assert list(flags & 1) == [1, 0, 0, 0]  # edge
    assert list(flags & 2) == [0, 2, 2, 0]  # blended
    assert list(flags & 8) == [8, 8, 8, 0]  # unresolved
    # The band edge (4) comes from the detector, which finds the line reaching channel 0.
    catalog = DeepFocus(model=None)(sim.dirty)
    band_edge = np.hypot(catalog["x_centroid"].value - 60, catalog["y_centroid"].value - 70) < 1
    assert band_edge.sum() == 1
    assert catalog["flags"][band_edge][0] == 4 and catalog["z_min"][band_edge][0] == 0
    assert not np.any(catalog["flags"][~band_edge] & 4)


@pytest.mark.parametrize("shape", ["plateau", "ramp"])
def test_gaussian_fit_stays_within_its_cutout(shape):
    # A cutout with no compact source (a row on a plateau or a gradient): the fit ran away to
    # FWHMs of 77 and 11878 arcsec in a 3.2-arcsec cutout, and the forward fit then asked for
    # a cutout of that size (hundreds of GiB).
    from radio_beam import Beam

    from deepfocus.characterization.characterizer import _gaussian_fits

    yy, xx = np.mgrid[:32, :32]
    image = 1.0 + (0.05 * xx if shape == "ramp" else 0.0)
    image = image + 0.01 * np.random.default_rng(0).normal(size=(32, 32))
    out = _gaussian_fits(image[None], [Beam(0.5 * u.arcsec)], 0.1)
    assert np.isfinite(out["major"][0]) and out["major"][0] <= 2.3548 * 32 * 0.1 + 1e-6


def test_gaussian_fit_of_a_hole_has_no_flux():
    # A line image that is negative at the source (its continuum over-subtracted): the fit went
    # to a negative Gaussian and the catalogue to a line flux of -0.08 Jy km/s.
    from radio_beam import Beam

    from deepfocus.characterization.characterizer import _gaussian_fits

    yy, xx = np.mgrid[:32, :32]
    hole = -np.exp(-0.5 * ((xx - 17) ** 2 + (yy - 16) ** 2) / 2.0**2)
    image = hole + 0.01 * np.random.default_rng(0).normal(size=(32, 32))
    out = _gaussian_fits(image[None], [Beam(0.5 * u.arcsec)], 0.1)
    assert np.isnan(out["flux"][0])
    bump = _gaussian_fits(-image[None], [Beam(0.5 * u.arcsec)], 0.1)
    assert bump["flux"][0] > 0 and abs(bump["dx"][0] - 1) < 0.1


def test_network_path(bright_sim, bright_files, tiny_weights):
    characterizer = SourceCharacterizer(model=tiny_weights)
    out = characterizer(bright_files["dirty"], _truth_positions(bright_sim.truth))
    assert len(out) == len(bright_sim.truth)
    for name in MEASURED + ("x_centroid", "y_centroid"):
        assert np.all(np.isfinite(np.asarray(out[name]))), name
    assert np.all(out["flux"] > 0) and np.all(out["fwhm_minor"] <= out["fwhm_major"])
    pa = out["position_angle"].to_value(u.deg)
    assert np.all((pa >= 0) & (pa < 180))
    info = out.meta["models"]["characterizer"]
    assert info["name"].endswith("characterizer-default.safetensors") and len(info["sha256"]) == 64
    # Deterministic.
    again = characterizer(bright_files["dirty"], _truth_positions(bright_sim.truth))
    helpers.assert_same_catalog(out, again)


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        (None, "the catalogue is empty"),
        (QTable({"x_centroid": [] * u.pix}), "the catalogue is empty"),
        (QTable({"x_centroid": [3.0] * u.pix, "y_centroid": [4.0] * u.pix}), "lacks column"),
    ],
)
def test_bad_catalogs(bright_files, catalog, message):
    with pytest.raises(InvalidInputError, match=message):
        SourceCharacterizer(model=None)(bright_files["dirty"], catalog)


def _upsampled(path, out, factor=2):
    """The cube at ``path`` resampled to ``factor`` times finer pixels (cubic spline), same sky."""
    from scipy.ndimage import map_coordinates

    with fits.open(path) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.astype(np.float64)
        extensions = [hdu.copy() for hdu in hdul[1:]]  # the BEAMS table
    n = data.shape[-1] * factor
    native = (np.arange(n) + 0.5) / factor - 0.5  # native pixel coordinate of each new pixel centre
    yy, xx = np.meshgrid(native, native, indexing="ij")
    fine = np.array([map_coordinates(plane, [yy, xx], order=3, mode="nearest") for plane in data])
    for axis in (1, 2):
        header[f"CDELT{axis}"] /= factor
        header[f"CRPIX{axis}"] = factor * (header[f"CRPIX{axis}"] - 1) + 0.5 * (factor + 1)
    fits.HDUList([fits.PrimaryHDU(fine.astype(np.float32), header), *extensions]).writeto(out)
    return out


@pytest.mark.parametrize("model", [None, "default"])
def test_finely_sampled_cube_is_measured_at_the_trained_scale(bright_sim, bright_files, tmp_path, model):
    # 10 pixels per beam, twice the sampling of the training cubes: the cutouts are resampled
    # first, so the same sources measure the same (without resampling the network's fluxes were
    # off by more than 10 % for every source).
    fine = _upsampled(bright_files["dirty"], tmp_path / "fine.fits")
    positions = _truth_positions(bright_sim.truth)
    characterizer = SourceCharacterizer(model=model)
    native = characterizer(bright_files["dirty"], positions)
    positions["x_centroid"] = 2 * positions["x_centroid"] + 0.5 * u.pix
    positions["y_centroid"] = 2 * positions["y_centroid"] + 0.5 * u.pix
    measured = characterizer(fine, positions)
    ratio = (measured["flux"] / native["flux"]).to_value(u.one)
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
    resolved = native["fwhm_major"] > 0
    size = (measured["fwhm_major"][resolved] / native["fwhm_major"][resolved]).to_value(u.one)
    assert np.all(np.abs(size - 1) < 0.15), size
    separation = measured["sky_centroid"].separation(native["sky_centroid"])
    cell = abs(fits.getheader(bright_files["dirty"])["CDELT1"]) * u.deg
    assert np.all(separation < 0.3 * cell), separation.to(u.arcsec)


def test_fit_astray_compares_flux_ratio_and_shift_in_beams():
    from deepfocus.characterization.characterizer import ASTRAY_FLUX_RATIO, ASTRAY_SHIFT, fit_astray

    network = {"dx": np.zeros(5), "dy": np.zeros(5), "flux": np.ones(5)}
    factor = ASTRAY_FLUX_RATIO
    fit = {
        "dx": np.array([0.0, 0.0, 0.0, 0.9, 0.0]) * ASTRAY_SHIFT * 5 * 2,  # zoom 2, 5-pixel beam
        "dy": np.array([0.0, 0.0, 0.0, 0.0, 1.1]) * ASTRAY_SHIFT * 5 * 2,
        "flux": np.array([0.9 * factor, 1.1 * factor, 0.9 / factor, 1.0, 1.0]),
    }
    astray = fit_astray(fit, network, np.full(5, 2.0), 5.0)
    assert astray.tolist() == [False, True, True, False, True]


class _FixedNetwork(torch.nn.Module):
    """A stand-in characterizer network: every source at the cutout centre, half a beam across,
    with line flux ``exp(log_flux)`` times the cutout's scale."""

    def __init__(self, log_flux):
        super().__init__()
        self.log_flux = log_flux

    def forward(self, x):
        row = torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0, 1.0, self.log_flux])
        return row.expand(x.shape[0], 7).clone()


def test_fit_far_from_the_network_gives_way_to_it(bright_sim, bright_files):
    """Where the forward fit and the network disagree by far more than `ASTRAY_FLUX_RATIO`,
    the network's estimate is reported; the fit alone gives the fit's."""
    positions = _truth_positions(bright_sim.truth)
    fitted = SourceCharacterizer(model=None, forward_fit="beam")(
        bright_files["dirty"], positions, crowded=False
    )
    for log_flux, compare in ((12.0, np.greater), (-12.0, np.less)):
        characterizer = SourceCharacterizer(model=_FixedNetwork(log_flux), forward_fit="beam")
        out = characterizer(bright_files["dirty"], positions, crowded=False)
        assert np.all(compare(out["flux"], 100 * fitted["flux"] if log_flux > 0 else fitted["flux"] / 100))
        # The network's position: the catalogue's own, rounded to the cutout centre pixel.
        assert np.allclose(out["x_centroid"].value, np.round(positions["x_centroid"].value))
        # ... and flag 32 says so; the fit alone used its own measurement.
        assert np.all(out["flags"] & SourceFlag.FIT_FALLBACK)
    assert not np.any(fitted["flags"] & SourceFlag.FIT_FALLBACK)


def test_failed_forward_fit_keeps_the_first_estimate_and_flags_it(bright_sim, bright_files, monkeypatch):
    """A forward fit that does not converge leaves the Gaussian fit's measurement, flagged 32."""
    import deepfocus.characterization.characterizer as characterizer_module

    positions = _truth_positions(bright_sim.truth)
    first = SourceCharacterizer(model=None, forward_fit=None)(bright_files["dirty"], positions)
    real = characterizer_module.refine_sources

    def failing(*args, **kwargs):
        out = real(*args, **kwargs)
        out["ok"][0] = False  # the first source's fit fails
        return out

    monkeypatch.setattr(characterizer_module, "refine_sources", failing)
    out = SourceCharacterizer(model=None, forward_fit="beam")(bright_files["dirty"], positions, crowded=False)
    flagged = (np.asarray(out["flags"]) & SourceFlag.FIT_FALLBACK) > 0
    assert flagged.tolist() == [True] + [False] * (len(out) - 1)
    for name in MEASURED:
        assert out[name][0] == first[name][0]


def test_out_of_training_range_tests_size_width_and_snr():
    from deepfocus.characterization.training_range import out_of_training_range

    beam, dv = 1.0 * u.arcsec, 10 * u.km / u.s
    table = QTable(
        {
            "fwhm_major": [0.0, 2.9, 3.1, 1.0, 1.0, 1.0, 1.0] * u.arcsec,
            "line_width": [50, 100, 100, 20, 210, 100, 100] * u.km / u.s,
            "snr": [10, 10, 10, 10, 10, 1.5, 60],
        }
    )
    outside = out_of_training_range(table, beam_major=beam, channel_width=-dv)
    assert outside.tolist() == [False, False, True, True, True, True, True]


def test_network_flags_sources_outside_the_training_range(bright_sim, bright_files):
    """With the networks, flag 16 marks the row whose S/N lies beyond the training range and
    no other; without them, no row."""
    from deepfocus.io.catalog import SourceFlag

    positions = _truth_positions(bright_sim.truth)
    positions["line_width"] = bright_sim.truth["line_width"]
    positions["snr"] = np.full(len(positions), 10.0)
    positions["snr"][0] = 500.0
    bit = int(SourceFlag.OUT_OF_RANGE)
    out = SourceCharacterizer()(bright_files["dirty"], positions)
    assert [bool(f & bit) for f in out["flags"]] == [True] + [False] * (len(out) - 1)
    classical = SourceCharacterizer(model=None)(bright_files["dirty"], positions)
    assert not np.any(np.asarray(classical["flags"]) & bit)


def test_detections_made_with_a_psf_warn_without_one(bright_sim, bright_files):
    """Detections whose detector had the PSF, characterised without it, warn (the forward fit
    through the PSF is what the pieces would otherwise silently lose); with it, they do not."""
    import warnings

    from deepfocus.exceptions import DeepFocusWarning

    positions = _truth_positions(bright_sim.truth)[:1]
    positions.meta["parameters"] = {"psf": True}
    characterizer = SourceCharacterizer(model=None)
    with pytest.warns(DeepFocusWarning, match="pass psf= to the characterizer"):
        out = characterizer(bright_files["dirty"], positions, crowded=False)
    assert out.meta["forward_fit"] == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepFocusWarning)
        out = characterizer(bright_files["dirty"], positions, crowded=False, psf=bright_sim.psf)
        assert out.meta["forward_fit"] == "psf"
        positions.meta["parameters"]["psf"] = False
        characterizer(bright_files["dirty"], positions, crowded=False)
        SourceCharacterizer(model=None, forward_fit=None)(bright_files["dirty"], positions, crowded=False)


def test_a_blank_channel_inside_a_line_keeps_its_share(bright_sim, bright_files, measured_truth, tmp_path):
    # A blank (all-NaN) channel at a line's centre is bridged from its neighbours: left at 0,
    # it took its share (about 14 % of a line 6 channels wide) out of the line image.
    truth = bright_sim.truth
    first = int(np.argmin(truth["z_centroid"]))
    channel = int(round(float(truth["z_centroid"][first])))
    path = tmp_path / "blanked.fits"
    with fits.open(bright_files["dirty"]) as hdul:
        hdul[0].data[channel] = np.nan
        hdul.writeto(path)
    table = SourceCharacterizer(model=None)(path, _truth_positions(truth))
    ratio = (table["flux"][first] / measured_truth["flux"][first]).to_value(u.one)
    assert abs(ratio - 1) < 0.05, ratio


def test_a_source_measures_the_same_alone_or_among_others(bright_sim, bright_files):
    # A tile characterises a few of a cube's sources, the single pass all of them: the network's
    # estimates of a source must not depend on which others share its batch (they moved by
    # 1e-6, which a faint source's forward fit magnified into another minimum).
    positions = _truth_positions(bright_sim.truth)
    characterizer = SourceCharacterizer(forward_fit=None)
    together = characterizer(bright_files["dirty"], positions, crowded=False)
    for i in (0, len(positions) - 1):
        alone = characterizer(bright_files["dirty"], positions[i : i + 1], crowded=False)
        for name in MEASURED:
            assert alone[name][0] == together[name][i], name


def test_a_blank_channel_inside_a_line_keeps_its_share_among_neighbours(tmp_path):
    # The fits among neighbours (crowded=True) read the cube again: they bridge the blank
    # channel too (the example's source 1, channel 28 blank at its line's peak: 0.86 before).
    from importlib.resources import files

    example = files("deepfocus.data") / "example_dirty.fits"
    truth = QTable.read(files("deepfocus.data") / "example_truth.ecsv")
    positions = truth["id", "x_centroid", "y_centroid", "z_min", "z_max"]
    blanked = tmp_path / "blanked.fits"
    with fits.open(example) as hdul:
        hdul[0].data[28] = np.nan
        hdul.writeto(blanked)
    characterizer = SourceCharacterizer(model=None, forward_fit="beam")
    ratio = (characterizer(blanked, positions)["flux"] / characterizer(example, positions)["flux"]).value
    assert np.all(np.abs(ratio - 1) < 0.05), ratio
