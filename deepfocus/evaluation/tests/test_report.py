import json

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from deepfocus.evaluation import evaluate, evaluate_files, format_report
from deepfocus.exceptions import InvalidInputError

from .helpers import make_catalog

SOURCES = [
    {"x": 10, "y": 10, "snr": 2.0},
    {"x": 30, "y": 10, "snr": 4.0},
    {"x": 10, "y": 40, "snr": 7.0, "flux": 2.0},
    {"x": 30, "y": 40, "snr": 30.0},
]


@pytest.fixture
def truth_file(tmp_path):
    path = tmp_path / "truth.ecsv"
    make_catalog(SOURCES).write(path)
    return path


def test_evaluate_files_round_trip(tmp_path, truth_file):
    detected = make_catalog(SOURCES[1:])
    detected["flux"][1] = 2.1 * u.Jy * u.km / u.s
    cat_path = tmp_path / "cat.ecsv"
    detected.write(cat_path)
    json_path = tmp_path / "out" / "metrics.json"
    m = evaluate_files(truth_file, cat_path, json_path=json_path)
    assert m["n_matched"] == 3 and m["completeness"] == 0.75 and m["purity"] == 1.0
    assert m["truth_file"] == str(truth_file) and m["catalog_file"] == str(cat_path)
    assert m["flux_within_10pct"] == 1.0
    on_disk = json.loads(json_path.read_text())
    assert on_disk["completeness"] == 0.75
    assert on_disk["completeness_by_snr"][0]["snr_min"] is None  # -inf written as null
    assert on_disk["completeness_by_snr"][1] == {
        "label": "3-5",
        "snr_min": 3.0,
        "snr_max": 5.0,
        "n": 1,
        "found": 1,
        "completeness": 1.0,
    }
    assert [p.name for p in json_path.parent.iterdir()] == ["metrics.json"]  # no temporary left
    assert format_report(on_disk) == format_report(m)


@pytest.mark.filterwarnings("ignore:Keyword name:astropy.io.fits.verify.VerifyWarning")
def test_fits_and_votable_catalogues(tmp_path, truth_file):
    detected = make_catalog(SOURCES)
    fits_path = tmp_path / "cat.fits"
    detected.write(fits_path)
    votable = detected.copy()
    votable["ra"] = votable["sky_centroid"].ra.to(u.deg)
    votable["dec"] = votable["sky_centroid"].dec.to(u.deg)
    del votable["sky_centroid"]
    vot_path = tmp_path / "cat.xml"
    votable.write(vot_path, format="votable")
    for path in (fits_path, vot_path):
        m = evaluate_files(truth_file, path)
        assert m["completeness"] == 1.0 and m["purity"] == 1.0 and m["flux_within_10pct"] == 1.0


def test_empty_catalogue_file_is_zero_detections(tmp_path, truth_file):
    cat_path = tmp_path / "empty.ecsv"
    make_catalog(SOURCES)[:0].write(cat_path)
    json_path = tmp_path / "m.json"
    m = evaluate_files(truth_file, cat_path, json_path=json_path)
    assert m["n_detected"] == 0 and m["completeness"] == 0.0 and m["f1"] == 0.0
    assert np.isnan(m["purity"])
    assert json.loads(json_path.read_text())["purity"] is None
    text = format_report(m)
    assert "n/a" in text


def test_bad_files(tmp_path, truth_file):
    with pytest.raises(InvalidInputError, match="missing.ecsv: no such file"):
        evaluate_files(truth_file, tmp_path / "missing.ecsv")
    garbage = tmp_path / "garbage.ecsv"
    garbage.write_text("this is not a table\n\x00\x01")
    with pytest.raises(InvalidInputError, match="cannot read detected catalogue .*garbage.ecsv"):
        evaluate_files(truth_file, garbage)
    no_z = tmp_path / "no_z.ecsv"
    QTable({"x_centroid": [1.0] * u.pix, "y_centroid": [1.0] * u.pix}).write(no_z)
    with pytest.raises(InvalidInputError, match="no_z.ecsv lacks required column.*z_centroid"):
        evaluate_files(truth_file, no_z)
    bad_truth = tmp_path / "bad_truth.ecsv"
    truth = make_catalog(SOURCES)
    del truth["snr"], truth["line_width"]
    truth.write(bad_truth)
    with pytest.raises(InvalidInputError, match="bad_truth.ecsv lacks required column.*snr, line_width"):
        evaluate_files(bad_truth, truth_file)
    json_path = tmp_path / "never.json"
    with pytest.raises(InvalidInputError):
        evaluate_files(truth_file, garbage, json_path=json_path)
    assert not json_path.exists()


def test_format_report():
    truth = make_catalog(SOURCES)
    text = format_report(evaluate(truth, truth[1:]))
    for fragment in (
        "completeness",
        "purity",
        "F1",
        "3-5",
        ">=20",
        "flux within 10 %",
        "position angle within 10 deg",
    ):
        assert fragment in text
    row = next(line for line in text.splitlines() if line.strip().startswith("<3"))
    assert row.split() == ["<3", "1", "0", "0.000"]


def test_format_report_gives_units_only_beside_numbers():
    truth = make_catalog(SOURCES)
    lines = {
        line.strip().split("  ")[0]: line.split()
        for line in format_report(evaluate(truth, truth)).splitlines()
    }
    assert lines["median |flux error|"][-1] == "%" and lines["median line-centre error"][-1] == "channels"
    lines = {
        line.strip().split("  ")[0]: line.split()
        for line in format_report(evaluate(truth, None)).splitlines()
    }
    assert lines["median |flux error|"][-1] == "n/a" and lines["median line-centre error"][-1] == "n/a"


def test_simulated_truth_against_itself(tmp_path):
    from deepfocus.simulation import Observation, simulate

    sim = simulate(Observation(npix=64, n_channels=16, tsys=60 * u.K, total_time=600 * u.s), seed=3)
    path = tmp_path / "sim_truth.ecsv"
    sim.truth.write(path)
    m = evaluate_files(path, path)
    assert m["n_truth"] == len(sim.truth) > 0
    assert m["completeness"] == m["purity"] == m["f1"] == 1.0
    assert m["beam_major_pix"] == pytest.approx(
        sim.truth.meta["beam_major_arcsec"] / sim.truth.meta["cell_arcsec"]
    )
