"""Networks built from configs: residual blocks in 1-D, 2-D and 3-D, the builder, weights I/O.

Every network is described by a `NetworkConfig` and built by `build_network`, so a new task is a
new config rather than new code. Weights are stored as ``.safetensors`` with a JSON model card
(`save_weights`, `load_weights`); shipped models are loaded by name (`load_model`,
`available_models`), and a task's network from a name, a file or a folder that ``deepfocus
train`` wrote (`load_task_model`).
"""

from .builder import build_network
from .config import NetworkConfig
from .registry import available_models, load_model, load_task_model, resolve_weights, task_weights
from .weights import WeightsError, load_weights, save_weights

__all__ = [
    "NetworkConfig",
    "build_network",
    "save_weights",
    "load_weights",
    "load_model",
    "available_models",
    "resolve_weights",
    "load_task_model",
    "task_weights",
    "WeightsError",
]
