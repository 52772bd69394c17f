"""Fixtures shared by the detection, characterisation and ``deepfocus detect`` tests.

Bright simulated cubes, their CASA-style version and tiny trained weights; a conftest (or test
module) makes them available with ``from deepfocus.detection.tests.fixtures import *``.
"""

import pytest
import torch

from . import helpers

__all__ = ["single_thread", "bright_sim", "bright_files", "casa_file", "classical_catalog", "tiny_weights"]


@pytest.fixture(autouse=True, scope="package")
def single_thread():
    """One torch thread: the machine is shared and the networks here are tiny."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bright_sim():
    """A simulated 96 x 96 x 48 cube with the five bright, isolated `helpers.BRIGHT_SOURCES`."""
    return helpers.simulation()


@pytest.fixture(scope="session")
def bright_files(bright_sim, tmp_path_factory):
    """``c_dirty.fits``, ``c_sky.fits``, ``c_truth.ecsv`` of `bright_sim` (do not modify them)."""
    return helpers.write_simulation(bright_sim, tmp_path_factory.mktemp("bright"))


@pytest.fixture(scope="session")
def casa_file(bright_files, tmp_path_factory):
    """`bright_files`' dirty cube as CASA writes it: Stokes axis, BEAMS, NaN border, descending."""
    return helpers.casa_style(bright_files["dirty"], tmp_path_factory.mktemp("casa") / "casa.fits")


@pytest.fixture(scope="session")
def classical_catalog(bright_files):
    """``DeepFocus(model=None)`` on the bright cube."""
    from deepfocus import DeepFocus

    return DeepFocus(model=None)(bright_files["dirty"])


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A folder of tiny-trained ``<task>-default`` weights (trained once per session)."""
    return helpers.tiny_weights(tmp_path_factory)
