"""Per-source panels: the line-integrated cutout and the spectrum."""

import astropy.units as u
import numpy as np
import pytest
import torch
from matplotlib.patches import Ellipse

from deepfocus.exceptions import DeepFocusWarning, InvalidInputError
from deepfocus.visualization import plot_source, plot_source_cutout, plot_source_spectrum, source_spectrum

from .conftest import is_celestial, render

#: The brightest source of the example cube (truth S/N 31, channels 21-35).
BRIGHT = 1


class _Echo(torch.nn.Module):
    """A stand-in spectral network: probability 1 where S/N > 3, the input halved as 'denoised'."""

    def forward(self, x):
        return torch.cat([(x - 3.0) * 10.0, 0.5 * x], dim=1)


def _window_span(ax):
    spans = [p for p in ax.patches if p.get_label() == "line window"]
    assert len(spans) == 1
    x0, _, width, _ = spans[0].get_bbox().bounds
    return x0, x0 + width


def test_spectrum_table(example_cube, example_truth):
    spectrum = source_spectrum(example_cube, example_truth, BRIGHT, model=_Echo())
    row = example_truth[0]
    assert len(spectrum) == example_cube.n_channels
    assert np.all(np.diff(spectrum["frequency"].to_value(u.GHz)) > 0)
    window = spectrum["channel"][spectrum["in_window"]]
    assert sorted(window) == list(range(row["z_min"], row["z_max"] + 1))
    # The line is in its window: the brightest channel lies there, well above the noise.
    peak = int(np.argmax(spectrum["snr"]))
    assert spectrum["in_window"][peak] and spectrum["snr"][peak] > 10
    assert spectrum["flux"].unit == u.Jy / u.beam
    assert np.allclose(spectrum["denoised"].value, 0.5 * spectrum["flux"].value, atol=1e-6)
    assert np.array_equal(spectrum["line_probability"] > 0.5, spectrum["snr"] > 3)


def test_spectrum_panel_with_network(example_cube, example_truth):
    figure = plot_source_spectrum(example_cube, example_truth, BRIGHT, model="default")
    render(figure)
    ax = figure.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "spectrum" in labels and "denoised (spectral network)" in labels
    spectrum = source_spectrum(example_cube, example_truth, BRIGHT, model=None)
    f = spectrum["frequency"].to_value(u.GHz)[spectrum["in_window"]]
    low, high = _window_span(ax)
    step = abs(f[1] - f[0])
    assert low == pytest.approx(f.min() - step / 2, rel=1e-9)
    assert high == pytest.approx(f.max() + step / 2, rel=1e-9)
    assert ax.get_xlabel() == "frequency (GHz)" and "mJy/beam" in ax.get_ylabel()


def test_spectrum_panel_without_network(example_cube, example_truth, tmp_path):
    figure = plot_source_spectrum(example_cube, example_truth, BRIGHT, model=None)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert "spectrum" in labels and "denoised (spectral network)" not in labels
    _window_span(figure.axes[0])
    with pytest.warns(DeepFocusWarning, match="without the denoised spectrum"):
        figure = plot_source_spectrum(example_cube, example_truth, BRIGHT, model=tmp_path / "nothing")
    render(figure)
    assert "denoised (spectral network)" not in [line.get_label() for line in figure.axes[0].get_lines()]


def test_descending_cube(example_path, example_cube, example_truth, tmp_path):
    """A cube with a descending frequency axis: the window covers its input channels z_min..z_max,
    i.e. the same frequencies as the same line in the ascending cube."""
    from deepfocus.detection.tests.helpers import casa_style

    flipped = casa_style(example_path, tmp_path / "casa.fits", nan_fraction=0.0)
    n = example_cube.n_channels
    catalog = example_truth.copy()  # the same sources counted in the reversed channels
    catalog["z_min"], catalog["z_max"] = n - 1 - example_truth["z_max"], n - 1 - example_truth["z_min"]
    spectrum = source_spectrum(flipped, catalog, BRIGHT, model=None)
    row = catalog[0]
    assert sorted(spectrum["channel"][spectrum["in_window"]]) == list(range(row["z_min"], row["z_max"] + 1))
    assert spectrum["channel"][0] == n - 1  # frequency ascending = input channels reversed
    assert spectrum["in_window"][int(np.argmax(spectrum["snr"]))]
    ascending = source_spectrum(example_cube, example_truth, BRIGHT, model=None)
    assert np.allclose(
        spectrum["frequency"][spectrum["in_window"]].value,
        ascending["frequency"][ascending["in_window"]].value,
    )


def test_cutout(example_cube, example_truth):
    figure = plot_source_cutout(example_cube, example_truth, BRIGHT)
    render(figure)
    ax = figure.axes[0]
    assert is_celestial(ax)
    sources = [p for p in ax.patches if isinstance(p, Ellipse) and p.get_gid() == "source"]
    assert len(sources) == 1
    # The ellipse is centred on the source (the + marker) in the cutout's pixels.
    marker = [line for line in ax.get_lines() if line.get_marker() == "+"]
    assert len(marker) == 1
    assert sources[0].center == pytest.approx((marker[0].get_xdata()[0], marker[0].get_ydata()[0]), abs=0.05)
    image = ax.images[0].get_array()
    # Default size: 8 beams of ~5 pixels, and the source is the brightest thing in it.
    assert 35 <= image.shape[0] <= 45
    cy, cx = np.unravel_index(np.nanargmax(image), image.shape)
    assert abs(cx - marker[0].get_xdata()[0]) <= 2 and abs(cy - marker[0].get_ydata()[0]) <= 2
    assert figure.axes[1].get_ylabel() == "Jy/beam km/s"


def test_cutout_without_size_columns(example_cube, example_truth):
    catalog = example_truth["id", "x_centroid", "y_centroid", "z_min", "z_max"]
    figure = plot_source_cutout(example_cube, catalog, BRIGHT, size=3 * u.arcsec)
    ax = figure.axes[0]
    assert not [p for p in ax.patches if p.get_gid() == "source"]
    assert ax.images[0].get_array().shape[0] == int(np.ceil(3 / example_cube.cell.to_value(u.arcsec)))


def test_plot_source(example_cube, example_truth):
    figure = plot_source(example_cube, example_truth, 3, model=_Echo())
    render(figure)
    sky = [ax for ax in figure.axes if is_celestial(ax)]
    assert len(sky) == 1
    spectra = [ax for ax in figure.axes if ax.get_xlabel() == "frequency (GHz)"]
    assert len(spectra) == 1
    assert len([line for line in spectra[0].get_lines() if not line.get_label().startswith("_")]) == 2
    assert figure._suptitle.get_text().startswith("source 3 at 230.")


@pytest.mark.parametrize(
    ("source", "catalog_change", "message"),
    [
        (99, None, "no source with id 99"),
        (1, "empty", "no sources to plot"),
        (1, "no z", "lacks column"),
    ],
)
def test_bad_input(example_cube, example_truth, source, catalog_change, message):
    catalog = example_truth
    if catalog_change == "empty":
        catalog = example_truth[:0]
    elif catalog_change == "no z":
        catalog = example_truth.copy()
        del catalog["z_min"]
    with pytest.raises(InvalidInputError, match=message):
        plot_source(example_cube, catalog, source, model=None)
