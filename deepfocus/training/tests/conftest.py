import astropy.units as u
import pytest
import torch

from deepfocus.simulation import Observation
from deepfocus.training.data import simulate_cubes


@pytest.fixture(autouse=True, scope="package")
def single_thread():
    """Run the tiny networks on one thread: faster than several on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: A small, quick observation: 64 x 64 pixels, 32 channels, a short track.
SMALL_OBSERVATION = Observation(npix=64, n_channels=32, tsys=60 * u.K, total_time=600 * u.s)


@pytest.fixture(scope="package")
def small_sims():
    """Two simulated cubes (a few sources each, some point-like, some near the edges)."""
    return list(simulate_cubes(2, seed=3, observations=[SMALL_OBSERVATION], progress=False))
