"""Tunable weights of the tasks' loss terms (``deepfocus optimize`` searches over them).

Each task's loss in `deepfocus.training.tasks` is a weighted sum of terms with fixed weights;
`weighted_loss` builds the same loss with other weights, and with the default weights it is the
task's loss itself (a test checks this). The terms are named so that a search space or a tuned
config can set them: ``loss_weights`` in a config JSON, ``loss.NAME`` in a search space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..exceptions import InvalidInputError
from .samples import CHARACTERIZER_TARGETS
from .tasks import _CHARACTERIZER_WEIGHTS, get_task

__all__ = ["LOSS_WEIGHTS", "weighted_loss", "check_loss_weights"]

#: The characterizer's outputs grouped into the loss terms a search tunes together.
_CHARACTERIZER_GROUPS = {
    "position": ("dx", "dy"),
    "size": ("major", "minor"),
    "orientation": ("sin2pa", "cos2pa"),
    "flux": ("log_flux",),
}

#: Default weight of each named loss term, per task (the weights of `deepfocus.training.tasks`).
LOSS_WEIGHTS = {
    "deconvolver": {"flux": 10.0},
    "spectral": {"spectrum": 0.1},
    "characterizer": {
        group: float(_CHARACTERIZER_WEIGHTS[CHARACTERIZER_TARGETS.index(names[0])])
        for group, names in _CHARACTERIZER_GROUPS.items()
    },
}


def check_loss_weights(task, weights):
    """``weights`` completed with the task's defaults; `InvalidInputError` for unknown or bad ones."""
    get_task(task)
    defaults = LOSS_WEIGHTS[task]
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(defaults))
    if unknown:
        raise InvalidInputError(
            f"unknown loss weight(s) {', '.join(unknown)} for task {task!r}; "
            f"known: {', '.join(sorted(defaults))}"
        )
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidInputError(f"loss weight {name!r} must be a number >= 0, got {value!r}")
    return {name: float(weights.get(name, default)) for name, default in defaults.items()}


def weighted_loss(task, weights=None):
    """The loss of ``task`` with the named terms weighted by ``weights`` (others: defaults).

    Parameters
    ----------
    task : str
        Task name.
    weights : dict, optional
        Term name -> weight (see `LOSS_WEIGHTS`).

    Returns
    -------
    loss : callable
        ``loss(prediction, target) -> scalar tensor``; the task's own loss when every weight is
        its default.
    """
    w = check_loss_weights(task, weights)
    if w == LOSS_WEIGHTS[task]:
        return get_task(task).loss
    # The formulas repeat those of tasks.py with the fixed weights replaced by w[...].
    if task == "deconvolver":

        def loss(prediction, target):
            total = (prediction.sum(dim=(-2, -1)) - target.sum(dim=(-2, -1))).abs().mean()
            return F.l1_loss(prediction, target) + w["flux"] * total / target[0].numel()

    elif task == "spectral":

        def loss(prediction, target):
            mask_loss = F.binary_cross_entropy_with_logits(prediction[:, 0], target[:, 0])
            return mask_loss + w["spectrum"] * F.smooth_l1_loss(prediction[:, 1], target[:, 1])

    else:
        per_output = torch.tensor(
            [
                w[g]
                for name in CHARACTERIZER_TARGETS
                for g, names in _CHARACTERIZER_GROUPS.items()
                if name in names
            ]
        )

        def loss(prediction, target):
            terms = F.smooth_l1_loss(prediction, target, reduction="none", beta=0.1)
            return (terms * per_output).mean()

    return loss
