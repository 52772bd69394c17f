"""Shared fixtures of the plot tests: the Agg backend, the example cube and its truth."""

from importlib import resources

import matplotlib
import pytest

matplotlib.use("Agg")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    """Close every figure a test opened."""
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


@pytest.fixture(scope="session")
def example_path():
    """The shipped example cube (96 x 96 x 40, five sources)."""
    return str(resources.files("deepfocus.data") / "example_dirty.fits")


@pytest.fixture(scope="session")
def example_cube(example_path):
    """The example cube, prepared (read once per session)."""
    from deepfocus.detection.detector import prepare

    return prepare(example_path)


@pytest.fixture(scope="session")
def example_truth():
    """The truth catalogue of the example cube (it has every catalogue column, so it stands in
    for a detected catalogue where the plots only need one)."""
    from astropy.table import QTable

    return QTable.read(resources.files("deepfocus.data") / "example_truth.ecsv")


def render(figure):
    """Draw ``figure`` to PNG with Agg; returns the bytes (checks the signature)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=50)
    data = buffer.getvalue()
    assert data[:8] == PNG_SIGNATURE
    return data


def is_celestial(ax):
    """True for a WCSAxes whose two coordinates are longitude and latitude."""
    from astropy.visualization.wcsaxes import WCSAxes

    if not isinstance(ax, WCSAxes):
        return False
    return sorted(coord.coord_type for coord in ax.coords) == ["latitude", "longitude"]
