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


@pytest.fixture(scope="package")
def edge_cubes(tmp_path_factory):
    """A folder of two 32 x 32 pixel cubes as ``deepfocus simulate`` writes them: every source
    lies within 16 pixels of an edge, so they hold no characterizer sample."""
    from deepfocus.simulation import Interferometer
    from deepfocus.simulation.simulate import simulate

    folder = tmp_path_factory.mktemp("edge_cubes")
    alma = Interferometer(Observation(npix=32, n_channels=16, tsys=60 * u.K, total_time=600 * u.s))
    for index in range(2):
        simulate(interferometer=alma, seed=[7, index]).write(folder, f"sim{index}")
    return folder
