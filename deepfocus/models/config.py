"""`NetworkConfig`: the plain, JSON-serialisable description from which every network is built.

A config is all an architecture is: `deepfocus.models.build_network` turns it into a module, the
weights' model card stores it, and hyper-parameter optimisation searches over its fields.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, fields

from ..exceptions import InvalidInputError

__all__ = ["NetworkConfig", "MODES", "ACTIVATIONS", "NORMS", "BLOCKS", "RECURRENT"]

MODES = ("deconvolver", "segmenter", "regressor", "classifier")
ACTIVATIONS = ("relu", "gelu", "silu", "leaky_relu")
NORMS = ("batch", "group", "instance", "none")
BLOCKS = ("residual", "plain")
RECURRENT = ("none", "gru", "lstm")


def _int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"NetworkConfig.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidInputError(f"NetworkConfig.{name} must be >= {minimum}, got {value}")
    return int(value)


def _choice(name, value, allowed):
    if value not in allowed:
        raise InvalidInputError(f"NetworkConfig.{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _bool(name, value):
    if not isinstance(value, bool):
        raise InvalidInputError(f"NetworkConfig.{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a deepfocus network.

    Inputs are channel-first tensors: ``(N, C, L)`` for ``dims=1`` (spectra), ``(N, C, H, W)``
    for ``dims=2`` (images or channel-stacked cubes) and ``(N, C, D, H, W)`` for ``dims=3``
    (cubes, ``D`` spectral).

    Parameters
    ----------
    mode : {'deconvolver', 'segmenter', 'regressor', 'classifier'}
        ``deconvolver``: fully convolutional encoder/decoder whose output has the input's spatial
        size (e.g. dirty cube -> sky model). ``segmenter``: the same architecture giving
        per-pixel/voxel mask *logits* (train with `torch.nn.BCEWithLogitsLoss`). ``regressor``:
        encoder, global average pooling and an MLP giving ``out_channels`` values.
        ``classifier``: as ``regressor`` giving ``out_channels`` class logits (train with
        `torch.nn.CrossEntropyLoss`).
    dims : {1, 2, 3}
        Number of spatial (or spectral) dimensions.
    in_channels : int
        Input channels ``C``.
    out_channels : int
        Output channels (deconvolver, segmenter), outputs (regressor) or classes (classifier).
    widths : tuple of int
        Feature channels of each encoder level; the input is halved between levels, so
        ``len(widths)`` levels downsample ``2**(len(widths) - 1)`` times in total.
    blocks_per_level : int
        Convolutional blocks per encoder (and decoder) level.
    kernel_size : int
        Odd convolution kernel size (the same along every dimension).
    block : {'residual', 'plain'}
        `~deepfocus.models.blocks.ResidualBlock` or `~deepfocus.models.blocks.ConvBlock`.
    activation : {'relu', 'gelu', 'silu', 'leaky_relu'}
        Non-linearity.
    norm : {'group', 'batch', 'instance', 'none'}
        Normalisation layer. ``group`` (the default) does not depend on the batch size, so it
        behaves the same in training and inference on single tiles.
    dropout : float
        Dropout probability in [0, 1) inside blocks and the MLP head.
    skip : bool
        U-Net concatenation skips from encoder to decoder (deconvolver, segmenter; ignored by the
        other modes).
    recurrent : {'none', 'gru', 'lstm'}
        ``dims=1`` only: a bidirectional recurrent layer over the sequence, at the full-resolution
        decoder output (deconvolver, segmenter) or on the encoder features before global pooling
        (regressor, classifier).
    recurrent_hidden : int
        Hidden size per direction of the recurrent layer.
    head_hidden : int
        Width of the MLP head (regressor, classifier; ignored by the other modes).
    residual_output : bool
        Deconvolver only: output ``input[:, :out_channels]`` plus a learned correction (useful when
        input and target share units). Needs ``out_channels <= in_channels``.
    """

    mode: str = "deconvolver"
    dims: int = 2
    in_channels: int = 1
    out_channels: int = 1
    widths: tuple = (16, 32, 64)
    blocks_per_level: int = 1
    kernel_size: int = 3
    block: str = "residual"
    activation: str = "relu"
    norm: str = "group"
    dropout: float = 0.0
    skip: bool = True
    recurrent: str = "none"
    recurrent_hidden: int = 32
    head_hidden: int = 64
    residual_output: bool = False

    def __post_init__(self):
        _choice("mode", self.mode, MODES)
        if isinstance(self.dims, bool) or self.dims not in (1, 2, 3):
            raise InvalidInputError(f"NetworkConfig.dims must be 1, 2 or 3; got {self.dims!r}")
        _choice("block", self.block, BLOCKS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("norm", self.norm, NORMS)
        _choice("recurrent", self.recurrent, RECURRENT)
        for name in ("in_channels", "out_channels", "blocks_per_level", "recurrent_hidden", "head_hidden"):
            object.__setattr__(self, name, _int(name, getattr(self, name), 1))
        object.__setattr__(self, "dims", int(self.dims))
        kernel = _int("kernel_size", self.kernel_size, 1)
        if kernel % 2 == 0:
            raise InvalidInputError(f"NetworkConfig.kernel_size must be odd, got {kernel}")
        object.__setattr__(self, "kernel_size", kernel)
        if isinstance(self.widths, (str, bytes)) or not hasattr(self.widths, "__len__") or not self.widths:
            raise InvalidInputError(
                f"NetworkConfig.widths must be a non-empty sequence of int, got {self.widths!r}"
            )
        object.__setattr__(self, "widths", tuple(_int("widths", w, 1) for w in self.widths))
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise InvalidInputError(f"NetworkConfig.dropout must be a number in [0, 1), got {dropout!r}")
        object.__setattr__(self, "dropout", float(dropout))
        for name in ("skip", "residual_output"):
            _bool(name, getattr(self, name))
        if self.recurrent != "none" and self.dims != 1:
            raise InvalidInputError(
                f"NetworkConfig.recurrent={self.recurrent!r} needs dims=1 (sequences), got dims={self.dims}"
            )
        if self.residual_output:
            if self.mode != "deconvolver":
                raise InvalidInputError(
                    f"NetworkConfig.residual_output is for mode='deconvolver' only, not {self.mode!r}"
                )
            if self.out_channels > self.in_channels:
                raise InvalidInputError(
                    "NetworkConfig.residual_output needs out_channels <= in_channels, got "
                    f"out_channels={self.out_channels}, in_channels={self.in_channels}"
                )

    @property
    def levels(self) -> int:
        """Number of encoder levels (``len(widths)``)."""
        return len(self.widths)

    @property
    def size_multiple(self) -> int:
        """Factor ``2**(levels - 1)`` by which the encoder downsamples."""
        return 2 ** (self.levels - 1)

    def replace(self, **changes) -> NetworkConfig:
        """Return a copy with some fields changed (validated again)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        """Plain dict of the fields (tuples as lists), ready for JSON."""
        data = asdict(self)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_dict(cls, data) -> NetworkConfig:
        """Build from a dict such as `to_dict` returns; missing keys take their defaults.

        Raises
        ------
        deepfocus.exceptions.InvalidInputError
            Unknown keys (named in the message) or invalid values.
        """
        if not isinstance(data, dict):
            raise InvalidInputError(f"a NetworkConfig needs a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown NetworkConfig field(s): {', '.join(map(str, unknown))}; "
                f"known fields are {', '.join(sorted(known))}"
            )
        return cls(**data)

    def to_json(self, **kwargs) -> str:
        """JSON text of `to_dict` (keyword arguments go to `json.dumps`)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text) -> NetworkConfig:
        """Inverse of `to_json`."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"NetworkConfig JSON cannot be parsed: {exc}") from None
        return cls.from_dict(data)

    def differences(self, other) -> dict:
        """Fields whose values differ from ``other``'s, as ``{field: (self_value, other_value)}``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
