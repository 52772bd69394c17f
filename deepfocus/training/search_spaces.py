"""Hyper-parameter search spaces, declared as data (``deepfocus/data/search_spaces/<task>.json``).

A search space is a dict (or JSON file) ``{"task": ..., "parameters": {NAME: SPEC}}``. Each
``NAME`` says what the parameter sets:

``network.FIELD``
    a `~deepfocus.models.NetworkConfig` field (``blocks_per_level``, ``kernel_size``, ``block``,
    ``activation``, ``dropout``, ``skip``, ``recurrent``, ``head_hidden``, ...), or one of the
    pseudo-fields ``base_width``, ``levels`` and ``max_width`` that make
    ``widths = (min(base_width * 2**i, max_width) for i in range(levels))``;
``training.FIELD``
    a `~deepfocus.training.TrainingSettings` field (``learning_rate``, ``batch_size``,
    ``weight_decay``);
``loss.TERM``
    the weight of a named loss term (`~deepfocus.training.loss_weights.LOSS_WEIGHTS`).

Each ``SPEC`` is ``{"type": "int" | "float", "low": L, "high": H[, "log": true][, "step": S]}``,
``{"type": "categorical", "choices": [...]}`` or ``{"type": "fixed", "value": V}``, as in
Optuna's ``trial.suggest_int``, ``suggest_float`` and ``suggest_categorical``.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from ..exceptions import InvalidInputError
from ..models import NetworkConfig
from .loss_weights import LOSS_WEIGHTS, check_loss_weights
from .tasks import get_task
from .trainer import TrainingSettings

__all__ = ["SearchSpace", "load_search_space", "TUNABLE_SETTINGS", "WIDTH_FIELDS"]

#: `TrainingSettings` fields a search may set (epochs, patience and seed belong to the preset).
TUNABLE_SETTINGS = ("learning_rate", "batch_size", "weight_decay")
#: Pseudo-fields of ``network.`` that make ``widths``.
WIDTH_FIELDS = ("base_width", "levels", "max_width")
#: `NetworkConfig` fields fixed by the task's data, never searched.
_FIXED_BY_TASK = ("mode", "dims", "in_channels", "out_channels", "widths")
_SCALAR = (str, bool, int, float, type(None))


def _check_spec(name, spec):
    """Raise `InvalidInputError` naming ``name`` when ``spec`` is not a valid parameter spec."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise InvalidInputError(f"search space parameter {name!r} needs a dict with a 'type', got {spec!r}")
    kind = spec["type"]
    allowed = {
        "int": {"type", "low", "high", "log", "step"},
        "float": {"type", "low", "high", "log", "step"},
        "categorical": {"type", "choices"},
        "fixed": {"type", "value"},
    }
    if kind not in allowed:
        raise InvalidInputError(
            f"search space parameter {name!r}: type must be int, float, categorical or fixed, got {kind!r}"
        )
    extra = sorted(set(spec) - allowed[kind])
    if extra:
        raise InvalidInputError(f"search space parameter {name!r}: unknown key(s) {', '.join(extra)}")
    if kind in ("int", "float"):
        for key in ("low", "high"):
            value = spec.get(key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InvalidInputError(
                    f"search space parameter {name!r}: {key} must be a number, got {value!r}"
                )
            if kind == "int" and value != int(value):
                raise InvalidInputError(
                    f"search space parameter {name!r}: {key} must be an integer, got {value!r}"
                )
        if not spec["low"] < spec["high"]:
            raise InvalidInputError(
                f"search space parameter {name!r}: low ({spec['low']}) must be below high ({spec['high']})"
            )
        if spec.get("log") and spec["low"] <= 0:
            raise InvalidInputError(f"search space parameter {name!r}: a log scale needs low > 0")
        if spec.get("log") and spec.get("step") not in (None, 1):
            raise InvalidInputError(f"search space parameter {name!r}: log and step cannot be combined")
    elif kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InvalidInputError(f"search space parameter {name!r}: choices must be a non-empty list")
        if not all(isinstance(c, _SCALAR) for c in choices):
            raise InvalidInputError(
                f"search space parameter {name!r}: choices must be strings, numbers, booleans or null"
            )


def _check_training(training):
    """Raise `InvalidInputError` unless ``training`` (``{FIELD: value}``) are settings that
    `TrainingSettings` accepts: ``batch_size`` an integer, the others numbers, all in range."""
    for field, value in training.items():
        kind, what = (numbers.Integral, "an integer") if field == "batch_size" else (numbers.Real, "a number")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidInputError(f"{field} must be {what}, got {value!r}")
    TrainingSettings(**training)


def _values(spec):
    """Some values ``spec`` can take (its bounds or choices), to check them against the config."""
    kind = spec["type"]
    if kind == "fixed":
        return [spec["value"]]
    if kind == "categorical":
        return list(spec["choices"])
    cast = int if kind == "int" else float
    return [cast(spec["low"]), cast(spec["high"])]


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space of one task.

    Parameters
    ----------
    task : str
        Task name.
    parameters : dict
        ``NAME -> SPEC`` (see the module docstring).
    description : str
        Free text.
    """

    task: str
    parameters: dict
    description: str = ""

    def __post_init__(self):
        definition = get_task(self.task)
        if not isinstance(self.parameters, dict) or not self.parameters:
            raise InvalidInputError("a search space needs a non-empty 'parameters' dict")
        network_fields = {f.name for f in fields(NetworkConfig)} - set(_FIXED_BY_TASK)
        for name, spec in self.parameters.items():
            group, _, field = str(name).partition(".")
            if group == "network":
                known = network_fields | set(WIDTH_FIELDS)
            elif group == "training":
                known = set(TUNABLE_SETTINGS)
            elif group == "loss":
                known = set(LOSS_WEIGHTS[self.task])
            else:
                raise InvalidInputError(
                    f"search space parameter {name!r} must start with 'network.', 'training.' or 'loss.'"
                )
            if field not in known:
                raise InvalidInputError(
                    f"search space parameter {name!r}: unknown {group} field {field!r} for task "
                    f"{self.task!r}; known: {', '.join(sorted(known))}"
                )
            _check_spec(name, spec)
        # Every corner of the space must build a config the task accepts: check each value alone.
        for name, spec in self.parameters.items():
            for value in _values(spec):
                try:
                    self.apply({name: value})
                except InvalidInputError as exc:
                    raise InvalidInputError(f"search space parameter {name!r} = {value!r}: {exc}") from None
        if definition.config.mode not in ("deconvolver", "segmenter") and any(
            n in self.parameters for n in ("network.skip", "network.residual_output")
        ):
            raise InvalidInputError(
                f"network.skip and network.residual_output do nothing for task {self.task!r} "
                f"(mode {definition.config.mode!r}): remove them from the search space"
            )

    def suggest(self, trial) -> dict:
        """Draw one point with an Optuna ``trial``; returns ``{NAME: value}`` (fixed ones included)."""
        params = {}
        for name, spec in self.parameters.items():
            kind = spec["type"]
            if kind == "fixed":
                params[name] = spec["value"]
            elif kind == "categorical":
                params[name] = trial.suggest_categorical(name, spec["choices"])
            elif kind == "int":
                params[name] = trial.suggest_int(
                    name,
                    int(spec["low"]),
                    int(spec["high"]),
                    step=int(spec.get("step", 1)),
                    log=bool(spec.get("log")),
                )
            else:
                params[name] = trial.suggest_float(
                    name,
                    float(spec["low"]),
                    float(spec["high"]),
                    step=spec.get("step"),
                    log=bool(spec.get("log")),
                )
        return params

    def apply(self, params) -> dict:
        """The task's network config, training settings and loss weights with ``params`` set.

        Parameters
        ----------
        params : dict
            ``{NAME: value}`` as `suggest` returns (missing names keep the task's defaults).

        Returns
        -------
        dict
            ``{"network": NetworkConfig dict, "training": {...}, "loss_weights": {...},
            "params": params}`` -- the layout of a tuned config JSON (`deepfocus train --config`).

        Raises
        ------
        deepfocus.exceptions.InvalidInputError
            A network config, training setting or loss weight the task refuses.
        """
        default = get_task(self.task).config
        network, training, loss = {}, {}, {}
        for name, value in params.items():
            group, _, field = name.partition(".")
            {"network": network, "training": training, "loss": loss}[group][field] = value
        widths = {k: network.pop(k) for k in WIDTH_FIELDS if k in network}
        if widths:
            base = widths.get("base_width", default.widths[0])
            levels = widths.get("levels", default.levels)
            cap = widths.get("max_width")
            network["widths"] = [min(base * 2**i, cap) if cap else base * 2**i for i in range(levels)]
        config = default.replace(**network)
        _check_training(training)
        return {
            "network": config.to_dict(),
            "training": training,
            "loss_weights": check_loss_weights(self.task, loss),
            "params": dict(params),
        }

    def to_dict(self) -> dict:
        """The JSON layout of the space."""
        return {"task": self.task, "description": self.description, "parameters": self.parameters}


def load_search_space(task, space=None) -> SearchSpace:
    """The search space of ``task``: the shipped one, a dict or a JSON file.

    Parameters
    ----------
    task : str
        Task name.
    space : dict or path-like, optional
        Search space (default: ``deepfocus/data/search_spaces/<task>.json``).

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        Unreadable file, a space made for another task, parameters outside ``"parameters"``, or
        an invalid parameter (named).
    """
    get_task(task)
    if space is None:
        text = resources.files("deepfocus").joinpath("data", "search_spaces", f"{task}.json").read_text()
        space = json.loads(text)
    elif not isinstance(space, dict):
        try:
            space = json.loads(Path(space).read_text())
        except OSError as exc:
            raise InvalidInputError(f"cannot read search space {space}: {exc}") from None
        except ValueError as exc:
            raise InvalidInputError(f"search space {space} is not valid JSON: {exc}") from None
    if not isinstance(space, dict):
        raise InvalidInputError("a search space must be a JSON object")
    unknown = sorted(str(key) for key in space if key not in ("task", "parameters", "description"))
    if any(key.partition(".")[0] in ("network", "training", "loss") for key in unknown):
        # Parameters at the top level: the file is a bare NAME -> RANGE mapping.
        raise InvalidInputError(
            f'search space parameter(s) {", ".join(unknown)} must go under a "parameters" object: '
            f'{{"task": "{task}", "parameters": {{"{unknown[0]}": {{"type": ..., ...}}, ...}}}}'
        )
    if unknown:
        raise InvalidInputError(
            f"unknown search space key(s): {', '.join(unknown)}; a search space is "
            '{"task": ..., "description": ..., "parameters": {NAME: RANGE, ...}}'
        )
    if space.get("task", task) != task:
        raise InvalidInputError(f"the search space is for task {space['task']!r}, not {task!r}")
    return SearchSpace(
        task=task, parameters=space.get("parameters"), description=space.get("description", "")
    )
