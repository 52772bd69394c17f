"""Hyper-parameter optimisation: search spaces, loss weights, objectives, resumable and shared studies.

The studies run on synthetic spectra (a data cache written by the fixture) with a tiny search
space, so that a trial takes about a second.
"""

import importlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import torch

from deepfocus.cli import main
from deepfocus.exceptions import InvalidInputError
from deepfocus.training import get_task, train
from deepfocus.training.loss_weights import LOSS_WEIGHTS, weighted_loss
from deepfocus.training.optimize import (
    OBJECTIVES,
    _pa_within_10deg,
    objective_metrics,
    open_study,
    optimize,
    score_model,
    study_provenance,
)
from deepfocus.training.samples import SAMPLES_VERSION
from deepfocus.training.search_spaces import load_search_space
from deepfocus.training.train import _resolve_config

#: Two widths and a log-uniform learning rate: every trial has its own parameters.
TINY_SPACE = {
    "task": "spectral",
    "parameters": {
        "network.base_width": {"type": "categorical", "choices": [4, 8]},
        "network.levels": {"type": "fixed", "value": 2},
        "network.recurrent": {"type": "fixed", "value": "none"},
        "training.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
        "training.batch_size": {"type": "fixed", "value": 32},
        "loss.spectrum": {"type": "float", "low": 0.05, "high": 0.5, "log": True},
    },
}

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

#: The name of a tiny-preset spectral data cache (see `deepfocus.training.train`).
CACHE_NAME = f"data-v{SAMPLES_VERSION}-tiny-seed0-spectral.npz"


def _synthetic_spectra(n, seed):
    """``n`` 32-channel spectra, Gaussian lines of S/N 2-10 in unit noise (a fifth without a line),
    with the targets of the spectral task: line mask and noise-free spectrum."""
    rng = np.random.default_rng(seed)
    channels = np.arange(32)
    centre = rng.uniform(6, 26, n)
    sigma = rng.uniform(1, 3, n)
    peak = rng.uniform(2, 10, n) * (rng.random(n) > 0.2)
    clean = peak[:, None] * np.exp(-0.5 * ((channels - centre[:, None]) / sigma[:, None]) ** 2)
    mask = (clean > 0.5).astype(np.float32)
    inputs = (clean + rng.normal(size=clean.shape))[:, None].astype(np.float32)
    targets = np.stack([mask, clean.astype(np.float32)], axis=1)
    return inputs, targets


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A folder holding a ``tiny``-preset data cache of synthetic spectra (no simulation)."""
    folder = tmp_path_factory.mktemp("cache")
    arrays = {}
    for name, n, seed in (("train", 256, 1), ("validation", 64, 2)):
        arrays[f"{name}/spectral/inputs"], arrays[f"{name}/spectral/targets"] = _synthetic_spectra(n, seed)
    np.savez(folder / CACHE_NAME, recipe=json.dumps({"source": "synthetic"}), **arrays)
    (folder / "space.json").write_text(json.dumps(TINY_SPACE))
    return folder


def _command(folder, n_trials, storage):
    return [
        sys.executable,
        "-c",
        "import sys; from deepfocus.cli import main; sys.exit(main(sys.argv[1:]))",
        "optimize",
        "--task",
        "spectral",
        "--trials",
        str(n_trials),
        "--preset",
        "tiny",
        "--space",
        str(folder / "space.json"),
        "--output",
        str(folder),
        "--storage",
        storage,
        "--heartbeat",
        "1",
        "--threads",
        "1",
    ]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _finished(storage, name="deepfocus-spectral"):
    return [t for t in optuna.load_study(study_name=name, storage=storage).trials if t.state in FINISHED]


# --- search spaces ----------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["deconvolver", "spectral", "characterizer"])
def test_shipped_spaces_hold_the_shipped_configs(task):
    """Every shipped space is valid, and the shipped network is one of its points."""
    space = load_search_space(task)
    default = get_task(task).config
    point = {}
    for name, spec in space.parameters.items():
        field = name.split(".", 1)[1]
        if spec["type"] == "fixed":
            continue
        if name.startswith("network."):
            value = {"base_width": default.widths[0], "levels": default.levels}.get(field)
            point[name] = getattr(default, field) if value is None else value
        elif name.startswith("loss."):
            point[name] = LOSS_WEIGHTS[task][field]
        else:
            point[name] = spec.get("choices", [spec.get("low")])[0]
    tuned = space.apply(space.suggest(optuna.trial.FixedTrial(point)))
    assert tuned["network"] == default.to_dict()
    assert tuned["loss_weights"] == LOSS_WEIGHTS[task]


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("net.widths", {"type": "int", "low": 1, "high": 2}, "must start with"),
        ("network.colour", {"type": "int", "low": 1, "high": 2}, "unknown network field 'colour'"),
        ("network.mode", {"type": "categorical", "choices": ["regressor"]}, "unknown network field 'mode'"),
        ("training.epochs", {"type": "int", "low": 1, "high": 2}, "unknown training field"),
        ("loss.flux", {"type": "float", "low": 1, "high": 2}, "unknown loss field 'flux'"),
        ("network.dropout", {"type": "uniform", "low": 0, "high": 0.5}, "type must be"),
        ("network.dropout", {"type": "float", "low": 0.5, "high": 0.1}, "must be below high"),
        ("training.learning_rate", {"type": "float", "low": 0, "high": 1, "log": True}, "log scale needs"),
        ("network.block", {"type": "categorical", "choices": []}, "non-empty list"),
        ("network.kernel_size", {"type": "categorical", "choices": [3, 4]}, "kernel_size must be odd"),
        ("network.dropout", {"type": "float", "low": 0.0, "high": 1.0}, "dropout must be a number"),
        ("network.dropout", {"type": "float", "low": 0.0, "high": 0.5, "lo": 1}, "unknown key"),
        # Training settings are checked as `TrainingSettings` checks them, at both ends of a range.
        (
            "training.learning_rate",
            {"type": "float", "low": -1, "high": 0.1},
            "learning_rate must be positive",
        ),
        ("training.batch_size", {"type": "int", "low": 0, "high": 8}, "batch_size and patience must be"),
        ("training.batch_size", {"type": "float", "low": 8, "high": 64}, "batch_size must be an integer"),
        ("training.batch_size", {"type": "categorical", "choices": [32, "a"]}, "must be an integer, got 'a'"),
        ("training.weight_decay", {"type": "fixed", "value": -1e-4}, "weight_decay must be zero or positive"),
    ],
)
def test_invalid_spaces_are_named(name, spec, message):
    with pytest.raises(InvalidInputError, match=message) as info:
        load_search_space("spectral", {"parameters": {name: spec}})
    assert repr(name) in str(info.value)


def test_space_of_another_task_and_unreadable_files(tmp_path):
    with pytest.raises(InvalidInputError, match="for task 'spectral', not 'characterizer'"):
        load_search_space("characterizer", TINY_SPACE)
    with pytest.raises(InvalidInputError, match="cannot read search space"):
        load_search_space("spectral", tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_search_space("spectral", tmp_path / "bad.json")
    with pytest.raises(InvalidInputError, match="do nothing for task 'characterizer'"):
        load_search_space(
            "characterizer",
            {"parameters": {"network.skip": {"type": "categorical", "choices": [True, False]}}},
        )


def test_parameters_outside_the_parameters_object():
    """A bare ``NAME -> RANGE`` mapping is told where its parameters go, in one line."""
    with pytest.raises(InvalidInputError) as info:
        load_search_space("spectral", {"network.dropout": 0.3, "training.learning_rate": 0.01})
    message = str(info.value)
    assert message.startswith(
        "search space parameter(s) network.dropout, training.learning_rate must go under a "
        '"parameters" object'
    )
    assert (
        '{"task": "spectral", "parameters": {"network.dropout": {"type": ' in message and "\n" not in message
    )
    with pytest.raises(
        InvalidInputError, match=r"unknown search space key\(s\): paramters; a search space is"
    ):
        load_search_space("spectral", {"paramters": TINY_SPACE["parameters"]})


def test_widths_from_base_levels_and_cap():
    space = load_search_space("characterizer")
    tuned = space.apply({"network.base_width": 48, "network.levels": 4, "network.max_width": 128})
    assert tuned["network"]["widths"] == [48, 96, 128, 128]


# --- losses and objectives --------------------------------------------------------------------


@pytest.mark.parametrize("task", ["deconvolver", "spectral", "characterizer"])
def test_weighted_loss_defaults_are_the_task_loss(task):
    """With the default weights the loss is the task's own; other weights change it as they should."""
    torch.manual_seed(0)
    shapes = {"deconvolver": (4, 1, 16, 16), "spectral": (4, 2, 32), "characterizer": (4, 7)}
    prediction, target = torch.randn(shapes[task]), torch.randn(shapes[task])
    if task == "spectral":
        target[:, 0] = (target[:, 0] > 0).float()
    defaults = LOSS_WEIGHTS[task]
    assert weighted_loss(task) is get_task(task).loss
    # Weights given explicitly but equal to the defaults are the task's own loss too.
    assert weighted_loss(task, {k: v + 0.0 for k, v in defaults.items()}) is get_task(task).loss
    # Doubling one term's weight adds that term once more: zero it to measure the term.
    name = sorted(defaults)[0]
    zero = float(weighted_loss(task, {name: 0.0})(prediction, target))
    base = float(get_task(task).loss(prediction, target))
    doubled = float(weighted_loss(task, {name: 2 * defaults[name]})(prediction, target))
    assert doubled - base == pytest.approx(base - zero, rel=1e-5)
    assert base - zero > 0
    with pytest.raises(InvalidInputError, match="unknown loss weight"):
        weighted_loss(task, {"nonsense": 1.0})


def test_pa_metric_wraps_at_180_degrees():
    """PA 179 deg against 1 deg is 2 deg off; 20 deg off is not within 10 deg; round sources are skipped."""

    def rows(pas_deg, ellipticity, major=1.0):
        pa = torch.deg2rad(torch.tensor(pas_deg))
        out = torch.zeros(len(pas_deg), 7)
        out[:, 2] = major
        out[:, 4], out[:, 5] = ellipticity * torch.sin(2 * pa), ellipticity * torch.cos(2 * pa)
        return out

    truth = rows([1.0, 45.0, 90.0], 0.5)
    assert _pa_within_10deg(rows([179.0, 50.0, 110.0], 0.5), truth) == pytest.approx(2 / 3)
    round_truth = rows([1.0, 45.0, 90.0], 0.1)
    assert _pa_within_10deg(truth, round_truth) == 0.0  # no resolved, elongated source
    metrics = objective_metrics("characterizer")(rows([179.0, 50.0, 110.0], 0.5), truth)
    assert metrics[OBJECTIVES["characterizer"][4:]] == pytest.approx(
        0.5 * (metrics["flux_within_10pct"] + 2 / 3)
    )
    assert math.isfinite(metrics["median_position_error"])


# --- studies ----------------------------------------------------------------------------------


def test_optimize_resumes_and_writes_a_config_train_accepts(data_dir, tmp_path):
    """In-process: 3 trials, a re-run with the same N does nothing, N=4 adds one; the best
    config JSON trains with ``train(config=...)`` (settings and loss weights included)."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    kwargs = dict(
        storage=storage, preset="tiny", space=data_dir / "space.json", output_dir=data_dir, log=None
    )
    study = optimize("spectral", 3, **kwargs)
    first = [(t.number, t.params, t.value) for t in study.trials if t.state in FINISHED]
    assert len(first) == 3
    assert len({json.dumps(p, sort_keys=True) for _, p, _ in first}) == 3
    assert [(t.number, t.params, t.value) for t in optimize("spectral", 3, **kwargs).trials] == first
    study = optimize("spectral", 4, **kwargs)
    assert [(t.number, t.params, t.value) for t in study.trials][:3] == first
    assert len([t for t in study.trials if t.state in FINISHED]) == 4

    # The same study with other data (or another search space) is refused, before any data is made.
    other = {**kwargs, "space": TINY_SPACE}
    with pytest.raises(InvalidInputError, match="was run with different search_space: give a new --storage"):
        optimize("spectral", 5, **other)
    with pytest.raises(InvalidInputError, match="different data: .*'/nowhere'"):
        optimize("spectral", 5, **{**kwargs, "data_dir": "/nowhere"})
    reloaded = optuna.load_study(study_name="deepfocus-spectral", storage=storage)
    assert len(reloaded.trials) == len(study.trials)

    best = json.loads((data_dir / "best-spectral.json").read_text())
    assert best["study"]["data"] == "simulated (tiny preset)"
    assert best["study"]["search_space"] == str((data_dir / "space.json").resolve())
    assert best["objective"]["value"] == pytest.approx(study.best_value)
    assert best["params"] == study.best_params
    assert best["study"]["trial"] == study.best_trial.number
    assert _resolve_config("spectral", data_dir / "best-spectral.json").to_dict() == best["network"]
    card = train("spectral", data_dir, preset="tiny", config=data_dir / "best-spectral.json", progress=False)[
        "spectral"
    ]
    assert card["training"]["settings"]["learning_rate"] == pytest.approx(best["training"]["learning_rate"])
    assert card["training"]["loss_weights"] == best["loss_weights"]
    written = json.loads((data_dir / "spectral-tiny.json").read_text())
    assert written["config"]["widths"] == best["network"]["widths"]
    # score_model measures the written weights on the same validation set as the card.
    scores = score_model(
        "spectral", data_dir / "spectral-tiny.safetensors", preset="tiny", cache_dir=data_dir
    )
    assert scores["val_iou"] == pytest.approx(card["metrics"]["val_iou"], abs=1e-6)
    rows = (data_dir / "trials-spectral.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,value") and len(rows) == 1 + len(study.trials)


def test_same_seed_same_parameters_other_seed_other_ones(data_dir, tmp_path):
    """The sampler is seeded per trial number: two studies with one seed draw the same points."""
    params = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        study = open_study(f"sqlite:///{tmp_path / name}.db", task="spectral", seed=seed)
        space = load_search_space("spectral", TINY_SPACE)
        points = []
        for _ in range(3):
            trial = study.ask()
            points.append(space.suggest(trial))
            study.tell(trial, 0.5)
        params.append(points)
    assert params[0] == params[1]
    assert params[0] != params[2]


def test_study_of_another_task_and_bad_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(storage, "shared", task="spectral")
    with pytest.raises(InvalidInputError, match="is for task 'spectral', not 'characterizer'"):
        open_study(storage, "shared", task="characterizer")
    with pytest.raises(InvalidInputError, match="cannot open study storage"):
        open_study("nosuchdialect://host/db", task="spectral")


def test_study_keeps_its_provenance(tmp_path):
    """A study with trials refuses another preset, seed, data or search space; a study without
    trials, or made before provenance was recorded, takes the new one."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = {"preset": "tiny", "seed": 0, "data": "/a/sims2", "search_space": "shipped (spectral)"}
    study = open_study(storage, task="spectral", provenance=first)
    assert {k: study.user_attrs[k] for k in first} == first
    moved = {**first, "data": "/a/sims"}
    study = open_study(storage, task="spectral", provenance=moved)  # no trial yet: nothing mixed
    assert study.user_attrs["data"] == "/a/sims"
    study.tell(study.ask(), 0.5)
    with pytest.raises(InvalidInputError) as error:
        open_study(storage, task="spectral", provenance={**moved, "seed": 1, "data": "/a/sims2"})
    message = str(error.value)
    assert "was run with different seed, data: give a new --storage or --study name" in message
    assert "data '/a/sims', not '/a/sims2'" in message and "\n" not in message
    assert open_study(storage, task="spectral", provenance=moved).user_attrs["data"] == "/a/sims"
    # A study of an earlier version (task only) continues and records the provenance.
    old = optuna.create_study(storage=storage, study_name="old", direction="maximize")
    old.set_user_attr("task", "spectral")
    old.tell(old.ask(), 0.5)
    assert open_study(storage, "old", task="spectral", provenance=first).user_attrs["data"] == "/a/sims2"
    with pytest.raises(InvalidInputError, match="different data"):
        open_study(storage, "old", task="spectral", provenance=moved)
    # Except the samples' version: such a study's trials trained on the first.
    with pytest.raises(InvalidInputError, match="different samples.*'version 1', not 'version 2'"):
        open_study(storage, "old", task="spectral", provenance={**first, "samples": "version 2"})
    assert open_study(storage, "old", task="spectral", provenance={**first, "samples": "version 1"})
    newer = {**first, "samples": "version 2"}
    study = open_study(storage, "newer", task="spectral", provenance=newer)  # no trial: recorded
    study.tell(study.ask(), 0.5)
    assert (
        open_study(storage, "newer", task="spectral", provenance=newer).user_attrs["samples"] == "version 2"
    )
    assert study_provenance("spectral", preset="tiny", seed=0)["samples"] == f"version {SAMPLES_VERSION}"


def test_too_little_data_fails_before_a_trial(edge_cubes, tmp_path, capsys):
    """Cubes without characterizer samples: one line, exit 1, no failed trial, no output folder."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    out = tmp_path / "out"
    argv = ["optimize", "--task", "characterizer", "--trials", "2", "--preset", "tiny", "--quiet"]
    status = main([*argv, "--data", str(edge_cubes), "--output", str(out), "--storage", storage])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("deepfocus optimize: error: not enough data for characterizer (0 training")
    assert err.count("\n") == 1
    assert optuna.load_study(study_name="deepfocus-characterizer", storage=storage).trials == []
    assert not out.exists()


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    status = main(["optimize", "--task", "spectral", "--trials", "2", "--space", str(tmp_path / "none.json")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("deepfocus optimize: error: cannot read search space") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        (-1, "seed must be a non-negative integer, got -1"),
        (2**32, "seed must be a non-negative integer up to 4294967295, got 4294967296"),
    ],
)
def test_out_of_range_seed_is_refused(tmp_path, capsys, seed, message):
    """Before the study or the output folder is made: in one line from the CLI, and from Python."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["optimize", "--task", "spectral", "--trials", "1", "--preset", "tiny", "--storage", storage]
    status = main([*argv, "--seed", str(seed), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 1
    assert err == f"deepfocus optimize: error: {message}\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "study.db").exists()
    with pytest.raises(InvalidInputError, match=f"^{message}$"):
        optimize("spectral", 1, storage=storage, seed=seed, output_dir=tmp_path / "out", log=None)
    with pytest.raises(InvalidInputError, match=f"^{message}$"):
        open_study(storage, task="spectral", seed=seed)
    with pytest.raises(InvalidInputError, match="^seed must be a non-negative integer, got 1.0$"):
        open_study(storage, task="spectral", seed=1.0)


def test_numpy_integer_seed_is_stored_as_an_int(data_dir, tmp_path):
    """A numpy integer seed (as from an array of seeds) goes into Optuna's JSON storage and
    the best config as a plain int, and continues the study of the same Python seed."""
    for name in (CACHE_NAME, "space.json"):
        (tmp_path / name).write_bytes((data_dir / name).read_bytes())
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    space = tmp_path / "space.json"
    kwargs = dict(storage=storage, preset="tiny", space=space, output_dir=tmp_path, log=None)
    study = optimize("spectral", 1, seed=np.int64(0), **kwargs)
    assert type(study.user_attrs["seed"]) is int and study.user_attrs["seed"] == 0
    assert json.loads((tmp_path / "best-spectral.json").read_text())["study"]["seed"] == 0
    assert len(optimize("spectral", 2, seed=0, **kwargs).trials) == 2  # same provenance


def test_invalid_training_range_fails_before_the_data(tmp_path, capsys):
    """A negative learning rate is refused in one line before any data is made or trial is run."""
    space = tmp_path / "space.json"
    parameters = {"training.learning_rate": {"type": "float", "low": -1, "high": 0.1}}
    space.write_text(json.dumps({"task": "spectral", "parameters": parameters}))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["optimize", "--task", "spectral", "--trials", "1", "--preset", "tiny", "--storage", storage]
    status = main([*argv, "--space", str(space), "--output", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert err == (
        "deepfocus optimize: error: search space parameter 'training.learning_rate' = -1.0: "
        "learning_rate must be positive\n"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "study.db").exists()


def test_interrupted_trial_runs_again_with_its_parameters(data_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C during a trial: exit 130 without a traceback or an Optuna warning; the trial is
    failed and its parameters queued, so that the next run trains them (not new ones)."""
    optimize_module = importlib.import_module("deepfocus.training.optimize")  # not the function
    for name in (CACHE_NAME, "space.json"):
        (tmp_path / name).write_bytes((data_dir / name).read_bytes())
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["optimize", "--task", "spectral", "--trials", "1", "--preset", "tiny", "--storage", storage]
    argv += ["--space", str(tmp_path / "space.json"), "--output", str(tmp_path), "--heartbeat", "1"]
    run_trial = optimize_module.run_trial

    def interrupted_run_trial(*args, callback, **kwargs):
        def interrupt(record):  # Ctrl-C after the first epoch's report
            callback(record)
            raise KeyboardInterrupt

        return run_trial(*args, callback=interrupt, **kwargs)

    class Records(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    records = Records()
    logging.getLogger("optuna").addHandler(records)
    try:
        monkeypatch.setattr(optimize_module, "run_trial", interrupted_run_trial)
        assert main(argv) == 130
        out, err = capsys.readouterr()
        assert "trial 0: interrupted, queued to run again (0/1 finished)" in out
        assert err.endswith("deepfocus: interrupted\n") and "Traceback" not in err
        assert [r.getMessage() for r in records.records] == []
        interrupted, queued = optuna.load_study(study_name="deepfocus-spectral", storage=storage).trials
        assert interrupted.state == optuna.trial.TrialState.FAIL and interrupted.user_attrs["interrupted"]
        assert list(interrupted.intermediate_values) == [1]
        assert queued.state == optuna.trial.TrialState.WAITING and queued.params == interrupted.params

        monkeypatch.setattr(optimize_module, "run_trial", run_trial)
        assert main([*argv, "--quiet"]) == 0
    finally:
        logging.getLogger("optuna").removeHandler(records)
    trials = optuna.load_study(study_name="deepfocus-spectral", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert trials[1].params == trials[0].params and "interrupted" not in trials[1].user_attrs
    assert json.loads((tmp_path / "best-spectral.json").read_text())["study"]["trial"] == 1


def test_killed_study_continues(data_dir, tmp_path):
    """SIGKILL after the first finished trial; the same command run again ends the study with
    exactly N finished trials, the earlier ones kept and the killed one run again."""
    n_trials = 4
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = _command(data_dir, n_trials, storage)
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            try:
                if _finished(storage):
                    break
            except KeyError:  # the study is not created yet
                continue
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = {t.number: (t.params, t.value) for t in _finished(storage)}
    assert 1 <= len(before) < n_trials, "the kill came too late to test a resume"
    rerun = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    study = optuna.load_study(study_name="deepfocus-spectral", storage=storage)
    finished = [t for t in study.trials if t.state in FINISHED]
    assert len(finished) == n_trials
    assert {t.number: (t.params, t.value) for t in finished if t.number in before} == before
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    killed = [
        t for t in study.trials if t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get("surplus")
    ]
    if killed:  # killed during a trial (not between two): its parameters were queued again
        # (those it had sampled when it was killed: possibly only some, or none)
        sampled = killed[0].params.items()
        assert any(all(t.params.get(k) == v for k, v in sampled) for t in finished)


def test_two_workers_share_one_study(data_dir, tmp_path):
    """Two processes running the same command finish N trials between them, none twice."""
    n_trials = 4
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = _command(data_dir, n_trials, storage)
    workers = [
        subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs, errors = zip(*(w.communicate(timeout=180) for w in workers), strict=True)
    assert [w.returncode for w in workers] == [0, 0], errors
    ran = [
        {int(line.split()[1].rstrip(":")) for line in out.splitlines() if line.startswith("trial ")}
        for out in outputs
    ]
    finished = _finished(storage)
    assert len(finished) == n_trials
    assert ran[0].isdisjoint(ran[1]), outputs
    assert ran[0] | ran[1] == {t.number for t in finished}, (outputs, errors)
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == n_trials


def test_trainer_callback_sees_each_epoch_and_can_stop_the_fit():
    """The per-epoch hook of `Trainer.fit` that reports to Optuna and prunes."""
    from torch.utils.data import TensorDataset

    from deepfocus.models import NetworkConfig, build_network
    from deepfocus.training import Trainer, TrainingSettings

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 1, 8), torch.randn(16, 1))
    config = NetworkConfig(mode="regressor", dims=1, widths=(4,), out_channels=1, head_hidden=4)
    settings = TrainingSettings(epochs=3, batch_size=8, patience=3)
    records = []
    Trainer(build_network(config), torch.nn.functional.mse_loss, settings, progress=False).fit(
        data, data, callback=records.append
    )
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all("val_loss" in r for r in records)

    def prune_at_two(record):
        if record["epoch"] == 2:
            raise optuna.TrialPruned

    trainer = Trainer(build_network(config), torch.nn.functional.mse_loss, settings, progress=False)
    with pytest.raises(optuna.TrialPruned):
        trainer.fit(data, data, callback=prune_at_two)
    assert len(trainer.history) == 2
