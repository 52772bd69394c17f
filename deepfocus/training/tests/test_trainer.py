"""The training loop: learning, early stopping, checkpoint and resume, logs, settings."""

import csv
import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from deepfocus.exceptions import InvalidInputError
from deepfocus.models import build_network
from deepfocus.training import Trainer, TrainingSettings
from deepfocus.training.tasks import get_task


def _linear_data(n, seed, sign=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 1.5], [-1.0, 0.3]])
    return TensorDataset(x, sign * x @ w)


def _mse(prediction, target):
    return ((prediction - target) ** 2).mean()


def _mlp(seed=0):
    """A tiny network with dropout, so the global random state matters."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.SiLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 2)
    )


def _settings(**changes):
    values = {"epochs": 4, "batch_size": 8, "learning_rate": 0.02, "patience": 10, "seed": 3}
    return TrainingSettings(**(values | changes))


def _metrics(prediction, target):
    return {"mae": float((prediction - target).abs().mean())}


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_linear_map_is_learned():
    train, val = _linear_data(96, 0), _linear_data(32, 1)
    model = torch.nn.Linear(4, 2)
    trainer = Trainer(model, _mse, _settings(epochs=6, learning_rate=0.05), progress=False)
    history = trainer.fit(train, val)
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert min(r["val_loss"] for r in history) < history[0]["val_loss"]
    # The best weights are kept and give the best validation loss.
    best = min(r["val_loss"] for r in history)
    assert trainer.best_loss == best
    assert trainer.evaluate(val)["loss"] == pytest.approx(best, rel=1e-5)
    assert all(math.isfinite(r["lr"]) and r["seconds"] >= 0 for r in history)


def test_tiny_characterizer_learns():
    """The real task (loss, metrics, network) with a narrow config on random regression data."""
    task = get_task("characterizer")
    torch.manual_seed(0)
    model = build_network(task.config.replace(widths=(8, 16), blocks_per_level=1, head_hidden=16))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 1, 16, 16, generator=g)
    y = torch.stack([x.mean(dim=(1, 2, 3)) * k for k in range(1, 8)], dim=1)
    data = TensorDataset(x, y)
    trainer = Trainer(
        model, task.loss, _settings(epochs=4, learning_rate=3e-3), metrics_fn=task.metrics, progress=False
    )
    history = trainer.fit(data, data)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert {"val_flux_within_10pct", "val_median_position_error", "val_median_major_error"} <= set(history[0])


def test_augment_turns_training_batches_only():
    # An augment that flips the sign of inputs and targets (the linear map is unchanged): it
    # sees every training batch, with the trainer's generator, and never a validation batch.
    train, val = _linear_data(40, 0), _linear_data(16, 1)
    calls = []

    def augment(x, y, generator):
        calls.append(len(x))
        sign = torch.where(torch.rand(len(x), 1, generator=generator) < 0.5, -1.0, 1.0)
        return x * sign, y * sign

    def metrics(prediction, target):
        # Validation targets arrive as the set holds them.
        assert torch.equal(target, val.tensors[1])
        return {}

    runs = []
    for _ in range(2):
        calls.clear()
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        trainer = Trainer(
            model,
            _mse,
            _settings(epochs=3, batch_size=8),
            metrics_fn=metrics,
            progress=False,
            augment=augment,
        )
        runs.append([r["val_loss"] for r in trainer.fit(train, val)])
        assert calls == [8] * 15  # 5 batches of 8 in each of 3 epochs
    assert runs[0] == runs[1]  # seeded: the same turns each time
    assert runs[0][-1] < runs[0][0]


def test_early_stopping():
    # The training set pulls the weight towards +1, validation wants -1: validation only gets worse.
    x = torch.linspace(-1, 1, 32)[:, None]
    train, val = TensorDataset(x, x), TensorDataset(x, -x)
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    trainer = Trainer(model, _mse, _settings(epochs=20, patience=2, learning_rate=0.01), progress=False)
    history = trainer.fit(train, val)
    assert len(history) == 3  # the first epoch, then `patience` without improvement
    losses = [r["val_loss"] for r in history]
    assert losses[0] < losses[1] < losses[2]
    # The weights of the best (first) epoch are restored.
    assert trainer.evaluate(val)["loss"] == pytest.approx(losses[0], rel=1e-6)


class _Crash(Exception):
    pass


def _crash_at(call):
    calls = []

    def metrics(prediction, target):
        calls.append(1)
        if len(calls) == call:
            raise _Crash
        return _metrics(prediction, target)

    return metrics


def _same_records(a, b):
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in a] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in b
    ]


def test_checkpoint_and_resume_is_exact(tmp_path):
    train, val = _linear_data(40, 0), _linear_data(16, 1)
    settings = _settings(epochs=4)
    # The uninterrupted run.
    straight = Trainer(_mlp(), _mse, settings, metrics_fn=_metrics, progress=False)
    full = straight.fit(train, val)
    assert len(full) == 4
    # The same run, interrupted during epoch 3 (after the checkpoint of epoch 2)...
    checkpoint, log = tmp_path / "run.pt", tmp_path / "run.csv"
    first = Trainer(_mlp(), _mse, settings, metrics_fn=_crash_at(3), log_path=log, progress=False)
    with pytest.raises(_Crash):
        first.fit(train, val, checkpoint=checkpoint)
    assert checkpoint.exists() and len(first.history) == 2
    assert len(_read_csv(log)) == 2
    # ...and resumed by a new trainer with a fresh model: it continues from epoch 3.
    second = Trainer(_mlp(seed=99), _mse, settings, metrics_fn=_metrics, log_path=log, progress=False)
    history = second.fit(train, val, checkpoint=checkpoint, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[:2] == first.history
    _same_records(history, full)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    rows = _read_csv(log)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    # Resuming a finished run trains no more.
    third = Trainer(_mlp(), _mse, settings, metrics_fn=_metrics, progress=False)
    assert len(third.fit(train, val, checkpoint=checkpoint, resume=True)) == 4
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, third.model.state_dict()[key]), key


def test_checkpoint_after_two_epochs_then_more(tmp_path):
    """A 2-epoch run's checkpoint cannot be stretched to 4 epochs: its one-cycle schedule is over
    (the learning rate is ~0), so continuing would silently train nothing; it is refused."""
    train, val = _linear_data(40, 0), _linear_data(16, 1)
    checkpoint = tmp_path / "run.pt"
    first = Trainer(_mlp(), _mse, _settings(epochs=2), progress=False)
    records = first.fit(train, val, checkpoint=checkpoint)
    assert len(records) == 2
    with pytest.raises(InvalidInputError, match="epochs: 2 != 4"):
        Trainer(_mlp(), _mse, _settings(epochs=4), progress=False).fit(
            train, val, checkpoint=checkpoint, resume=True
        )
    with pytest.raises(InvalidInputError, match="learning_rate"):
        Trainer(_mlp(), _mse, _settings(epochs=2, learning_rate=0.1), progress=False).fit(
            train, val, checkpoint=checkpoint, resume=True
        )
    with pytest.raises(InvalidInputError, match="steps per epoch"):
        Trainer(_mlp(), _mse, _settings(epochs=2), progress=False).fit(
            _linear_data(80, 0), val, checkpoint=checkpoint, resume=True
        )
    # patience and seed may change; the run's state comes from the checkpoint.
    again = Trainer(_mlp(), _mse, _settings(epochs=2, patience=1, seed=5), progress=False)
    assert again.fit(train, val, checkpoint=checkpoint, resume=True) == records


def test_resume_without_checkpoint_starts_afresh(tmp_path):
    train, val = _linear_data(24, 0), _linear_data(8, 1)
    a = Trainer(_mlp(), _mse, _settings(epochs=2), progress=False)
    a.fit(train, val, checkpoint=tmp_path / "missing.pt", resume=True)
    b = Trainer(_mlp(), _mse, _settings(epochs=2), progress=False)
    b.fit(train, val)
    _same_records(a.history, b.history)
    assert (tmp_path / "missing.pt").exists()


def test_csv_log(tmp_path):
    train, val = _linear_data(24, 0), _linear_data(8, 1)
    log = tmp_path / "logs" / "run.csv"
    trainer = Trainer(
        torch.nn.Linear(4, 2), _mse, _settings(epochs=3), metrics_fn=_metrics, log_path=log, progress=False
    )
    history = trainer.fit(train, val)
    with open(log) as fh:
        header = fh.readline().strip().split(",")
    assert header == ["epoch", "train_loss", "val_loss", "val_mae", "lr", "seconds"]
    rows = _read_csv(log)
    assert len(rows) == 3
    for row, record in zip(rows, history, strict=True):
        assert int(row["epoch"]) == record["epoch"]
        assert float(row["val_loss"]) == pytest.approx(record["val_loss"])
    # A new run with the same log replaces it rather than appending to it.
    trainer = Trainer(torch.nn.Linear(4, 2), _mse, _settings(epochs=2), log_path=log, progress=False)
    trainer.fit(train, val)
    assert [int(r["epoch"]) for r in _read_csv(log)] == [1, 2]
    assert "val_mae" not in _read_csv(log)[0]


def test_fit_twice_starts_afresh():
    train, val = _linear_data(24, 0), _linear_data(8, 1)
    trainer = Trainer(torch.nn.Linear(4, 2), _mse, _settings(epochs=2), progress=False)
    trainer.fit(train, val)
    assert len(trainer.fit(train, val)) == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"patience": 0},
        {"learning_rate": 0.0},
        {"learning_rate": -1e-3},
        {"learning_rate": float("nan")},
        {"weight_decay": -1.0},
        {"threads": 0},
    ],
)
def test_invalid_settings(changes):
    with pytest.raises(InvalidInputError):
        TrainingSettings(**changes)


def test_empty_sets_are_refused():
    data = _linear_data(8, 0)
    empty = TensorDataset(torch.zeros(0, 4), torch.zeros(0, 2))
    trainer = Trainer(torch.nn.Linear(4, 2), _mse, _settings(), progress=False)
    with pytest.raises(InvalidInputError, match="empty"):
        trainer.fit(data, empty)
    with pytest.raises(InvalidInputError, match="empty"):
        trainer.fit(empty, data)


def test_evaluate_metrics():
    data = _linear_data(10, 0)
    model = torch.nn.Linear(4, 2)
    trainer = Trainer(model, _mse, _settings(batch_size=3), metrics_fn=_metrics, progress=False)
    result = trainer.evaluate(data)
    x, y = data.tensors
    with torch.no_grad():
        assert result["loss"] == pytest.approx(float(_mse(model(x), y)), rel=1e-5)
        assert result["mae"] == pytest.approx(float((model(x) - y).abs().mean()), rel=1e-5)
    assert np.isfinite(result["loss"])
