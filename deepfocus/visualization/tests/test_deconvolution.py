"""`plot_deconvolution`: dirty | deconvolved | residual (| true sky)."""

import astropy.units as u
import numpy as np
import pytest

from deepfocus.exceptions import InvalidInputError
from deepfocus.visualization import plot_deconvolution

from .conftest import is_celestial, render


@pytest.fixture(scope="module")
def moment0(example_cube):
    """The example cube's moment-0 (Jy/beam km/s) as a `~spectral_cube.Projection` (own WCS and unit)."""
    cube = example_cube.spectral_cube().with_spectral_unit(
        u.km / u.s, velocity_convention="radio", rest_value=example_cube.rest_frequency
    )
    return cube.moment0()


def _image_axes(figure):
    return [ax for ax in figure.axes if ax.images]


def test_projections(moment0):
    sky = moment0 * 0.2  # stands in for a deconvolved image (a Projection too)
    residual = moment0 - sky
    figure = plot_deconvolution(moment0, sky, residual)
    render(figure)
    panels = _image_axes(figure)
    assert [ax.get_title() for ax in panels] == ["dirty", "deconvolved", "residual"]
    assert all(is_celestial(ax) for ax in panels)
    assert np.allclose(panels[1].images[0].get_array(), sky.value, equal_nan=True)
    colour_bars = [ax.get_ylabel() for ax in figure.axes if not ax.images]
    assert moment0.unit == u.Jy / u.beam * u.km / u.s
    assert colour_bars == ["Jy/beam km/s"] * 3
    # The residual is drawn on a symmetric scale.
    norm = panels[2].images[0].norm
    assert norm.vmin == pytest.approx(-norm.vmax)


def test_arrays_with_wcs_and_truth(moment0, example_cube):
    dirty = np.asarray(moment0.value)
    model = u.Quantity(dirty * 0.1, u.Jy / u.pix)
    figure = plot_deconvolution(dirty, model, truth=model * 1.1, wcs=example_cube.wcs)
    render(figure)
    panels = _image_axes(figure)
    assert [ax.get_title() for ax in panels] == ["dirty", "deconvolved", "true sky"]
    assert all(is_celestial(ax) for ax in panels)
    # The true sky shares the deconvolved image's colour scale.
    assert panels[2].images[0].norm is panels[1].images[0].norm
    assert [ax.get_ylabel() for ax in figure.axes if not ax.images] == ["image units", "Jy/pixel", "Jy/pixel"]


def test_plain_arrays_are_in_pixels():
    rng = np.random.default_rng(1)
    dirty = rng.normal(size=(20, 30))
    figure = plot_deconvolution(dirty, dirty * 0.5, dirty * 0.5, titles=["a", "b", "c"])
    render(figure)
    panels = _image_axes(figure)
    assert [ax.get_title() for ax in panels] == ["a", "b", "c"]
    assert not any(is_celestial(ax) for ax in panels)
    assert panels[0].get_xlabel() == "x (pix)"


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ((np.zeros((4, 5)), np.zeros((4, 6))), "shape"),
        ((np.zeros((2, 4, 5)), np.zeros((2, 4, 5))), "2-D"),
        ((np.zeros((4, 5)), "abc"), "2-D image"),
    ],
)
def test_bad_input(images, message):
    with pytest.raises(InvalidInputError, match=message):
        plot_deconvolution(*images)


def test_bad_titles():
    with pytest.raises(InvalidInputError, match="titles"):
        plot_deconvolution(np.zeros((4, 5)), np.zeros((4, 5)), titles=["only one"])
