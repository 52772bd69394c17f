import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable, Table

from deepfocus.evaluation import MatchResult, match_catalogs, matched_table
from deepfocus.exceptions import InvalidInputError

from .helpers import make_catalog


def _det(*xyz):
    """A detected catalogue with only positions: ``_det((x, y, z), ...)``."""
    x, y, z = np.array(xyz, dtype=float).reshape(-1, 3).T
    return QTable({"x_centroid": x * u.pix, "y_centroid": y * u.pix, "z_centroid": z})


def test_truth_matches_itself():
    truth = make_catalog([{"x": 10, "y": 10}, {"x": 40, "y": 12}, {"x": 25, "y": 50, "z": 3}])
    result = match_catalogs(truth, truth)
    assert isinstance(result, MatchResult)
    np.testing.assert_array_equal(result.truth_index, [0, 1, 2])
    np.testing.assert_array_equal(result.catalog_index, [0, 1, 2])
    assert len(result.unmatched_truth) == len(result.unmatched_catalog) == 0
    np.testing.assert_allclose(result.separation, 0)
    assert result.n_matched == result.n_truth == result.n_catalog == 3
    # beam 0.5" / 0.1" cell = 5 pixels -> 2.5 pixels; 30 km/s lines / 10 km/s channels = 3 channels
    assert result.beam_major == pytest.approx(5.0)
    assert result.position_tolerance == pytest.approx(2.5)
    np.testing.assert_allclose(result.spectral_tolerance, 3.0)


def test_tolerances_from_arguments_and_minimums():
    truth = make_catalog([{"x": 10, "y": 10, "line_width": 5.0}], meta={})
    with pytest.raises(InvalidInputError, match="beam_major"):
        match_catalogs(truth, truth, channel_velocity_width=10 * u.km / u.s)
    with pytest.raises(InvalidInputError, match="cell"):
        match_catalogs(truth, truth, beam_major=1 * u.arcsec, channel_velocity_width=10 * u.km / u.s)
    with pytest.raises(InvalidInputError, match="channel_velocity_width"):
        match_catalogs(truth, truth, beam_major=8 * u.pix)
    result = match_catalogs(
        truth, truth, beam_major=1 * u.arcsec, cell=0.1 * u.arcsec, channel_velocity_width=10 * u.km / u.s
    )
    assert result.position_tolerance == pytest.approx(5.0)
    # 0.5-channel line: the 2-channel floor applies
    np.testing.assert_allclose(result.spectral_tolerance, 2.0)
    # a beam of 2 pixels: the 2-pixel floor applies
    small = match_catalogs(truth, truth, beam_major=2 * u.pix, channel_velocity_width=10 * u.km / u.s)
    assert small.position_tolerance == pytest.approx(2.0)


def test_shift_beyond_tolerance_is_unmatched_on_both_sides():
    truth = make_catalog([{"x": 10, "y": 10}, {"x": 40, "y": 40}])
    detected = _det((10, 10, 10), (40 + 2.6, 40, 10))  # second one 2.6 pix > 2.5 pix away
    result = match_catalogs(truth, detected)
    np.testing.assert_array_equal(result.truth_index, [0])
    np.testing.assert_array_equal(result.unmatched_truth, [1])
    np.testing.assert_array_equal(result.unmatched_catalog, [1])

    within = match_catalogs(truth, _det((10, 10, 10), (40 + 2.4, 40, 10)))
    assert within.n_matched == 2
    # line centre 3.5 channels off (tolerance 3)
    spectral = match_catalogs(truth, _det((10, 10, 13.5), (40, 40, 7.1)))
    np.testing.assert_array_equal(spectral.truth_index, [1])
    np.testing.assert_array_equal(spectral.unmatched_catalog, [0])


def test_one_to_one_closest_detection_wins():
    truth = make_catalog([{"x": 20, "y": 20}])
    detected = _det((21.0, 20, 10), (20.3, 20, 10.2))
    result = match_catalogs(truth, detected)
    np.testing.assert_array_equal(result.catalog_index, [1])
    np.testing.assert_array_equal(result.unmatched_catalog, [0])
    np.testing.assert_allclose(result.separation, [0.3])
    np.testing.assert_allclose(result.spectral_offset, [0.2])


def test_hungarian_beats_greedy():
    # Greedy nearest pairs T0-D0 (1.4 pix) first; T1 then has no partner and D1 is left over.
    # The optimal assignment T0-D1, T1-D0 matches both.
    truth = make_catalog([{"x": 10, "y": 10}, {"x": 13, "y": 10}])
    detected = _det((11.4, 10, 10), (8.1, 10, 10))
    result = match_catalogs(truth, detected, beam_major=4 * u.pix)  # 2-pixel tolerance
    np.testing.assert_array_equal(result.truth_index, [0, 1])
    np.testing.assert_array_equal(result.catalog_index, [1, 0])
    assert len(result.unmatched_truth) == len(result.unmatched_catalog) == 0


def test_two_lines_at_one_position():
    truth = make_catalog([{"x": 30, "y": 30, "z": 5}, {"x": 30, "y": 30, "z": 20}])
    detected = _det((30.2, 30, 19.5), (30, 30.1, 5.5))
    result = match_catalogs(truth, detected)
    np.testing.assert_array_equal(result.truth_index, [0, 1])
    np.testing.assert_array_equal(result.catalog_index, [1, 0])
    np.testing.assert_allclose(result.spectral_offset, [0.5, -0.5])


@pytest.mark.parametrize("catalog", [None, "empty"])
def test_empty_catalogue(catalog):
    truth = make_catalog([{"x": 10, "y": 10}, {"x": 40, "y": 40}])
    if catalog == "empty":
        catalog = QTable()  # no rows and no columns: nothing detected
    result = match_catalogs(truth, catalog)
    assert result.n_matched == 0 and result.n_catalog == 0
    np.testing.assert_array_equal(result.unmatched_truth, [0, 1])


def test_empty_truth():
    truth = make_catalog([])
    result = match_catalogs(truth, _det((10, 10, 10)))
    assert result.n_matched == 0 and result.n_truth == 0
    np.testing.assert_array_equal(result.unmatched_catalog, [0])


def test_missing_columns_and_nan_positions():
    truth = make_catalog([{"x": 10, "y": 10}, {"x": 40, "y": 40}])
    with pytest.raises(InvalidInputError, match="z_centroid"):
        match_catalogs(truth, QTable({"x_centroid": [1.0], "y_centroid": [1.0]}))
    truth_no_width = truth.copy()
    del truth_no_width["line_width"]
    with pytest.raises(InvalidInputError, match="line_width"):
        match_catalogs(truth_no_width, truth)
    # a detection without a position is never matched; plain Table without units works
    detected = Table({"x_centroid": [np.nan, 40.0], "y_centroid": [10.0, 40.0], "z_centroid": [10.0, 10.0]})
    result = match_catalogs(truth, detected)
    np.testing.assert_array_equal(result.truth_index, [1])
    np.testing.assert_array_equal(result.unmatched_catalog, [0])


def test_wrong_unit_is_reported():
    truth = make_catalog([{"x": 10, "y": 10}])
    detected = _det((10, 10, 10))
    detected["x_centroid"] = [10.0] * u.arcsec
    with pytest.raises(InvalidInputError, match="x_centroid.*arcsec"):
        match_catalogs(truth, detected)


def test_matched_table():
    truth = make_catalog([{"x": 10, "y": 10, "flux": 2.0}, {"x": 40, "y": 40}])
    detected = make_catalog([{"x": 40.5, "y": 40, "flux": 1.1}])
    table = matched_table(truth, detected)
    assert len(table) == 1
    assert table["truth_index"][0] == 1 and table["catalog_index"][0] == 0
    assert table["true_flux"].unit == u.Jy * u.km / u.s
    assert table["det_flux"][0] == 1.1 * u.Jy * u.km / u.s
    assert table["separation"][0] == 0.5 * u.pix
    assert "true_sky_centroid" in table.colnames and "det_sky_centroid" in table.colnames
    assert len(matched_table(truth, None)) == 0
