"""Tunable weights of the tasks' loss terms (``deepfocus optimize`` searches over them).

Each task's loss in `deepfocus.training.tasks` is a weighted sum of terms with fixed weights;
`weighted_loss` builds the same loss (from the loss factories of `deepfocus.training.tasks`)
with other weights; with the default weights it is the task's loss itself. The terms are named
so that a search space or a tuned config can set them: ``loss_weights`` in a config JSON,
``loss.NAME`` in a search space.
"""

from __future__ import annotations

from ..exceptions import InvalidInputError
from .samples import CHARACTERIZER_TARGETS
from .tasks import (
    _CHARACTERIZER_WEIGHTS,
    _DECONVOLVER_FLUX_WEIGHT,
    _SPECTRUM_WEIGHT,
    characterizer_loss,
    deconvolver_loss,
    get_task,
    spectral_loss,
)

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
    "deconvolver": {"flux": _DECONVOLVER_FLUX_WEIGHT},
    "spectral": {"spectrum": _SPECTRUM_WEIGHT},
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
    if task == "deconvolver":
        return deconvolver_loss(flux=w["flux"])
    if task == "spectral":
        return spectral_loss(spectrum=w["spectrum"])
    group_of = {name: group for group, names in _CHARACTERIZER_GROUPS.items() for name in names}
    return characterizer_loss([w[group_of[name]] for name in CHARACTERIZER_TARGETS])
