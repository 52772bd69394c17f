"""Plots of a hyper-parameter study: history, importances, per-epoch values; rendered with Agg."""

import io

import matplotlib
import numpy as np
import optuna
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from deepfocus.exceptions import InvalidInputError
from deepfocus.visualization import (
    plot_intermediate_values,
    plot_optimization_history,
    plot_param_importances,
    save_study_plots,
)

matplotlib.use("Agg")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DISTRIBUTIONS = {
    "training.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    "network.base_width": optuna.distributions.IntDistribution(8, 32),
    "network.block": optuna.distributions.CategoricalDistribution(["residual", "plain"]),
}
#: Values of the made-up study's trials; the objective rises with the learning rate.
VALUES = [0.30, 0.50, 0.45, 0.70, 0.65, 0.80, 0.20, 0.75]


def _study(values=VALUES, pruned=1):
    """An in-memory study with complete trials of known values and ``pruned`` pruned ones."""
    study = optuna.create_study(study_name="made-up", direction="maximize")
    study.set_user_attr("objective", "val_iou")
    rng = np.random.default_rng(0)
    for value in values:
        params = {
            "training.learning_rate": float(1e-4 * 100**value),
            "network.base_width": int(rng.integers(8, 33)),
            "network.block": ["residual", "plain"][int(rng.integers(2))],
        }
        curve = {step: value * (step + 1) / 3 for step in range(3)}
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=DISTRIBUTIONS, value=value, intermediate_values=curve
            )
        )
    for _ in range(pruned):
        study.add_trial(
            optuna.trial.create_trial(
                params={"training.learning_rate": 1e-4, "network.base_width": 8, "network.block": "plain"},
                distributions=DISTRIBUTIONS,
                state=optuna.trial.TrialState.PRUNED,
                intermediate_values={0: 0.01},
            )
        )
    return study


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    return data


def test_history_has_every_trial_and_the_best_so_far():
    figure = plot_optimization_history(_study())
    _png(figure)
    (ax,) = figure.axes
    points = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    assert sorted(points[:, 1]) == pytest.approx(sorted(VALUES))
    (best,) = [line for line in ax.get_lines() if line.get_label() == "Best Value"]
    # The best value so far, at every trial (the pruned one, last, keeps the best).
    assert np.asarray(best.get_ydata()) == pytest.approx([*np.maximum.accumulate(VALUES), max(VALUES)])
    assert ax.get_ylabel() == "val_iou"
    assert "made-up" in ax.get_title()


def test_importances_have_one_bar_per_parameter():
    figure = plot_param_importances(_study())
    _png(figure)
    (ax,) = figure.axes
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0]
    labels = {t.get_text() for t in ax.get_yticklabels()}
    assert labels == set(DISTRIBUTIONS)
    assert 1 <= len(bars) <= len(DISTRIBUTIONS)
    assert sum(b.get_width() for b in bars) == pytest.approx(1.0, abs=0.02)  # normalised importances
    assert "val_iou" in ax.get_title()


def test_intermediate_values_draw_one_line_per_trial():
    study = _study()
    figure = plot_intermediate_values(study)
    _png(figure)
    (ax,) = figure.axes
    lines = [line for line in ax.get_lines() if len(line.get_xdata())]
    assert len(lines) == len(VALUES) + 1  # the pruned trial stops after one epoch
    assert sorted(len(line.get_xdata()) for line in lines)[0] == 1
    assert ax.get_legend() is None


def test_plots_leave_the_global_style_alone():
    before = matplotlib.rcParams["axes.facecolor"]
    plot_optimization_history(_study())
    assert matplotlib.rcParams["axes.facecolor"] == before


def test_too_few_trials_and_wrong_input():
    with pytest.raises(InvalidInputError, match="needs 2"):
        plot_param_importances(_study(values=[0.5], pruned=0))
    with pytest.raises(InvalidInputError, match="needs 1"):
        plot_optimization_history(_study(values=[], pruned=1))
    with pytest.raises(InvalidInputError, match="optuna Study"):
        plot_optimization_history({"trials": []})


def test_save_study_plots_writes_the_pngs(tmp_path):
    paths = save_study_plots(_study(), tmp_path / "study")
    assert [p.name for p in paths] == ["study-history.png", "study-importances.png", "study-intermediate.png"]
    for path in paths:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert not list(tmp_path.glob(".*part"))  # written atomically, nothing left over
    # A study with one complete trial: the importances are skipped, the others written.
    lines = []
    few = save_study_plots(_study(values=[0.5], pruned=0), tmp_path / "few", log=lines.append)
    assert [p.name for p in few] == ["few-history.png", "few-intermediate.png"]
    skipped = tmp_path / "few-importances.png"
    assert lines == [f"{skipped} not written: study 'made-up' has 1 complete trial(s); this plot needs 2"]
