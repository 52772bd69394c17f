"""`plot_detections`: one ellipse and one id per detection on RA/Dec axes."""

from matplotlib.patches import Ellipse

from deepfocus.visualization import plot_detections

from .conftest import is_celestial, render


def test_one_ellipse_and_id_per_detection(example_cube, example_truth):
    figure = plot_detections(example_cube, example_truth)
    render(figure)
    ax = figure.axes[0]
    assert is_celestial(ax)
    assert sum(isinstance(p, Ellipse) for p in ax.patches) == len(example_truth)
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(i) for i in example_truth["id"])
    assert len(ax.images) == 1
    assert figure.axes[1].get_ylabel() == "Jy/beam km/s"  # the colour bar


def test_no_detections(example_cube):
    figure = plot_detections(example_cube, None)
    render(figure)
    assert not any(isinstance(p, Ellipse) for p in figure.axes[0].patches)
    assert figure.axes[0].get_title() == "0 detections"
