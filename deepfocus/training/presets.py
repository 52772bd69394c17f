"""Named training recipes (``deepfocus train --preset NAME``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..exceptions import InvalidInputError
from .trainer import TrainingSettings

__all__ = ["Preset", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """How much data and optimisation a training run gets.

    Attributes
    ----------
    n_train_cubes, n_validation_cubes : int
        Simulated cubes for training and for validation (other seeds, other observations).
    n_observations : int
        Distinct observation set-ups (configuration, band, declination, weather) per set.
    npix, n_channels : int
        Cube size.
    settings : dict
        Per task, the `TrainingSettings` fields.
    crop : int or None
        The deconvolver trains on two random crops of this size per image (whole images are
        validated).
    data_from : str or None
        For a tuning preset: take the data of this (larger) preset, so that its cache serves
        and its validation set is the one the final model is judged on.
    train_fraction : float
        With ``data_from``: the fraction of the training samples used (a seeded random subset).
    """

    n_train_cubes: int
    n_validation_cubes: int
    n_observations: int
    npix: int
    n_channels: int
    settings: dict = field(default_factory=dict)
    crop: int | None = None
    data_from: str | None = None
    train_fraction: float = 1.0

    def training_settings(self, task: str, seed: int) -> TrainingSettings:
        """The `TrainingSettings` of ``task``."""
        return TrainingSettings(seed=seed, **self.settings.get(task, {}))


PRESETS = {
    # The recipe of the shipped weights: about an hour on 2 CPU cores in all.
    "default": Preset(
        n_train_cubes=1600,
        n_validation_cubes=200,
        n_observations=16,
        npix=128,
        n_channels=64,
        settings={
            "deconvolver": {"epochs": 12, "batch_size": 16, "learning_rate": 2e-3, "patience": 4},
            "spectral": {"epochs": 25, "batch_size": 64, "learning_rate": 3e-3, "patience": 5},
            # Twice the epochs of a mirrored training set, now that each batch is turned at
            # random instead (`tasks.dihedral_cutouts`): the same number of steps at most.
            "characterizer": {"epochs": 60, "batch_size": 64, "learning_rate": 2e-3, "patience": 12},
        },
        crop=64,
    ),
    # Trials of `deepfocus optimize`: a tenth of the default training samples, the default
    # validation set and fewer epochs (about a minute per characterizer trial on one CPU thread).
    "tune": Preset(
        n_train_cubes=160,
        n_validation_cubes=200,
        n_observations=16,
        npix=128,
        n_channels=64,
        settings={
            "deconvolver": {"epochs": 4, "batch_size": 16, "learning_rate": 2e-3, "patience": 2},
            "spectral": {"epochs": 8, "batch_size": 64, "learning_rate": 3e-3, "patience": 3},
            # Twice the default's 6 epochs of a mirrored set, as in "default" above.
            "characterizer": {"epochs": 12, "batch_size": 64, "learning_rate": 2e-3, "patience": 6},
        },
        crop=64,
        data_from="default",
        train_fraction=0.1,
    ),
    # Seconds: for tests and for checking a set-up end to end, not for use: its 32 channels are
    # fewer than the 40 that hold the `wide` recipe's widest lines (20 channels) within the band.
    "tiny": Preset(
        n_train_cubes=6,
        n_validation_cubes=3,
        n_observations=2,
        npix=64,
        n_channels=32,
        settings={
            task: {"epochs": 3, "batch_size": 4, "learning_rate": 3e-3, "patience": 3}
            for task in ("deconvolver", "spectral", "characterizer")
        },
    ),
}


def get_preset(name: str) -> Preset:
    """The `Preset` called ``name``."""
    if name not in PRESETS:
        raise InvalidInputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
