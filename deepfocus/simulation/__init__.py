"""Simulated ALMA observations: sky models, antenna configurations, the interferometer and noise.

The fast engine (`Interferometer`) reproduces CASA ``simobserve`` + ``tclean`` (``niter=0``)
dirty cubes: the same uv tracks, imaging weights, gridding and PSF, and radiometer noise imaged
with the same weights. The optional CASA engine (`deepfocus.simulation.casa_engine`) runs the
real thing where ``casatools`` is installed.
"""

from .antennas import ALMA_SITE, AntennaConfiguration, available_configurations
from .beam import fit_beam
from .catalog import random_catalog
from .dataset import SimulatedCubeDataset
from .interferometer import Interferometer
from .noise import NoiseModel
from .observation import Observation
from .simulate import SimulatedObservation, simulate
from .skymodel import SkyModel
from .uvcoverage import UVCoverage, casa_track_geometry, uv_tracks

__all__ = [
    "ALMA_SITE",
    "AntennaConfiguration",
    "available_configurations",
    "casa_track_geometry",
    "fit_beam",
    "Interferometer",
    "NoiseModel",
    "Observation",
    "random_catalog",
    "SimulatedCubeDataset",
    "SimulatedObservation",
    "simulate",
    "SkyModel",
    "UVCoverage",
    "uv_tracks",
]
