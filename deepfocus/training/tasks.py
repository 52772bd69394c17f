"""What each network learns: its default architecture, loss and validation metrics.

The architectures are configs of the one builder (`deepfocus.models.build_network`), so a
tuned config (``deepfocus optimize``) replaces them without code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..models import NetworkConfig
from .samples import CHARACTERIZER_TARGETS

__all__ = ["Task", "TASK_DEFINITIONS", "get_task", "dihedral_cutouts"]


#: Default weights of the deconvolver's total-flux term and of the spectral network's
#: denoised-spectrum term (`deepfocus.training.loss_weights` tunes them).
_DECONVOLVER_FLUX_WEIGHT = 10.0
_SPECTRUM_WEIGHT = 0.1


def deconvolver_loss(flux=_DECONVOLVER_FLUX_WEIGHT):
    """The deconvolver's loss with weight ``flux`` on its total-flux term."""

    def loss(prediction, target):
        # Sources are a few pixels against an empty sky: L1 keeps the background clean, and a
        # flux term keeps each image's total (the network must conserve flux).
        total = (prediction.sum(dim=(-2, -1)) - target.sum(dim=(-2, -1))).abs().mean() / target[0].numel()
        return F.l1_loss(prediction, target) + flux * total

    return loss


_deconvolver_loss = deconvolver_loss()


def _psnr(prediction, target):
    mse = ((prediction - target) ** 2).mean(dim=(1, 2, 3))
    peak = target.amax(dim=(1, 2, 3)).clamp_min(1e-6)
    return float((10 * torch.log10(peak**2 / mse.clamp_min(1e-12))).mean())


def _deconvolver_metrics(prediction, target):
    flux_error = (prediction.sum(dim=(1, 2, 3)) - target.sum(dim=(1, 2, 3))).abs()
    return {
        "psnr": _psnr(prediction, target),
        "relative_flux_error": float((flux_error / target.sum(dim=(1, 2, 3)).abs().clamp_min(1e-6)).median()),
    }


def spectral_loss(spectrum=_SPECTRUM_WEIGHT):
    """The spectral network's loss: line-mask cross-entropy plus ``spectrum`` times the
    denoised spectrum's error."""

    def loss(prediction, target):
        mask_loss = F.binary_cross_entropy_with_logits(prediction[:, 0], target[:, 0])
        return mask_loss + spectrum * F.smooth_l1_loss(prediction[:, 1], target[:, 1])

    return loss


_spectral_loss = spectral_loss()


def _spectral_metrics(prediction, target):
    predicted = prediction[:, 0] > 0
    truth = target[:, 0] > 0.5
    has_line = truth.any(dim=1)
    inter = (predicted & truth).sum(dim=1).float()
    union = (predicted | truth).sum(dim=1).float().clamp_min(1)
    channels = torch.arange(target.shape[-1], dtype=torch.float32)
    weights = target[:, 1].clamp_min(0) * truth
    centre_true = (weights * channels).sum(1) / weights.sum(1).clamp_min(1e-6)
    weights_pred = target[:, 1].clamp_min(0) * predicted
    centre_pred = (weights_pred * channels).sum(1) / weights_pred.sum(1).clamp_min(1e-6)
    return {
        "iou": float((inter / union)[has_line].mean()) if has_line.any() else 0.0,
        "false_line_fraction": float(predicted[~has_line].any(dim=1).float().mean())
        if (~has_line).any()
        else 0.0,
        "centre_error": float((centre_pred - centre_true)[has_line].abs().median())
        if has_line.any()
        else 0.0,
    }


#: Weights of the characterizer's outputs in its loss.
_CHARACTERIZER_WEIGHTS = torch.tensor([4.0, 4.0, 2.0, 2.0, 1.0, 1.0, 4.0])


def characterizer_loss(weights=_CHARACTERIZER_WEIGHTS):
    """The characterizer's loss: smooth L1 of each output times its weight (one per output)."""
    weights = torch.as_tensor(weights, dtype=torch.float32)

    def loss(prediction, target):
        return (F.smooth_l1_loss(prediction, target, reduction="none", beta=0.1) * weights).mean()

    return loss


_characterizer_loss = characterizer_loss()


def _characterizer_metrics(prediction, target):
    flux_ratio = torch.exp(prediction[:, 6] - target[:, 6])
    position = torch.hypot(prediction[:, 0] - target[:, 0], prediction[:, 1] - target[:, 1])
    return {
        "flux_within_10pct": float(((flux_ratio - 1).abs() < 0.1).float().mean()),
        "median_position_error": float(position.median()),
        "median_major_error": float((prediction[:, 2] - target[:, 2]).abs().median()),
    }


def _flip_about_centre(images, axis):
    """``images`` mirrored along ``axis`` about the pixel ``size // 2`` (not the middle of an
    even side): the cutouts are centred on that pixel, which must stay where it is. Of an even
    side, the first line has no mirror image inside and stays as it was (noise, 16 pixels or
    about 3 beams from a characterizer cutout's source)."""
    flipped = images.flip(axis)
    return torch.roll(flipped, 1, axis) if images.shape[axis] % 2 == 0 else flipped


def dihedral_cutouts(inputs, targets, generator):
    """Turn each characterizer cutout by a random one of the 8 flips and transposes of its square
    (about its centre pixel), and its targets alike.

    The sky has no preferred orientation, but the simulated cubes' sources and beams come in
    finite numbers: a network trained on one orientation of each (and its mirror image) measured
    the 8 orientations of one noisy elongated Gaussian up to 15 deg apart. Applied to each
    training batch, so that every epoch sees other orientations at no extra cost.

    Parameters
    ----------
    inputs : `torch.Tensor`
        ``(n, 1, size, size)`` cutouts.
    targets : `torch.Tensor`
        ``(n, 7)`` in the order of `~deepfocus.training.samples.CHARACTERIZER_TARGETS`: offsets
        ``dx``, ``dy`` (pixels), sizes, ``sin2pa``, ``cos2pa`` and the flux.
    generator : `torch.Generator`
        Draws the turns (the trainer's seeded generator).

    Returns
    -------
    inputs, targets : `torch.Tensor`
        New tensors. A transpose swaps the offsets and takes PA to 90 deg - PA (``cos2pa``
        changes sign); a mirror negates its axis's offset and the PA (``sin2pa``); sizes and the
        flux are unchanged.
    """
    transpose, flip_x, flip_y = torch.randint(0, 2, (3, len(inputs)), generator=generator).bool()
    inputs, targets = inputs.clone(), targets.clone()
    inputs[transpose] = inputs[transpose].transpose(-1, -2)
    targets[transpose] = targets[transpose][:, [1, 0, 2, 3, 4, 5, 6]]
    targets[transpose, 5] = -targets[transpose, 5]
    inputs[flip_x] = _flip_about_centre(inputs[flip_x], -1)
    targets[flip_x, 0] = -targets[flip_x, 0]
    targets[flip_x, 4] = -targets[flip_x, 4]
    inputs[flip_y] = _flip_about_centre(inputs[flip_y], -2)
    targets[flip_y, 1] = -targets[flip_y, 1]
    targets[flip_y, 4] = -targets[flip_y, 4]
    return inputs, targets


@dataclass(frozen=True)
class Task:
    """A network's job: default config, loss and validation metrics."""

    name: str
    config: NetworkConfig
    loss: object
    metrics: object
    description: str = ""
    targets: tuple = field(default=())
    #: ``augment(inputs, targets, generator) -> (inputs, targets)``, applied to each training
    #: batch (see `~deepfocus.training.trainer.Trainer`), or None.
    augment: object = None


TASK_DEFINITIONS = {
    "deconvolver": Task(
        name="deconvolver",
        config=NetworkConfig(
            mode="deconvolver",
            dims=2,
            in_channels=1,
            out_channels=1,
            widths=(16, 32, 64, 96),
            blocks_per_level=1,
            kernel_size=3,
            block="residual",
            activation="silu",
            norm="group",
            skip=True,
        ),
        loss=_deconvolver_loss,
        metrics=_deconvolver_metrics,
        description="dirty moment-0 image (S/N units) -> sky moment-0 image (same units)",
    ),
    "spectral": Task(
        name="spectral",
        config=NetworkConfig(
            mode="segmenter",
            dims=1,
            in_channels=1,
            out_channels=2,
            widths=(16, 32, 64),
            blocks_per_level=1,
            kernel_size=5,
            block="residual",
            activation="silu",
            norm="group",
            skip=True,
            recurrent="gru",
            recurrent_hidden=32,
        ),
        loss=_spectral_loss,
        metrics=_spectral_metrics,
        description="spectrum (S/N units) -> line-channel logits and denoised spectrum",
    ),
    "characterizer": Task(
        name="characterizer",
        config=NetworkConfig(
            mode="regressor",
            dims=2,
            in_channels=1,
            out_channels=len(CHARACTERIZER_TARGETS),
            widths=(32, 64, 128),
            blocks_per_level=2,
            kernel_size=3,
            block="residual",
            activation="silu",
            norm="group",
            head_hidden=128,
        ),
        loss=_characterizer_loss,
        metrics=_characterizer_metrics,
        description="line-integrated cutout (S/N units) -> offset, sizes, PA, log flux",
        targets=CHARACTERIZER_TARGETS,
        augment=dihedral_cutouts,
    ),
}


def get_task(name: str) -> Task:
    """The `Task` called ``name`` (``deconvolver``, ``spectral`` or ``characterizer``)."""
    from ..exceptions import InvalidInputError

    if name not in TASK_DEFINITIONS:
        raise InvalidInputError(f"unknown task {name!r}; choose from {', '.join(TASK_DEFINITIONS)}")
    return TASK_DEFINITIONS[name]


def numpy_metrics(task: str, prediction: np.ndarray, target: np.ndarray) -> dict:
    """The task's metrics on numpy arrays."""
    return get_task(task).metrics(torch.as_tensor(prediction), torch.as_tensor(target))
