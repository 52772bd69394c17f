"""Measuring detected sources: positions, sizes, orientation and fluxes."""

from .characterizer import SourceCharacterizer

__all__ = ["SourceCharacterizer"]
