"""Registry of the pretrained weights shipped in ``deepfocus/data/weights``.

A shipped model is a pair ``<name>.safetensors`` + ``<name>.json`` (e.g. ``deconvolver-default``);
the registry finds them by listing the folder, so adding a model is adding its two files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..exceptions import InvalidInputError
from .weights import load_weights

__all__ = ["available_models", "resolve_weights", "load_model", "weights_folder"]

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
