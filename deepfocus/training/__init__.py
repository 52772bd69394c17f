"""Training the networks: data from the simulator, the loop, presets and tasks, and
hyper-parameter optimisation (`optimize`, search spaces as data)."""

from .loss_weights import LOSS_WEIGHTS, weighted_loss
from .optimize import OBJECTIVES, optimize
from .presets import PRESETS, Preset, get_preset
from .search_spaces import SearchSpace, load_search_space
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
    "optimize",
    "OBJECTIVES",
    "SearchSpace",
    "load_search_space",
    "LOSS_WEIGHTS",
    "weighted_loss",
]
