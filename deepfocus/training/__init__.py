"""Training the networks: data from the simulator, the loop, presets and tasks."""

from .presets import PRESETS, Preset, get_preset
from .tasks import TASK_DEFINITIONS, Task, get_task
from .train import prepare_data, train, train_task
from .trainer import Trainer, TrainingSettings

__all__ = [
    "PRESETS",
    "Preset",
    "get_preset",
    "TASK_DEFINITIONS",
    "Task",
    "get_task",
    "prepare_data",
    "train",
    "train_task",
    "Trainer",
    "TrainingSettings",
]
