"""Dimension-generic layers and the convolutional blocks the builder stacks.

Every helper takes ``dims`` (1, 2 or 3) and returns the matching ``torch.nn`` layer, so one block
definition serves spectra, images and cubes.
"""

from __future__ import annotations

from torch import nn

__all__ = [
    "conv",
    "norm_layer",
    "activation_layer",
    "max_pool",
    "Upsample",
    "ConvBlock",
    "ResidualBlock",
    "make_block",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCH = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_ACTIVATION = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}


def conv(dims, in_channels, out_channels, kernel_size=3, *, bias=True) -> nn.Module:
    """Stride-1 convolution with 'same' zero padding (odd ``kernel_size``)."""
    return _CONV[dims](in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


def group_count(channels) -> int:
    """Largest number of groups <= 8 that divides ``channels``."""
    return next(g for g in range(min(8, channels), 0, -1) if channels % g == 0)


def norm_layer(kind, dims, channels) -> nn.Module:
    """Normalisation layer: ``'batch'``, ``'group'``, ``'instance'`` (affine) or ``'none'``."""
    if kind == "batch":
        return _BATCH[dims](channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "instance":
        return _INSTANCE[dims](channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}")


def activation_layer(kind) -> nn.Module:
    """Activation module by name (``'relu'``, ``'gelu'``, ``'silu'``, ``'leaky_relu'``)."""
    return _ACTIVATION[kind]()


def max_pool(dims) -> nn.Module:
    """2x max pooling; ``ceil_mode`` keeps the last row of odd sizes and never gives size 0."""
    return _POOL[dims](kernel_size=2, stride=2, ceil_mode=True)


class Upsample(nn.Module):
    """2x nearest-neighbour upsampling followed by a convolution.

    Chosen over transposed convolutions, which leave checkerboard patterns that a source finder
    would read as faint sources; nearest interpolation also has a deterministic backward pass.
    """

    def __init__(self, dims, in_channels, out_channels, kernel_size=3):
        super().__init__()
        self.conv = conv(dims, in_channels, out_channels, kernel_size)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


def _two_convolutions(dims, in_channels, out_channels, kernel_size, activation, norm, dropout):
    """conv-norm-act-dropout-conv-norm, the body shared by `ConvBlock` and `ResidualBlock`."""
    bias = norm == "none"  # a normalisation layer has its own shift
    return [
        conv(dims, in_channels, out_channels, kernel_size, bias=bias),
        norm_layer(norm, dims, out_channels),
        activation_layer(activation),
        nn.Dropout(dropout) if dropout else nn.Identity(),
        conv(dims, out_channels, out_channels, kernel_size, bias=bias),
        norm_layer(norm, dims, out_channels),
    ]


class ConvBlock(nn.Module):
    """Two (convolution, normalisation, activation) layers, dropout after the first.

    Parameters
    ----------
    dims : {1, 2, 3}
        Spatial dimensions.
    in_channels, out_channels : int
        Channels in and out; the spatial size is unchanged.
    kernel_size : int
        Odd kernel size.
    activation : str
        Activation name (see `activation_layer`).
    norm : str
        Normalisation name (see `norm_layer`).
    dropout : float
        Dropout probability (0 for none).
    """

    def __init__(
        self, dims, in_channels, out_channels, kernel_size=3, *, activation="relu", norm="group", dropout=0.0
    ):
        super().__init__()
        self.body = nn.Sequential(
            *_two_convolutions(dims, in_channels, out_channels, kernel_size, activation, norm, dropout),
            activation_layer(activation),
        )

    def forward(self, x):
        return self.body(x)


class ResidualBlock(nn.Module):
    """Post-activation residual block (He et al. 2016): ``act(shortcut(x) + F(x))``.

    ``F`` is conv-norm-act-dropout-conv-norm; the shortcut is the identity, or a 1x1 convolution
    and normalisation when the number of channels changes. Post-activation keeps every block's
    output normalised and activated, so residual and plain blocks are interchangeable. Parameters
    are those of `ConvBlock`.
    """

    def __init__(
        self, dims, in_channels, out_channels, kernel_size=3, *, activation="relu", norm="group", dropout=0.0
    ):
        super().__init__()
        self.body = nn.Sequential(
            *_two_convolutions(dims, in_channels, out_channels, kernel_size, activation, norm, dropout)
        )
        if in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                conv(dims, in_channels, out_channels, 1, bias=norm == "none"),
                norm_layer(norm, dims, out_channels),
            )
        self.activation = activation_layer(activation)

    def forward(self, x):
        return self.activation(self.shortcut(x) + self.body(x))


def make_block(kind, *args, **kwargs) -> nn.Module:
    """`ResidualBlock` (``kind='residual'``) or `ConvBlock` (``'plain'``) with the given arguments."""
    return {"residual": ResidualBlock, "plain": ConvBlock}[kind](*args, **kwargs)
