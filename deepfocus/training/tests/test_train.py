"""End to end: ``train()`` with the tiny preset writes weights, cards and logs that load and run."""

import csv
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepfocus.exceptions import InvalidInputError
from deepfocus.models import load_weights
from deepfocus.simulation import Interferometer
from deepfocus.simulation.simulate import simulate
from deepfocus.training import PRESETS, TASK_DEFINITIONS, Trainer, get_preset, get_task, train
from deepfocus.training.data import TASKS
from deepfocus.training.samples import SAMPLES_VERSION
from deepfocus.training.train import SEED_OFFSETS, prepare_data

from .conftest import SMALL_OBSERVATION

#: Input shapes of the tiny preset's data (64 x 64 pixels, 32 channels, 32-pixel cutouts).
TINY_INPUTS = {"deconvolver": (2, 1, 64, 64), "spectral": (2, 1, 32), "characterizer": (2, 1, 32, 32)}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two runs of every task with the tiny preset and the same seed."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(name)
        runs.append((out, train("all", out, preset="tiny", seed=1, progress=False)))
    return runs


def test_files_and_cards(tiny_runs):
    out, cards = tiny_runs[0]
    assert set(cards) == set(TASKS)
    summary = json.loads((out / "training-tiny.json").read_text())
    assert set(summary) == set(TASKS)
    for task in TASKS:
        weights = out / f"{task}-tiny.safetensors"
        assert weights.is_file()
        card = json.loads(weights.with_suffix(".json").read_text())
        assert card["task"] == task
        assert card["training"]["seed"] == 1
        assert card["training"]["preset"] == "tiny"
        assert card["training"]["settings"]["epochs"] == get_preset("tiny").settings[task]["epochs"]
        assert 1 <= card["training"]["epochs_run"] <= card["training"]["settings"]["epochs"]
        assert card["training"]["n_train_samples"] > 0 and card["training"]["n_validation_samples"] > 0
        assert card["training"]["samples_version"] == SAMPLES_VERSION
        assert card["training"]["augment"] == ("dihedral_cutouts" if task == "characterizer" else None)
        sets = card["data"]["sets"]
        assert sets["train"]["seed"] != sets["validation"]["seed"]  # no leakage
        assert sets["train"]["seed"] == 1 + SEED_OFFSETS["train"]
        assert sets["validation"]["seed"] == 1 + SEED_OFFSETS["validation"]
        assert sets["train"]["observations"] != sets["validation"]["observations"]
        assert card["data"]["source"] == "simulation"
        assert "val_loss" in card["metrics"]
        assert all(np.isfinite(v) for v in card["metrics"].values())
        assert card["config"] == TASK_DEFINITIONS[task].config.to_dict()
        assert card["outputs"] == list(get_task(task).targets)
        assert summary[task]["val_loss"] == card["metrics"]["val_loss"]
        with open(weights.with_suffix(".csv"), newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == card["training"]["epochs_run"]
        assert min(float(r["val_loss"]) for r in rows) == pytest.approx(card["metrics"]["val_loss"])
        assert {"epoch", "train_loss", "val_loss", "lr"} <= set(rows[0])


@pytest.mark.parametrize("task", TASKS)
def test_weights_load_and_run(tiny_runs, task):
    out, _ = tiny_runs[0]
    model, card = load_weights(out / f"{task}-tiny.safetensors")
    assert card["task"] == task
    x = torch.randn(*TINY_INPUTS[task], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    expected = {
        "deconvolver": (2, 1, 64, 64),
        "spectral": (2, 2, 32),
        "characterizer": (2, 7),
    }[task]
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all()


def test_same_seed_same_weights(tiny_runs):
    (a, cards_a), (b, cards_b) = tiny_runs
    for task in TASKS:
        wa = load_file(str(a / f"{task}-tiny.safetensors"))
        wb = load_file(str(b / f"{task}-tiny.safetensors"))
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), (task, key)
        assert cards_a[task]["metrics"] == cards_b[task]["metrics"]
        # (The files' sha256 may still differ: safetensors writes its metadata keys in a random
        # order. The tensors are what must be identical.)


def test_config_file_for_one_task(tmp_path):
    config = get_task("spectral").config.replace(widths=(8, 16), recurrent_hidden=8)
    path = tmp_path / "spectral.json"
    path.write_text(config.to_json())
    out = tmp_path / "out"
    cards = train("spectral", out, preset="tiny", seed=2, config=path, progress=False)
    assert set(cards) == {"spectral"}
    names = {p.name for p in out.iterdir()}
    expected = {"spectral-tiny.csv", "spectral-tiny.json", "spectral-tiny.safetensors", "training-tiny.json"}
    assert expected <= names
    assert all(name.endswith(".npz") for name in names - expected)  # at most a data cache
    model, card = load_weights(out / "spectral-tiny.safetensors", config=config)
    assert card["config"]["widths"] == [8, 16]
    first = load_file(str(out / "spectral-tiny.safetensors"))
    # A re-run in the same folder (which may reuse cached data) replaces the weights only with
    # overwrite=True, and gives the same ones.
    with pytest.raises(FileExistsError, match="spectral-tiny.safetensors exists: pass overwrite=True"):
        train("spectral", out, preset="tiny", seed=2, config=config, progress=False)
    assert load_file(str(out / "spectral-tiny.safetensors")).keys() == first.keys()
    again = train("spectral", out, preset="tiny", seed=2, config=config, overwrite=True, progress=False)
    assert again["spectral"]["metrics"] == cards["spectral"]["metrics"]
    second = load_file(str(out / "spectral-tiny.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    # Rejected for several tasks, and for a config that does not fit the task: both before any
    # data is simulated (nothing is written).
    for tasks in ("all", ["spectral", "deconvolver"]):
        with pytest.raises(InvalidInputError, match="one task"):
            train(tasks, tmp_path / "never", preset="tiny", config=path, progress=False)
    with pytest.raises(InvalidInputError, match="does not fit task 'characterizer'"):
        train("characterizer", tmp_path / "never", preset="tiny", config=path, progress=False)
    with pytest.raises(InvalidInputError, match="cannot read"):
        train("spectral", tmp_path / "never", preset="tiny", config=tmp_path / "nope.json", progress=False)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInputError):
        train("spectral", tmp_path / "never", preset="tiny", config=bad, progress=False)
    assert not (tmp_path / "never").exists()


def test_unknown_task_or_preset(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown task"):
        train("imager", tmp_path / "x", preset="tiny", progress=False)
    with pytest.raises(InvalidInputError, match="unknown preset"):
        train("spectral", tmp_path / "x", preset="huge", progress=False)
    with pytest.raises(InvalidInputError, match="unknown task"):
        get_task("imager")
    with pytest.raises(InvalidInputError, match="unknown preset"):
        get_preset("huge")
    assert not (tmp_path / "x").exists()
    assert {"default", "tiny"} <= set(PRESETS)


def test_missing_data_folder_is_named(tmp_path):
    with pytest.raises(InvalidInputError, match="data folder .*nope does not exist"):
        train("spectral", tmp_path / "x", preset="tiny", data_dir=tmp_path / "nope", progress=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInputError, match="data folder .*file is not a folder"):
        train("spectral", tmp_path / "x", preset="tiny", data_dir=tmp_path / "file", progress=False)
    assert not (tmp_path / "x").exists()  # a failed run leaves no output folder it created


def test_too_little_data_fails_before_any_training(edge_cubes, tmp_path):
    """Cubes without a sample for one task fail before the others are trained, naming it."""
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError) as error:
        train("all", out, preset="tiny", data_dir=edge_cubes, progress=False)
    message = str(error.value)
    assert message.startswith("not enough data for characterizer (0 training, 0 validation samples)")
    assert "more cubes" in message and "16 px of an edge" in message
    assert f"1 of the 2 cubes in {edge_cubes.resolve()} validate" in message
    assert "\n" not in message and "spectral" not in message  # one line, the task at fault
    assert not out.exists()  # no network trained, nothing written


def test_existing_weights_are_refused_before_any_work(tmp_path):
    weights = tmp_path / "characterizer-tiny.safetensors"
    weights.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="characterizer-tiny.safetensors exists: pass overwrite"):
        train("all", tmp_path, preset="tiny", progress=False)
    assert weights.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [weights.name]  # no data simulated


class _KilledAfterOneEpoch(Trainer):
    """A `Trainer` whose fit is interrupted after its first epoch (as by Ctrl-C)."""

    def fit(self, train, validation, **kwargs):
        def stop(record):
            raise KeyboardInterrupt

        return super().fit(train, validation, callback=stop)


def test_killed_run_keeps_log_beside_its_weights_and_summary_is_merged(tmp_path, monkeypatch):
    out = tmp_path / "out"
    train("spectral", out, preset="tiny", seed=3, progress=False)
    log, summary = out / "spectral-tiny.csv", out / "training-tiny.json"
    before = {path: path.read_bytes() for path in (log, out / "spectral-tiny.safetensors")}
    # An entry of another task (a run of it into the same folder) is kept by later runs.
    entries = json.loads(summary.read_text())
    summary.write_text(json.dumps(entries | {"deconvolver": {"val_loss": 1.0, "seconds": 2.0}}))
    monkeypatch.setattr(sys.modules["deepfocus.training.train"], "Trainer", _KilledAfterOneEpoch)
    with pytest.raises(KeyboardInterrupt):
        train("spectral", out, preset="tiny", seed=3, overwrite=True, progress=False)
    assert {path: path.read_bytes() for path in before} == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no partial log left
    monkeypatch.undo()
    cards = train("spectral", out, preset="tiny", seed=3, overwrite=True, progress=False)
    merged = json.loads(summary.read_text())
    assert merged["deconvolver"] == {"val_loss": 1.0, "seconds": 2.0}
    assert merged["spectral"]["val_loss"] == cards["spectral"]["metrics"]["val_loss"]
    with open(log, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == cards["spectral"]["training"]["epochs_run"]


def test_bad_seed_config_or_output_refused_before_any_work(tmp_path):
    never = tmp_path / "never"
    for seed in (-1, 1.5):
        with pytest.raises(InvalidInputError, match=f"^seed must be a non-negative integer, got {seed}$"):
            train("spectral", never, preset="tiny", seed=seed, progress=False)
    with pytest.raises(InvalidInputError, match="seed must be a non-negative integer, got -2"):
        prepare_data(["spectral"], preset="tiny", seed=-2, progress=False)
    for text, kind in (("[1, 2]", "an array"), ("null", "null"), ('"spectral"', "a string")):
        config = tmp_path / "config.json"
        config.write_text(text)
        with pytest.raises(
            InvalidInputError, match=f"^network config {config} holds {kind}, not a JSON object$"
        ):
            train("spectral", never, preset="tiny", config=config, progress=False)
    assert not never.exists()
    output = tmp_path / "file"
    output.write_text("")
    with pytest.raises(InvalidInputError, match=f"^output {output} must be a folder: it is a file$"):
        train("spectral", output, preset="tiny", progress=False)
    with pytest.raises(
        InvalidInputError, match=f"^output {output / 'sub'} must be a folder: {output} is a file$"
    ):
        train("spectral", output / "sub", preset="tiny", progress=False)
    assert output.read_text() == ""


def _with_tiny_cache(tiny_runs, folder):
    """``folder`` holding the tiny preset's cached data of ``tiny_runs`` (seed 1): no simulation."""
    folder.mkdir()
    for cache in tiny_runs[0][0].glob(f"data-v{SAMPLES_VERSION}-tiny-seed1-*.npz"):
        shutil.copy(cache, folder)
    return folder


def test_overwrite_removes_the_stale_plot(tiny_runs, tmp_path):
    out = _with_tiny_cache(tiny_runs, tmp_path / "out")
    stale = ["spectral-tiny.png", "deconvolver-tiny.png", "spectral-default.png"]
    for name in stale:
        (out / name).write_bytes(b"old plot")
    # No weights replaced (overwrite or not): a plot beside none is not a stale training plot.
    train("spectral", out, preset="tiny", seed=1, overwrite=True, progress=False)
    assert all((out / name).read_bytes() == b"old plot" for name in stale)
    # A numpy integer seed is written to the JSON card as an int.
    train("spectral", out, preset="tiny", seed=np.int64(1), overwrite=True, progress=False)
    assert json.loads((out / "spectral-tiny.json").read_text())["training"]["seed"] == 1
    assert not (out / "spectral-tiny.png").exists()  # it plotted the replaced weights
    assert all((out / name).read_bytes() == b"old plot" for name in stale[1:])  # other weights' plots


def test_interrupted_run_keeps_summary_of_finished_tasks(tiny_runs, tmp_path, monkeypatch):
    out = _with_tiny_cache(tiny_runs, tmp_path / "out")
    trainers = []

    def killed_in_second_task(*args, **kwargs):
        trainers.append((Trainer if not trainers else _KilledAfterOneEpoch)(*args, **kwargs))
        return trainers[-1]

    monkeypatch.setattr(sys.modules["deepfocus.training.train"], "Trainer", killed_in_second_task)
    with pytest.raises(KeyboardInterrupt):
        train(["spectral", "characterizer"], out, preset="tiny", seed=1, progress=False)
    card = json.loads((out / "spectral-tiny.json").read_text())
    summary = json.loads((out / "training-tiny.json").read_text())
    assert set(summary) == {"spectral"} and summary["spectral"]["val_loss"] == card["metrics"]["val_loss"]
    assert not (out / "characterizer-tiny.safetensors").exists()


def test_cubes_of_different_sizes_are_named(edge_cubes, tmp_path):
    data = tmp_path / "cubes"
    shutil.copytree(edge_cubes, data)
    simulate(interferometer=Interferometer(SMALL_OBSERVATION), seed=[7, 9]).write(data, "big0")
    for task in ("deconvolver", "spectral"):
        with pytest.raises(InvalidInputError) as error:
            train(task, tmp_path / "out", preset="tiny", data_dir=data, progress=False)
        assert str(error.value) == (
            f"all cubes must share a size for task {task!r}: big0_dirty.fits has 32 channels of 64 x 64 "
            "pixels, sim0_dirty.fits 16 channels of 32 x 32 pixels"
        )
    assert not (tmp_path / "out").exists()


def test_train_from_files(tmp_path):
    alma = Interferometer(SMALL_OBSERVATION)
    data = tmp_path / "cubes"
    for index in range(3):
        simulate(interferometer=alma, seed=[7, index]).write(data, f"cube{index}")
    out = tmp_path / "out"
    cards = train("all", out, preset="tiny", seed=0, data_dir=data, progress=False)
    for task, card in cards.items():
        assert card["data"] == {
            "source": "files",
            "data_dir": str(data.resolve()),
            "n_cubes": 3,
            "train": ["cube0", "cube1"],
            "validation": ["cube2"],
        }
        model, _ = load_weights(out / f"{task}-tiny.safetensors")
        with torch.no_grad():
            assert torch.isfinite(model(torch.randn(*TINY_INPUTS[task]))).all()
    # 3 cubes: 2 train, 1 validates.
    assert cards["deconvolver"]["training"]["n_train_samples"] == 2
    assert cards["deconvolver"]["training"]["n_validation_samples"] == 1
    # Fewer than two cubes cannot be split.
    for path in data.glob("cube[12]_*"):
        path.unlink()
    with pytest.raises(InvalidInputError, match="fewer than 2 cubes"):
        train("spectral", tmp_path / "out2", preset="tiny", data_dir=data, progress=False)


def test_an_interrupted_run_of_several_tasks_is_told_how_to_train_the_rest(tmp_path):
    from deepfocus.training.train import _refuse_replacing

    weights = {
        task: tmp_path / f"{task}-tiny.safetensors" for task in ("deconvolver", "spectral", "characterizer")
    }
    weights["deconvolver"].write_bytes(b"done")
    with pytest.raises(FileExistsError) as info:
        _refuse_replacing(weights)
    message = str(info.value)
    assert message.startswith(f"{weights['deconvolver']} exists: pass overwrite=True")
    assert "one run each (--task spectral, then --task characterizer on the command line)" in message
    for path in weights.values():
        path.write_bytes(b"done")
    with pytest.raises(FileExistsError) as info:
        _refuse_replacing(weights)
    assert "(and 2 more)" in str(info.value) and "--task" not in str(info.value)
