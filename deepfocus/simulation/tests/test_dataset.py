import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from deepfocus.exceptions import InvalidInputError
from deepfocus.simulation import Observation
from deepfocus.simulation.dataset import SimulatedCubeDataset


def test_dataset_items_are_reproducible_and_seed_specific(small_observation):
    train = SimulatedCubeDataset(small_observation, length=6, seed=1)
    again = SimulatedCubeDataset(small_observation, length=6, seed=1)
    valid = SimulatedCubeDataset(small_observation, length=6, seed=2)
    item = train[4]
    assert item["dirty"].shape == (16, 64, 64) and item["dirty"].dtype == torch.float32
    assert torch.equal(item["dirty"], again[4]["dirty"])
    assert torch.equal(item["sky"], again[4]["sky"])
    assert not torch.equal(item["dirty"], valid[4]["dirty"])
    assert not torch.equal(item["dirty"], train[3]["dirty"])
    full = train.simulation(4)
    np.testing.assert_allclose(full.dirty.unmasked_data[:].value, item["dirty"].numpy())
    assert len(full.truth) >= 1


def test_dataset_batches(small_observation):
    ds = SimulatedCubeDataset(small_observation, length=4, seed=3, n_sources=2)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["dirty"].shape == (2, 16, 64, 64)
    assert batch["noise_rms"].shape == (2, 16)
    with pytest.raises(IndexError):
        ds[4]


def test_dataset_mixes_observations(small_observation):
    other = small_observation.replace(configuration="alma.cycle10.1", cell=None)
    ds = SimulatedCubeDataset([small_observation, other], length=8, seed=0)
    cells = {ds.simulation(i).truth.meta["cell_arcsec"] for i in range(8)}
    assert len(cells) == 2
    with pytest.raises(InvalidInputError, match="share npix"):
        SimulatedCubeDataset([small_observation, Observation(npix=32)], length=2, seed=0)


@pytest.mark.parametrize("seed", [-1, 2.5, 2.0, True, "3"])
def test_dataset_refuses_a_seed_that_is_not_a_non_negative_integer(small_observation, seed):
    # 2.5 used to become 2 silently, as train() refuses it.
    with pytest.raises(InvalidInputError, match=rf"^seed must be a non-negative integer, got {seed!r}$"):
        SimulatedCubeDataset(small_observation, length=2, seed=seed)


def test_dataset_takes_a_numpy_integer_seed(small_observation):
    ds = SimulatedCubeDataset(small_observation, length=2, seed=np.uint32(4))
    assert type(ds.seed) is int and ds.seed == 4
