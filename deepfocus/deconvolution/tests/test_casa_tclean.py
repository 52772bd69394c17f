"""deepfocus's Högbom CLEAN against CASA ``tclean`` (Högbom) on the same CASA observation.

Skipped without casatools (the skip only looks for the package: the engine performs the import
with its offline configuration).
"""

import importlib.util

import astropy.units as u
import numpy as np
import pytest

from deepfocus.deconvolution import hogbom_clean
from deepfocus.simulation.casa_engine import simulate_with_casa
from deepfocus.simulation.observation import Observation

HAS_CASA = all(importlib.util.find_spec(m) is not None for m in ("casatools", "casatasks", "casadata"))


@pytest.mark.casa
@pytest.mark.skipif(not HAS_CASA, reason="needs casatools, casatasks and casadata")
def test_hogbom_matches_tclean_on_a_point_source(tmp_path):
    obs = Observation(
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
    flux = 0.010  # Jy
    cube = np.zeros((obs.n_channels, obs.npix, obs.npix))
    cube[1, 12, 20] = flux
    result = simulate_with_casa(
        cube, obs, seed=1, workdir=tmp_path, clean={"threshold": 0.01, "niter": 300, "gain": 0.1}
    )
    tclean = result.clean
    assert tclean["model"].shape == cube.shape and tclean["seconds"] > 0
    assert tclean["iterations"] > 0
    ours = hogbom_clean(
        result.dirty[1], result.psf[1], gain=0.1, threshold=tclean["threshold_jy"], max_iter=300
    )
    # Both put (nearly) all the flux in the source's pixel.
    for model in (tclean["model"][1], ours.model):
        assert np.unravel_index(np.argmax(model), model.shape) == (12, 20)
        assert model.sum() == pytest.approx(flux, rel=0.03)
    assert ours.model.sum() == pytest.approx(tclean["model"][1].sum(), rel=0.02)
    assert list(tmp_path.iterdir()) == []
