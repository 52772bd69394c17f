"""deepfocus: find and characterise sources in radio-interferometric spectral cubes."""

from .version import __version__

__all__ = [
    "__version__",
    "CubeDetector",
    "SourceCharacterizer",
    "DeepFocus",
    "Deconvolver",
    "catalog_to_regions",
]


def __getattr__(name):
    # Lazy imports keep ``import deepfocus`` (and the CLI's --help) fast: torch loads on first use.
    if name == "CubeDetector":
        from .detection import CubeDetector

        return CubeDetector
    if name == "SourceCharacterizer":
        from .characterization import SourceCharacterizer

        return SourceCharacterizer
    if name == "DeepFocus":
        from .pipeline import DeepFocus

        return DeepFocus
    if name == "Deconvolver":
        from .deconvolution.deconvolver import Deconvolver

        return Deconvolver
    if name == "catalog_to_regions":
        from .io.regions import catalog_to_regions

        return catalog_to_regions
    raise AttributeError(f"module 'deepfocus' has no attribute {name!r}")
