"""`build_network`: one builder for every deepfocus network, driven by a `NetworkConfig`."""

from __future__ import annotations

from torch import nn

from ..exceptions import InvalidInputError
from .config import NetworkConfig
from .networks import EncoderDecoderNetwork, EncoderHeadNetwork

__all__ = ["build_network"]


def build_network(config) -> nn.Module:
    """Build the network a config describes.

    Parameters
    ----------
    config : `NetworkConfig` or dict
        Architecture; a dict is read with `NetworkConfig.from_dict`.

    Returns
    -------
    model : `torch.nn.Module`
        `~deepfocus.models.networks.EncoderDecoderNetwork` for ``mode='deconvolver'`` and
        ``'segmenter'`` (input ``(N, C, *spatial)`` -> ``(N, out_channels, *spatial)``, any
        spatial size; the segmenter returns logits, to be trained with
        `torch.nn.BCEWithLogitsLoss` and turned into probabilities with `torch.sigmoid`), or
        `~deepfocus.models.networks.EncoderHeadNetwork` for ``'regressor'`` and ``'classifier'``
        (-> ``(N, out_channels)``; classifier logits go with `torch.nn.CrossEntropyLoss`).
        ``model.config`` holds the `NetworkConfig`. Initialisation draws from torch's global
        generator, so it is reproducible after `torch.manual_seed`.
    """
    if isinstance(config, dict):
        config = NetworkConfig.from_dict(config)
    if not isinstance(config, NetworkConfig):
        raise InvalidInputError(f"build_network needs a NetworkConfig or dict, got {type(config).__name__}")
    if config.mode in ("deconvolver", "segmenter"):
        return EncoderDecoderNetwork(config)
    return EncoderHeadNetwork(config)
