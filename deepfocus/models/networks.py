"""The network architectures `build_network` assembles from a `NetworkConfig`.

Two families share one encoder: `EncoderDecoderNetwork` (deconvolver, segmenter) maps an input to
an output of the same spatial size, `EncoderHeadNetwork` (regressor, classifier) maps it to a
vector. Neither has a dense layer tied to the input size, so any input size works.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..exceptions import InvalidInputError
from .blocks import Upsample, activation_layer, conv, make_block, max_pool
from .config import NetworkConfig

__all__ = ["Encoder", "Decoder", "BidirectionalRecurrent", "EncoderDecoderNetwork", "EncoderHeadNetwork"]

_LAYOUT = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def _stack(config: NetworkConfig, in_channels, out_channels) -> nn.Sequential:
    """``blocks_per_level`` blocks, the first one changing the number of channels."""
    return nn.Sequential(
        *(
            make_block(
                config.block,
                config.dims,
                in_channels if i == 0 else out_channels,
                out_channels,
                config.kernel_size,
                activation=config.activation,
                norm=config.norm,
                dropout=config.dropout,
            )
            for i in range(config.blocks_per_level)
        )
    )


def _check_input(x, config: NetworkConfig):
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"network input must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != config.dims + 2 or x.shape[1] != config.in_channels:
        raise InvalidInputError(
            f"a dims={config.dims} network with in_channels={config.in_channels} takes tensors shaped "
            f"{_LAYOUT[config.dims]} with C={config.in_channels}; got shape {tuple(x.shape)}"
        )


class Encoder(nn.Module):
    """Levels of convolutional blocks with 2x max pooling between them.

    Max pooling (rather than strided convolution) keeps the peak response of compact, faint
    sources through downsampling and adds no parameters. `forward` returns every level's features,
    finest first.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        channels = (config.in_channels, *config.widths)  # level i maps channels[i] -> channels[i + 1]
        self.levels = nn.ModuleList(
            _stack(config, channels[i], channels[i + 1]) for i in range(config.levels)
        )
        self.pool = max_pool(config.dims)

    def forward(self, x) -> list:
        features = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else self.pool(x))
            features.append(x)
        return features


class Decoder(nn.Module):
    """Upsample-and-convolve stages from the coarsest level back to full resolution.

    With ``skip`` each stage concatenates the encoder features of the same level (U-Net).
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.skip = config.skip
        w, k = config.widths, config.kernel_size
        finer = range(config.levels - 2, -1, -1)  # decoding order: coarse to fine
        self.ups = nn.ModuleList(Upsample(config.dims, w[i + 1], w[i], k) for i in finer)
        self.stages = nn.ModuleList(_stack(config, w[i] * (2 if self.skip else 1), w[i]) for i in finer)

    def forward(self, features):
        x = features[-1]
        for j, (up, stage) in enumerate(zip(self.ups, self.stages, strict=True)):
            x = up(x)
            if self.skip:
                x = torch.cat([features[-2 - j], x], dim=1)
            x = stage(x)
        return x


class BidirectionalRecurrent(nn.Module):
    """Bidirectional GRU or LSTM along the last axis: ``(N, C, L) -> (N, 2 * hidden, L)``."""

    def __init__(self, kind, in_channels, hidden, dropout=0.0):
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.rnn = rnn(in_channels, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out_channels = 2 * hidden

    def forward(self, x):
        y, _ = self.rnn(x.transpose(1, 2))
        return self.dropout(y.transpose(1, 2))


def _recurrent(config: NetworkConfig, in_channels):
    if config.recurrent == "none":
        return None
    return BidirectionalRecurrent(config.recurrent, in_channels, config.recurrent_hidden, config.dropout)


class EncoderDecoderNetwork(nn.Module):
    """Fully convolutional encoder/decoder: output spatial size == input spatial size.

    The input is padded at the end of each spatial axis (replicating the edge values, which works
    for any size) to a multiple of ``config.size_multiple``, and the decoder output is cropped
    back before the optional recurrent layer and the final 1x1 convolution, so padding never
    reaches the recurrent layer or the residual sum. The segmenter's output is logits.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.recurrent = _recurrent(config, config.widths[0])
        channels = self.recurrent.out_channels if self.recurrent is not None else config.widths[0]
        self.head = conv(config.dims, channels, config.out_channels, 1)

    def forward(self, x):
        _check_input(x, self.config)
        size = x.shape[2:]
        m = self.config.size_multiple
        pad = [(-n) % m for n in size]
        y = F.pad(x, [p for q in reversed(pad) for p in (0, q)], mode="replicate") if any(pad) else x
        y = self.decoder(self.encoder(y))
        y = y[(..., *(slice(0, n) for n in size))]
        if self.recurrent is not None:
            y = self.recurrent(y)
        y = self.head(y)
        if self.config.residual_output:
            y = x[:, : self.config.out_channels] + y
        return y


class EncoderHeadNetwork(nn.Module):
    """Encoder, optional recurrent layer, global average pooling and an MLP head.

    Output shape ``(N, out_channels)``: values (regressor) or class logits (classifier).
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.recurrent = _recurrent(config, config.widths[-1])
        channels = self.recurrent.out_channels if self.recurrent is not None else config.widths[-1]
        self.head = nn.Sequential(
            nn.Linear(channels, config.head_hidden),
            activation_layer(config.activation),
            nn.Dropout(config.dropout) if config.dropout else nn.Identity(),
            nn.Linear(config.head_hidden, config.out_channels),
        )

    def forward(self, x):
        _check_input(x, self.config)
        y = self.encoder(x)[-1]
        if self.recurrent is not None:
            y = self.recurrent(y)
        return self.head(y.mean(dim=tuple(range(2, y.ndim))))
