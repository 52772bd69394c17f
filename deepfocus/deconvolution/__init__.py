"""Deconvolution: the network `~deepfocus.Deconvolver` and the classical baseline `HogbomClean`.

Both take a cube (FITS path or `~spectral_cube.SpectralCube`) and return a
`DeconvolutionResult` with the sky estimate (and optionally residual and restored images) in
physical units and the input's WCS.
"""

from .clean import CleanResult, HogbomClean, hogbom_clean, restore
from .products import DeconvolutionResult, write_fits

__all__ = [
    "CleanResult",
    "DeconvolutionResult",
    "Deconvolver",
    "HogbomClean",
    "hogbom_clean",
    "restore",
    "write_fits",
]


def __getattr__(name):
    # Lazy: the network deconvolver imports torch.
    if name == "Deconvolver":
        from .deconvolver import Deconvolver

        return Deconvolver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
