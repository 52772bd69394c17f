"""`plot_detections`: one ellipse and one id per detection on RA/Dec axes."""

import numpy as np
from matplotlib.patches import Ellipse

from deepfocus.visualization import plot_detections

from .conftest import is_celestial, render


def test_one_ellipse_and_id_per_detection(example_cube, example_truth):
    figure = plot_detections(example_cube, example_truth)
    render(figure)
    ax = figure.axes[0]
    assert is_celestial(ax)
    assert sum(isinstance(p, Ellipse) for p in ax.patches) == len(example_truth)
    # Every id is shown once; ids of detections at one position share a label.
    shown = [i for t in ax.texts for i in t.get_text().split(", ")]
    assert sorted(shown) == sorted(str(i) for i in example_truth["id"])
    assert len(ax.images) == 1
    assert figure.axes[1].get_ylabel() == "Jy/beam km/s"  # the colour bar


def test_no_detections(example_cube):
    figure = plot_detections(example_cube, None)
    render(figure)
    assert not any(isinstance(p, Ellipse) for p in figure.axes[0].patches)
    assert figure.axes[0].get_title() == "0 detections"


def test_detections_at_one_position_share_a_label(example_cube, example_truth):
    # The example has two lines at one position: their ids are printed together, not one over
    # the other; the other sources keep labels of their own.
    x, y = example_truth["x_centroid"].value, example_truth["y_centroid"].value
    same = [(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if x[i] == x[j] and y[i] == y[j]]
    assert len(same) == 1
    i, j = same[0]
    figure = plot_detections(example_cube, example_truth)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert f"{example_truth['id'][i]}, {example_truth['id'][j]}" in texts
    assert len(texts) == len(example_truth) - 1


def test_no_id_is_printed_over_another(example_cube, example_truth):
    # Two sources 4 pixels apart (beyond the 3-pixel merge radius) would print their ids one
    # over the other at the example's scale: their ids share a label, whose box overlaps none.
    from itertools import combinations

    catalog = example_truth.copy()
    celestial = example_cube.wcs.celestial
    x, y = catalog["x_centroid"].value, catalog["y_centroid"].value
    catalog["sky_centroid"][1] = celestial.pixel_to_world(x[0] + 4, y[0])
    figure = plot_detections(example_cube, catalog)
    figure.canvas.draw()
    texts = figure.axes[0].texts
    shown = [i for t in texts for i in t.get_text().split(", ")]
    assert sorted(shown) == sorted(str(i) for i in catalog["id"])
    boxes = [t.get_window_extent() for t in texts]
    assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))


def test_labels_of_a_crowded_row_do_not_chain():
    # Sources 2 pixels apart along a line: each label holds those near its first member, not
    # the whole row at one end of it.
    from deepfocus.visualization.detections import _grouped_labels

    centres = np.column_stack([np.arange(10) * 2.0, np.zeros(10)])
    groups = _grouped_labels(centres, [str(i) for i in range(10)], radius=3.0)
    assert [text for _, text in groups] == ["0, 1", "2, 3", "4, 5", "6, 7", "8, 9"]
    assert [x for (x, _), _ in groups] == [0.0, 4.0, 8.0, 12.0, 16.0]
