"""Reading and writing cubes, catalogues and regions."""

from .atomic import atomic_path
from .psf import read_psf

__all__ = ["atomic_path", "read_psf"]
