import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from deepfocus.exceptions import DeepFocusError, InvalidInputError
from deepfocus.models import (
    NetworkConfig,
    WeightsError,
    available_models,
    build_network,
    load_model,
    load_weights,
    registry,
    save_weights,
)
from deepfocus.models.registry import resolve_weights

CONFIG = NetworkConfig(dims=2, in_channels=2, out_channels=1, widths=(4, 8), norm="batch")


def trained(config=CONFIG, seed=0):
    """A tiny network whose buffers (batch-norm statistics) have moved off their initial values."""
    torch.manual_seed(seed)
    model = build_network(config)
    model.train()
    model(torch.randn(3, config.in_channels, *(9,) * config.dims))
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    model = trained()
    path = save_weights(model, tmp_path / "net.safetensors", card={"seed": 0})
    return model, path


def rewrite_card(path, **changes):
    card_file = path.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card.update(changes)
    card_file.write_text(json.dumps(card))


@pytest.mark.parametrize(
    "config",
    [CONFIG, NetworkConfig(mode="regressor", dims=1, widths=(4, 4), recurrent="lstm", recurrent_hidden=3)],
)
def test_round_trip_is_bit_exact(tmp_path, config):
    model = trained(config)
    card = {
        "recipe": {"preset": "default", "n_cubes": 10},
        "seeds": [1, np.int64(2)],
        "data_range": np.array([0.5, 3.0]),
        "metrics": {"f1": np.float64(0.83)},
        "training_seconds": 12.5,
    }
    path = save_weights(model, tmp_path / "net.safetensors", card=card)
    loaded, read = load_weights(path)
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype and torch.equal(before[key], after[key]), key
    assert not loaded.training and loaded.config == config
    x = torch.randn(2, config.in_channels, *(11,) * config.dims)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert read["format"] == "deepfocus-weights-1"
    assert read["config"] == config.to_dict()
    assert read["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read["size_bytes"] == path.stat().st_size
    assert read["seeds"] == [1, 2] and read["data_range"] == [0.5, 3.0] and read["metrics"]["f1"] == 0.83
    assert read["training_seconds"] == 12.5 and read["created"].endswith("+00:00")
    assert read["n_parameters"] == sum(p.numel() for p in model.parameters())
    with safe_open(str(path), "pt") as f:
        assert NetworkConfig.from_json(f.metadata()["config"]) == config
    assert not list(tmp_path.glob("*.part"))  # atomic writes leave nothing behind


def test_paths_and_suffixes(tmp_path, saved):
    model, _ = saved
    path = save_weights(model, tmp_path / "other")
    assert path.name == "other.safetensors" and (tmp_path / "other.json").is_file()
    loaded, _ = load_weights(tmp_path / "other.json")  # the card's path works too
    assert loaded.config == CONFIG
    with pytest.raises(FileExistsError):
        save_weights(model, path, overwrite=False)


def test_flipped_byte_is_detected(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupted.*sha256"):
        load_weights(path)


def test_truncated_file_with_matching_hash(saved):
    _, path = saved
    data = path.read_bytes()[:-100]
    path.write_bytes(data)
    rewrite_card(path, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        load_weights(path)


def test_card_config_differs_from_weights(saved):
    _, path = saved
    rewrite_card(path, config=CONFIG.replace(widths=(4, 16)).to_dict())
    with pytest.raises(WeightsError, match="differs from the one stored.*widths"):
        load_weights(path)


def test_weights_that_do_not_fit_the_config(tmp_path, saved):
    # A file without embedded config (written by other tools): strict loading catches the mismatch.
    model, _ = saved
    path = tmp_path / "bare.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["extra.weight"] = torch.zeros(2)
    del state["head.bias"]
    save_file(state, str(path))
    card = {"format": "deepfocus-weights-1", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    card["config"] = CONFIG.replace(widths=(4, 16)).to_dict()
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="do not fit") as info:
        load_weights(path)
    message = str(info.value)
    assert "missing tensors head.bias" in message and "unexpected tensors extra.weight" in message
    assert "shape mismatches" in message


def test_config_argument_must_match(saved):
    _, path = saved
    assert load_weights(path, config=CONFIG.to_dict())[0].config == CONFIG
    expected = r"another config.*widths: \[8, 8\] != \[4, 8\]; dropout: 0.1 != 0.0"
    with pytest.raises(WeightsError, match=expected):
        load_weights(path, config=CONFIG.replace(widths=(8, 8), dropout=0.1))


def test_missing_and_bad_cards(saved):
    _, path = saved
    card_file = path.with_suffix(".json")
    text = card_file.read_text()
    card_file.write_text("{ not json")
    with pytest.raises(WeightsError, match="cannot be read"):
        load_weights(path)
    card_file.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(WeightsError, match="not a deepfocus-weights-1 card"):
        load_weights(path)
    card_file.write_text(json.dumps({"format": "deepfocus-weights-1", "config": {}}))
    with pytest.raises(WeightsError, match="lacks sha256"):
        load_weights(path)
    card_file.write_text(text)
    rewrite_card(path, config={**CONFIG.to_dict(), "depth": 3})
    with pytest.raises(WeightsError, match="invalid network config.*depth"):
        load_weights(path)
    card_file.unlink()
    with pytest.raises(WeightsError, match="model card .*net.json is missing"):
        load_weights(path)
    card_file.write_text(text)
    path.unlink()
    with pytest.raises(WeightsError, match="weights file .*net.safetensors is missing"):
        load_weights(path)
    assert issubclass(WeightsError, DeepFocusError)


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(InvalidInputError, match="build_network"):
        save_weights(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    model = build_network(NetworkConfig(dims=1, widths=(4,)))
    with pytest.raises(InvalidInputError, match="reserved"):
        save_weights(model, tmp_path / "x.safetensors", card={"sha256": "0"})
    with pytest.raises(InvalidInputError, match="not JSON serialisable"):
        save_weights(model, tmp_path / "x.safetensors", card={"when": object()})


def test_loading_never_unpickles(saved, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    model, path = saved
    loaded, _ = load_weights(path)
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_registry(tmp_path, saved, monkeypatch):
    model, path = saved
    assert isinstance(available_models(), list)
    assert resolve_weights(path) == path
    assert resolve_weights(str(path.with_suffix(""))) == path
    folder = tmp_path / "shipped"
    save_weights(model, folder / "tiny-default.safetensors")
    (folder / "orphan.safetensors").write_bytes(b"")  # no card: not listed
    monkeypatch.setattr(registry, "weights_folder", lambda: folder)
    assert available_models() == ["tiny-default"]
    loaded, card = load_model("tiny-default")
    assert loaded.config == CONFIG and card["sha256"]
    with pytest.raises(InvalidInputError, match="'nope' is neither.*available: tiny-default"):
        resolve_weights("nope")
    monkeypatch.setattr(registry, "weights_folder", lambda: tmp_path / "absent")
    with pytest.raises(InvalidInputError, match="none are installed"):
        load_model("deconvolver-default")
