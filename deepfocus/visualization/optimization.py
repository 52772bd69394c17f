"""Plots of a hyper-parameter study (``deepfocus optimize``), drawn by Optuna's matplotlib backend.

`optuna.visualization.matplotlib` draws on the current pyplot figure and returns the axes; the
functions here return the `~matplotlib.figure.Figure` like every other deepfocus plot, with the
objective's name on the value axis, and hide Optuna's "experimental" warnings.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..exceptions import InvalidInputError

__all__ = [
    "plot_optimization_history",
    "plot_param_importances",
    "plot_intermediate_values",
    "save_study_plots",
]


def _objective_name(study):
    return study.user_attrs.get("objective", "objective value")


def _check(study, minimum):
    import optuna

    if not isinstance(study, optuna.study.Study):
        raise InvalidInputError(f"expected an optuna Study, got {type(study).__name__}")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < minimum:
        raise InvalidInputError(
            f"study {study.study_name!r} has {len(complete)} complete trial(s); this plot needs {minimum}"
        )


def _draw(function, *args, title, figsize, **kwargs):
    import matplotlib
    import optuna

    # Optuna's functions switch pyplot to the ggplot style for good: keep that inside.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = function(*args, **kwargs)
        for loc in ("left", "center", "right"):
            ax.set_title("", loc=loc)
        ax.set_title(title)
        figure = ax.figure
        figure.set_size_inches(*figsize)
        figure.tight_layout()
    return figure


def plot_optimization_history(study, *, figsize=(7, 4.5)):
    """Objective value of every complete trial, with the best value so far as a line.

    Parameters
    ----------
    study : `optuna.study.Study`
        A study with at least one complete trial.
    figsize : tuple of float
        Figure size (inches).

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        One axes: trial number against the objective (points), best value so far (line).
    """
    import optuna

    _check(study, 1)
    name = _objective_name(study)
    figure = _draw(
        optuna.visualization.matplotlib.plot_optimization_history,
        study,
        target_name=name,
        title=f"{study.study_name}: optimisation history",
        figsize=figsize,
    )
    figure.axes[0].set_ylabel(name)
    return figure


def plot_param_importances(study, *, figsize=(7, 4.5)):
    """Importance of each hyper-parameter for the objective (horizontal bars).

    The importances are Optuna's default evaluator's (PED-ANOVA in Optuna 5: how much each
    parameter's distribution in the best trials differs from its distribution in all trials;
    deterministic and without scikit-learn).

    Parameters
    ----------
    study : `optuna.study.Study`
        A study with at least two complete trials.
    figsize : tuple of float
        Figure size (inches).

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        One axes with one bar per parameter that varies among the complete trials.
    """
    import optuna

    _check(study, 2)
    figure = _draw(
        optuna.visualization.matplotlib.plot_param_importances,
        study,
        target_name=_objective_name(study),
        title=f"{study.study_name}: parameter importances for {_objective_name(study)}",
        figsize=figsize,
    )
    return figure


def plot_intermediate_values(study, *, figsize=(7, 4.5)):
    """The objective after each epoch of every trial (pruned ones end early).

    ``deepfocus optimize`` reports epoch ``n`` (1-based) as step ``n``.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        One axes, one line per trial that reported a value.
    """
    import optuna

    _check(study, 0)
    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        raise InvalidInputError(f"study {study.study_name!r} has no trial with per-epoch values yet")
    figure = _draw(
        optuna.visualization.matplotlib.plot_intermediate_values,
        study,
        title=f"{study.study_name}: per-epoch validation values",
        figsize=figsize,
    )
    ax = figure.axes[0]
    ax.set_xlabel("epoch")
    ax.set_ylabel(_objective_name(study))
    legend = ax.get_legend()
    if legend is not None:  # one entry per trial: unreadable beyond a few
        legend.remove()
    return figure


def save_study_plots(study, prefix, *, dpi=120, log=None):
    """Write ``PREFIX-history.png``, ``PREFIX-importances.png`` and ``PREFIX-intermediate.png``.

    Each file is written atomically (`~deepfocus.io.atomic.atomic_path`); a plot the study
    cannot make yet (e.g. importances with one complete trial) is skipped, and ``log`` (a
    callable taking a line, e.g. `print`), if given, says which and why.

    Returns
    -------
    paths : list of `pathlib.Path`
        The files written.
    """
    from ._common import save_figure

    written = []
    for suffix, function in (
        ("history", plot_optimization_history),
        ("importances", plot_param_importances),
        ("intermediate", plot_intermediate_values),
    ):
        path = Path(f"{prefix}-{suffix}.png")
        try:
            figure = function(study)
        except InvalidInputError as exc:
            if log is not None:
                log(f"{path} not written: {exc}")
            continue
        save_figure(figure, path, dpi=dpi)
        written.append(path)
    return written
