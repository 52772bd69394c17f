"""The weights shipped inside the package load, verify and give finite outputs."""

import numpy as np
import pytest
import torch

from deepfocus.models import available_models, load_model

SHAPES = {
    "deconvolver-default": (2, 1, 45, 53),
    "spectral-default": (3, 1, 64),
    "characterizer-default": (4, 1, 32, 32),
}


def test_the_default_networks_are_shipped():
    assert set(SHAPES) <= set(available_models())


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shipped_weights_load_and_run(name):
    model, card = load_model(name)
    assert card["sha256"] and card["training"]["command"].startswith("deepfocus train")
    assert (
        "metrics" in card
        and card["data"]["sets"]["train"]["seed"] != card["data"]["sets"]["validation"]["seed"]
    )
    x = torch.from_numpy(np.random.default_rng(0).normal(size=SHAPES[name]).astype(np.float32))
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all()
    if name != "characterizer-default":
        assert out.shape[-1] == SHAPES[name][-1]
