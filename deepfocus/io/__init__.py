"""Reading and writing cubes, catalogues and regions."""

from .atomic import atomic_path

__all__ = ["atomic_path"]
