"""Training curves from the CSV log `~deepfocus.training.Trainer` writes.

The log has one row per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_<metric>`` for each
validation metric of the task, ``lr`` and ``seconds``. Curves are grouped by name with the
``train_``/``val_`` prefix removed, so the training and validation losses share a panel and each
validation metric and the learning rate get their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from ..exceptions import InvalidInputError
from ._common import new_figure, plain_log_ticks

__all__ = ["read_training_log", "training_curves", "plot_training_log"]

#: Columns that are not curves.
NOT_CURVES = ("epoch", "seconds")

#: Axis labels of known quantities (unit where it has one).
LABELS = {
    "loss": "loss",
    "lr": "learning rate",
    "psnr": "PSNR (dB)",
    "iou": "line-mask IoU",
    "centre_error": "line-centre error (channels)",
    "false_line_fraction": "false-line fraction",
    "relative_flux_error": "relative flux error",
    "flux_within_10pct": "flux within 10 %",
    "median_position_error": "position error (scaled units)",
    "median_major_error": "major-axis error (scaled units)",
}


def read_training_log(path):
    """Read a training log CSV.

    Parameters
    ----------
    path : str or path-like
        ``<task>-<preset>.csv`` as ``deepfocus train`` writes it.

    Returns
    -------
    log : `~astropy.table.Table`

    Raises
    ------
    InvalidInputError
        If the file is missing, unreadable, or has no ``epoch`` column or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"training log {path}: no such file")
    try:
        log = Table.read(path, format="ascii.csv")
    except Exception as exc:  # any reader failure is a bad input file for the user
        raise InvalidInputError(f"cannot read training log {path} as CSV: {exc}") from exc
    return _checked(log, str(path))


def _checked(log, what):
    if "epoch" not in log.colnames:
        raise InvalidInputError(f"training log {what} has no 'epoch' column")
    if len(log) == 0:
        raise InvalidInputError(f"training log {what} has no epochs")
    return log


def _as_table(log):
    if isinstance(log, str | Path):
        return read_training_log(log)
    if isinstance(log, list):  # Trainer.history
        names = list(dict.fromkeys(k for record in log for k in record))
        log = Table(rows=[[r.get(k, np.nan) for k in names] for r in log], names=names)
    if not isinstance(log, Table):
        raise InvalidInputError(
            f"log must be a CSV path, a Table or a list of dicts, got {type(log).__name__}"
        )
    return _checked(log, "table")


def training_curves(log):
    """The curves of a training log, grouped into panels.

    Parameters
    ----------
    log : str, path-like, `~astropy.table.Table` or list of dict
        The CSV log, it read, or `~deepfocus.training.Trainer` ``history``.

    Returns
    -------
    panels : dict
        ``{quantity: [column, ...]}`` in the order of the log's columns: ``"loss"`` holds
        ``train_loss`` and ``val_loss``; every other numeric column except ``epoch`` and
        ``seconds`` is grouped by its name without the ``train_``/``val_`` prefix.
    """
    table = _as_table(log)
    panels = {}
    for name in table.colnames:
        if name in NOT_CURVES or table[name].dtype.kind not in "fiu":
            continue
        quantity = name.removeprefix("train_").removeprefix("val_")
        panels.setdefault(quantity, []).append(name)
    return panels


def plot_training_log(log, *, figure=None, title=None, ncols=3):
    """Training curves: the losses, each validation metric and the learning rate against epoch.

    Parameters
    ----------
    log : str, path-like, `~astropy.table.Table` or list of dict
        The CSV log ``deepfocus train`` writes beside the weights, as a path or table, or
        `~deepfocus.training.Trainer` ``history``.
    figure : `matplotlib.figure.Figure`, optional
        Figure to draw in (cleared first); a new one if None.
    title : str, optional
        Figure title (default: the file name when ``log`` is a path).
    ncols : int
        Panels per row.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        One axes per quantity of `training_curves`; each curve is a line with ``gid="curve"``
        labelled with its column, and the epoch of the lowest validation loss (the weights
        kept) is a dashed vertical line with ``gid="best-epoch"``. The loss and learning-rate
        axes are logarithmic when all values are positive.

    Examples
    --------
    >>> from deepfocus.visualization import plot_training_log
    >>> plot_training_log("weights/spectral-default.csv").savefig("curves.png")  # doctest: +SKIP
    """
    table = _as_table(log)
    if title is None and isinstance(log, str | Path):
        title = Path(log).name
    panels = training_curves(table)
    if not panels:
        raise InvalidInputError("the training log has no curves (only epoch/seconds columns)")
    epoch = np.asarray(table["epoch"], dtype=float)
    best = None
    if "val_loss" in table.colnames and np.isfinite(np.asarray(table["val_loss"], dtype=float)).any():
        best = epoch[int(np.nanargmin(np.asarray(table["val_loss"], dtype=float)))]
    ncols = max(1, min(int(ncols), len(panels)))
    nrows = int(np.ceil(len(panels) / ncols))
    if figure is None:
        figure = new_figure((4.2 * ncols, 3.2 * nrows))
    else:
        figure.clear()
    for k, (quantity, columns) in enumerate(panels.items()):
        ax = figure.add_subplot(nrows, ncols, k + 1)
        positive = True
        for name in columns:
            values = np.asarray(table[name], dtype=float)
            positive &= bool(np.all(values[np.isfinite(values)] > 0))
            style = "--" if name.startswith("train_") else "-"
            ax.plot(epoch, values, style, marker="o", ms=3, label=name, gid="curve")
        if quantity in ("loss", "lr") and positive:
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
        if best is not None:
            ax.axvline(best, color="0.5", ls=":", lw=1.0, gid="best-epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(LABELS.get(quantity, quantity.replace("_", " ")))
        ax.grid(alpha=0.3)
        if len(columns) > 1 or k == 0:
            ax.legend(fontsize=8)
    if title:
        figure.suptitle(title + (f" (best epoch {best:g})" if best is not None else ""), fontsize=11)
    figure.tight_layout()
    return figure
