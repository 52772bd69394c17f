"""Quality of a detected catalogue against the truth (DESIGN section 6).

Conventions
-----------
- Completeness = matched / truth sources (NaN without truth sources).
- Purity = matched / detections; NaN when nothing was detected (there is no detection to be
  right or wrong), so an empty catalogue has completeness 0, purity NaN and F1 0.
- F1 = 2 matched / (truth + detections), the harmonic mean of the two when both are defined.
- Accuracies use matched sources with truth per-channel peak S/N >= 5. Each is the fraction of
  the sources it applies to whose measured value is within the tolerance; a detected value that
  is missing (NaN, masked) counts as wrong. A column missing from either catalogue makes the
  metric NaN (with its count 0), never an error.
- Resolved: a truth source whose intrinsic major axis is at least half the beam's
  (`RESOLVED_BEAM_FRACTION`); a smaller one looks like the beam, whatever its shape, and has no
  measurable size or orientation. Where the beam in arcsec cannot be known (a beam given in
  pixels and no pixel size), every source with ``fwhm_major > 0`` counts.
- Position angle: only for resolved truth sources that are elongated
  (``fwhm_minor / fwhm_major <= 0.8``), since a round source has no defined angle. Angles are
  compared modulo 180 deg (179 and 1 deg differ by 2 deg); "within 10 %" is the angle difference
  relative to the true angle, "within 10 deg" the absolute difference.
- FWHM: the major axis, only for resolved truth sources.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np

from ._columns import column_values, meta_value, require_columns
from .matching import match_catalogs

__all__ = [
    "evaluate",
    "SNR_BINS",
    "ACCURACY_SNR",
    "RELATIVE_TOLERANCE",
    "ANGLE_TOLERANCE",
    "RESOLVED_BEAM_FRACTION",
    "resolved_sources",
]

#: Truth S/N bins of the completeness table, ``(low, high, label)``; a bin holds low <= S/N < high.
SNR_BINS = (
    (-np.inf, 3.0, "<3"),
    (3.0, 5.0, "3-5"),
    (5.0, 10.0, "5-10"),
    (10.0, 20.0, "10-20"),
    (20.0, np.inf, ">=20"),
)
#: Smallest truth S/N of the sources whose measurements are scored.
ACCURACY_SNR = 5.0
#: Relative tolerance of flux, position angle, FWHM and line width.
RELATIVE_TOLERANCE = 0.10
#: Absolute tolerance of the position angle (deg).
ANGLE_TOLERANCE = 10.0
#: Largest minor/major axis ratio of a truth source whose position angle is scored.
MAX_AXIS_RATIO = 0.8
#: Smallest intrinsic major axis, in beam major axes, of a truth source counted as resolved.
RESOLVED_BEAM_FRACTION = 0.5

_NAN = float("nan")


def _ratio(numerator, denominator) -> float:
    return float(numerator) / denominator if denominator else _NAN


def _median(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else _NAN


def _pair_values(truth, catalog, name, unit, ti, ci):
    """True and detected values of column ``name`` for the pairs, or None if either lacks it."""
    if catalog is None or name not in truth.colnames or name not in catalog.colnames:
        return None
    true = column_values(truth, name, unit, what="truth catalogue")[ti]
    det = column_values(catalog, name, unit, what="detected catalogue")[ci]
    return true, det


def _fraction_within(true, det, applies, tolerance):
    """Fraction of the pairs where ``applies`` whose ``|det - true| <= tolerance * |true|``."""
    applies = applies & np.isfinite(true) & (true != 0)
    n = int(applies.sum())
    with np.errstate(invalid="ignore"):
        ok = np.abs(det - true) <= tolerance * np.abs(true)
    return (float(ok[applies].mean()) if n else _NAN), n


def _completeness_by_snr(snr, found):
    rows = []
    for low, high, label in SNR_BINS:
        in_bin = (snr >= low) & (snr < high)
        n, n_found = int(in_bin.sum()), int((in_bin & found).sum())
        rows.append(
            {
                "label": label,
                "snr_min": float(low),
                "snr_max": float(high),
                "n": n,
                "found": n_found,
                "completeness": _ratio(n_found, n),
            }
        )
    return rows


def resolved_sources(true_major, beam_major):
    """Which truth sources are resolved: intrinsic major axis >= `RESOLVED_BEAM_FRACTION` beams.

    Parameters
    ----------
    true_major : array-like
        Intrinsic FWHM major axes (arcsec).
    beam_major : float or None
        Beam major axis (arcsec); None counts every source with a non-zero size.

    Returns
    -------
    resolved : `numpy.ndarray` of bool
    """
    true_major = np.asarray(true_major, dtype=float)
    if beam_major is None:
        return true_major > 0
    return (true_major > 0) & (true_major >= RESOLVED_BEAM_FRACTION * beam_major)


def _beam_major_arcsec(truth, result, beam_major=None, cell=None, **_):
    """The matching's beam in arcsec, or None where no pixel size tells it."""
    if isinstance(beam_major, u.Quantity) and beam_major.unit.is_equivalent(u.deg):
        return float(beam_major.to_value(u.arcsec))
    if cell is None and meta_value(truth.meta, "cell_arcsec") is not None:
        cell = float(meta_value(truth.meta, "cell_arcsec")) * u.arcsec
    if isinstance(cell, u.Quantity) and cell.unit.is_equivalent(u.deg):
        return float(result.beam_major * cell.to_value(u.arcsec))
    return None


def _accuracy(truth, catalog, ti, ci, beam_major_arcsec=None):
    """Measurement accuracies of the given matched pairs (all with truth S/N >= 5)."""
    out = {}
    everyone = np.ones(len(ti), dtype=bool)

    flux = _pair_values(truth, catalog, "flux", u.Jy * u.km / u.s, ti, ci)
    if flux is None:
        out["flux_within_10pct"], out["n_flux"], out["flux_relative_error_median"] = _NAN, 0, _NAN
    else:
        out["flux_within_10pct"], out["n_flux"] = _fraction_within(*flux, everyone, RELATIVE_TOLERANCE)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["flux_relative_error_median"] = _median(np.abs(flux[1] / flux[0] - 1))

    major = _pair_values(truth, catalog, "fwhm_major", u.arcsec, ti, ci)
    true_major = (
        column_values(truth, "fwhm_major", u.arcsec, what="truth catalogue")[ti]
        if "fwhm_major" in truth.colnames
        else np.full(len(ti), np.nan)
    )
    resolved = resolved_sources(true_major, beam_major_arcsec)
    if major is None:
        out["fwhm_within_10pct"], out["n_fwhm"] = _NAN, 0
    else:
        out["fwhm_within_10pct"], out["n_fwhm"] = _fraction_within(*major, resolved, RELATIVE_TOLERANCE)

    pa = _pair_values(truth, catalog, "position_angle", u.deg, ti, ci)
    if pa is None or "fwhm_minor" not in truth.colnames:
        out["position_angle_within_10pct"], out["position_angle_within_10deg"] = _NAN, _NAN
        out["n_position_angle"] = 0
    else:
        true_minor = column_values(truth, "fwhm_minor", u.arcsec, what="truth catalogue")[ti]
        with np.errstate(invalid="ignore", divide="ignore"):
            elongated = resolved & (true_minor / true_major <= MAX_AXIS_RATIO) & np.isfinite(pa[0])
        true_pa = np.mod(pa[0], 180.0)
        diff = np.abs(np.mod(pa[1], 180.0) - true_pa)
        diff = np.minimum(diff, 180.0 - diff)  # NaN stays NaN and fails both tests
        n = int(elongated.sum())
        with np.errstate(invalid="ignore"):
            pct = diff <= RELATIVE_TOLERANCE * true_pa
            deg = diff <= ANGLE_TOLERANCE
        out["position_angle_within_10pct"] = float(pct[elongated].mean()) if n else _NAN
        out["position_angle_within_10deg"] = float(deg[elongated].mean()) if n else _NAN
        out["n_position_angle"] = n

    width = _pair_values(truth, catalog, "line_width", u.km / u.s, ti, ci)
    if width is None:
        out["line_width_within_10pct"], out["n_line_width"] = _NAN, 0
    else:
        out["line_width_within_10pct"], out["n_line_width"] = _fraction_within(
            *width, everyone, RELATIVE_TOLERANCE
        )
    return out


def evaluate(truth, catalog, *, result=None, **match_kwargs) -> dict:
    """Completeness, purity, F1 and measurement accuracy of a catalogue (DESIGN section 6).

    Parameters
    ----------
    truth : `~astropy.table.QTable`
        Truth catalogue (DESIGN section 4 columns; needs ``x_centroid``, ``y_centroid``,
        ``z_centroid``, ``line_width`` and ``snr``).
    catalog : `~astropy.table.QTable` or None
        Detected catalogue (needs ``x_centroid``, ``y_centroid``, ``z_centroid``; ``flux``,
        ``fwhm_major``, ``position_angle`` and ``line_width`` are scored when present). None
        or no rows means nothing was detected.
    result : `~deepfocus.evaluation.MatchResult`, optional
        A matching already made; if None, `~deepfocus.evaluation.match_catalogs` is called.
    **match_kwargs
        ``beam_major``, ``cell``, ``channel_velocity_width`` for
        `~deepfocus.evaluation.match_catalogs`.

    Returns
    -------
    metrics : dict
        Plain Python numbers (NaN where undefined; see the module docstring):

        - ``n_truth``, ``n_detected``, ``n_matched``;
        - ``completeness``, ``purity``, ``f1``;
        - ``completeness_by_snr``: list of dicts, one per `SNR_BINS` bin, with ``label``,
          ``snr_min``, ``snr_max``, ``n``, ``found``, ``completeness``;
        - ``position_error_median_pix``: median separation of all matches (pixels);
        - ``accuracy_snr_min`` (5) and ``n_accuracy``, the matches with truth S/N >= 5, on which:
          ``line_centre_error_median_chan`` (median ``|dz|``, channels), ``flux_within_10pct``,
          ``flux_relative_error_median`` (median ``|det / true - 1|``), ``position_angle_within_10pct``,
          ``position_angle_within_10deg``, ``fwhm_within_10pct``, ``line_width_within_10pct``,
          each fraction with the number of sources it is computed over (``n_flux``,
          ``n_position_angle``, ``n_fwhm``, ``n_line_width``);
        - ``position_tolerance_pix``, ``beam_major_pix``, ``channel_velocity_width_kms``: the
          matching settings.
    """
    require_columns(truth, ("snr",), "truth catalogue")
    if result is None:
        result = match_catalogs(truth, catalog, **match_kwargs)
    n_truth, n_det, n_match = len(truth), (0 if catalog is None else len(catalog)), result.n_matched
    snr = column_values(truth, "snr", None, what="truth catalogue")
    found = np.zeros(n_truth, dtype=bool)
    found[result.truth_index] = True

    metrics = {
        "n_truth": n_truth,
        "n_detected": n_det,
        "n_matched": n_match,
        "completeness": _ratio(n_match, n_truth),
        "purity": _ratio(n_match, n_det),
        "f1": _ratio(2 * n_match, n_truth + n_det),
        "completeness_by_snr": _completeness_by_snr(snr, found),
        "position_error_median_pix": _median(result.separation),
    }
    bright = snr[result.truth_index] >= ACCURACY_SNR
    ti, ci = result.truth_index[bright], result.catalog_index[bright]
    metrics["accuracy_snr_min"] = ACCURACY_SNR
    metrics["n_accuracy"] = int(bright.sum())
    metrics["line_centre_error_median_chan"] = _median(np.abs(result.spectral_offset[bright]))
    beam_arcsec = _beam_major_arcsec(truth, result, **match_kwargs)
    metrics.update(_accuracy(truth, catalog, ti, ci, beam_arcsec))
    metrics["resolved_min_fwhm_arcsec"] = (
        _NAN if beam_arcsec is None else RESOLVED_BEAM_FRACTION * beam_arcsec
    )
    metrics["position_tolerance_pix"] = float(result.position_tolerance)
    metrics["beam_major_pix"] = float(result.beam_major)
    metrics["channel_velocity_width_kms"] = float(result.channel_velocity_width)
    return metrics
