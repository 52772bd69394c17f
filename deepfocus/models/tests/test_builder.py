import json

import pytest
import torch

from deepfocus.exceptions import InvalidInputError
from deepfocus.models import NetworkConfig, build_network
from deepfocus.models.blocks import ConvBlock, ResidualBlock, group_count

# Odd sizes, none a multiple of the 4x downsampling of three levels.
SIZES = {1: (37,), 2: (19, 23), 3: (9, 11, 13)}
TINY = {"widths": (4, 8, 8), "recurrent_hidden": 4, "head_hidden": 8}


def tiny(**kwargs):
    return NetworkConfig(**{**TINY, **kwargs})


def run(config, batch=2):
    torch.manual_seed(0)
    model = build_network(config)
    x = torch.randn(batch, config.in_channels, *SIZES[config.dims])
    return model, model(x)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("mode", ["deconvolver", "segmenter", "regressor", "classifier"])
def test_every_mode_and_dimension(mode, dims):
    config = tiny(mode=mode, dims=dims, in_channels=2, out_channels=3)
    model, y = run(config)
    if mode in ("deconvolver", "segmenter"):
        assert y.shape == (2, 3, *SIZES[dims])
    else:
        assert y.shape == (2, 3)
    assert model.config is config
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("block", ["residual", "plain"])
def test_skip_and_block_types(dims, skip, block):
    _, y = run(tiny(dims=dims, skip=skip, block=block, blocks_per_level=2))
    assert y.shape == (2, 1, *SIZES[dims])


NORM_ACTIVATION = [("batch", "relu"), ("group", "gelu"), ("instance", "silu"), ("none", "leaky_relu")]


@pytest.mark.parametrize(("norm", "activation"), NORM_ACTIVATION)
def test_norms_and_activations(norm, activation):
    for mode in ("deconvolver", "regressor"):
        _, y = run(tiny(mode=mode, dims=2, norm=norm, activation=activation, dropout=0.1))
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("recurrent", ["gru", "lstm"])
@pytest.mark.parametrize("mode", ["deconvolver", "segmenter", "regressor", "classifier"])
def test_recurrent_1d(mode, recurrent):
    config = tiny(mode=mode, dims=1, in_channels=2, out_channels=3, recurrent=recurrent)
    model, y = run(config)
    assert y.shape == ((2, 3, 37) if mode in ("deconvolver", "segmenter") else (2, 3))
    rnn = model.recurrent.rnn
    assert rnn.bidirectional and type(rnn).__name__ == recurrent.upper()


@pytest.mark.parametrize("dims", [2, 3])
def test_recurrent_needs_1d(dims):
    with pytest.raises(InvalidInputError, match="recurrent.*dims=1"):
        tiny(dims=dims, recurrent="gru")


def test_residual_output_adds_input():
    config = tiny(dims=2, in_channels=3, out_channels=2, residual_output=True)
    torch.manual_seed(0)
    model = build_network(config)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = torch.randn(2, 3, 19, 23)
    assert torch.equal(model(x), x[:, :2])


def test_single_level_and_small_inputs():
    _, y = run(tiny(dims=3, widths=(4,)))
    assert y.shape == (2, 1, 9, 11, 13)
    # Inputs smaller than the downsampling factor still work (replicate padding, ceil pooling).
    for mode in ("deconvolver", "classifier"):
        model = build_network(tiny(mode=mode, dims=2, widths=(4, 4, 4, 4)))
        out = model(torch.randn(2, 1, 3, 1))
        assert out.shape == ((2, 1, 3, 1) if mode == "deconvolver" else (2, 1))


def test_deterministic_init():
    config = tiny(dims=1, recurrent="lstm")
    torch.manual_seed(3)
    a = build_network(config).state_dict()
    torch.manual_seed(3)
    b = build_network(config).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_input_layout():
    model = build_network(tiny(dims=2, in_channels=2))
    with pytest.raises(InvalidInputError, match=r"\(N, C, H, W\) with C=2"):
        model(torch.randn(2, 1, 8, 8))
    with pytest.raises(InvalidInputError, match="got shape"):
        model(torch.randn(2, 8, 8))


def test_blocks():
    assert [group_count(c) for c in (1, 3, 6, 8, 12, 16, 20)] == [1, 3, 6, 8, 6, 8, 5]
    x = torch.randn(2, 4, 7, 9)
    res = ResidualBlock(2, 4, 6, 5, norm="group")
    assert res(x).shape == (2, 6, 7, 9) and not isinstance(res.shortcut, torch.nn.Identity)
    assert isinstance(ResidualBlock(2, 4, 4).shortcut, torch.nn.Identity)
    assert ConvBlock(1, 4, 3, norm="batch")(torch.randn(2, 4, 11)).shape == (2, 3, 11)


def test_config_json_round_trip():
    config = tiny(mode="classifier", dims=1, recurrent="gru", dropout=0.25, kernel_size=5)
    text = config.to_json()
    assert json.loads(text)["widths"] == [4, 8, 8]
    assert NetworkConfig.from_json(text) == config
    assert NetworkConfig.from_dict(config.to_dict()) == config
    assert NetworkConfig.from_dict({"widths": [8, 16]}).widths == (8, 16)
    assert config.replace(dropout=0.0).dropout == 0.0
    assert hash(config) == hash(NetworkConfig.from_json(text))


def test_from_dict_unknown_keys():
    with pytest.raises(InvalidInputError, match="unknown NetworkConfig field.*depth, widht"):
        NetworkConfig.from_dict({"widht": [4], "depth": 3})
    with pytest.raises(InvalidInputError, match="cannot be parsed"):
        NetworkConfig.from_json("{not json")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "autoencoder"),
        ("dims", 4),
        ("dims", True),
        ("in_channels", 0),
        ("out_channels", 1.5),
        ("widths", ()),
        ("widths", (8, 0)),
        ("widths", "16"),
        ("blocks_per_level", 0),
        ("kernel_size", 4),
        ("block", "dense"),
        ("activation", "tanh"),
        ("norm", "layer"),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("skip", "yes"),
        ("recurrent", "rnn"),
        ("recurrent_hidden", 0),
        ("head_hidden", 0),
        ("residual_output", 1),
    ],
)
def test_invalid_config_names_field(field, value):
    with pytest.raises(InvalidInputError, match=f"NetworkConfig.{field}"):
        NetworkConfig(**{field: value})


def test_residual_output_rules():
    with pytest.raises(InvalidInputError, match="residual_output.*deconvolver"):
        NetworkConfig(mode="segmenter", residual_output=True)
    with pytest.raises(InvalidInputError, match="residual_output.*out_channels"):
        NetworkConfig(in_channels=1, out_channels=2, residual_output=True)


def test_build_from_dict_and_bad_type():
    assert build_network(tiny(dims=1).to_dict()).config == tiny(dims=1)
    with pytest.raises(InvalidInputError, match="NetworkConfig or dict"):
        build_network("deconvolver")
