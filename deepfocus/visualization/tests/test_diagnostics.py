"""Catalogue diagnostics: completeness and purity per S/N bin, measured vs true."""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import vstack

from deepfocus.evaluation import SNR_BINS, evaluate
from deepfocus.exceptions import InvalidInputError
from deepfocus.visualization import (
    completeness_purity,
    plot_completeness,
    plot_diagnostics,
    plot_measurements,
)

from .conftest import render


@pytest.fixture(scope="module")
def detected(example_truth):
    """The truth without its faint source (row 1), with 5 % brighter fluxes, plus one false
    detection of S/N 7 far from every source."""
    catalog = example_truth.copy()
    catalog.remove_row(1)
    catalog["flux"] *= 1.05
    false = catalog[:1].copy()
    false["x_centroid"], false["y_centroid"] = [10.0] * u.pix, [10.0] * u.pix
    false["sky_centroid"] = SkyCoord([150.0] * u.deg, [-23.0] * u.deg)
    false["snr"] = [7.0]
    catalog = vstack([catalog, false])
    catalog["id"] = np.arange(1, len(catalog) + 1)
    return catalog


def _series(ax, label):
    """The data line of the error-bar series ``label``."""
    for container in ax.containers:
        if container.get_label() == label:
            return container.lines[0]
    raise AssertionError(f"no series {label}")


def test_completeness_purity_table(example_truth, detected):
    table = completeness_purity(example_truth, detected)
    metrics = evaluate(example_truth, detected)
    assert list(table["label"]) == [b[2] for b in SNR_BINS]
    expected = [r["completeness"] for r in metrics["completeness_by_snr"]]
    assert np.allclose(table["completeness"], expected, equal_nan=True)
    row = {label: k for k, label in enumerate(table["label"])}
    # The 5-10 bin holds one real detection (S/N 9.3) and the false one (S/N 7).
    assert table["n_detected"][row["5-10"]] == 2 and table["n_true"][row["5-10"]] == 1
    assert table["purity"][row["5-10"]] == pytest.approx(0.5)
    assert table["n_detected"][row["3-5"]] == 0 and np.isnan(table["purity"][row["3-5"]])
    assert table["n_truth"][row["3-5"]] == 1 and table["completeness"][row["3-5"]] == 0
    ok = np.isfinite(table["completeness"])
    assert np.all(table["completeness_low"][ok] <= table["completeness"][ok])
    assert np.all(table["completeness"][ok] <= table["completeness_high"][ok])
    assert table.meta["purity"] == pytest.approx(4 / 5)


def test_completeness_plot_has_one_point_per_bin(example_truth, detected):
    figure = plot_completeness(example_truth, detected)
    render(figure)
    ax = figure.axes[0]
    table = completeness_purity(example_truth, detected)
    for name in ("completeness", "purity"):
        line = _series(ax, name)
        assert len(line.get_xdata()) == len(SNR_BINS)
        assert np.allclose(line.get_ydata(), table[name], equal_nan=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == [b[2] for b in SNR_BINS]


def _expected_counts(truth, detected):
    from deepfocus.evaluation import matched_table

    pairs = matched_table(truth, detected)
    major = pairs["true_fwhm_major"].to_value(u.arcsec)
    minor = pairs["true_fwhm_minor"].to_value(u.arcsec)
    return {
        "flux": len(pairs),
        "fwhm_major": int((major > 0).sum()),
        "position_angle": int(((major > 0) & (minor / np.where(major > 0, major, 1) <= 0.8)).sum()),
    }


def test_measurements(example_truth, detected):
    figure = plot_measurements(example_truth, detected)
    render(figure)
    expected = _expected_counts(example_truth, detected)
    panels = [ax for ax in figure.axes if ax.get_xlabel().startswith("true ")]
    assert len(panels) == 3
    for ax, quantity in zip(panels, ("flux", "fwhm_major", "position_angle"), strict=True):
        scatter = [c for c in ax.collections if c.get_gid() == "pairs"]
        assert len(scatter) == 1
        assert len(scatter[0].get_offsets()) == expected[quantity]
    flux = [c for c in panels[0].collections if c.get_gid() == "pairs"][0].get_offsets()
    assert np.allclose(flux[:, 1] / flux[:, 0], 1.05)  # measured = 1.05 x true
    assert panels[0].get_xlabel() == "true line flux (Jy km / s)"
    assert panels[0].get_xscale() == "log"
    assert "1.00 within 10 %" in panels[0].get_title()


def test_diagnostics_figure(example_truth, detected):
    figure = plot_diagnostics(example_truth, detected, quantities=("flux", "line_width"))
    render(figure)
    labels = [ax.get_xlabel() for ax in figure.axes]
    assert labels[0].startswith("S/N bin")
    assert "true line width (km / s)" in labels
    assert "4 matched" in figure._suptitle.get_text()


def test_nothing_detected(example_truth):
    figure = plot_diagnostics(example_truth, example_truth[:0])
    render(figure)
    line = _series(figure.axes[0], "completeness")
    values = np.asarray(line.get_ydata(), dtype=float)
    assert np.all(values[np.isfinite(values)] == 0)
    assert np.all(np.isnan(np.asarray(_series(figure.axes[0], "purity").get_ydata(), dtype=float)))
    texts = [t.get_text() for ax in figure.axes[1:] for t in ax.texts]
    assert texts.count("no matched sources to compare") == 3


def test_unmeasured_quantity(example_truth, detected):
    catalog = detected.copy()
    del catalog["flux"]
    figure = plot_measurements(example_truth, catalog, quantities=("flux", "fwhm_major"))
    render(figure)
    assert [t.get_text() for t in figure.axes[0].texts] == ["no line flux in both catalogues"]
    assert [c.get_gid() for c in figure.axes[1].collections] == ["pairs", None]  # the pairs, the band


def test_bad_input(example_truth, detected):
    with pytest.raises(InvalidInputError, match="quantities"):
        plot_measurements(example_truth, detected, quantities=("colour",))
    truth = example_truth.copy()
    del truth["snr"]
    with pytest.raises(InvalidInputError, match="snr"):
        plot_completeness(truth, detected)
