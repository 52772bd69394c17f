"""Catalogue diagnostics against the truth: completeness and purity per S/N bin, measured vs true.

The numbers are those of `deepfocus.evaluation` (same one-to-one matching, same S/N bins and
accuracy rules), so a plot and the ``deepfocus evaluate`` report always agree.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..evaluation._columns import column_values
from ..exceptions import InvalidInputError
from ._common import new_figure, plain_log_ticks

__all__ = ["completeness_purity", "plot_completeness", "plot_measurements", "plot_diagnostics"]

#: One-sigma (68.27 %) binomial confidence level of the error bars.
CONFIDENCE = 0.6827

#: Quantities of `plot_measurements` (catalogue column names): axis label and unit.
MEASUREMENTS = {
    "flux": ("line flux", u.Jy * u.km / u.s),
    "fwhm_major": ("FWHM (major axis)", u.arcsec),
    "position_angle": ("position angle", u.deg),
    "line_width": ("line width", u.km / u.s),
}


def _interval(k, n):
    """Wilson one-sigma interval of ``k`` successes in ``n`` trials (NaN where ``n`` is 0)."""
    from astropy.stats import binom_conf_interval

    k, n = np.asarray(k), np.asarray(n)
    low, high = np.full(len(n), np.nan), np.full(len(n), np.nan)
    some = n > 0
    if some.any():
        low[some], high[some] = binom_conf_interval(
            k[some], n[some], confidence_level=CONFIDENCE, interval="wilson"
        )
    return low, high


def _match(truth, catalog, match_kwargs):
    from ..evaluation import evaluate, match_catalogs

    if truth is None or "snr" not in truth.colnames:
        raise InvalidInputError("the truth catalogue needs an 'snr' column (per-channel peak S/N)")
    catalog = catalog if catalog is not None and len(catalog) else None
    result = match_catalogs(truth, catalog, **match_kwargs)
    return catalog, result, evaluate(truth, catalog, result=result)


def completeness_purity(truth, catalog, **match_kwargs):
    """Completeness per truth S/N bin and purity per detected S/N bin, with Wilson error bars.

    Parameters
    ----------
    truth : `~astropy.table.QTable`
        Truth catalogue (as `~deepfocus.evaluation.evaluate` needs it).
    catalog : `~astropy.table.QTable` or None
        Detected catalogue; purity per bin needs its ``snr`` column.
    **match_kwargs
        ``beam_major``, ``cell``, ``channel_velocity_width`` for
        `~deepfocus.evaluation.match_catalogs` (default: from ``truth.meta``).

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per `~deepfocus.evaluation.SNR_BINS` bin: ``label``, ``snr_min``, ``snr_max``;
        ``n_truth``, ``n_found``, ``completeness`` (exactly the evaluation's),
        ``completeness_low``, ``completeness_high``; ``n_detected`` (detections whose ``snr``
        falls in the bin), ``n_true`` (of them matched to a truth source), ``purity``,
        ``purity_low``, ``purity_high`` (NaN where a bin is empty or the catalogue has no
        ``snr``). ``meta`` holds the overall ``completeness``, ``purity`` and ``f1``.
    """
    return _completeness_table(*_match(truth, catalog, match_kwargs))


def _completeness_table(catalog, result, metrics):
    """`completeness_purity`'s table from a matching ``result`` and its ``metrics``."""
    from ..evaluation import SNR_BINS

    rows = metrics["completeness_by_snr"]
    table = QTable()
    table["label"] = [r["label"] for r in rows]
    table["snr_min"] = [r["snr_min"] for r in rows]
    table["snr_max"] = [r["snr_max"] for r in rows]
    table["n_truth"] = np.array([r["n"] for r in rows], dtype=int)
    table["n_found"] = np.array([r["found"] for r in rows], dtype=int)
    table["completeness"] = [r["completeness"] for r in rows]
    table["completeness_low"], table["completeness_high"] = _interval(table["n_found"], table["n_truth"])
    n_det = np.zeros(len(SNR_BINS), dtype=int)
    n_true = np.zeros(len(SNR_BINS), dtype=int)
    if catalog is not None and "snr" in catalog.colnames:
        snr = column_values(catalog, "snr")
        matched = np.zeros(len(catalog), dtype=bool)
        matched[result.catalog_index] = True
        for k, (low, high, _) in enumerate(SNR_BINS):
            in_bin = (snr >= low) & (snr < high)
            n_det[k], n_true[k] = int(in_bin.sum()), int((in_bin & matched).sum())
    table["n_detected"] = n_det
    table["n_true"] = n_true
    with np.errstate(invalid="ignore", divide="ignore"):
        table["purity"] = np.where(n_det > 0, n_true / np.maximum(n_det, 1), np.nan)
    table["purity_low"], table["purity_high"] = _interval(n_true, n_det)
    table.meta.update({k: metrics[k] for k in ("completeness", "purity", "f1", "n_truth", "n_detected")})
    return table


def plot_completeness(truth, catalog, *, ax=None, **match_kwargs):
    """Completeness (per truth S/N bin) and purity (per detected S/N bin) with error bars.

    Parameters
    ----------
    truth, catalog, **match_kwargs
        As in `completeness_purity`.
    ax : `matplotlib.axes.Axes`, optional
        Axes to draw on; a new figure if None.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        Two error-bar series labelled ``"completeness"`` and ``"purity"``, one point per S/N
        bin (the x axis is categorical, one tick per bin), each annotated with its count.
    """
    return _draw_completeness(ax, completeness_purity(truth, catalog, **match_kwargs))


def _draw_completeness(ax, table):
    """`plot_completeness`'s drawing of a `completeness_purity` table (new axes if None)."""
    if ax is None:
        ax = new_figure((5.6, 4.0)).add_subplot()
    x = np.arange(len(table), dtype=float)
    series = (
        ("completeness", "n_truth", -0.08, "tab:blue", "o"),
        ("purity", "n_detected", 0.08, "tab:red", "s"),
    )
    for name, count, shift, colour, marker in series:
        value = np.asarray(table[name], dtype=float)
        low = np.asarray(table[f"{name}_low"], dtype=float)
        high = np.asarray(table[f"{name}_high"], dtype=float)
        errors = np.vstack([np.nan_to_num(value - low), np.nan_to_num(high - value)])
        ax.errorbar(
            x + shift,
            value,
            yerr=errors,
            fmt=marker,
            color=colour,
            capsize=3,
            label=name,
            ms=6,
            ls="-",
            lw=1.0,
        )
        for xi, vi, ni in zip(x + shift, value, table[count], strict=True):
            if np.isfinite(vi):
                ax.annotate(
                    f"{ni}", (xi, vi), textcoords="offset points", xytext=(5, -10 if name == "purity" else 4),
                    fontsize=7, color=colour,
                )  # fmt: skip
    ax.set_xticks(x, list(table["label"]))
    ax.set_xlim(-0.5, len(table) - 0.5)
    ax.set_ylim(-0.03, 1.08)
    ax.set_xlabel("S/N bin (per-channel peak; truth for completeness, detected for purity)", fontsize=8)
    ax.set_ylabel("fraction")
    meta = table.meta
    ax.set_title(
        f"completeness {_fmt(meta['completeness'])}, purity {_fmt(meta['purity'])}, F1 {_fmt(meta['f1'])}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return ax.figure


def _fmt(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _applicable(pairs, quantity):
    """Matched pairs a quantity is scored on (as `deepfocus.evaluation.evaluate` decides)."""
    from ..evaluation.metrics import MAX_AXIS_RATIO

    keep = np.ones(len(pairs), dtype=bool)
    if quantity in ("fwhm_major", "position_angle"):
        if "true_fwhm_major" not in pairs.colnames:
            return np.zeros(len(pairs), dtype=bool)
        major = column_values(pairs, "true_fwhm_major", u.arcsec)
        keep &= major > 0
        if quantity == "position_angle":
            if "true_fwhm_minor" not in pairs.colnames:
                return np.zeros(len(pairs), dtype=bool)
            with np.errstate(invalid="ignore", divide="ignore"):
                keep &= column_values(pairs, "true_fwhm_minor", u.arcsec) / major <= MAX_AXIS_RATIO
    return keep


def _draw_measurement(ax, pairs, quantity, metrics, snr_min, colorbar=True):
    label, unit = MEASUREMENTS[quantity]
    unit_text = unit.to_string()
    ax.set_xlabel(f"true {label} ({unit_text})")
    ax.set_ylabel(f"measured {label} ({unit_text})")
    has = f"true_{quantity}" in pairs.colnames and f"det_{quantity}" in pairs.colnames
    keep = _applicable(pairs, quantity) if has else np.zeros(len(pairs), dtype=bool)
    if has:
        true = column_values(pairs, f"true_{quantity}", unit)
        det = column_values(pairs, f"det_{quantity}", unit)
        keep &= np.isfinite(true) & np.isfinite(det)
        true, det = true[keep], det[keep]
    if not keep.any():
        text = f"no {label} in both catalogues" if len(pairs) and not has else "no matched sources to compare"
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
        ax.set_title(label, fontsize=10)
        return
    snr = column_values(pairs, "true_snr")[keep]
    if quantity == "position_angle":
        true = np.mod(true, 180.0)
        # The measured angle is drawn on the branch (+-180 deg) nearest the true one.
        det = true + (np.mod(det - true + 90.0, 180.0) - 90.0)
    bright = snr >= snr_min
    from matplotlib.colors import LogNorm

    norm = LogNorm(vmin=max(min(snr.min(), 20.0), 0.5), vmax=max(snr.max(), 1.0))
    points = ax.scatter(
        true, det, c=np.clip(snr, 0.5, None), cmap="viridis", norm=norm, s=np.where(bright, 28, 12),
        edgecolors=np.where(bright, "k", "none"), linewidths=0.5, zorder=3, gid="pairs",
    )  # fmt: skip
    lo, hi = np.nanmin(np.r_[true, det]), np.nanmax(np.r_[true, det])
    if quantity in ("flux", "line_width") and lo > 0:
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax.xaxis)
        plain_log_ticks(ax.yaxis)
        lo, hi = lo / 1.3, hi * 1.3
        grid = np.geomspace(lo, hi, 50)
    else:
        pad = 0.08 * (hi - lo if hi > lo else 1.0)
        lo, hi = lo - pad, hi + pad
        grid = np.linspace(lo, hi, 50)
    ax.plot(grid, grid, color="0.3", lw=1.0, gid="one-to-one")
    if quantity == "position_angle":
        ax.fill_between(grid, grid - 10.0, grid + 10.0, color="0.5", alpha=0.2, lw=0, label="±10 deg")
    else:
        ax.fill_between(grid, 0.9 * grid, 1.1 * grid, color="0.5", alpha=0.2, lw=0, label="±10 %")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.legend(loc="upper left", fontsize=7)
    key = {
        "flux": "flux_within_10pct",
        "fwhm_major": "fwhm_within_10pct",
        "position_angle": "position_angle_within_10deg",
        "line_width": "line_width_within_10pct",
    }[quantity]
    within = "10 deg" if quantity == "position_angle" else "10 %"
    ax.set_title(f"{label}: {_fmt(metrics.get(key))} within {within} (S/N ≥ {snr_min:g})", fontsize=9)
    if colorbar:
        bar = ax.figure.colorbar(points, ax=ax, fraction=0.046, pad=0.03, label="true S/N")
        plain_log_ticks(bar.ax.yaxis)


def plot_measurements(
    truth, catalog, *, quantities=("flux", "fwhm_major", "position_angle"), figure=None, **match_kwargs
):
    """Measured against true values of the matched sources, one panel per quantity.

    Parameters
    ----------
    truth, catalog, **match_kwargs
        As in `completeness_purity`.
    quantities : sequence of str
        Columns to compare, from ``"flux"`` (Jy km/s), ``"fwhm_major"`` (arcsec; resolved
        truth sources only), ``"position_angle"`` (deg; resolved, elongated truth sources,
        compared modulo 180 deg) and ``"line_width"`` (km/s).
    figure : `matplotlib.figure.Figure`, optional
        Figure to draw in (cleared first); a new one if None.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        One axes per quantity (the last with the colour bar of true S/N): a scatter
        (``gid="pairs"``, one point per applicable matched pair, coloured by true S/N; those
        with S/N >= 5, on which the accuracies are scored, larger and outlined), the one-to-one
        line and the tolerance band; the title gives the evaluation's accuracy.
    """
    quantities = _check_quantities(quantities)
    pairs, metrics = _pairs(truth, catalog, match_kwargs)
    if figure is None:
        figure = new_figure((4.6 * len(quantities), 4.0))
    else:
        figure.clear()
    for k, quantity in enumerate(quantities):
        ax = figure.add_subplot(1, len(quantities), k + 1)
        last = k == len(quantities) - 1
        _draw_measurement(ax, pairs, quantity, metrics, metrics["accuracy_snr_min"], colorbar=last)
    figure.subplots_adjust(wspace=0.3)
    return figure


def _check_quantities(quantities):
    quantities = [quantities] if isinstance(quantities, str) else list(quantities)
    unknown = [q for q in quantities if q not in MEASUREMENTS]
    if unknown or not quantities:
        raise InvalidInputError(
            f"quantities must be among {', '.join(MEASUREMENTS)}; "
            f"got {', '.join(map(str, unknown)) or 'none'}"
        )
    return quantities


def _pairs(truth, catalog, match_kwargs):
    from ..evaluation import matched_table

    catalog, result, metrics = _match(truth, catalog, match_kwargs)
    return matched_table(truth, catalog, result=result), metrics


def plot_diagnostics(
    truth, catalog, *, quantities=("flux", "fwhm_major", "position_angle"), figure=None, **match_kwargs
):
    """Completeness and purity against S/N, and measured against true values, in one figure.

    Parameters
    ----------
    truth : `~astropy.table.QTable`
        Truth catalogue (e.g. ``NAME_truth.ecsv`` from ``deepfocus simulate``).
    catalog : `~astropy.table.QTable` or None
        Detected catalogue (None or empty: nothing detected).
    quantities : sequence of str
        Measured-vs-true panels (see `plot_measurements`).
    figure : `matplotlib.figure.Figure`, optional
        Figure to draw in (cleared first); a new one if None.
    **match_kwargs
        ``beam_major``, ``cell``, ``channel_velocity_width`` (default: from ``truth.meta``).

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        First axes: `plot_completeness`; then one axes per quantity (`plot_measurements`).

    Examples
    --------
    The example cube shipped with deepfocus, against the true sources it was simulated with:

    >>> from importlib.resources import files
    >>> from astropy.table import QTable
    >>> from deepfocus import DeepFocus
    >>> from deepfocus.visualization import plot_diagnostics
    >>> data = files("deepfocus.data")
    >>> truth = QTable.read(data / "example_truth.ecsv")
    >>> catalog = DeepFocus()(data / "example_dirty.fits", psf=data / "example_psf.fits")
    >>> figure = plot_diagnostics(truth, catalog)
    >>> figure.savefig("diagnostics.png")  # doctest: +SKIP
    """
    from ..evaluation import matched_table

    quantities = _check_quantities(quantities)
    catalog, result, metrics = _match(truth, catalog, match_kwargs)  # once, for every panel
    pairs = matched_table(truth, catalog, result=result)
    if figure is None:
        figure = new_figure((4.8 * (1 + len(quantities)), 4.2))
    else:
        figure.clear()
    n = 1 + len(quantities)
    _draw_completeness(figure.add_subplot(1, n, 1), _completeness_table(catalog, result, metrics))
    for k, quantity in enumerate(quantities):
        ax = figure.add_subplot(1, n, k + 2)
        last = k == len(quantities) - 1
        _draw_measurement(ax, pairs, quantity, metrics, metrics["accuracy_snr_min"], colorbar=last)
    figure.suptitle(
        f"{metrics['n_truth']} true sources, {metrics['n_detected']} detections, "
        f"{metrics['n_matched']} matched",
        fontsize=11,
    )
    figure.subplots_adjust(wspace=0.3, top=0.84)
    return figure
