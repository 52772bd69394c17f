"""Evaluating catalogue files against a truth file: reading, the printed report and the JSON record."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
from astropy.table import QTable

from ..exceptions import DeepFocusWarning, InvalidInputError
from ..io.atomic import atomic_path
from ._columns import meta_value, require_columns
from .matching import POSITION_COLUMNS
from .metrics import evaluate

__all__ = ["format_report", "evaluate_files", "read_catalog"]

#: Columns a truth file must have.
TRUTH_REQUIRED = (*POSITION_COLUMNS, "snr", "line_width")


def read_catalog(path, *, what="catalogue", required=POSITION_COLUMNS, allow_empty=False) -> QTable:
    """Read a catalogue file (ECSV, FITS or VOTable; the format is guessed from the file).

    Parameters
    ----------
    path : str or path-like
        File name.
    what : str
        How to name the file in error messages (e.g. ``"truth catalogue"``).
    required : sequence of str
        Columns the file must have.
    allow_empty : bool
        Accept a table with no rows even without the required columns (an empty detected
        catalogue means nothing was found).

    Returns
    -------
    table : `~astropy.table.QTable`

    Raises
    ------
    InvalidInputError
        If the file does not exist, cannot be read as a table, or lacks required columns.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{what} {path}: no such file")
    try:
        table = QTable.read(path)
    except Exception as exc:  # any reader failure is a bad input file for the user
        raise InvalidInputError(f"cannot read {what} {path} as a table: {exc}") from exc
    if len(table) or not allow_empty:
        require_columns(table, required, f"{what} {path}")
    return table


def evaluate_files(truth_path, catalog_path, *, json_path=None, **match_kwargs) -> dict:
    """Evaluate a catalogue file against a truth file, optionally writing the metrics as JSON.

    Parameters
    ----------
    truth_path : str or path-like
        Truth catalogue (ECSV, FITS or VOTable) with ``x_centroid``, ``y_centroid``,
        ``z_centroid``, ``snr`` and ``line_width``; its ``meta`` should give
        ``beam_major_arcsec``, ``cell_arcsec`` and ``channel_velocity_width_kms`` (the simulator
        writes them), or pass them in ``match_kwargs``.
    catalog_path : str or path-like
        Detected catalogue with ``x_centroid``, ``y_centroid``, ``z_centroid``. A file with no
        rows is valid: nothing was detected (completeness 0, purity NaN, F1 0).
    json_path : str or path-like, optional
        Write the metrics here as JSON (atomically; NaN and infinities written as ``null``).
    **match_kwargs
        ``beam_major``, ``cell``, ``channel_velocity_width`` (Quantities) for
        `~deepfocus.evaluation.match_catalogs`.

    Returns
    -------
    metrics : dict
        As `~deepfocus.evaluation.evaluate`, plus ``truth_file`` and ``catalog_file``.

    Raises
    ------
    InvalidInputError
        If a file is missing, unreadable or lacks required columns, or the matching settings
        are unknown.

    Warns
    -----
    DeepFocusWarning
        If the two files record different pixel sizes or beams (`cube_mismatches`): they may
        not be of one cube.
    """
    truth = read_catalog(truth_path, what="truth catalogue", required=TRUTH_REQUIRED)
    catalog = read_catalog(catalog_path, what="detected catalogue", allow_empty=True)
    for problem in cube_mismatches(truth.meta, catalog.meta):
        message = f"{truth_path} and {catalog_path} may not be of one cube: {problem}"
        warnings.warn(message, DeepFocusWarning, stacklevel=2)
    metrics = evaluate(truth, catalog, **match_kwargs)
    metrics["truth_file"] = str(truth_path)
    metrics["catalog_file"] = str(catalog_path)
    if json_path is not None:
        text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n"
        with atomic_path(json_path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return metrics


#: ``meta`` keys that both a truth catalogue and deepfocus's catalogues record of their cube.
_CUBE_KEYS = {"cell_arcsec": "pixel size", "beam_major_arcsec": "beam major axis"}


def cube_mismatches(truth_meta, catalog_meta, *, tolerance=0.01):
    """What the two catalogues' ``meta`` say differently of their cubes.

    A catalogue scored against the truth of another cube matches nothing, or by chance.

    Parameters
    ----------
    truth_meta, catalog_meta : dict
        The ``meta`` of the truth and of the detected catalogue (keys looked up regardless of
        case, as FITS tables upper-case them).
    tolerance : float
        Largest relative difference of a value that both give.

    Returns
    -------
    problems : list of str
        One line per key of `_CUBE_KEYS` (pixel size, beam major axis) that both give, more than
        ``tolerance`` apart.
    """
    problems = []
    for key, what in _CUBE_KEYS.items():
        try:
            a, b = float(meta_value(truth_meta, key)), float(meta_value(catalog_meta, key))
        except (TypeError, ValueError):  # not given (None) or not a number
            continue
        if math.isfinite(a) and math.isfinite(b) and abs(a - b) > tolerance * max(abs(a), abs(b)):
            problems.append(f"the truth's {what} is {a:.4g} arcsec, the catalogue's {b:.4g} arcsec")
    return problems


def _jsonable(value):
    """Plain JSON types, with non-finite numbers as None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _num(value, fmt="{:.3f}", missing="n/a"):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return fmt.format(value)


def _unit(value, unit):
    """`` unit`` after a number that `_num` shows, nothing after ``n/a``."""
    return "" if _num(value) == "n/a" else f" {unit}"


def format_report(metrics) -> str:
    """A printable text report of the metrics of `~deepfocus.evaluation.evaluate`.

    Parameters
    ----------
    metrics : dict
        Output of `~deepfocus.evaluation.evaluate` or `evaluate_files` (or the JSON they write).

    Returns
    -------
    text : str
        Counts, completeness per truth S/N bin, purity, F1 and accuracies; undefined values
        are shown as ``n/a``.
    """
    m = metrics
    lines = ["Catalogue evaluation"]
    if m.get("truth_file"):
        lines.append(f"  truth     : {m['truth_file']}")
    if m.get("catalog_file"):
        lines.append(f"  catalogue : {m['catalog_file']}")
    lines.append(
        f"  matching  : within {_num(m.get('position_tolerance_pix'), '{:.2f}')} pix "
        f"(beam major {_num(m.get('beam_major_pix'), '{:.2f}')} pix) and max(line FWHM, 2) channels "
        f"(channel {_num(m.get('channel_velocity_width_kms'), '{:.3g}')} km/s), one-to-one"
    )
    lines += [
        "",
        f"  truth sources          {m['n_truth']:>7d}",
        f"  detections             {m['n_detected']:>7d}",
        f"  matched                {m['n_matched']:>7d}",
        f"  completeness           {_num(m['completeness']):>7}",
        f"  purity                 {_num(m['purity']):>7}",
        f"  F1                     {_num(m['f1']):>7}",
        f"  median position error  {_num(m.get('position_error_median_pix')):>7} pix",
        "",
        "  Completeness by truth S/N",
        f"    {'S/N':<8}{'n':>6}{'found':>8}{'completeness':>14}",
    ]
    for row in m.get("completeness_by_snr", []):
        lines.append(f"    {row['label']:<8}{row['n']:>6d}{row['found']:>8d}{_num(row['completeness']):>14}")
    snr_min = _num(m.get("accuracy_snr_min"), "{:g}")
    lines += [
        "",
        f"  Accuracy of matched sources with truth S/N >= {snr_min} (n = {m.get('n_accuracy', 0)})",
        f"    {'measure':<32}{'fraction':>9}{'n':>6}",
    ]
    rows = (
        ("flux within 10 %", "flux_within_10pct", "n_flux"),
        ("position angle within 10 %", "position_angle_within_10pct", "n_position_angle"),
        ("position angle within 10 deg", "position_angle_within_10deg", "n_position_angle"),
        ("FWHM (major) within 10 %", "fwhm_within_10pct", "n_fwhm"),
        ("line width within 10 %", "line_width_within_10pct", "n_line_width"),
    )
    for label, key, n_key in rows:
        lines.append(f"    {label:<32}{_num(m.get(key)):>9}{m.get(n_key, 0):>6d}")
    flux_err = m.get("flux_relative_error_median")
    flux_err = None if flux_err is None else 100 * flux_err
    centre_err = m.get("line_centre_error_median_chan")
    lines += [
        f"    {'median |flux error|':<32}{_num(flux_err, '{:.1f}'):>9}{_unit(flux_err, '%')}",
        f"    {'median line-centre error':<32}{_num(centre_err):>9}{_unit(centre_err, 'channels')}",
    ]
    return "\n".join(lines)
