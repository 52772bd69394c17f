"""Training curves from the CSV log the Trainer writes."""

import numpy as np
import pytest
import torch
from astropy.table import Table

from deepfocus.exceptions import InvalidInputError
from deepfocus.training import Trainer, TrainingSettings
from deepfocus.visualization import plot_training_log, read_training_log, training_curves

from .conftest import render


@pytest.fixture(scope="module")
def trainer_log(tmp_path_factory):
    """A real `Trainer` log: a linear model fitted for 4 epochs, with two validation metrics."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    data = torch.utils.data.TensorDataset(x, y)

    def metrics(prediction, target):
        return {
            "mae": float((prediction - target).abs().mean()),
            "max_error": float((prediction - target).abs().max()),
        }

    path = tmp_path_factory.mktemp("log") / "toy-tiny.csv"
    settings = TrainingSettings(epochs=4, batch_size=16, learning_rate=0.05, patience=10)
    Trainer(torch.nn.Linear(3, 1), torch.nn.functional.mse_loss, settings, metrics_fn=metrics, log_path=path,
            progress=False).fit(data, data)  # fmt: skip
    return path


def _curves(figure):
    return [line for ax in figure.axes for line in ax.get_lines() if line.get_gid() == "curve"]


def test_one_line_per_curve(trainer_log):
    log = read_training_log(trainer_log)
    figure = plot_training_log(trainer_log)
    render(figure)
    curves = _curves(figure)
    expected = [name for name in log.colnames if name not in ("epoch", "seconds")]
    assert sorted(line.get_label() for line in curves) == sorted(expected)
    assert len(expected) == 5  # train_loss, val_loss, val_mae, val_max_error, lr
    for line in curves:
        assert np.allclose(line.get_ydata(), log[line.get_label()])
        assert np.array_equal(line.get_xdata(), log["epoch"])
    # The losses share a panel; each metric and the learning rate have their own.
    assert training_curves(log) == {
        "loss": ["train_loss", "val_loss"], "mae": ["val_mae"], "max_error": ["val_max_error"], "lr": ["lr"],
    }  # fmt: skip
    assert len([ax for ax in figure.axes if ax.get_lines()]) == 4
    assert all(ax.get_xlabel() == "epoch" for ax in figure.axes if ax.get_lines())
    best = log["epoch"][int(np.argmin(log["val_loss"]))]
    marks = [line for ax in figure.axes for line in ax.get_lines() if line.get_gid() == "best-epoch"]
    assert len(marks) == 4 and all(line.get_xdata()[0] == best for line in marks)
    assert figure._suptitle.get_text() == f"toy-tiny.csv (best epoch {best:g})"


def test_history_and_table(trainer_log):
    log = read_training_log(trainer_log)
    history = [dict(zip(log.colnames, row, strict=True)) for row in log]
    assert len(_curves(plot_training_log(history))) == 5
    assert len(_curves(plot_training_log(Table(log)))) == 5


def test_bad_logs(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file"):
        read_training_log(tmp_path / "missing.csv")
    no_epoch = tmp_path / "a.csv"
    no_epoch.write_text("step,loss\n1,0.5\n")
    with pytest.raises(InvalidInputError, match="no 'epoch' column"):
        plot_training_log(no_epoch)
    only_time = tmp_path / "b.csv"
    only_time.write_text("epoch,seconds\n1,0.5\n")
    with pytest.raises(InvalidInputError, match="no curves"):
        plot_training_log(only_time)
    with pytest.raises(InvalidInputError, match="log must be"):
        plot_training_log(42)
