import astropy.units as u
import pytest

from deepfocus.simulation import Interferometer, Observation


@pytest.fixture(scope="session")
def small_observation():
    """A small, fast observation: 64 x 64 pixels, 16 channels, C-3 at 230 GHz."""
    return Observation(npix=64, n_channels=16, tsys=80 * u.K, total_time=600 * u.s)


@pytest.fixture(scope="session")
def small_interferometer(small_observation):
    return Interferometer(small_observation)
