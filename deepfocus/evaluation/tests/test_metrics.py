import math

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from deepfocus.evaluation import SNR_BINS, evaluate, match_catalogs

from .helpers import make_catalog

SOURCES = [
    {"x": 10, "y": 10, "snr": 2.0},
    {"x": 30, "y": 10, "snr": 4.0},
    {"x": 50, "y": 10, "snr": 4.5},
    {"x": 10, "y": 40, "snr": 7.0},
    {"x": 30, "y": 40, "snr": 15.0},
    {"x": 50, "y": 40, "snr": 30.0},
]


def test_perfect_catalogue():
    truth = make_catalog(SOURCES)
    m = evaluate(truth, truth)
    assert (m["n_truth"], m["n_detected"], m["n_matched"]) == (6, 6, 6)
    assert m["completeness"] == m["purity"] == m["f1"] == 1.0
    assert m["position_error_median_pix"] == 0.0
    assert m["line_centre_error_median_chan"] == 0.0
    assert m["n_accuracy"] == 3
    for key in (
        "flux_within_10pct",
        "position_angle_within_10pct",
        "position_angle_within_10deg",
        "fwhm_within_10pct",
        "line_width_within_10pct",
    ):
        assert m[key] == 1.0, key
    assert m["flux_relative_error_median"] == 0.0
    assert m["position_tolerance_pix"] == pytest.approx(2.5)
    assert [row["completeness"] for row in m["completeness_by_snr"]] == [1.0] * 5


def test_completeness_per_snr_bin_and_purity():
    truth = make_catalog(SOURCES)
    # find sources 1, 2 and 4 (S/N 4, 4.5, 15) and add two false detections
    detected = make_catalog([SOURCES[1], SOURCES[2], SOURCES[4], {"x": 60, "y": 60}, {"x": 5, "y": 60}])
    m = evaluate(truth, detected)
    assert [row["label"] for row in m["completeness_by_snr"]] == [b[2] for b in SNR_BINS]
    counts = [(row["n"], row["found"]) for row in m["completeness_by_snr"]]
    assert counts == [(1, 0), (2, 2), (1, 0), (1, 1), (1, 0)]
    assert m["completeness_by_snr"][0]["completeness"] == 0.0
    assert m["completeness_by_snr"][1]["completeness"] == 1.0
    assert m["completeness"] == pytest.approx(0.5)
    assert m["purity"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    assert m["n_accuracy"] == 1  # only the S/N 15 source is scored


def test_empty_bin_is_nan():
    truth = make_catalog([{"x": 10, "y": 10, "snr": 7.0}])
    m = evaluate(truth, truth)
    by_label = {row["label"]: row for row in m["completeness_by_snr"]}
    assert by_label["5-10"]["completeness"] == 1.0
    assert by_label["<3"]["n"] == 0 and math.isnan(by_label["<3"]["completeness"])


def test_measurement_accuracy():
    truth = make_catalog(
        [
            {"x": 10, "y": 10, "flux": 1.0, "position_angle": 1.0, "fwhm_major": 1.0, "line_width": 40},
            {"x": 30, "y": 10, "flux": 2.0, "position_angle": 90.0, "fwhm_major": 1.0, "line_width": 40},
            # round: position angle not scored; resolved: FWHM scored
            {"x": 50, "y": 10, "flux": 1.0, "fwhm_major": 1.0, "fwhm_minor": 0.9},
            # unresolved: neither position angle nor FWHM scored
            {"x": 10, "y": 40, "flux": 1.0, "fwhm_major": 0.0, "fwhm_minor": 0.0},
            # faint: not scored at all, although matched
            {"x": 30, "y": 40, "flux": 1.0, "snr": 4.0},
        ]
    )
    detected = make_catalog(
        [
            # 179 vs 1 deg: 2 deg apart (within 10 deg, not within 10 % of 1 deg)
            {"x": 10, "y": 10, "flux": 1.05, "position_angle": 179.0, "fwhm_major": 1.05, "line_width": 43},
            {"x": 30, "y": 10, "flux": 2.5, "position_angle": 95.0, "fwhm_major": 1.3, "line_width": 50},
            {"x": 50, "y": 10, "flux": 0.95, "position_angle": 120.0, "fwhm_major": 0.95, "fwhm_minor": 0.9},
            {"x": 10, "y": 40, "flux": 1.0, "fwhm_major": 0.3},
            {"x": 30, "y": 40, "flux": 100.0, "snr": 4.0},
        ]
    )
    m = evaluate(truth, detected)
    assert m["n_matched"] == 5 and m["n_accuracy"] == 4
    assert m["n_flux"] == 4 and m["flux_within_10pct"] == pytest.approx(3 / 4)
    assert m["flux_relative_error_median"] == pytest.approx(0.05)
    assert m["n_position_angle"] == 2
    assert m["position_angle_within_10deg"] == pytest.approx(1.0)
    assert m["position_angle_within_10pct"] == pytest.approx(0.5)
    assert m["n_fwhm"] == 3 and m["fwhm_within_10pct"] == pytest.approx(2 / 3)
    assert m["n_line_width"] == 4 and m["line_width_within_10pct"] == pytest.approx(3 / 4)


def test_missing_optional_columns_give_nan():
    truth = make_catalog(SOURCES)
    detected = QTable(
        {
            "x_centroid": truth["x_centroid"] + 0.3 * u.pix,
            "y_centroid": truth["y_centroid"],
            "z_centroid": truth["z_centroid"] + 0.5,
        }
    )
    m = evaluate(truth, detected)
    assert m["completeness"] == 1.0
    assert m["position_error_median_pix"] == pytest.approx(0.3)
    assert m["line_centre_error_median_chan"] == pytest.approx(0.5)
    for key in (
        "flux_within_10pct",
        "position_angle_within_10deg",
        "fwhm_within_10pct",
        "line_width_within_10pct",
    ):
        assert math.isnan(m[key]), key
    assert m["n_flux"] == m["n_position_angle"] == m["n_fwhm"] == m["n_line_width"] == 0


def test_missing_detected_value_counts_as_wrong():
    truth = make_catalog(SOURCES[3:])
    detected = make_catalog(SOURCES[3:])
    detected["flux"][0] = np.nan * u.Jy * u.km / u.s
    m = evaluate(truth, detected)
    assert m["n_flux"] == 3 and m["flux_within_10pct"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("catalog", [None, "empty"])
def test_empty_catalogue(catalog):
    truth = make_catalog(SOURCES)
    if catalog == "empty":
        catalog = truth[:0]
    m = evaluate(truth, catalog)
    assert m["n_detected"] == 0 and m["n_matched"] == 0
    assert m["completeness"] == 0.0
    assert math.isnan(m["purity"])
    assert m["f1"] == 0.0
    assert math.isnan(m["position_error_median_pix"]) and math.isnan(m["flux_within_10pct"])
    assert [row["found"] for row in m["completeness_by_snr"]] == [0] * 5


def test_precomputed_match_is_reused():
    truth = make_catalog(SOURCES)
    result = match_catalogs(truth, truth[:2])
    assert evaluate(truth, truth[:2], result=result)["n_matched"] == 2


def test_sources_smaller_than_half_the_beam_are_not_resolved():
    # Beam 0.5 arcsec: 0.2 arcsec is below half of it (no measurable size or angle), 0.3 above.
    rows = [
        {"x": 10, "y": 10, "fwhm_major": 0.2, "fwhm_minor": 0.05, "position_angle": 40.0},
        {"x": 30, "y": 10, "fwhm_major": 0.3, "fwhm_minor": 0.1, "position_angle": 40.0},
    ]
    truth = make_catalog(rows)
    detected = make_catalog([{**r, "position_angle": 80.0, "fwhm_major": 0.5} for r in rows])
    m = evaluate(truth, detected)
    assert m["resolved_min_fwhm_arcsec"] == pytest.approx(0.25)
    assert m["n_position_angle"] == m["n_fwhm"] == 1
    assert m["position_angle_within_10deg"] == 0.0 and m["fwhm_within_10pct"] == 0.0
    # A beam in pixels with no pixel size anywhere: every source with a size counts.
    bare = make_catalog(rows, meta={"channel_velocity_width_kms": 10.0})
    m = evaluate(
        bare, make_catalog([{**r, "position_angle": 80.0} for r in rows], meta=None), beam_major=5 * u.pix
    )
    assert m["n_position_angle"] == 2 and math.isnan(m["resolved_min_fwhm_arcsec"])
