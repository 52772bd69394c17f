"""Detecting line sources in spectral cubes."""

from .detector import CubeDetector

__all__ = ["CubeDetector"]
