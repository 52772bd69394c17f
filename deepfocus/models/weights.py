"""Network weights as ``.safetensors`` files with a JSON model card beside them.

``NAME.safetensors`` holds the state dict (and the config JSON in its metadata); ``NAME.json``,
the model card, holds the config, the sha256 of the weights file and whatever the trainer records
(data recipe, seeds, metrics, training time). Loading verifies the hash before parsing and never
unpickles anything.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from ..exceptions import DeepFocusError, InvalidInputError
from ..io.atomic import atomic_path
from ..version import __version__
from .builder import build_network
from .config import NetworkConfig

__all__ = ["WeightsError", "save_weights", "load_weights", "read_card", "card_path", "FORMAT"]

#: Value of the model card's ``format`` key.
FORMAT = "deepfocus-weights-1"
_RESERVED = (
    "format",
    "config",
    "sha256",
    "size_bytes",
    "created",
    "deepfocus_version",
    "n_parameters",
    "weights_file",
)
_SUFFIX = ".safetensors"


class WeightsError(DeepFocusError):
    """A weights file or its model card is missing, corrupted, or does not fit the network."""


def card_path(path) -> Path:
    """Model card path (``.json``) of a weights file."""
    return Path(path).with_suffix(".json")


def _weights_path(path) -> Path:
    path = Path(path)
    if path.suffix == ".json":  # a card was named: its weights lie beside it
        return path.with_suffix(_SUFFIX)
    return path if path.suffix == _SUFFIX else path.with_name(path.name + _SUFFIX)


def _json_default(value):
    if isinstance(value, (np.generic, torch.Tensor)) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _few(keys, n=5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (and {len(keys) - n} more)" if len(keys) > n else "")


def save_weights(model, path, *, card=None, overwrite=True) -> Path:
    """Write a network's weights and model card.

    Parameters
    ----------
    model : `torch.nn.Module`
        A network from `build_network` (it must have a ``config`` attribute).
    path : str or path-like
        Weights file; ``.safetensors`` is appended if missing. The card goes to the same name with
        ``.json``. Both are written atomically (a reader never sees a half-written file).
    card : dict, optional
        Extra model-card entries: training recipe, seeds, data ranges, metrics,
        ``training_seconds``... Values must be JSON-serialisable (numpy scalars and arrays are
        converted). Keys must not be one of the entries written here (``format``, ``config``,
        ``sha256``, ``size_bytes``, ``created``, ``deepfocus_version``, ``n_parameters``,
        ``weights_file``).
    overwrite : bool
        Replace existing files; if False, raise `FileExistsError`.

    Returns
    -------
    path : `~pathlib.Path`
        The weights file written.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, NetworkConfig):
        raise InvalidInputError("save_weights needs a model from build_network (with a NetworkConfig config)")
    card = dict(card or {})
    clash = [k for k in card if k in _RESERVED]
    if clash:
        raise InvalidInputError(f"model card keys {_few(clash)} are reserved; rename them")
    path = _weights_path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "config": config.to_json()})
        data = tmp.read_bytes()
    entries = {
        "format": FORMAT,
        "weights_file": path.name,
        "config": config.to_dict(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "deepfocus_version": __version__,
        **card,
    }
    try:
        text = json.dumps(entries, indent=2, default=_json_default)
    except TypeError as exc:
        raise InvalidInputError(f"model card is not JSON serialisable: {exc}") from None
    with atomic_path(card_path(path), overwrite=overwrite) as tmp:
        tmp.write_text(text + "\n")
    return path


def read_card(path) -> dict:
    """Read and check the model card of a weights file (no weights are read).

    Raises
    ------
    WeightsError
        The card is missing, not JSON, of another format, or lacks ``config`` or ``sha256``.
    """
    cpath = card_path(_weights_path(path))
    if not cpath.is_file():
        raise WeightsError(f"model card {cpath} is missing: the weights cannot be verified without it")
    try:
        card = json.loads(cpath.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"model card {cpath} cannot be read: {exc}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise WeightsError(f"model card {cpath} is not a {FORMAT} card (format: {found!r})")
    missing = [k for k in ("config", "sha256") if k not in card]
    if missing:
        raise WeightsError(f"model card {cpath} lacks {', '.join(missing)}")
    return card


def _embedded_config(data: bytes):
    """Config JSON from a safetensors header's metadata (None if absent)."""
    (n,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    return metadata.get("config")


def _config_from(value, source) -> NetworkConfig:
    try:
        return value if isinstance(value, NetworkConfig) else NetworkConfig.from_dict(value)
    except InvalidInputError as exc:
        raise WeightsError(f"{source} has an invalid network config: {exc}") from None


def _describe(diff) -> str:
    return "; ".join(f"{k}: {a!r} != {b!r}" for k, (a, b) in diff.items())


def _check_state(model, state, path):
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    shapes = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    problems = []
    if missing:
        problems.append(f"missing tensors {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_few(unexpected)}")
    if shapes:
        pairs = (f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in shapes)
        problems.append(f"shape mismatches {_few(pairs)}")
    if problems:
        raise WeightsError(f"weights in {path} do not fit the network of their config: {'; '.join(problems)}")


def load_weights(path, *, config=None, map_location="cpu"):
    """Load a network from a weights file and its model card.

    The sha256 of the weights file is checked against the card before the file is parsed; the
    file is read with safetensors only (no pickle).

    Parameters
    ----------
    path : str or path-like
        The ``.safetensors`` file (or its ``.json`` card).
    config : `NetworkConfig` or dict, optional
        Expected architecture; an error is raised if the card's config differs.
    map_location : str or `torch.device`
        Device to put the model on.

    Returns
    -------
    model : `torch.nn.Module`
        The network in eval mode, with ``model.config`` set.
    card : dict
        The model card.

    Raises
    ------
    WeightsError
        Missing, unreadable, corrupted (hash mismatch) or truncated files, a card whose config
        differs from ``config`` or from the one embedded in the weights, or weights whose tensor
        names or shapes do not fit the config.
    """
    path = _weights_path(path)
    card = read_card(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing (its model card {card_path(path)} exists)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"weights file {path} cannot be read: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["sha256"]:
        raise WeightsError(
            f"weights file {path} is corrupted or was changed after its model card was written: "
            f"sha256 {digest} does not match the card's {card['sha256']}"
        )
    try:
        state = load_safetensors(data)
        embedded = _embedded_config(data)
    except Exception as exc:  # safetensors raises its own error types; any failure means a bad file
        raise WeightsError(
            f"weights file {path} is not a valid safetensors file (truncated or damaged?): {exc}"
        ) from None
    card_config = _config_from(card["config"], f"model card {card_path(path)}")
    if embedded is not None:
        diff = card_config.differences(_config_from(json.loads(embedded), f"weights file {path}"))
        if diff:
            raise WeightsError(
                f"the config in model card {card_path(path)} differs from the one stored in {path}: "
                + _describe(diff)
            )
    if config is not None:
        diff = _config_from(config, "the config passed to load_weights").differences(card_config)
        if diff:
            raise WeightsError(
                f"weights {path} were trained for another config (given != card): {_describe(diff)}"
            )
    model = build_network(card_config)
    _check_state(model, state, path)
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval(), card
