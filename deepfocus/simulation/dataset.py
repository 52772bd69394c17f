"""A seeded PyTorch dataset of simulated cubes, generated on the fly without touching disk."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_seed
from ..exceptions import InvalidInputError
from .interferometer import Interferometer
from .observation import Observation
from .simulate import simulate, simulate_arrays

__all__ = ["SimulatedCubeDataset"]


class SimulatedCubeDataset(Dataset):
    """Dirty/sky cube pairs simulated on demand, item ``i`` always the same for a given seed.

    Parameters
    ----------
    observations : `Observation` or sequence of `Observation`
        Observation settings; with several, item ``i`` uses one chosen by its seed (all must
        share ``npix`` and ``n_channels`` so that items can be batched).
    length : int
        Number of items.
    seed : int
        Seed of the whole set (non-negative). Use different seeds for training, validation and test sets:
        items of different seeds share no random stream.
    recipe : {'wide', 'paper'}
        Catalogue recipe.
    n_sources : int, optional
        Sources per cube (default: the recipe's random number).

    Notes
    -----
    Each item is a dict of float32 tensors: ``dirty`` ``(n_chan, npix, npix)`` in Jy/beam,
    ``sky`` ``(n_chan, npix, npix)`` in Jy/pixel and ``noise_rms`` ``(n_chan,)`` in Jy/beam,
    plus ``index``. `simulation` returns the full `SimulatedObservation` (cubes with WCS and the
    truth catalogue) of an item.
    """

    def __init__(self, observations=None, *, length: int, seed: int, recipe="wide", n_sources=None):
        if observations is None:
            observations = [Observation()]
        elif isinstance(observations, Observation):
            observations = [observations]
        elif not isinstance(observations, Sequence) or not observations:
            raise InvalidInputError("observations must be an Observation or a non-empty sequence of them")
        shapes = {(o.npix, o.n_channels) for o in observations}
        if len(shapes) != 1:
            raise InvalidInputError("all observations of a dataset must share npix and n_channels")
        if int(length) < 1:
            raise InvalidInputError(f"length must be positive, got {length}")
        seed = check_seed(seed)
        self.observations = list(observations)
        self.length = int(length)
        self.seed = seed
        self.recipe = recipe
        self.n_sources = n_sources
        self._interferometers: dict[int, Interferometer] = {}

    def __len__(self):
        return self.length

    def _item_setup(self, index):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length}")
        entropy = [self.seed, int(index)]
        # A stream of its own (spawn key) picks the observation, apart from the cube's streams.
        picker = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(7,)))
        choice = int(picker.integers(len(self.observations)))
        if choice not in self._interferometers:
            self._interferometers[choice] = Interferometer(self.observations[choice])
        return self._interferometers[choice], entropy

    def __getitem__(self, index):
        interferometer, entropy = self._item_setup(index)
        dirty, sky, _ = simulate_arrays(
            interferometer, seed=entropy, recipe=self.recipe, n_sources=self.n_sources
        )
        return {
            "dirty": torch.from_numpy(np.ascontiguousarray(dirty, dtype=np.float32)),
            "sky": torch.from_numpy(sky.cube()),
            "noise_rms": torch.tensor(interferometer.noise_rms.value, dtype=torch.float32),
            "index": index,
        }

    def simulation(self, index):
        """The full `SimulatedObservation` of item ``index`` (same data as ``self[index]``)."""
        interferometer, entropy = self._item_setup(index)
        return simulate(
            interferometer=interferometer,
            seed=entropy,
            recipe=self.recipe,
            n_sources=self.n_sources,
        )
