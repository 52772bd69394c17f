"""Tests of the CASA engine (`deepfocus.simulation.casa_engine`).

The tests that run CASA are marked ``casa`` and skipped when casatools is not installed. They
do not use ``pytest.importorskip("casatools")``: importing casatools before the engine has
set up its offline configuration can make CASA try to download data (and fail offline), so
the skip condition only looks for the package and the engine performs the import.
"""

import importlib.util
import os
import sys
import tempfile

import astropy.units as u
import numpy as np
import pytest

from deepfocus.exceptions import DeepFocusError, InvalidInputError
from deepfocus.simulation.casa_engine import (
    attenuate_truth_snr,
    casa_offline_config,
    import_casa,
    simulate_with_casa,
)
from deepfocus.simulation.observation import Observation

HAS_CASA = all(importlib.util.find_spec(m) is not None for m in ("casatools", "casatasks", "casadata"))
requires_casa = pytest.mark.skipif(not HAS_CASA, reason="needs casatools, casatasks and casadata")


def _tiny_observation(**changes):
    settings = dict(
        configuration="alma.cycle10.3",
        frequency=230 * u.GHz,
        channel_width=15.625 * u.MHz,
        n_channels=3,
        npix=32,
        cell=0.15 * u.arcsec,
        total_time=300 * u.s,
        integration=30 * u.s,
        noise=False,
    )
    settings.update(changes)
    return Observation(**settings)


@pytest.fixture(scope="module")
def casa():
    if not HAS_CASA:
        pytest.skip("needs casatools, casatasks and casadata")
    return import_casa()


@pytest.mark.casa
@requires_casa
def test_point_source_peak_and_cleanup(casa, tmp_path):
    obs = _tiny_observation()
    flux = 0.010  # Jy
    cube = np.zeros((obs.n_channels, obs.npix, obs.npix))
    cube[1, obs.npix // 2, obs.npix // 2] = flux
    result = simulate_with_casa(cube, obs, seed=1, workdir=tmp_path)

    assert result.dirty.shape == (obs.n_channels, obs.npix, obs.npix)
    assert result.psf.shape == result.dirty.shape
    assert result.dirty.dtype == np.float32
    # A noiseless point source at the phase centre: dirty peak = flux density in Jy/beam.
    peak = np.unravel_index(np.nanargmax(result.dirty[1]), result.dirty[1].shape)
    assert peak == (obs.npix // 2, obs.npix // 2)
    assert result.dirty[1][peak] == pytest.approx(flux, rel=0.02)
    assert np.nanmax(np.abs(result.dirty[[0, 2]])) < 1e-6  # the line is in channel 1 only
    assert np.nanmax(result.psf[1]) == pytest.approx(1.0, abs=1e-3)
    # The primary beam: 1 at the pointing centre, falling outwards.
    centre = obs.npix // 2
    assert result.primary_beam.shape == result.dirty.shape
    assert result.primary_beam[1, centre, centre] == pytest.approx(1.0, abs=1e-3)
    assert result.primary_beam[1, centre, 0] < result.primary_beam[1, centre, centre // 2] < 1.0
    # Channels as the observation defines them, one fitted beam per channel.
    assert np.allclose(result.frequencies.to_value(u.Hz), obs.frequencies.to_value(u.Hz))
    assert len(result.beams) == obs.n_channels
    bmaj, bmin, bpa = result.beams[1]
    assert 0.3 < bmin <= bmaj < 1.5  # arcsec, C-3 at 230 GHz
    assert -90 <= bpa <= 180
    assert result.seconds > 0
    # No measurement set, image or scratch folder is left behind.
    assert list(tmp_path.iterdir()) == []


@pytest.mark.casa
@requires_casa
def test_noise_is_seeded(casa, tmp_path):
    obs = _tiny_observation(noise=True, n_channels=1)
    cube = np.zeros((1, obs.npix, obs.npix))
    first = simulate_with_casa(cube, obs, seed=3, workdir=tmp_path)
    again = simulate_with_casa(cube, obs, seed=3, workdir=tmp_path)
    other = simulate_with_casa(cube, obs, seed=4, workdir=tmp_path)
    assert np.nanstd(first.dirty) > 0
    np.testing.assert_array_equal(first.dirty, again.dirty)
    assert not np.array_equal(first.dirty, other.dirty)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.casa
@requires_casa
def test_scratch_removed_on_error(casa, tmp_path, monkeypatch):
    _, casatasks = casa

    def failing_simobserve(**kwargs):
        os.makedirs(os.path.join(kwargs["project"], "sim.alma.cycle10.3.ms"))
        raise RuntimeError("simulated CASA failure")

    monkeypatch.setattr(casatasks, "simobserve", failing_simobserve)
    obs = _tiny_observation()
    cube = np.zeros((obs.n_channels, obs.npix, obs.npix))
    with pytest.raises(DeepFocusError, match="simulated CASA failure"):
        simulate_with_casa(cube, obs, seed=1, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_casatools_gives_install_hint(monkeypatch):
    # None in sys.modules makes "import casatools" raise ImportError.
    monkeypatch.setitem(sys.modules, "casatools", None)
    monkeypatch.setitem(sys.modules, "casatasks", None)
    monkeypatch.setenv("CASASITECONFIG", "unused-because-the-import-fails")
    obs = _tiny_observation()
    cube = np.zeros((obs.n_channels, obs.npix, obs.npix))
    with pytest.raises(DeepFocusError, match=r'pip install "deepfocus\[casa\]"'):
        simulate_with_casa(cube, obs, seed=1)


def test_invalid_inputs_rejected_before_casa(monkeypatch):
    monkeypatch.setitem(sys.modules, "casatools", None)  # must not get as far as CASA
    obs = _tiny_observation()
    with pytest.raises(InvalidInputError, match="channels"):
        simulate_with_casa(np.zeros((5, 32, 32)), obs)
    with pytest.raises(InvalidInputError, match="cell"):
        simulate_with_casa(np.zeros((3, 32, 32)), obs.replace(cell=None))
    bad = np.zeros((3, 32, 32))
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        simulate_with_casa(bad, obs)


def test_offline_config_is_temporary(monkeypatch):
    if importlib.util.find_spec("casadata") is None:
        pytest.skip("needs casadata")
    monkeypatch.delenv("CASASITECONFIG", raising=False)
    with casa_offline_config():
        path = os.environ["CASASITECONFIG"]
        text = open(path).read()
        assert "measures_auto_update = False" in text and "data_auto_update = False" in text
        assert path.startswith(tempfile.gettempdir())  # never in the user's home
    assert "CASASITECONFIG" not in os.environ
    assert not os.path.exists(path)
    # A user's own configuration is left alone.
    monkeypatch.setenv("CASASITECONFIG", "/somewhere/mine.py")
    with casa_offline_config():
        assert os.environ["CASASITECONFIG"] == "/somewhere/mine.py"
    assert os.environ["CASASITECONFIG"] == "/somewhere/mine.py"


def test_truth_snr_scaled_by_primary_beam():
    from astropy.table import QTable

    gain = np.full((4, 10, 10), 0.5, dtype=np.float32)
    gain[:, 2, 3] = 0.8
    gain[:, 9, 9] = np.nan  # masked by CASA (below pblimit)
    truth = QTable(
        {
            "x_centroid": [3.2, 9.0, 20.0, 5.0] * u.pix,
            "y_centroid": [1.8, 9.0, 5.0, 5.0] * u.pix,
            "z_centroid": [1.0, 2.0, 2.0, 7.0],  # a line centre beyond the band uses the last channel
            "snr": [10.0, 10.0, 10.0, 4.0],
        }
    )
    attenuate_truth_snr(truth, gain)
    assert np.allclose(truth["snr"], [8.0, 0.0, 0.0, 2.0])  # off the image or masked: nothing left
    assert truth.meta["snr_primary_beam"] is True
