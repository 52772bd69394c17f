"""Settings shared by the whole test session: the tests and the documentation examples
(docstrings and ``docs/*.rst``, run by pytest-doctestplus)."""

import matplotlib
import pytest

matplotlib.use("Agg")  # no display: figures are drawn off-screen


def pytest_configure(config):
    from astropy import conf

    # astropy shortens printed tables to the terminal's size (COLUMNS/LINES, or the real
    # terminal under ``pytest -s``): the examples' printed tables must not depend on it.
    conf.max_width = 120
    conf.max_lines = 200


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the pyplot figures a test or an example leaves open."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
