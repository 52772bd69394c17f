"""deepfocus: find and characterise sources in radio-interferometric spectral cubes."""

from .version import __version__

__all__ = ["__version__"]
