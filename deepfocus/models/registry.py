"""Registry of the pretrained weights shipped in ``deepfocus/data/weights``.

A shipped model is a pair ``<name>.safetensors`` + ``<name>.json`` (e.g. ``deconvolver-default``);
the registry finds them by listing the folder, so adding a model is adding its two files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..exceptions import InvalidInputError
from .weights import load_weights

__all__ = [
    "available_models",
    "resolve_weights",
    "load_model",
    "load_task_model",
    "task_weights",
    "weights_folder",
]

_SUFFIX = ".safetensors"


def weights_folder() -> Path:
    """Folder of the shipped weights."""
    return Path(str(resources.files("deepfocus.data") / "weights"))


def _shipped() -> dict[str, Path]:
    folder = weights_folder()
    if not folder.is_dir():
        return {}
    return {
        p.name[: -len(_SUFFIX)]: p
        for p in folder.iterdir()
        if p.name.endswith(_SUFFIX) and p.with_suffix(".json").is_file()
    }


def available_models() -> list[str]:
    """Names of the shipped pretrained models (sorted; may be empty).

    Returns
    -------
    names : list of str
        Each is accepted by `resolve_weights` and `load_model`.
    """
    return sorted(_shipped())


def resolve_weights(name_or_path) -> Path:
    """Weights file of a shipped model name, or a user's path.

    Parameters
    ----------
    name_or_path : str or path-like
        A name from `available_models` or the path of a ``.safetensors`` file (or its ``.json``
        card). Existing paths win over names.

    Returns
    -------
    path : `~pathlib.Path`

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        Neither an existing file nor a known name (the message lists the known names).
    """
    path = Path(name_or_path)
    for candidate in (path, path.parent / (path.name + _SUFFIX)):
        if path.name and candidate.is_file():
            return candidate
    shipped = _shipped()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(sorted(shipped)) or "none are installed"
    raise InvalidInputError(
        f"{str(name_or_path)!r} is neither a weights file nor a shipped model name (available: {names})"
    )


def load_model(name_or_path, *, config=None, map_location="cpu"):
    """Load a shipped or user model: `resolve_weights` then `load_weights`.

    Returns
    -------
    model : `torch.nn.Module`
        The network in eval mode.
    card : dict
        Its model card.
    """
    return load_weights(resolve_weights(name_or_path), config=config, map_location=map_location)


def task_weights(folder, task) -> Path:
    """The weights of ``task`` in a folder that `deepfocus train` wrote to.

    ``<task>-default.safetensors`` if it is there, else the folder's one ``<task>-*.safetensors``
    (``train --preset tiny`` writes ``<task>-tiny``).

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        If the folder holds no weights of ``task``, or several and no ``-default`` among them.
    """
    folder = Path(folder)
    default = folder / f"{task}-default{_SUFFIX}"
    if default.is_file():
        return default
    found = sorted(folder.glob(f"{task}-*{_SUFFIX}"))
    if len(found) == 1:
        return found[0]
    if not found:
        shipped = weights_folder() / f"{task}-default"
        raise InvalidInputError(
            f"{folder} holds no {task} weights ({task}-default{_SUFFIX} or another {task}-*{_SUFFIX}); "
            f"train them with: deepfocus train --task {task} --output {folder}, or copy the shipped "
            f"ones in ({shipped}{_SUFFIX} and {shipped.name}.json)"
        )
    names = ", ".join(p.name for p in found)
    raise InvalidInputError(
        f"{folder} holds several {task} weights ({names}); keep one, or name it {task}-default{_SUFFIX}"
    )


def load_task_model(model, task):
    """The network of ``task`` (``'deconvolver'``, ``'spectral'``, ``'characterizer'``).

    Parameters
    ----------
    model : str, path-like, `torch.nn.Module` or None
        ``"default"`` (or another shipped name, ``"<task>-<model>"``), a folder written by
        `deepfocus train` (`task_weights`), a ``.safetensors`` file of this task, a loaded
        module (used as it is), or None.
    task : {'deconvolver', 'spectral', 'characterizer'}
        The network wanted: weights whose model card names another task are refused.

    Returns
    -------
    network : `torch.nn.Module` or None
    info : dict or None
        ``name`` and ``sha256`` of the weights (for the catalogue's ``meta``).

    Raises
    ------
    deepfocus.exceptions.InvalidInputError
        If the weights cannot be found (the message names ``model`` as given and lists the
        shipped names), or their model card names another task.
    """
    if model is None:
        return None, None
    if hasattr(model, "forward"):
        return model, {"name": "in-memory"}
    path = Path(str(model))
    if path.is_dir():
        name = task_weights(path, task)
    elif path.is_file() or path.suffix in (_SUFFIX, ".json"):
        name = path
    else:  # a shipped name, with or without its task
        name = str(model) if str(model).startswith(f"{task}-") else f"{task}-{model}"
    try:
        weights = resolve_weights(name)
    except InvalidInputError:  # name what was given, not the "<task>-" name made of it
        shipped = [n[len(task) + 1 :] for n in available_models() if n.startswith(f"{task}-")]
        raise InvalidInputError(
            f"model {str(model)!r}: no such folder or weights file, and not a shipped model "
            f"(shipped: {', '.join(shipped) or 'none are installed'})"
        ) from None
    network, card = load_weights(weights)
    if card.get("task", task) != task:
        raise InvalidInputError(f"{name} holds {card['task']} weights, not {task} weights")
    return network, {"name": str(name), "sha256": card.get("sha256")}
